"""Shared suite, part 2: contacts, our and their mailboxes, invites, groups."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from sotto.crypto.random import Rng
from sotto.errors import MissingRecordError, StoreConflictError
from sotto.protocol.address import ProtocolAddress
from sotto.store.interfaces import Store, Transaction
from sotto.store.model import (
    Contact,
    ContactId,
    Conversation,
    GroupId,
    GroupMember,
    Invite,
    MailboxId,
    MessageState,
    OurMailbox,
    ReceiptKind,
    TheirMailbox,
)
from tests.store import factories
from tests.store.factories import NOW_MS
from tests.store.history import add_message


def add_contact(tx: Transaction, rng: Rng, name: str) -> Contact:
    account_id = rng(16)
    return tx.contacts.add(
        name=name,
        account_id=account_id,
        address=ProtocolAddress(str(uuid.UUID(bytes=account_id)), 1),
        now_ms=NOW_MS,
    )


def our_mailbox(rng: Rng, contact_id: ContactId, created_ms: int = NOW_MS) -> OurMailbox:
    return OurMailbox(MailboxId(rng(16)), contact_id, "http://relay", rng(32), rng(32), created_ms)


def test_contacts_add_find_update_delete(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = tx.contacts.add(
            name="Carol",
            account_id=rng(16),
            address=factories.address(rng, 3),
            now_ms=NOW_MS + 1,
            display_name="C",
        )
    assert bob.contact_id != carol.contact_id
    with store.transaction() as tx:
        assert tx.contacts.get(bob.contact_id) == bob
        assert tx.contacts.by_name("Bob") == bob
        assert tx.contacts.by_name("bob") is None
        assert tx.contacts.by_account(carol.account_id) == carol
        assert tx.contacts.by_address_name(carol.address.name) == carol
        assert tx.contacts.by_address_name("nobody") is None
        assert tx.contacts.all() == [bob, carol]
        assert carol.display_name == "C" and carol.address.device_id == 3
        renamed = dataclasses.replace(bob, name="Robert", display_name="Bobby")
        tx.contacts.update(renamed)
        assert tx.contacts.by_name("Bob") is None
        assert tx.contacts.by_name("Robert") == renamed
        with pytest.raises(StoreConflictError):
            tx.contacts.update(dataclasses.replace(renamed, name="Carol"))
        with pytest.raises(MissingRecordError):
            tx.contacts.update(dataclasses.replace(renamed, contact_id=ContactId(999)))
        assert tx.contacts.delete(carol.contact_id) is True
        assert tx.contacts.delete(carol.contact_id) is False
        assert tx.contacts.all() == [renamed]


def test_contact_uniqueness(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        with pytest.raises(StoreConflictError):
            add_contact(tx, rng, "Bob")
        with pytest.raises(StoreConflictError):
            tx.contacts.add(
                name="Other", account_id=bob.account_id, address=factories.address(rng), now_ms=NOW_MS
            )
        with pytest.raises(StoreConflictError):
            tx.contacts.add(name="Other", account_id=rng(16), address=bob.address, now_ms=NOW_MS)
        assert tx.contacts.all() == [bob]


def test_contact_ids_are_not_reused(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        first = add_contact(tx, rng, "A")
        tx.contacts.delete(first.contact_id)
        second = add_contact(tx, rng, "A")
    assert second.contact_id > first.contact_id


def test_our_mailboxes_rotation(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        old = our_mailbox(rng, bob.contact_id, NOW_MS)
        new = our_mailbox(rng, bob.contact_id, NOW_MS + 10)
        carols = our_mailbox(rng, carol.contact_id, NOW_MS + 5)
        for mailbox in (old, carols, new):
            tx.mailboxes.add(mailbox)
        with pytest.raises(StoreConflictError):
            tx.mailboxes.add(old)
        with pytest.raises(MissingRecordError):
            tx.mailboxes.add(our_mailbox(rng, ContactId(999)))
    with store.transaction() as tx:
        assert tx.mailboxes.get(old.mailbox_id) == old
        assert tx.mailboxes.get(MailboxId(rng(16))) is None
        assert tx.mailboxes.for_contact(bob.contact_id) == [new, old]
        assert tx.mailboxes.current(bob.contact_id) == new
        assert tx.mailboxes.all() == [old, carols, new]
        retired = dataclasses.replace(new, rotated_ms=NOW_MS + 20, retiring_until_ms=NOW_MS + 30)
        # Only the rotation fields change on update; keys and tokens stay as created.
        tx.mailboxes.update(dataclasses.replace(retired, delivery_token=b"x" * 32))
        assert tx.mailboxes.get(new.mailbox_id) == retired
        assert tx.mailboxes.current(bob.contact_id) == old
        with pytest.raises(MissingRecordError):
            tx.mailboxes.update(our_mailbox(rng, bob.contact_id))
        assert tx.mailboxes.delete(old.mailbox_id) is True
        assert tx.mailboxes.delete(old.mailbox_id) is False
        assert tx.mailboxes.current(bob.contact_id) is None
        assert tx.mailboxes.current(carol.contact_id) == carols


def test_mailbox_ids_are_unique_across_invites(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        mailbox = our_mailbox(rng, bob.contact_id)
        tx.mailboxes.add(mailbox)
        with pytest.raises(StoreConflictError):
            _add_invite(tx, rng, mailbox.mailbox_id)
        invite = _add_invite(tx, rng)
        with pytest.raises(StoreConflictError):
            tx.mailboxes.add(dataclasses.replace(mailbox, mailbox_id=invite.mailbox_id))


def test_their_mailboxes(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        assert tx.their_mailboxes.get(bob.contact_id) is None
        first = TheirMailbox(bob.contact_id, "http://relay", MailboxId(rng(16)), rng(32), NOW_MS)
        tx.their_mailboxes.put(first)
        with pytest.raises(MissingRecordError):
            tx.their_mailboxes.put(dataclasses.replace(first, contact_id=ContactId(999)))
    with store.transaction() as tx:
        assert tx.their_mailboxes.get(bob.contact_id) == first
        second = TheirMailbox(bob.contact_id, "http://other", MailboxId(rng(16)), rng(32), NOW_MS + 1)
        tx.their_mailboxes.put(second)
        assert tx.their_mailboxes.get(bob.contact_id) == second
        assert tx.their_mailboxes.delete(bob.contact_id) is True
        assert tx.their_mailboxes.delete(bob.contact_id) is False


def _add_invite(
    tx: Transaction, rng: Rng, mailbox_id: MailboxId | None = None, expires_ms: int = NOW_MS + 1000
) -> Invite:
    return tx.invites.add(
        secret=rng(32),
        mailbox_id=mailbox_id or MailboxId(rng(16)),
        signing_seed=rng(32),
        delivery_token=rng(32),
        access_token=rng(32),
        created_ms=NOW_MS,
        expires_ms=expires_ms,
    )


def test_invites(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        first = _add_invite(tx, rng)
        short = _add_invite(tx, rng, expires_ms=NOW_MS + 10)
        third = _add_invite(tx, rng)
        with pytest.raises(StoreConflictError):
            _add_invite(tx, rng, first.mailbox_id)
    with store.transaction() as tx:
        assert tx.invites.get(first.invite_id) == first
        assert tx.invites.by_mailbox(short.mailbox_id) == short
        assert tx.invites.by_mailbox(MailboxId(rng(16))) is None
        assert tx.invites.all() == [first, short, third]
        assert tx.invites.open(NOW_MS) == [first, short, third]
        assert tx.invites.open(NOW_MS + 10) == [first, third]
        tx.invites.mark_used(first.invite_id, NOW_MS + 1)
        tx.invites.mark_used(first.invite_id, NOW_MS + 2)
        with pytest.raises(MissingRecordError):
            tx.invites.mark_used(first.invite_id + 100, NOW_MS)  # type: ignore[arg-type]
    with store.transaction() as tx:
        used = tx.invites.get(first.invite_id)
        assert used is not None and used.used_ms == NOW_MS + 1 and used.secret == first.secret
        assert tx.invites.open(NOW_MS) == [short, third]
        assert tx.invites.delete(third.invite_id) is True
        assert tx.invites.delete(third.invite_id) is False
        assert tx.invites.all() == [used, short]


def test_groups_and_members(store: Store, rng: Rng) -> None:
    group_id = GroupId(rng(16))
    dist = uuid.UUID(bytes=rng(16), version=4)
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        group = tx.groups.create(group_id=group_id, name="Lunch", distribution_id=dist, created_ms=NOW_MS)
        with pytest.raises(StoreConflictError):
            tx.groups.create(group_id=group_id, name="Again", distribution_id=dist, created_ms=NOW_MS)
        other = tx.groups.create(
            group_id=GroupId(rng(16)), name="Other", distribution_id=uuid.uuid4(), created_ms=NOW_MS
        )
        assert tx.groups.add_member(group_id, carol.contact_id) is True
        assert tx.groups.add_member(group_id, bob.contact_id) is True
        assert tx.groups.add_member(group_id, bob.contact_id) is False
        assert tx.groups.add_member(other.group_id, bob.contact_id) is True
        with pytest.raises(MissingRecordError):
            tx.groups.add_member(group_id, ContactId(999))
        with pytest.raises(MissingRecordError):
            tx.groups.add_member(GroupId(rng(16)), bob.contact_id)
    with store.transaction() as tx:
        assert tx.groups.get(group_id) == group
        assert tx.groups.get(GroupId(rng(16))) is None
        assert tx.groups.all() == [group, other]
        assert tx.groups.members(group_id) == [
            GroupMember(carol.contact_id, False),
            GroupMember(bob.contact_id, False),
        ]
        assert tx.groups.groups_of(bob.contact_id) == [group_id, other.group_id]
        tx.groups.mark_skdm_sent(group_id, bob.contact_id)
        tx.groups.add_member(group_id, bob.contact_id)  # keeps the flag
        assert tx.groups.members(group_id)[1] == GroupMember(bob.contact_id, True)
        with pytest.raises(MissingRecordError):
            tx.groups.mark_skdm_sent(other.group_id, carol.contact_id)
        tx.groups.rename(group_id, "Dinner")
        new_dist = uuid.UUID(bytes=rng(16), version=4)
        tx.groups.set_distribution(group_id, new_dist)
    with store.transaction() as tx:
        renamed = tx.groups.get(group_id)
        assert renamed == dataclasses.replace(group, name="Dinner", distribution_id=new_dist)
        assert all(not m.skdm_sent for m in tx.groups.members(group_id))
        assert tx.groups.remove_member(group_id, carol.contact_id) is True
        assert tx.groups.remove_member(group_id, carol.contact_id) is False
        assert tx.groups.members(group_id) == [GroupMember(bob.contact_id, False)]
        with pytest.raises(MissingRecordError):
            tx.groups.rename(GroupId(rng(16)), "x")
        assert tx.groups.delete(other.group_id) is True
        assert tx.groups.delete(other.group_id) is False
        assert tx.groups.groups_of(bob.contact_id) == [group_id]
        assert tx.groups.members(other.group_id) == []


def test_deleting_a_contact_removes_what_hangs_off_it(store: Store, rng: Rng) -> None:
    group_id = GroupId(rng(16))
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        tx.mailboxes.add(our_mailbox(rng, bob.contact_id))
        kept = our_mailbox(rng, carol.contact_id)
        tx.mailboxes.add(kept)
        tx.their_mailboxes.put(TheirMailbox(bob.contact_id, "u", MailboxId(rng(16)), rng(32), NOW_MS))
        tx.groups.create(group_id=group_id, name="G", distribution_id=uuid.uuid4(), created_ms=NOW_MS)
        tx.groups.add_member(group_id, bob.contact_id)
        tx.groups.add_member(group_id, carol.contact_id)
        group = Conversation.group(group_id)
        direct = add_message(tx, rng, Conversation.direct(bob.contact_id), "to bob")
        in_group = add_message(tx, rng, group, "from bob in the group", sender=bob.contact_id)
        ours = add_message(tx, rng, group, "ours in the group", state=MessageState.SENT)
        tx.messages.add_receipt(ours.row_id, bob.contact_id, ReceiptKind.DELIVERED, NOW_MS)
        tx.messages.add_receipt(ours.row_id, carol.contact_id, ReceiptKind.DELIVERED, NOW_MS)
        item = tx.outbox.enqueue(
            server_url="u",
            mailbox_id=MailboxId(rng(16)),
            delivery_token=rng(32),
            message_id=direct.message_id,
            payload=b"p" * 256,
            created_ms=NOW_MS,
            message_row=direct.row_id,
        )
    with store.transaction() as tx:
        assert tx.contacts.delete(bob.contact_id)
    with store.transaction() as tx:
        assert tx.mailboxes.all() == [kept]
        assert tx.their_mailboxes.get(bob.contact_id) is None
        assert tx.groups.members(group_id) == [GroupMember(carol.contact_id, False)]
        assert tx.messages.get(direct.row_id) is None
        assert tx.messages.get(in_group.row_id) is None
        assert tx.messages.pending_receipts() == []
        assert [r.contact_id for r in tx.messages.receipts(ours.row_id)] == [carol.contact_id]
        # The envelope may already be on its way: it stays queued, detached from the history.
        queued = tx.outbox.get(item.item_id)
        assert queued is not None and queued.message_row is None
