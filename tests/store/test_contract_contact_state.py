"""Shared suite, part 4: blocked and removed contacts, received messages and events not yet reported."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from sotto.crypto.random import Rng
from sotto.errors import MissingRecordError
from sotto.store.interfaces import Store
from sotto.store.model import (
    ContactId,
    Conversation,
    Direction,
    GroupId,
    MessageId,
    MessageState,
    PendingEventId,
    PendingEventKind,
)
from tests.store.factories import NOW_MS
from tests.store.test_contract_messages import incoming, outgoing
from tests.store.test_contract_people import add_contact


def test_block_and_remove_flags_persist_and_survive_updates(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        assert (bob.blocked, bob.removed) == (False, False)
        tx.contacts.set_blocked(bob.contact_id, True)
        tx.contacts.set_removed(carol.contact_id, True)
    with store.transaction() as tx:
        got = tx.contacts.get(bob.contact_id)
        assert got is not None and got.blocked and not got.removed
        assert tx.contacts.by_name("Bob") == got
        assert tx.contacts.by_account(bob.account_id) == got
        assert tx.contacts.by_address_name(bob.address.name) == got
        gone = tx.contacts.by_name("Carol")
        assert gone is not None and gone.removed and not gone.blocked
        assert [(c.blocked, c.removed) for c in tx.contacts.all()] == [(True, False), (False, True)]
        # update() changes names and addresses, never the flags (a stale copy cannot unblock).
        tx.contacts.update(dataclasses.replace(bob, display_name="B"))
        updated = tx.contacts.get(bob.contact_id)
        assert updated is not None and updated.blocked and updated.display_name == "B"
        tx.contacts.set_blocked(bob.contact_id, False)
        tx.contacts.set_removed(carol.contact_id, False)
        with pytest.raises(MissingRecordError):
            tx.contacts.set_blocked(ContactId(999), True)
        with pytest.raises(MissingRecordError):
            tx.contacts.set_removed(ContactId(999), True)
    with store.transaction() as tx:
        assert [(c.blocked, c.removed) for c in tx.contacts.all()] == [(False, False), (False, False)]


def test_a_flag_set_in_a_failed_transaction_is_not_kept(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.contacts.set_blocked(bob.contact_id, True)
        raise RuntimeError("crash")
    with store.transaction() as tx:
        got = tx.contacts.get(bob.contact_id)
        assert got is not None and not got.blocked


def test_incoming_messages_are_unreported_until_marked(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        first = incoming(tx, bob, "one", b"\x01" * 16)
        ours = outgoing(tx, Conversation.direct(bob.contact_id), "mine", b"\x02" * 16)
        second = incoming(tx, carol, "two", b"\x03" * 16)
        group = GroupId(rng(16))
        tx.groups.create(group_id=group, name="G", distribution_id=uuid.uuid4(), created_ms=NOW_MS)
        third = tx.messages.add(
            message_id=MessageId(b"\x04" * 16),
            conversation=Conversation.group(group),
            direction=Direction.INCOMING,
            sender=bob.contact_id,
            text="three",
            sent_ms=NOW_MS,
            stored_ms=NOW_MS,
            state=MessageState.RECEIVED,
        )
    with store.transaction() as tx:
        assert tx.messages.unreported() == [first, second, third]  # ours is never "unreported"
        assert tx.messages.unreported(limit=2) == [first, second]
        assert tx.messages.mark_reported([first.row_id, ours.row_id, first.row_id]) == 1
        assert tx.messages.mark_reported([first.row_id]) == 0
    with store.transaction() as tx:
        assert tx.messages.unreported() == [second, third]
        tx.messages.mark_read([second.row_id])  # reading does not report; state changes show
        (after_read, _) = tx.messages.unreported()
        assert after_read.row_id == second.row_id and after_read.state is MessageState.READ
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.messages.mark_reported([second.row_id])
        raise RuntimeError("crash before the commit")
    with store.transaction() as tx:
        assert [m.row_id for m in tx.messages.unreported()] == [second.row_id, third.row_id]
        tx.contacts.delete(carol.contact_id)  # its messages go, and their marks
        tx.groups.delete(group)
        assert tx.messages.unreported() == []


def test_unreported_events_are_kept_until_removed(store: Store, rng: Rng) -> None:
    group = GroupId(rng(16))
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        tx.groups.create(group_id=group, name="G", distribution_id=uuid.uuid4(), created_ms=NOW_MS)
        added = tx.unreported_events.add(PendingEventKind.CONTACT_ADDED, bob.contact_id)
        joined = tx.unreported_events.add(
            PendingEventKind.GROUP_UPDATED, carol.contact_id, group_id=group, flag=True
        )
        changed = tx.unreported_events.add(PendingEventKind.IDENTITY_CHANGED, carol.contact_id)
        with pytest.raises(MissingRecordError):
            tx.unreported_events.add(PendingEventKind.CONTACT_ADDED, ContactId(999))
        with pytest.raises(MissingRecordError):
            tx.unreported_events.add(
                PendingEventKind.GROUP_UPDATED, bob.contact_id, group_id=GroupId(rng(16))
            )
    assert (added.kind, added.contact_id, added.group_id, added.flag) == (
        PendingEventKind.CONTACT_ADDED,
        bob.contact_id,
        None,
        False,
    )
    assert (joined.group_id, joined.flag) == (group, True)
    with store.transaction() as tx:
        assert tx.unreported_events.all() == [added, joined, changed]
        assert tx.unreported_events.remove([added.event_id, PendingEventId(999)]) == 1
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.unreported_events.remove([joined.event_id])
        raise RuntimeError("crash before the commit")
    with store.transaction() as tx:
        assert tx.unreported_events.all() == [joined, changed]
        tx.groups.delete(group)
        assert tx.unreported_events.all() == [changed]
        tx.contacts.delete(carol.contact_id)
        assert tx.unreported_events.all() == []
        later = tx.unreported_events.add(PendingEventKind.CONTACT_ACCEPTED, bob.contact_id)
    assert later.event_id > changed.event_id
