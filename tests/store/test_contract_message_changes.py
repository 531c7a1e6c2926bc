"""Shared suite: replies, edits, deletions for everyone, reactions and expiry of messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, seeded_rng
from sotto.errors import MissingRecordError
from sotto.store.interfaces import Store
from sotto.store.model import (
    Conversation,
    MessageRowId,
    Quote,
    Reaction,
    ReceiptKind,
)
from sotto.store.sqlite import SqliteStore
from tests.store.factories import NOW_MS
from tests.store.history import add_message
from tests.store.test_contract_messages import incoming, outgoing
from tests.store.test_contract_people import add_contact


def test_a_reply_keeps_its_quote_and_a_timer_notice_its_seconds(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        first = incoming(tx, bob, "lunch?", rng(16))
        quote = Quote(first.message_id, bob.account_id)
        direct = Conversation.direct(bob.contact_id)
        reply = add_message(tx, rng, direct, "yes", quote=quote, expires_ms=NOW_MS + 60_000)
        notice = add_message(tx, rng, direct, "", sender=bob.contact_id, timer_s=3600)
    with store.transaction() as tx:
        assert tx.messages.get(reply.row_id) == reply
        assert reply.quote == quote and reply.expires_ms == NOW_MS + 60_000
        assert tx.messages.get(notice.row_id) == notice and notice.timer_s == 3600
        assert tx.messages.get(first.row_id) == first and first.quote is None and first.timer_s is None


def test_edit_and_delete_for_everyone(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        ours = outgoing(tx, Conversation.direct(bob.contact_id), "helo", rng(16))
        tx.messages.react(ours.row_id, bob.contact_id, "👍", NOW_MS)
        edited = tx.messages.edit(ours.row_id, "hello", NOW_MS + 1)
    with store.transaction() as tx:
        assert tx.messages.get(ours.row_id) == edited
        assert edited.text == "hello" and edited.edited_ms == NOW_MS + 1 and not edited.deleted
        assert tx.messages.find(None, ours.message_id) == edited
        gone = tx.messages.delete_for_everyone(ours.row_id, NOW_MS + 2)
    with store.transaction() as tx:
        kept = tx.messages.get(ours.row_id)
        assert kept == gone and kept is not None
        assert kept.deleted and kept.text == "" and kept.reactions == () and kept.quote is None
        with pytest.raises(MissingRecordError):
            tx.messages.edit(MessageRowId(9999), "x", NOW_MS)
        with pytest.raises(MissingRecordError):
            tx.messages.delete_for_everyone(MessageRowId(9999), NOW_MS)
        with pytest.raises(MissingRecordError):
            tx.messages.react(MessageRowId(9999), None, "x", NOW_MS)


def test_one_reaction_per_person_the_latest_wins(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob, carol = add_contact(tx, rng, "bob"), add_contact(tx, rng, "carol")
        theirs = incoming(tx, bob, "news", rng(16))
        row = theirs.row_id
        assert tx.messages.react(row, bob.contact_id, "👍", NOW_MS + 10)
        assert tx.messages.react(row, None, "❤️", NOW_MS + 10)
        assert tx.messages.react(row, carol.contact_id, "😮", NOW_MS + 10)
        assert tx.messages.react(row, bob.contact_id, "😂", NOW_MS + 20)  # replaces his 👍
        assert not tx.messages.react(row, bob.contact_id, "👎", NOW_MS + 15)  # older: ignored
        assert not tx.messages.react(row, bob.contact_id, "😂", NOW_MS + 20)  # the same again
        assert tx.messages.react(row, carol.contact_id, "", NOW_MS + 30)  # taken back
        assert not tx.messages.react(row, carol.contact_id, "", NOW_MS + 40)  # nothing to take
    with store.transaction() as tx:
        found = tx.messages.get(row)
        assert found is not None
        assert found.reactions == (
            Reaction(None, "❤️", NOW_MS + 10),
            Reaction(bob.contact_id, "😂", NOW_MS + 20),
        )
        assert found.text == "news"


def test_expire_deletes_due_messages_with_their_receipts(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        where = Conversation.direct(bob.contact_id)
        due = [
            add_message(tx, rng, where, f"soon gone {i}", sender=bob.contact_id, expires_ms=NOW_MS + 1000 * i)
            for i in range(3)
        ]
        tx.messages.react(due[0].row_id, None, "👍", NOW_MS)
        kept = incoming(tx, bob, "kept", rng(16))
        assert tx.messages.next_expiry() == NOW_MS
        assert tx.messages.expire(NOW_MS + 1000) == 2
        assert tx.messages.next_expiry() == NOW_MS + 2000
        assert tx.messages.expire(NOW_MS + 1000) == 0
    with store.transaction() as tx:
        assert [m.text for m in tx.messages.conversation(where)] == ["soon gone 2", "kept"]
        assert tx.messages.get(due[0].row_id) is None
        assert {p.row_id for p in tx.messages.pending_receipts()} == {due[2].row_id, kept.row_id}
        assert all(p.kind is ReceiptKind.DELIVERED for p in tx.messages.pending_receipts())
        assert tx.messages.expire(NOW_MS + 10_000) == 1
        assert tx.messages.conversation(where) == [kept]
        assert tx.messages.next_expiry() is None


def test_expired_and_edited_texts_leave_no_trace_in_the_sqlite_files(tmp_path: Path) -> None:
    rng = seeded_rng(7)
    secret, before_edit = "a very secret canary 8c1f", "an edited-away canary 5e2d"
    store = SqliteStore.create(tmp_path / "store.db", "pass phrase", kdf=Argon2Params.TESTING)
    try:
        with store.transaction() as tx:
            bob = add_contact(tx, rng, "bob")
            direct = Conversation.direct(bob.contact_id)
            add_message(tx, rng, direct, secret, sender=bob.contact_id, expires_ms=NOW_MS)
            ours = outgoing(tx, direct, before_edit, rng(16))
            tx.messages.edit(ours.row_id, "fine", NOW_MS)
        with store.transaction() as tx:
            assert tx.messages.expire(NOW_MS) == 1
    finally:
        store.close()
    # Everything is sealed anyway; this holds the sealing to it after expiry and edits too.
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert secret.encode() not in data and before_edit.encode() not in data
