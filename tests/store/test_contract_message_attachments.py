"""Shared suite: what opens a message's file is kept beside the message and goes with it; and the
schema-7 step moves the files kept in the settings before it, dropping those of gone messages."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest

from sotto.crypto.random import Rng
from sotto.errors import MissingRecordError
from sotto.store import codec
from sotto.store.interfaces import Store
from sotto.store.model import ContactId, Conversation, GroupId, MessageId, MessageRowId
from sotto.store.sqlite import SqliteStore
from tests.store.factories import NOW_MS
from tests.store.fixtures import store_v1 as v1
from tests.store.history import add_message
from tests.store.test_contract_messages import incoming, outgoing
from tests.store.test_contract_people import add_contact

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.db"


def test_a_file_is_kept_beside_its_message_and_goes_with_it(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob, carol = add_contact(tx, rng, "bob"), add_contact(tx, rng, "carol")
        direct = Conversation.direct(bob.contact_id)
        kept = incoming(tx, bob, "kept", rng(16))
        deleted = outgoing(tx, direct, "deleted for everyone", rng(16))
        expiring = add_message(tx, rng, direct, "disappears", sender=bob.contact_id, expires_ms=NOW_MS)
        theirs = incoming(tx, carol, "carol's", rng(16))
        group_id = GroupId(rng(16))
        tx.groups.create(
            group_id=group_id, name="g", distribution_id=uuid.UUID(bytes=rng(16)), created_ms=NOW_MS
        )
        in_group = add_message(tx, rng, Conversation.group(group_id), "group file")
        rows = [kept, deleted, expiring, theirs, in_group]
        for m in rows:
            tx.messages.put_attachment(m.row_id, b"pointer of " + m.text.encode())
        assert tx.messages.attachment(MessageRowId(9999)) is None
        with pytest.raises(MissingRecordError):
            tx.messages.put_attachment(MessageRowId(9999), b"nothing to hang off")
    with store.transaction() as tx:
        assert [tx.messages.attachment(m.row_id) for m in rows] == [
            b"pointer of " + m.text.encode() for m in rows
        ]
        tx.messages.put_attachment(kept.row_id, b"replaced")
        tx.messages.delete_for_everyone(deleted.row_id, NOW_MS)
        assert tx.messages.expire(NOW_MS) == 1
        tx.contacts.delete(carol.contact_id)
        tx.groups.delete(group_id)
    with store.transaction() as tx:
        assert tx.messages.attachment(kept.row_id) == b"replaced"
        assert [tx.messages.attachment(m.row_id) for m in rows[1:]] == [None] * 4
        assert tx.messages.delete(kept.row_id)
        assert tx.messages.attachment(kept.row_id) is None


def test_schema_7_moves_the_files_kept_in_settings_and_drops_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, path)
    store = SqliteStore.open(path, v1.PASSPHRASE, migrate_to=6)
    try:
        with store.transaction() as tx:
            (held,) = tx.messages.conversation(Conversation.direct(ContactId(v1.CONTACT_ID)))
            row, hexed = int(held.row_id), held.message_id.hex()
            tx.settings.put(f"attachment:{row}:{hexed}", b"the pointer")
            tx.settings.put(f"attachment:{row + 100}:{hexed}", b"a gone message's pointer")
            tx.settings.put(f"attachment:{row}:{'00' * 16}", b"another message's pointer")
            tx.settings.put("attachment:not a row", b"junk")
            tx.settings.put("theme", b"dark")
    finally:
        store.close()
    store = SqliteStore.open(path, v1.PASSPHRASE)
    try:
        with store.transaction() as tx:
            assert tx.messages.attachment(held.row_id) == codec.pack([b"the pointer", None])
            assert tx.settings.get(f"attachment:{row}:{hexed}") is None
            assert tx.settings.get(f"attachment:{row + 100}:{hexed}") is None
            assert tx.settings.get(f"attachment:{row}:{'00' * 16}") is None
            assert tx.settings.get("attachment:not a row") is None
            assert tx.settings.get("theme") == b"dark"
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM message_attachments").fetchone() == (1,)


def test_our_expired_or_deleted_messages_leave_the_send_log(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        direct = Conversation.direct(bob.contact_id)
        expiring = add_message(tx, rng, direct, "a file, disappearing", expires_ms=NOW_MS)
        deleted = outgoing(tx, direct, "a file, deleted for everyone", rng(16))
        kept = outgoing(tx, direct, "a file, kept", rng(16))
        theirs = add_message(tx, rng, direct, "theirs", sender=bob.contact_id, expires_ms=NOW_MS)
        for m in (expiring, deleted, kept, theirs):
            tx.send_log.add(
                contact_id=bob.contact_id,
                envelope_id=MessageId(rng(16)),
                message_id=m.message_id,
                content=b"content of " + m.text.encode(),
                sent_ms=NOW_MS,
            )
        tx.send_log.add(
            contact_id=bob.contact_id,
            envelope_id=MessageId(rng(16)),
            message_id=None,
            content=b"a receipt",
            sent_ms=NOW_MS,
        )
        assert tx.messages.expire(NOW_MS) == 2
        tx.messages.delete_for_everyone(deleted.row_id, NOW_MS)
    with store.transaction() as tx:
        left = tx.send_log.for_contact(bob.contact_id)
        assert [e.content for e in left] == [b"content of a file, kept", b"content of theirs", b"a receipt"]
