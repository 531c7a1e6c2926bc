"""Shared suite, part 3: message history, receipts both ways, the outbox, seen envelope ids."""

from __future__ import annotations

import uuid

import pytest

from sotto.crypto.random import Rng
from sotto.errors import MissingRecordError, StoreConflictError
from sotto.store.interfaces import Store, Transaction
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    GroupId,
    MailboxId,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
    OutboxItemId,
    PendingReceipt,
    Receipt,
    ReceiptKind,
)
from tests.store.factories import NOW_MS
from tests.store.test_contract_people import add_contact


def incoming(
    tx: Transaction, contact: Contact, text: str, message_id: bytes, sent_ms: int = NOW_MS
) -> Message:
    return tx.messages.add(
        message_id=MessageId(message_id),
        conversation=Conversation.direct(contact.contact_id),
        direction=Direction.INCOMING,
        sender=contact.contact_id,
        text=text,
        sent_ms=sent_ms,
        stored_ms=sent_ms + 5,
        state=MessageState.RECEIVED,
    )


def outgoing(tx: Transaction, conversation: Conversation, text: str, message_id: bytes) -> Message:
    return tx.messages.add(
        message_id=MessageId(message_id),
        conversation=conversation,
        direction=Direction.OUTGOING,
        sender=None,
        text=text,
        sent_ms=NOW_MS,
        stored_ms=NOW_MS,
        state=MessageState.QUEUED,
    )


