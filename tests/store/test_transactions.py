"""Shared suite, part 4: the Unit of Work itself — all or nothing, one at a time, no reuse."""

from __future__ import annotations

import threading
import uuid

import pytest

from sotto.crypto.random import Rng
from sotto.errors import StoreError
from sotto.store.interfaces import Store, Transaction
from sotto.store.model import Conversation, GroupId, MailboxId, MessageId, PreKeyKind
from tests.store import factories
from tests.store.factories import NOW_MS
from tests.store.test_contract_messages import incoming, outgoing
from tests.store.test_contract_people import add_contact


def snapshot(tx: Transaction) -> dict[str, object]:
    """Everything observable, in comparable form."""
    contacts = tx.contacts.all()
    return {
        "account": None if (a := tx.account.get()) is None else a.account_id,
        "contacts": contacts,
        "messages": [tx.messages.conversation(Conversation.direct(c.contact_id)) for c in contacts],
        "receipts": tx.messages.pending_receipts(),
        "outbox": tx.outbox.all(),
        "mailboxes": tx.mailboxes.all(),
        "invites": tx.invites.all(),
        "groups": tx.groups.all(),
        "prekeys": [tx.prekeys.ids(k) for k in PreKeyKind],
        "settings": tx.settings.get("k"),
    }


def test_an_exception_writes_nothing(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        incoming(tx, bob, "kept", rng(16))
        tx.settings.put("k", b"before")
        before = snapshot(tx)
    peer = factories.address(rng)
    record = factories.session_record(rng, factories.address(rng), peer)
    envelope = MessageId(rng(16))
    mailbox = MailboxId(rng(16))

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        # The receive path: new session state, the plaintext, the "seen" mark... then a crash.
        tx.account.put(factories.account(rng))
        tx.sessions.put(peer, record)
        carol = add_contact(tx, rng, "Carol")
        message = incoming(tx, bob, "lost", rng(16))
        tx.messages.mark_read([message.row_id])
        tx.seen.add(mailbox, envelope, 1)
        tx.outbox.enqueue(
            server_url="u",
            mailbox_id=mailbox,
            delivery_token=rng(32),
            message_id=envelope,
            payload=b"x",
            created_ms=NOW_MS,
        )
        tx.groups.create(group_id=GroupId(rng(16)), name="g", distribution_id=uuid.uuid4(), created_ms=NOW_MS)
        tx.groups.add_member(tx.groups.all()[0].group_id, carol.contact_id)
        tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 3)
        tx.settings.put("k", b"after")
        tx.contacts.delete(bob.contact_id)
        raise Boom
    with store.transaction() as tx:
        assert snapshot(tx) == before
        assert tx.sessions.get(peer) is None
        assert not tx.seen.contains(mailbox, envelope)
        assert list(tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 1)) == [1]


def test_a_failed_statement_does_not_poison_the_transaction(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        add_contact(tx, rng, "Bob")
        with pytest.raises(StoreError):
            add_contact(tx, rng, "Bob")
        add_contact(tx, rng, "Carol")
    with store.transaction() as tx:
        assert [c.name for c in tx.contacts.all()] == ["Bob", "Carol"]


def test_no_nesting_on_one_thread(store: Store) -> None:
    with store.transaction(), pytest.raises(StoreError, match="already open"), store.transaction():
        pass
    with store.transaction() as tx:  # the gate was released
        tx.settings.put("k", b"v")


def test_a_transaction_is_dead_after_its_block(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        pass
    with pytest.raises(StoreError):
        tx.settings.get("k")
    with pytest.raises(StoreError):
        add_contact(tx, rng, "Bob")
    with pytest.raises(RuntimeError), store.transaction() as failed:
        raise RuntimeError
    with pytest.raises(StoreError):
        failed.outbox.count()


def test_threads_take_turns(store: Store) -> None:
    """Read-modify-write from several threads loses no update: transactions do not interleave."""

    def bump(times: int) -> None:
        for _ in range(times):
            with store.transaction() as tx:
                value = int.from_bytes(tx.settings.get("n") or b"\x00", "big")
                tx.settings.put("n", (value + 1).to_bytes(4, "big"))

    threads = [threading.Thread(target=bump, args=(50,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.transaction() as tx:
        assert int.from_bytes(tx.settings.get("n") or b"", "big") == 200


def test_close(store: Store) -> None:
    with store.transaction() as tx, pytest.raises(StoreError):
        store.close()
    del tx
    store.close()
    store.close()
    with pytest.raises(StoreError), store.transaction():
        pass


def test_receive_then_send_in_one_unit(store: Store, rng: Rng) -> None:
    """The shapes the client uses: outgoing message + outbox entry commit together."""
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        message = outgoing(tx, Conversation.direct(bob.contact_id), "hi", rng(16))
        tx.outbox.enqueue(
            server_url="u",
            mailbox_id=MailboxId(rng(16)),
            delivery_token=rng(32),
            message_id=message.message_id,
            payload=b"p",
            created_ms=NOW_MS,
            message_row=message.row_id,
        )
    with store.transaction() as tx:
        assert tx.outbox.remaining_for(message.row_id) == 1
