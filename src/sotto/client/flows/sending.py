"""Sending 1:1: texts, receipts and typing, each sealed to one contact and queued in the outbox.

The session record advances and the sealed envelope enters the outbox in the same transaction,
so a retry resends the identical bytes under the same envelope id (the relay and the receiver
both dedupe it) and never encrypts twice. The outbox entry leaves only when the relay confirms.

What we send a contact (but typing and cover) also goes into the **send log** in that
transaction (:func:`log_sent`), kept :data:`SEND_LOG_RETENTION_MS` or until a delivery receipt
names the text, so that a session repair can send it again (:mod:`.repair`).

A contact we hold no session with (a profile restored from a backup keeps none) is asked for
one (:func:`~sotto.client.flows.repair.request_session`): our texts wait in the history, as they
do before a contact answered our invite, and go out when the new session arrives; receipts and
other control messages wait too (they are owed, not lost).
"""

from __future__ import annotations

import contextlib
import struct
from collections import defaultdict

from sotto.client import content as c
from sotto.client.events import Event, MessageSent
from sotto.client.flows import changes
from sotto.client.flows.context import Context
from sotto.errors import SessionNotFoundError, UntrustedIdentityError
from sotto.protocol import session
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, seal_v1
from sotto.store.model import (
    Contact,
    ContactId,
    Conversation,
    Direction,
    GroupId,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
    OutboxItemId,
    PendingReceipt,
    Quote,
    ReceiptKind,
    TheirMailbox,
)
from sotto.wire.padding import pad

HELD_MESSAGES_SCAN = 500
"""How far back to look for texts written before a contact answered our invite."""

SEND_LOG_RETENTION_MS = 86_400_000
"""A send log entry is kept a day (Signal keeps its message send log a day too)."""

HELD_GROUP_LIMIT = 100
"""Group messages kept for one member while we wait for a session with them (newest kept)."""

_HELD_GROUP = "session/held-group/"
"""Group messages a member could not be sent (no session to hand them our sender key on)."""


class NoSessionError(SessionNotFoundError):
    """We hold no session with a contact and cannot ask them for one: they were removed, we
    trust no identity key for them, or we have no prekeys to hand them. Names the contact."""

    def __init__(self, contact: Contact, why: str) -> None:
        self.contact_name = contact.name
        super().__init__(f"cannot start a session with {self.contact_name}: {why}")


def has_session(ctx: Context, contact: Contact) -> bool:
    """Whether we can encrypt to ``contact`` now (a current, not stale, session)."""
    record = ctx.tx.sessions.get(contact.address)
    if record is None or record.current is None:
        return False
    state = record.current
    return state.pending_prekey is None or not state.is_stale(ctx.now_ms)


def ask_for_session(ctx: Context, contact: Contact) -> bool:
    """We hold no session with ``contact``: ask them for one (rate-limited). True if asked now.

    Raises :class:`NoSessionError` if it cannot be asked for at all.
    """
    from sotto.client.flows import devices, repair  # noqa: PLC0415 (they build on this module)

    if devices.relay_login(ctx.tx) is not None:
        # A linked device's sessions will come with messages to every device; asking now would
        # hand the contact this device's prekeys as the account's first device's.
        raise NoSessionError(contact, "this device was linked to the account and cannot write yet")
    return repair.request_session(ctx, contact)


def hold_group_message(ctx: Context, contact: Contact, group_id: GroupId, encoded: bytes) -> None:
    """``contact`` lacks our sender key for ``group_id`` and we hold no session to hand it on
    (after a restore): keep the group message's encoded content, to send them when the session
    arrives (:func:`take_held_group_messages`). Kept :data:`SEND_LOG_RETENTION_MS` at most."""
    key = f"{_HELD_GROUP}{contact.contact_id}"
    held = _held_entries(ctx, key)[-(HELD_GROUP_LIMIT - 1) :]
    held.append((ctx.now_ms, bytes(group_id), bytes(encoded)))
    ctx.tx.settings.put(key, b"".join(struct.pack(">QHI", at, len(g), len(e)) + g + e for at, g, e in held))


def take_held_group_messages(ctx: Context, contact: Contact) -> list[tuple[GroupId, bytes]]:
    """The group messages held for ``contact`` (oldest first, the expired left out), forgotten."""
    key = f"{_HELD_GROUP}{contact.contact_id}"
    held = _held_entries(ctx, key)
    ctx.tx.settings.delete(key)
    oldest = ctx.now_ms - SEND_LOG_RETENTION_MS
    return [(GroupId(g), e) for at, g, e in held if at >= oldest]


def _held_entries(ctx: Context, key: str) -> list[tuple[int, bytes, bytes]]:
    value = ctx.tx.settings.get(key) or b""
    entries, pos = [], 0
    while pos + 14 <= len(value):
        at, group_length, length = struct.unpack_from(">QHI", value, pos)
        pos += 14
        entries.append(
            (at, value[pos : pos + group_length], value[pos + group_length : pos + group_length + length])
        )
        pos += group_length + length
    return entries


