"""Attachment messages, in the store: sending one whose blob is uploaded, receiving one.

A file's message is a history row like a text's, whose text is the caption; what opens the file
(the :class:`~sotto.client.attachment_pointer.AttachmentPointer` with its key, and the relay that
holds the blob) is kept beside the row (``MessageRepository.put_attachment``), sealed in the
store, as the encoded :class:`~sotto.client.content.Attachment` and the time we saved the file.
So a reader that does not know attachments still shows the caption, and the key goes with its
message: when it expires, is deleted for everyone, or its contact or group is removed.

A group's file is one blob and one pointer, inside the group message under our sender key
(:func:`sotto.client.flows.groups.send_group_attachment`); every member fetches the same blob,
which the relay keeps until each of the members it was sent to has fetched it. A member out of
the group gets no later group message, so no later pointer.

Uploading and downloading the blob is I/O and happens outside, in :mod:`sotto.client.attachments`;
these run in one store transaction each, like every flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.client import content as c
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.client.events import AttachmentReceived, GroupAttachmentReceived
from sotto.client.flows import changes
from sotto.client.flows.context import Context, Outcome
from sotto.client.flows.sending import enqueue, log_sent, seal_to_contact, send_control
from sotto.errors import ClientError, DecodeError, StoreCorruptedError
from sotto.store import codec
from sotto.store.interfaces import Transaction
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    Group,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
)


@dataclass(frozen=True, slots=True, repr=False)
class StoredAttachment:
    """A file a history row holds: how to fetch and open it (``server_url`` holds the blob), and
    when we saved it (None: not yet, or a file we sent)."""

    row_id: MessageRowId
    pointer: AttachmentPointer
    server_url: str
    saved_ms: int | None = None

    @property
    def file_name(self) -> str | None:
        return self.pointer.file_name

    @property
    def size(self) -> int:
        return self.pointer.size

    def __repr__(self) -> str:
        return f"StoredAttachment(row_id={self.row_id}, size={self.pointer.size}, key=<hidden>)"


def record(content: c.Attachment, saved_ms: int | None = None) -> bytes:
    """What the store keeps beside the row: the encoded content and when it was saved."""
    return codec.pack([c.encode(content), saved_ms])


def _kept(tx: Transaction, message: Message) -> tuple[c.Attachment, int | None] | None:
    if message.deleted:
        return None
    data = tx.messages.attachment(message.row_id)
    if data is None:
        return None
    try:
        encoded, saved_ms = codec.unpack(data, 2)
        kept = c.decode(codec.as_bytes(encoded))
        saved = codec.as_opt_int(saved_ms)
    except (DecodeError, StoreCorruptedError):
        return None
    if not isinstance(kept, c.Attachment) or kept.server_url is None or kept.message_id != message.message_id:
        return None
    return kept, saved


def stored(tx: Transaction, message: Message) -> StoredAttachment | None:
    """The file ``message`` holds, or None (a text, or a file whose row was deleted)."""
    found = _kept(tx, message)
    if found is None:
        return None
    kept, saved_ms = found
    assert kept.server_url is not None  # _kept returns none without
    return StoredAttachment(message.row_id, kept.pointer, kept.server_url, saved_ms)


def mark_saved(tx: Transaction, message: Message, now_ms: int) -> None:
    """Note that we saved the file ``message`` holds (shown by the history export)."""
    found = _kept(tx, message)
    if found is not None:
        tx.messages.put_attachment(message.row_id, record(found[0], now_ms))


def new_attachment(
    ctx: Context, where: Conversation, pointer: AttachmentPointer, caption: str, server_url: str
) -> tuple[c.Attachment, MessageRowId]:
    """Store our file's message in ``where`` with what opens it; the content to send and its row.
    An oversized caption is refused before anything is stored."""
    timer = changes.timer_of(ctx.tx, where)
    body = c.Attachment(MessageId(ctx.random_id()), ctx.now_ms, pointer, caption, server_url, timer)
    encoded = c.encode(body)
    row = ctx.tx.messages.add(
        message_id=MessageId(body.message_id),
        conversation=where,
        direction=Direction.OUTGOING,
        sender=None,
        text=caption,
        sent_ms=ctx.now_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.QUEUED,
        expires_ms=changes.expires_at(ctx.now_ms, timer),
    )
    ctx.tx.messages.put_attachment(row.row_id, codec.pack([encoded, None]))
    return body, row.row_id


def send_attachment(
    ctx: Context, contact: Contact, pointer: AttachmentPointer, caption: str, server_url: str
) -> MessageId:
    """Store our file's message and queue it to ``contact`` as one envelope whose id is the
    message id. ClientError if the contact has not answered our invite yet (the blob is
    uploaded already, and a held message would go out as a text)."""
    theirs = ctx.tx.their_mailboxes.get(contact.contact_id)
    if theirs is None:
        raise ClientError("this contact has not answered your contact request yet: files go once they have")
    body, row = new_attachment(ctx, Conversation.direct(contact.contact_id), pointer, caption, server_url)
    message_id = MessageId(body.message_id)
    enqueue(ctx, theirs, message_id, seal_to_contact(ctx, contact, body), row=row)
    log_sent(ctx, contact, message_id, body)
    return message_id


def keep_received(ctx: Context, sender: Contact, message: c.Attachment, where: Conversation) -> bool:
    """Keep a file's message from ``sender`` in ``where`` (its blob stays on the relay until
    saved); False if it is held already or there is nowhere to fetch it from."""
    tx = ctx.tx
    message_id = MessageId(message.message_id)
    if tx.messages.find(sender.contact_id, message_id) is not None:
        return False
    server_url = message.server_url
    if server_url is None:
        theirs = tx.their_mailboxes.get(sender.contact_id)
        if theirs is None:
            return False
        server_url = theirs.server_url
    row = tx.messages.add(
        message_id=message_id,
        conversation=where,
        direction=Direction.INCOMING,
        sender=sender.contact_id,
        text=message.caption,
        sent_ms=message.sent_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.RECEIVED,
        expires_ms=changes.expires_at(ctx.now_ms, message.expire_s),
    )
    kept = c.Attachment(
        message.message_id, message.sent_ms, message.pointer, message.caption, server_url, message.expire_s
    )
    tx.messages.put_attachment(row.row_id, record(kept))
    return True


def received_event(
    sender: Contact,
    message_id: MessageId,
    caption: str,
    sent_ms: int,
    pointer: AttachmentPointer,
    *,
    group: Group | None = None,
) -> AttachmentReceived | GroupAttachmentReceived:
    """The event of a received file: 1:1, or in ``group``."""
    name, size, kind = pointer.file_name or "", pointer.size, pointer.content_type
    if group is None:
        return AttachmentReceived(
            sender, message_id, caption, sent_ms, file_name=name, size=size, content_type=kind
        )
    return GroupAttachmentReceived(
        group, sender, message_id, caption, sent_ms, file_name=name, size=size, content_type=kind
    )


def receive_attachment(ctx: Context, contact: Contact, message: c.Attachment) -> Outcome:
    """Keep a file's message from ``contact`` (its blob stays on the relay until saved)."""
    if ctx.tx.messages.find(contact.contact_id, MessageId(message.message_id)) is not None:
        send_control(ctx, contact, c.DeliveryReceipt((message.message_id,)))
        return Outcome()
    if not keep_received(ctx, contact, message, Conversation.direct(contact.contact_id)):
        return Outcome()
    message_id = MessageId(message.message_id)
    event = received_event(contact, message_id, message.caption, message.sent_ms, message.pointer)
    return Outcome(events=[event])