def test_history_in_order_with_paging(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        written = []
        for i in range(7):
            written.append(incoming(tx, bob, f"bob {i} ✓ üñí", rng(16), NOW_MS + i))
            written.append(outgoing(tx, Conversation.direct(bob.contact_id), f"me {i}", rng(16)))
            incoming(tx, carol, f"carol {i}", rng(16))
    with store.transaction() as tx:
        conversation = Conversation.direct(bob.contact_id)
        assert tx.messages.conversation(conversation, limit=100) == written
        latest = tx.messages.conversation(conversation, limit=4)
        assert latest == written[-4:]
        older = tx.messages.conversation(conversation, limit=4, before=latest[0].row_id)
        assert older == written[-8:-4]
        assert tx.messages.conversation(conversation, limit=0) == []
        assert tx.messages.get(written[0].row_id) == written[0]
        assert tx.messages.get(MessageRowId(10_000)) is None
        assert written[0].text == "bob 0 ✓ üñí" and written[0].stored_ms == NOW_MS + 5


def test_find_by_sender_and_id(store: Store, rng: Rng) -> None:
    shared_id = rng(16)
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        from_bob = incoming(tx, bob, "b", shared_id)
        # Another sender may pick the same id without clashing with Bob's or ours.
        from_carol = incoming(tx, carol, "c", shared_id)
        ours = outgoing(tx, Conversation.direct(bob.contact_id), "o", shared_id)
        with pytest.raises(StoreConflictError):
            incoming(tx, bob, "again", shared_id)
        with pytest.raises(StoreConflictError):
            outgoing(tx, Conversation.direct(carol.contact_id), "again", shared_id)
    with store.transaction() as tx:
        assert tx.messages.find(bob.contact_id, MessageId(shared_id)) == from_bob
        assert tx.messages.find(carol.contact_id, MessageId(shared_id)) == from_carol
        assert tx.messages.find(None, MessageId(shared_id)) == ours
        assert tx.messages.find(None, MessageId(rng(16))) is None


def test_message_shape_is_checked(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        conversation = Conversation.direct(bob.contact_id)
        with pytest.raises(ValueError):
            tx.messages.add(
                message_id=MessageId(rng(16)),
                conversation=conversation,
                direction=Direction.INCOMING,
                sender=None,
                text="",
                sent_ms=0,
                stored_ms=0,
                state=MessageState.RECEIVED,
            )
        with pytest.raises(ValueError):
            tx.messages.add(
                message_id=MessageId(rng(16)),
                conversation=conversation,
                direction=Direction.OUTGOING,
                sender=None,
                text="",
                sent_ms=0,
                stored_ms=0,
                state=MessageState.RECEIVED,
            )
        with pytest.raises(MissingRecordError):
            outgoing(tx, Conversation.group(GroupId(rng(16))), "x", rng(16))
        with pytest.raises(MissingRecordError):
            outgoing(tx, Conversation.direct(bob.contact_id + 100), "x", rng(16))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Conversation()
    with pytest.raises(ValueError):
        Conversation(bob.contact_id, GroupId(b"g" * 16))


def test_states_move_forward_only(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        mine = outgoing(tx, Conversation.direct(bob.contact_id), "hi", rng(16))
        assert tx.messages.advance(mine.row_id, MessageState.SENT) is MessageState.SENT
        assert tx.messages.advance(mine.row_id, MessageState.QUEUED) is MessageState.SENT
        tx.messages.add_receipt(mine.row_id, bob.contact_id, ReceiptKind.READ, NOW_MS + 2)
        tx.messages.add_receipt(mine.row_id, bob.contact_id, ReceiptKind.DELIVERED, NOW_MS + 1)
        tx.messages.add_receipt(mine.row_id, bob.contact_id, ReceiptKind.DELIVERED, NOW_MS + 9)
        with pytest.raises(MissingRecordError):
            tx.messages.advance(MessageRowId(9999), MessageState.SENT)
        with pytest.raises(MissingRecordError):
            tx.messages.add_receipt(MessageRowId(9999), bob.contact_id, ReceiptKind.READ, NOW_MS)
    with store.transaction() as tx:
        got = tx.messages.get(mine.row_id)
        assert got is not None and got.state is MessageState.READ
        assert tx.messages.receipts(mine.row_id) == [
            Receipt(mine.row_id, bob.contact_id, ReceiptKind.DELIVERED, NOW_MS + 1),
            Receipt(mine.row_id, bob.contact_id, ReceiptKind.READ, NOW_MS + 2),
        ]


def test_group_history_and_receipts_from_members(store: Store, rng: Rng) -> None:
    group_id = GroupId(rng(16))
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        tx.groups.create(group_id=group_id, name="G", distribution_id=uuid.uuid4(), created_ms=NOW_MS)
        mine = outgoing(tx, Conversation.group(group_id), "to all", rng(16))
        theirs = tx.messages.add(
            message_id=MessageId(rng(16)),
            conversation=Conversation.group(group_id),
            direction=Direction.INCOMING,
            sender=carol.contact_id,
            text="from carol",
            sent_ms=NOW_MS,
            stored_ms=NOW_MS,
            state=MessageState.RECEIVED,
        )
        tx.messages.add_receipt(mine.row_id, bob.contact_id, ReceiptKind.DELIVERED, NOW_MS + 3)
        tx.messages.add_receipt(mine.row_id, carol.contact_id, ReceiptKind.DELIVERED, NOW_MS + 2)
    with store.transaction() as tx:
        history = tx.messages.conversation(Conversation.group(group_id))
        assert [m.row_id for m in history] == [mine.row_id, theirs.row_id]
        assert history[0].state is MessageState.DELIVERED
        assert history[0].conversation == Conversation.group(group_id)
        assert [r.contact_id for r in tx.messages.receipts(mine.row_id)] == [carol.contact_id, bob.contact_id]
        assert tx.messages.conversation(Conversation.group(GroupId(rng(16)))) == []


def test_receipts_we_owe(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        first = incoming(tx, bob, "one", rng(16))
        second = incoming(tx, bob, "two", rng(16))
        mine = outgoing(tx, Conversation.direct(bob.contact_id), "mine", rng(16))
    delivered_first = PendingReceipt(bob.contact_id, ReceiptKind.DELIVERED, first.message_id, first.row_id)
    delivered_second = PendingReceipt(bob.contact_id, ReceiptKind.DELIVERED, second.message_id, second.row_id)
    read_first = PendingReceipt(bob.contact_id, ReceiptKind.READ, first.message_id, first.row_id)
    with store.transaction() as tx:
        assert tx.messages.pending_receipts() == [delivered_first, delivered_second]
        assert tx.messages.mark_read([first.row_id, mine.row_id, MessageRowId(999)]) == [first.row_id]
        assert tx.messages.mark_read([first.row_id]) == []
        assert tx.messages.pending_receipts() == [delivered_first, read_first, delivered_second]
        assert tx.messages.pending_receipts(limit=1) == [delivered_first]
        tx.messages.clear_pending_receipts([delivered_first, delivered_second])
    with store.transaction() as tx:
        assert tx.messages.pending_receipts() == [read_first]
        read = tx.messages.get(first.row_id)
        assert read is not None and read.state is MessageState.READ
        assert tx.messages.delete(first.row_id) is True
        assert tx.messages.delete(first.row_id) is False
        assert tx.messages.pending_receipts() == []


def test_outbox_retries_then_confirms(store: Store, rng: Rng) -> None:
    mailbox = MailboxId(rng(16))
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        message = outgoing(tx, Conversation.direct(bob.contact_id), "hi", rng(16))
        first = tx.outbox.enqueue(
            server_url="http://relay",
            mailbox_id=mailbox,
            delivery_token=rng(32),
            message_id=message.message_id,
            payload=rng(256),
            created_ms=NOW_MS,
            message_row=message.row_id,
        )
        second = tx.outbox.enqueue(
            server_url="http://relay",
            mailbox_id=MailboxId(rng(16)),
            delivery_token=rng(32),
            message_id=message.message_id,
            payload=rng(256),
            created_ms=NOW_MS + 1,
            message_row=message.row_id,
        )
        receipt = tx.outbox.enqueue(
            server_url="http://relay",
            mailbox_id=mailbox,
            delivery_token=rng(32),
            message_id=MessageId(rng(16)),
            payload=rng(512),
            created_ms=NOW_MS + 2,
        )
        with pytest.raises(StoreConflictError):
            tx.outbox.enqueue(
                server_url="http://relay",
                mailbox_id=mailbox,
                delivery_token=rng(32),
                message_id=message.message_id,
                payload=rng(256),
                created_ms=NOW_MS,
            )
        with pytest.raises(MissingRecordError):
            tx.outbox.enqueue(
                server_url="http://relay",
                mailbox_id=mailbox,
                delivery_token=rng(32),
                message_id=MessageId(rng(16)),
                payload=rng(256),
                created_ms=NOW_MS,
                message_row=MessageRowId(999),
            )
    assert (first.attempts, first.next_attempt_ms) == (0, NOW_MS)
    with store.transaction() as tx:
        assert tx.outbox.get(first.item_id) == first
        assert tx.outbox.all() == [first, second, receipt]
        assert tx.outbox.count() == 3
        assert tx.outbox.due(NOW_MS) == [first]
        assert tx.outbox.due(NOW_MS + 5, limit=2) == [first, second]
        retried = tx.outbox.reschedule(first.item_id, NOW_MS + 1000)
        assert (retried.attempts, retried.next_attempt_ms, retried.payload) == (
            1,
            NOW_MS + 1000,
            first.payload,
        )
        assert tx.outbox.reschedule(first.item_id, NOW_MS + 3000).attempts == 2
        with pytest.raises(MissingRecordError):
            tx.outbox.reschedule(OutboxItemId(999), NOW_MS)
    with store.transaction() as tx:
        assert tx.outbox.due(NOW_MS + 5) == [second, receipt]
        assert [i.item_id for i in tx.outbox.due(NOW_MS + 5000)] == [
            second.item_id,
            receipt.item_id,
            first.item_id,
        ]
        assert tx.outbox.remaining_for(message.row_id) == 2
        assert tx.outbox.remove(second.item_id) is True
        assert tx.outbox.remove(second.item_id) is False
        assert tx.outbox.remaining_for(message.row_id) == 1
        tx.outbox.remove(first.item_id)
        assert tx.outbox.remaining_for(message.row_id) == 0
        assert tx.outbox.all() == [receipt]


def test_seen_envelopes_dedupe_and_prune(store: Store, rng: Rng) -> None:
    mailbox = MailboxId(rng(16))
    other = MailboxId(rng(16))
    envelope = MessageId(rng(16))
    with store.transaction() as tx:
        assert tx.seen.add(mailbox, envelope, 100) is True
        assert tx.seen.add(mailbox, envelope, 101) is False
        assert tx.seen.add(other, envelope, 101) is True
        assert tx.seen.add(mailbox, MessageId(rng(16)), 130) is True
    with store.transaction() as tx:
        assert tx.seen.contains(mailbox, envelope)
        assert not tx.seen.contains(mailbox, MessageId(rng(16)))
        assert tx.seen.prune(101) == 1
        assert not tx.seen.contains(mailbox, envelope)
        assert tx.seen.contains(other, envelope)
        assert tx.seen.prune(200) == 2