def seal_to_contact(ctx: Context, contact: Contact, message: c.Content) -> bytes:
    """Encrypt ``message`` on the contact's session (stored advanced), seal it, pad it."""
    return seal_encoded(ctx, contact, c.encode(message))


def seal_encoded(ctx: Context, contact: Contact, encoded: bytes) -> bytes:
    """:func:`seal_to_contact` for content already encoded (a send log entry)."""
    tx, me = ctx.tx, ctx.me
    trusted = tx.identities.get(contact.address.name)
    if trusted is None:
        raise UntrustedIdentityError("no trusted identity key for this contact")
    record, ciphertext = session.encrypt(
        tx.sessions.get(contact.address),
        pad(encoded),
        our_address=me.address,
        their_address=contact.address,
        now_ms=ctx.now_ms,
        rng=ctx.rng,
    )
    tx.sessions.put(contact.address, record)
    usmc = UnidentifiedSenderMessageContent.new(ciphertext.type, me.certificate, ciphertext.body)
    return pad(seal_v1(me.identity, trusted.identity_key, usmc, ctx.rng))


def enqueue(
    ctx: Context,
    theirs: TheirMailbox,
    envelope_id: bytes,
    payload: bytes,
    *,
    row: MessageRowId | None = None,
) -> None:
    ctx.tx.outbox.enqueue(
        server_url=theirs.server_url,
        mailbox_id=theirs.mailbox_id,
        delivery_token=theirs.delivery_token,
        message_id=MessageId(envelope_id),
        payload=payload,
        created_ms=ctx.now_ms,
        message_row=row,
    )


def send_control(ctx: Context, contact: Contact, message: c.Content) -> bool:
    """Queue a message that is not history (receipts, typing, mailbox news, group updates).

    False, and nothing queued, if the contact has not given us a mailbox yet.
    """
    theirs = ctx.tx.their_mailboxes.get(contact.contact_id)
    if theirs is None:
        return False
    if not has_session(ctx, contact):
        with contextlib.suppress(NoSessionError):  # then it stays owed
            ask_for_session(ctx, contact)
        return False
    envelope_id = ctx.random_id()
    enqueue(ctx, theirs, envelope_id, seal_to_contact(ctx, contact, message))
    log_sent(ctx, contact, envelope_id, message)
    return True


def log_sent(ctx: Context, contact: Contact, envelope_id: bytes, message: c.Content) -> None:
    """Keep ``message``, just queued for ``contact`` in envelope ``envelope_id``, for resending
    after a session repair. Not typing (stale by then) nor cover (filler)."""
    if isinstance(message, c.Typing | c.Cover):
        return
    tx = ctx.tx
    tx.send_log.expire(ctx.now_ms - SEND_LOG_RETENTION_MS)
    tx.send_log.add(
        contact_id=contact.contact_id,
        envelope_id=MessageId(bytes(envelope_id)),
        message_id=MessageId(message.message_id) if isinstance(message, c.Text | c.Attachment) else None,
        content=c.encode(message),
        sent_ms=ctx.now_ms,
    )


def queue_encoded(ctx: Context, contact: Contact, encoded: bytes) -> MessageId | None:
    """Send already encoded content again, in a new envelope on the current session (a send
    log entry after a repair; the receiver drops a text it already holds by its message id).
    The new envelope's id, or None if the contact has no mailbox for us."""
    theirs = ctx.tx.their_mailboxes.get(contact.contact_id)
    if theirs is None or not has_session(ctx, contact):
        return None
    envelope_id = MessageId(ctx.random_id())
    enqueue(ctx, theirs, envelope_id, seal_encoded(ctx, contact, encoded))
    return envelope_id


def queue_plaintext(ctx: Context, contact: Contact, plaintext_content: bytes) -> bool:
    """Queue a serialized PlaintextContent (a retry receipt) for ``contact``: sealed to their
    identity key like everything else, but not encrypted on the session, which may be broken.
    False if the contact has no mailbox for us."""
    tx, me = ctx.tx, ctx.me
    theirs = tx.their_mailboxes.get(contact.contact_id)
    trusted = tx.identities.get(contact.address.name)
    if theirs is None or trusted is None:
        return False
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.PLAINTEXT, me.certificate, plaintext_content
    )
    enqueue(ctx, theirs, ctx.random_id(), pad(seal_v1(me.identity, trusted.identity_key, usmc, ctx.rng)))
    return True


