"""Removing, blocking and unblocking contacts, and bringing a removed one back by a new invite.

**Remove** (what the user expects from Signal's "delete contact", plus "keeps no session"): the
session and the trusted identity go (a later invite is a new introduction, verified afresh),
our mailboxes for them are deleted here and on the relay (:class:`DeleteMailbox` commands), the
mailbox they gave us is forgotten, they leave our groups, and what was queued for them or owed to
them (envelopes, receipts) is dropped. The history stays, under the removed contact, unless the
user asks to forget it: then the contact and everything that hangs off it (their messages, in
1:1 and in groups) are deleted. A removed contact's row keeps its local name, so the history
still names them; a new invite from or to the same account brings that row back
(:func:`revive`) with a new session and new mailboxes.

**Block**: everything they send is dropped: no events, no receipts, nothing stored. Their 1:1
messages are still decrypted and thrown away so the session stays current, and a mailbox they
announce is still taken silently, so unblocking resumes the conversation where it stands. We do
not send to a blocked contact. A block outlives removal.
"""

from __future__ import annotations

from dataclasses import replace

from sotto.client import attachment_uploads
from sotto.client.flows.context import Command, Context, DeleteMailbox, Outcome
from sotto.protocol.address import ProtocolAddress
from sotto.store.interfaces import Transaction
from sotto.store.model import Contact, Conversation


def remove_contact(ctx: Context, contact: Contact, *, forget_history: bool = False) -> Outcome:
    """Remove ``contact`` (see the module docstring); the commands delete our mailboxes on the relay."""
    tx = ctx.tx
    commands: list[Command] = []
    for mailbox in tx.mailboxes.for_contact(contact.contact_id):
        tx.mailboxes.delete(mailbox.mailbox_id)
        commands.append(DeleteMailbox(mailbox.mailbox_id, mailbox.signing_seed))
    theirs = tx.their_mailboxes.get(contact.contact_id)
    direct = Conversation.direct(contact.contact_id)
    for item in tx.outbox.all():
        to_them = theirs is not None and item.mailbox_id == theirs.mailbox_id
        message = None if item.message_row is None else tx.messages.get(item.message_row)
        if to_them or (message is not None and message.conversation == direct):
            tx.outbox.remove(item.item_id)
    tx.their_mailboxes.delete(contact.contact_id)
    attachment_uploads.forget_conversation(tx, direct)  # uploads to them will not be sent
    owed = [r for r in tx.messages.pending_receipts(1 << 30) if r.contact_id == contact.contact_id]
    tx.messages.clear_pending_receipts(owed)
    for group_id in tx.groups.groups_of(contact.contact_id):
        tx.groups.remove_member(group_id, contact.contact_id)
    tx.sessions.delete_all(contact.address.name)
    tx.identities.delete(contact.address.name)
    if forget_history:
        tx.contacts.delete(contact.contact_id)
    else:
        tx.contacts.set_removed(contact.contact_id, True)
    return Outcome(commands=commands)


def set_blocked(tx: Transaction, contact: Contact, blocked: bool) -> Contact:
    """Block or unblock; the contact as stored now."""
    tx.contacts.set_blocked(contact.contact_id, blocked)
    return replace(contact, blocked=blocked)


def revive(
    tx: Transaction,
    contact: Contact,
    *,
    address: ProtocolAddress,
    name: str | None = None,
    display_name: str | None = None,
) -> Contact:
    """A removed contact is a contact again (a new invite from or to them); the row, its local
    name (or ``name``) and its history are kept. The caller starts the new session."""
    updated = replace(
        contact,
        name=contact.name if name is None else name,
        address=address,
        display_name=contact.display_name if display_name is None else display_name,
    )
    tx.contacts.update(updated)
    tx.contacts.set_removed(contact.contact_id, False)
    return replace(updated, removed=False)
