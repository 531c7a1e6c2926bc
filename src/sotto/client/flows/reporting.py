"""Reporting at least once: what was committed is reported to the app even across a crash.

Which events are kept until the app has taken them:

* :class:`~sotto.client.events.MessageReceived` and
  :class:`~sotto.client.events.GroupMessageReceived`: the store marks every incoming message
  *unreported* in the transaction that stores its plaintext;
* :class:`~sotto.client.events.ContactAdded`, :class:`~sotto.client.events.ContactAccepted`,
  :class:`~sotto.client.events.ContactMailboxChanged`, :class:`~sotto.client.events.GroupUpdated`
  and :class:`~sotto.client.events.IdentityChanged`: :func:`journal` keeps them as pending events
  in the transaction that made the change (or refused the envelope).

Not kept: receipts and message states (the history holds them: a message's state says delivered
or read), typing, connection changes, sent / failed sends of our own messages (the history and
the outbox say where each stands), rejected envelopes (diagnostics).

When the app has taken an event (``listen()`` was asked for the next one, or the client was
closed, after handing it out; ``sync()`` returned it), :func:`mark_taken` clears its mark. A
client that opens the store reports what is still marked first (:func:`unreported`), with the
same message ids, so an app that saw one before a crash can drop the repeat; within one run no
event is reported twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from sotto.client.events import (
    ContactAccepted,
    ContactAdded,
    ContactMailboxChanged,
    Event,
    GroupMessageReceived,
    GroupUpdated,
    IdentityChanged,
    MessageReceived,
)
from sotto.client.flows.attachments import received_event, stored
from sotto.store.interfaces import Transaction
from sotto.store.model import (
    Contact,
    ContactId,
    Group,
    GroupId,
    Message,
    MessageRowId,
    PendingEvent,
    PendingEventId,
    PendingEventKind,
)

Key = tuple[PendingEventKind, ContactId, GroupId | None, bool]

_KINDS: dict[type, PendingEventKind] = {
    ContactAdded: PendingEventKind.CONTACT_ADDED,
    ContactAccepted: PendingEventKind.CONTACT_ACCEPTED,
    ContactMailboxChanged: PendingEventKind.CONTACT_MAILBOX_CHANGED,
    IdentityChanged: PendingEventKind.IDENTITY_CHANGED,
}


def _key(event: Event) -> Key | None:
    """What a pending event records about ``event``, or None if it is not one kept that way."""
    if isinstance(event, GroupUpdated):
        return PendingEventKind.GROUP_UPDATED, event.sender.contact_id, event.group.group_id, event.joined
    if isinstance(event, ContactAdded | ContactAccepted | ContactMailboxChanged | IdentityChanged):
        return _KINDS[type(event)], event.contact.contact_id, None, False
    return None


def _key_of(pending: PendingEvent) -> Key:
    return pending.kind, pending.contact_id, pending.group_id, pending.flag


def is_kept(event: Event) -> bool:
    """Whether ``event`` is one that stays marked until the app has taken it."""
    return isinstance(event, MessageReceived | GroupMessageReceived) or _key(event) is not None


def journal(tx: Transaction, events: Iterable[Event]) -> None:
    """Keep the events other than messages that must reach the app (call in the transaction
    that made the change they report)."""
    for event in events:
        key = _key(event)
        if key is not None:
            kind, contact_id, group_id, flag = key
            tx.unreported_events.add(kind, contact_id, group_id=group_id, flag=flag)


def mark_taken(tx: Transaction, events: Iterable[Event]) -> None:
    """The app has these events: clear their marks (marks already cleared are ignored)."""
    rows: list[MessageRowId] = []
    pending: list[PendingEvent] | None = None
    done: list[PendingEventId] = []
    for event in events:
        if isinstance(event, MessageReceived | GroupMessageReceived):
            sender = event.contact if isinstance(event, MessageReceived) else event.sender
            message = tx.messages.find(sender.contact_id, event.message_id)
            if message is not None:
                rows.append(message.row_id)
            continue
        key = _key(event)
        if key is None:
            continue
        if pending is None:
            pending = tx.unreported_events.all()
        match = next((p for p in pending if _key_of(p) == key), None)
        if match is not None:
            pending.remove(match)  # events of one kind for one contact are alike: take the oldest
            done.append(match.event_id)
    if rows:
        tx.messages.mark_reported(rows)
    if done:
        tx.unreported_events.remove(done)


def _message_event(
    tx: Transaction, sender: Contact, message: Message, group: Group | None
) -> MessageReceived | GroupMessageReceived:
    """The event of a message kept unreported, 1:1 or in ``group``: a file's when it holds one."""
    held = stored(tx, message)
    if held is not None:
        return received_event(
            sender, message.message_id, message.text, message.sent_ms, held.pointer, group=group
        )
    if group is None:
        return MessageReceived(sender, message.message_id, message.text, message.sent_ms)
    return GroupMessageReceived(group, sender, message.message_id, message.text, message.sent_ms)


def unreported(tx: Transaction) -> list[Event]:
    """Every event still marked, rebuilt from the store: contact and group events first (in the
    order they happened), then messages (in the order they were stored)."""
    events: list[Event] = []
    for pending in tx.unreported_events.all():
        contact = tx.contacts.get(pending.contact_id)
        if contact is None:
            continue
        match pending.kind:
            case PendingEventKind.CONTACT_ADDED:
                events.append(ContactAdded(contact))
            case PendingEventKind.CONTACT_ACCEPTED:
                events.append(ContactAccepted(contact))
            case PendingEventKind.CONTACT_MAILBOX_CHANGED:
                events.append(ContactMailboxChanged(contact))
            case PendingEventKind.IDENTITY_CHANGED:
                events.append(IdentityChanged(contact))
            case PendingEventKind.GROUP_UPDATED:
                group = None if pending.group_id is None else tx.groups.get(pending.group_id)
                if group is not None:
                    events.append(GroupUpdated(group, contact, pending.flag))
    for message in tx.messages.unreported(limit=1 << 30):
        sender = None if message.sender is None else tx.contacts.get(message.sender)
        if sender is None:
            continue
        group_id = message.conversation.group_id
        if group_id is None:
            events.append(_message_event(tx, sender, message, None))
            continue
        group = tx.groups.get(group_id)
        if group is not None:
            events.append(_message_event(tx, sender, message, group))
    return events