def send_text(ctx: Context, contact: Contact, text: str, reply_to: bytes | None = None) -> MessageId:
    """Store our text and queue it as one envelope whose id is the message id.

    ``reply_to``: the id of the conversation's message this one quotes. The text carries the
    conversation's disappearing timer (:mod:`.changes`) and expires with it.

    Before the contact answered our invite there is nowhere to send it: it stays QUEUED in the
    history and goes out when their answer arrives (:func:`release_held`). Without a session
    (after a restore) it waits the same way while we ask the contact for a new session, and
    goes out when that arrives. Raises :class:`NoSessionError` (nothing stored) if we hold no
    session and cannot ask for one.
    """
    theirs = ctx.tx.their_mailboxes.get(contact.contact_id)
    ready = theirs is not None and has_session(ctx, contact)
    if theirs is not None and not ready:
        ask_for_session(ctx, contact)
    where = Conversation.direct(contact.contact_id)
    message_id = MessageId(ctx.random_id())
    quote = None if reply_to is None else changes.quote_for(ctx, where, reply_to)
    timer = changes.timer_of(ctx.tx, where)
    body = c.Text(message_id, ctx.now_ms, text, _wire_quote(quote), timer)
    c.encode(body)  # an oversized text is refused before anything is stored
    row = ctx.tx.messages.add(
        message_id=message_id,
        conversation=where,
        direction=Direction.OUTGOING,
        sender=None,
        text=text,
        sent_ms=ctx.now_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.QUEUED,
        quote=quote,
        expires_ms=changes.expires_at(ctx.now_ms, timer),
    )
    if theirs is not None and ready:
        enqueue(ctx, theirs, message_id, seal_to_contact(ctx, contact, body), row=row.row_id)
        log_sent(ctx, contact, message_id, body)
    return message_id


def release_held(ctx: Context, contact: Contact) -> int:
    """Queue the texts written to ``contact`` before they gave us a mailbox (or a session after
    a restore); how many."""
    tx = ctx.tx
    theirs = tx.their_mailboxes.get(contact.contact_id)
    if theirs is None or not has_session(ctx, contact):
        return 0
    count = 0
    for message in tx.messages.conversation(
        Conversation.direct(contact.contact_id), limit=HELD_MESSAGES_SCAN
    ):
        if (
            message.direction is Direction.OUTGOING
            and message.state is MessageState.QUEUED
            and tx.outbox.remaining_for(message.row_id) == 0
        ):
            body = held_text(message)
            enqueue(ctx, theirs, message.message_id, seal_to_contact(ctx, contact, body), row=message.row_id)
            log_sent(ctx, contact, message.message_id, body)
            count += 1
    return count


def _wire_quote(quote: Quote | None) -> c.Quote | None:
    return None if quote is None else c.Quote(quote.message_id, quote.author)


def held_text(message: Message) -> c.Text:
    """The content of a text of ours kept in the history (to send it now)."""
    expire_s = 0 if message.expires_ms is None else (message.expires_ms - message.stored_ms) // 1000
    return c.Text(message.message_id, message.sent_ms, message.text, _wire_quote(message.quote), expire_s)


def send_cover(ctx: Context, contact: Contact) -> bool:
    """Queue a cover envelope for ``contact`` (cadence mode: a tick with nothing else for them).

    Sealed like any 1:1 message (a ratchet step), so neither the relay nor its size tells it
    from a short text. False, and nothing queued, if the contact has no mailbox for us yet.
    """
    return send_control(ctx, contact, c.Cover())


def send_typing(ctx: Context, contacts: list[Contact], started: bool, group_id: GroupId | None = None) -> int:
    """Tell each contact we started or stopped typing; how many could be told."""
    return sum(send_control(ctx, contact, c.Typing(started, group_id)) for contact in contacts)


def flush_receipts(ctx: Context, kind: ReceiptKind, contact_ids: set[ContactId] | None = None) -> int:
    """Queue one receipt message per contact for every receipt of ``kind`` we owe; how many ids.

    Delivery receipts are flushed on a timer (batched and delayed, so their timing says little
    about when a message arrived); read receipts when the user marks messages read.
    """
    tx = ctx.tx
    owed: dict[ContactId, list[PendingReceipt]] = defaultdict(list)
    for receipt in tx.messages.pending_receipts(10_000):
        if receipt.kind is kind and (contact_ids is None or receipt.contact_id in contact_ids):
            owed[receipt.contact_id].append(receipt)
    sent = 0
    for contact_id, receipts in owed.items():
        contact = tx.contacts.get(contact_id)
        if contact is None:
            tx.messages.clear_pending_receipts(receipts)
            continue
        for start in range(0, len(receipts), c.MAX_IDS):
            chunk = receipts[start : start + c.MAX_IDS]
            ids = tuple(r.message_id for r in chunk)
            message = c.DeliveryReceipt(ids) if kind is ReceiptKind.DELIVERED else c.ReadReceipt(ids)
            if not send_control(ctx, contact, message):
                break  # no mailbox yet: keep owing them
            tx.messages.clear_pending_receipts(chunk)
            sent += len(chunk)
    return sent


def confirm_sent(ctx: Context, item_id: OutboxItemId) -> list[Event]:
    """The relay took an envelope (``sent`` or ``duplicate``): forget it; report finished messages."""
    tx = ctx.tx
    item = tx.outbox.get(item_id)
    if item is None or not tx.outbox.remove(item_id):
        return []
    if item.message_row is None or tx.outbox.remaining_for(item.message_row) > 0:
        return []
    message = tx.messages.get(item.message_row)
    if message is None:
        return []
    tx.messages.advance(message.row_id, MessageState.SENT)
    return [MessageSent(message.message_id)]


def confirm_sent_all(ctx: Context, item_ids: list[OutboxItemId]) -> list[Event]:
    """:func:`confirm_sent` for several envelopes in one transaction."""
    return [event for item_id in item_ids for event in confirm_sent(ctx, item_id)]
