"""Attachment messages 1:1, in the store: sending one whose blob is uploaded, receiving one.

A file's message is a history row like a text's, whose text is the caption; what opens the file
(the :class:`~sotto.client.attachment_pointer.AttachmentPointer` with its key, and the relay that
holds the blob) is kept beside the row (``MessageRepository.put_attachment``), sealed in the
store, as the encoded :class:`~sotto.client.content.Attachment`. So a reader that does not know
attachments still shows the caption, and the key goes with its message: when it expires, is
deleted for everyone, or its contact or group is removed.

Uploading and downloading the blob is I/O and happens outside, in :mod:`sotto.client.attachments`;
these run in one store transaction each, like every flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.client import content as c
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.client.events import AttachmentReceived
from sotto.client.flows import changes
from sotto.client.flows.context import Context, Outcome
from sotto.client.flows.sending import enqueue, log_sent, seal_to_contact, send_control
from sotto.errors import ClientError, DecodeError
from sotto.store.interfaces import Transaction
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
)


@dataclass(frozen=True, slots=True, repr=False)
class StoredAttachment:
    """A file a history row holds: how to fetch and open it (``server_url`` holds the blob)."""

    row_id: MessageRowId
    pointer: AttachmentPointer
    server_url: str

    @property
    def file_name(self) -> str | None:
        return self.pointer.file_name

    @property
    def size(self) -> int:
        return self.pointer.size

    def __repr__(self) -> str:
        return f"StoredAttachment(row_id={self.row_id}, size={self.pointer.size}, key=<hidden>)"


def stored(tx: Transaction, message: Message) -> StoredAttachment | None:
    """The file ``message`` holds, or None (a text, or a file whose row was deleted)."""
    if message.deleted:
        return None
    data = tx.messages.attachment(message.row_id)
    if data is None:
        return None
    try:
        kept = c.decode(data)
    except DecodeError:
        return None
    if not isinstance(kept, c.Attachment) or kept.server_url is None or kept.message_id != message.message_id:
        return None
    return StoredAttachment(message.row_id, kept.pointer, kept.server_url)


def send_attachment(
    ctx: Context, contact: Contact, pointer: AttachmentPointer, caption: str, server_url: str
) -> MessageId:
    """Store our file's message and queue it to ``contact`` as one envelope whose id is the
    message id. ClientError if the contact has not answered our invite yet (the blob is
    uploaded already, and a held message would go out as a text)."""
    theirs = ctx.tx.their_mailboxes.get(contact.contact_id)
    if theirs is None:
        raise ClientError("this contact has not answered your contact request yet: files go once they have")
    where = Conversation.direct(contact.contact_id)
    message_id = MessageId(ctx.random_id())
    timer = changes.timer_of(ctx.tx, where)
    body = c.Attachment(message_id, ctx.now_ms, pointer, caption, server_url, timer)
    encoded = c.encode(body)  # an oversized caption is refused before anything is stored
    row = ctx.tx.messages.add(
        message_id=message_id,
        conversation=where,
        direction=Direction.OUTGOING,
        sender=None,
        text=caption,
        sent_ms=ctx.now_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.QUEUED,
        expires_ms=changes.expires_at(ctx.now_ms, timer),
    )
    ctx.tx.messages.put_attachment(row.row_id, encoded)
    enqueue(ctx, theirs, message_id, seal_to_contact(ctx, contact, body), row=row.row_id)
    log_sent(ctx, contact, message_id, body)
    return message_id


def receive_attachment(ctx: Context, contact: Contact, message: c.Attachment) -> Outcome:
    """Keep a file's message from ``contact`` (its blob stays on the relay until saved)."""
    tx = ctx.tx
    message_id = MessageId(message.message_id)
    if tx.messages.find(contact.contact_id, message_id) is not None:
        send_control(ctx, contact, c.DeliveryReceipt((message.message_id,)))
        return Outcome()
    server_url = message.server_url
    if server_url is None:
        theirs = tx.their_mailboxes.get(contact.contact_id)
        if theirs is None:
            return Outcome()  # nowhere to fetch it from
        server_url = theirs.server_url
    row = tx.messages.add(
        message_id=message_id,
        conversation=Conversation.direct(contact.contact_id),
        direction=Direction.INCOMING,
        sender=contact.contact_id,
        text=message.caption,
        sent_ms=message.sent_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.RECEIVED,
        expires_ms=changes.expires_at(ctx.now_ms, message.expire_s),
    )
    kept = c.Attachment(
        message.message_id, message.sent_ms, message.pointer, message.caption, server_url, message.expire_s
    )
    tx.messages.put_attachment(row.row_id, c.encode(kept))
    pointer = message.pointer
    return Outcome(
        events=[
            AttachmentReceived(
                contact,
                message_id,
                message.caption,
                message.sent_ms,
                file_name=pointer.file_name or "",
                size=pointer.size,
                content_type=pointer.content_type,
            )
        ]
    )
