"""Receiving: open an envelope, decrypt it, apply what it says, all in one transaction.

The receive policy. An envelope is acknowledged to the relay only after its outcome is
committed. Outcomes that a retry cannot change are *permanent*: bad padding or sealing, a forged,
expired or foreign certificate, a message from ourselves, a sender that does not own the mailbox,
an identity key we do not trust, a session or sender key that cannot decrypt it (a duplicate
included), content that does not parse. For those :func:`receive` (or :func:`unseal`) raises
:class:`~sotto.errors.EnvelopeRejectedError`; the caller rolls back, records the envelope as seen
in a fresh transaction, acknowledges it and reports
:class:`~sotto.client.events.EnvelopeRejected` (and any events the rejection carries, such as
:class:`~sotto.client.events.IdentityChanged`). Anything else (the store failing, the process
dying) leaves the envelope unacknowledged, so the relay delivers it again and the dedupe table
(committed with the outcome) drops the copy if the first attempt had in fact committed.

A 1:1 message from a contact that the session cannot decrypt is rejected like that, and then
the runtime asks the contact for a new session (:func:`~sotto.client.flows.repair.request_repair`);
the retry receipts that ask for one arrive here as PLAINTEXT messages
(:func:`~sotto.client.flows.repair.receive_retry_request`), and delivery receipts let the send
log forget the texts they name (:func:`~sotto.client.flows.repair.confirm_delivered`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sotto.client import content as c
from sotto.client.events import (
    ContactAccepted,
    ContactMailboxChanged,
    DeliveryReceiptReceived,
    Event,
    IdentityChanged,
    MessageReceived,
    ReadReceiptReceived,
    RejectReason,
    TypingChanged,
)
from sotto.client.flows import attachments, certificates, changes, repair
from sotto.client.flows.context import (
    DEVICE_ID,
    Context,
    Me,
    Outcome,
    account_id_of,
    decode_plaintext,
    reject,
    same_key,
)
from sotto.client.flows.groups import (
    apply_group_update,
    is_member,
    receive_group_change,
    receive_group_message,
)
from sotto.client.flows.invites import receive_contact_request, their_mailbox
from sotto.client.flows.prekeys import decrypt_prekey_message
from sotto.client.flows.sending import release_held, send_control
from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError, ProtocolError, SottoError, UntrustedIdentityError
from sotto.protocol import session
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, open_v1
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    GroupId,
    MailboxId,
    MessageId,
    MessageState,
    ReceiptKind,
)
from sotto.wire.padding import unpad


@dataclass(frozen=True, slots=True, repr=False)
class Unsealed:
    """A sealed envelope opened: the sender its validated certificate names, and the inner message."""

    sender_name: str
    sender_identity: PublicKey
    content: UnidentifiedSenderMessageContent

    def __repr__(self) -> str:
        return f"Unsealed(type={self.content.message_type.name})"


def unseal(me: Me, payload: bytes, now_ms: int) -> Unsealed:
    """Unpad, open the sealed layer, check the self-issued certificate. Needs no stored state, so
    it runs before the per-peer lock is taken (the sender is unknown until here).

    Rejections: MALFORMED, UNSEALABLE, SELF_SEND.
    """
    try:
        sealed = unpad(payload)
    except DecodeError as e:
        raise reject(RejectReason.MALFORMED, e) from None
    try:
        usmc, sender_key = open_v1(me.identity, sealed)
        certificate = usmc.sender_certificate
        # Self-issued: the sender's key is the trust root.
        certificates.VERIFIED.validate(certificate, sender_key, now_ms)
    except SottoError as e:
        raise reject(RejectReason.UNSEALABLE, e) from None
    if account_id_of(certificate.sender_uuid) is None or certificate.sender_device_id != DEVICE_ID:
        raise reject(RejectReason.UNSEALABLE, "certificate names no Sotto account")
    if certificate.sender_uuid == me.address.name:
        raise reject(RejectReason.SELF_SEND, "sealed message from our own account")
    return Unsealed(certificate.sender_uuid, sender_key, usmc)


def receive(ctx: Context, mailbox_id: MailboxId, envelope_id: MessageId, unsealed: Unsealed) -> Outcome:
    """Process one opened envelope that arrived in ``mailbox_id``, recording it as seen (under our
    own day count: the relay's day does not decide when an envelope id may be forgotten).

    A repeated envelope id returns an empty outcome (acknowledge it again). Raises
    EnvelopeRejectedError for a permanent failure (see the module docstring).
    """
    tx = ctx.tx
    if not tx.seen.add(mailbox_id, envelope_id, ctx.day):
        return Outcome()
    tx.messages.expire(ctx.now_ms)  # disappearing messages whose time has come go first
    mailbox = tx.mailboxes.get(mailbox_id)
    if mailbox is None:
        invite = tx.invites.by_mailbox(mailbox_id)
        if invite is None:
            raise reject(RejectReason.UNKNOWN_MAILBOX, "not one of our mailboxes")
        return receive_contact_request(
            ctx, invite, unsealed.sender_name, unsealed.sender_identity, unsealed.content
        )
    contact = tx.contacts.get(mailbox.contact_id)
    if contact is None or contact.address.name != unsealed.sender_name:
        raise reject(RejectReason.WRONG_SENDER, "the sender is not this mailbox's contact")
    trusted = tx.identities.get(contact.address.name)
    if trusted is None or not same_key(trusted.identity_key, unsealed.sender_identity):
        raise reject(RejectReason.UNTRUSTED_IDENTITY, "identity key differs", [IdentityChanged(contact)])
    if contact.blocked:
        return _drop_blocked(ctx, contact, unsealed.content, trusted.identity_key)
    if unsealed.content.message_type is CiphertextMessageType.SENDER_KEY:
        return receive_group_message(ctx, contact, unsealed.content)
    if unsealed.content.message_type is CiphertextMessageType.PLAINTEXT:
        return repair.receive_retry_request(ctx, contact, unsealed.content, trusted.identity_key)
    plaintext = _decrypt(ctx, contact, unsealed.content, trusted.identity_key)
    outcome = _apply(ctx, contact, decode_plaintext(plaintext))
    if unsealed.content.message_type is CiphertextMessageType.PREKEY:
        outcome.events[:0] = repair.repaired_by_peer(ctx, contact)
    return outcome


def _decrypt(
    ctx: Context, contact: Contact, usmc: UnidentifiedSenderMessageContent, trusted_key: PublicKey
) -> bytes:
    tx, address = ctx.tx, contact.address
    try:
        if usmc.message_type is CiphertextMessageType.WHISPER:
            record, plaintext = session.decrypt_signal_message(
                tx.sessions.get(address),
                usmc.content,
                our_address=ctx.me.address,
                their_address=address,
                rng=ctx.rng,
            )
            if not same_key(session.remote_identity(record), trusted_key):
                raise UntrustedIdentityError("the session's identity differs from the trusted key")
            tx.sessions.put(address, record)
            return plaintext
        if usmc.message_type is CiphertextMessageType.PREKEY:
            return decrypt_prekey_message(ctx, address, usmc.content, trusted_key)
    except UntrustedIdentityError as e:
        raise reject(RejectReason.UNTRUSTED_IDENTITY, e, [IdentityChanged(contact)]) from None
    except (ProtocolError, DecodeError) as e:
        raise reject(RejectReason.UNDECRYPTABLE, e) from None
    raise reject(RejectReason.UNEXPECTED, f"{usmc.message_type.name} message in a 1:1 mailbox")


def _apply(ctx: Context, contact: Contact, message: c.Content) -> Outcome:
    """Apply one decrypted 1:1 content message from ``contact``."""
    tx = ctx.tx
    match message:
        case c.Text(message_id, sent_ms, text, _, expire_s):
            if tx.messages.find(contact.contact_id, MessageId(message_id)) is not None:
                # A copy sent again (a repair, or a receipt of ours that did not arrive): say
                # at once that we hold it, so the sender's send log lets it go.
                send_control(ctx, contact, c.DeliveryReceipt((message_id,)))
                return Outcome()
            if tx.seen.contains(_dropped_texts(contact), MessageId(message_id)):
                return Outcome()  # written while they were blocked: a resend stays dropped
            tx.messages.add(
                message_id=MessageId(message_id),
                conversation=Conversation.direct(contact.contact_id),
                direction=Direction.INCOMING,
                sender=contact.contact_id,
                text=text,
                sent_ms=sent_ms,
                stored_ms=ctx.now_ms,
                state=MessageState.RECEIVED,
                quote=changes.quote_of(message),
                expires_ms=changes.expires_at(ctx.now_ms, expire_s),
            )
            return Outcome(events=[MessageReceived(contact, MessageId(message_id), text, sent_ms)])
        case c.Edit() | c.DeleteForEveryone() | c.Reaction() | c.Timer():
            return changes.apply(ctx, contact, Conversation.direct(contact.contact_id), None, message)
        case c.Attachment():
            return attachments.receive_attachment(ctx, contact, message)
        case c.DeliveryReceipt(ids):
            repair.confirm_delivered(ctx, contact, ids)
            known = _apply_receipts(ctx, contact, ids, ReceiptKind.DELIVERED)
            return Outcome(events=[DeliveryReceiptReceived(contact, known)] if known else [])
        case c.ReadReceipt(ids):
            forget_delivered(ctx, contact, ids)
            known = _apply_receipts(ctx, contact, ids, ReceiptKind.READ)
            return Outcome(events=[ReadReceiptReceived(contact, known)] if known else [])
        case c.Typing(started, group_id):
            group = None if group_id is None else tx.groups.get(GroupId(group_id))
            if group_id is not None and (group is None or not is_member(ctx, group.group_id, contact)):
                return Outcome()
            return Outcome(events=[TypingChanged(contact, started, group)])
        case c.ContactAccepted(display_name, reply_to):
            first = tx.their_mailboxes.get(contact.contact_id) is None
            tx.their_mailboxes.put(their_mailbox(contact, reply_to, ctx.now_ms))
            updated = replace(contact, display_name=display_name)
            tx.contacts.update(updated)
            release_held(ctx, updated)
            event: Event = ContactAccepted(updated) if first else ContactMailboxChanged(updated)
            return Outcome(events=[event])
        case c.MailboxRotated(mailbox):
            tx.their_mailboxes.put(their_mailbox(contact, mailbox, ctx.now_ms))
            release_held(ctx, contact)
            return Outcome(events=[ContactMailboxChanged(contact)])
        case c.GroupUpdate():
            return apply_group_update(ctx, contact, message)
        case c.GroupChange():
            return receive_group_change(ctx, contact, message)
        case c.Cover():
            return Outcome()  # cadence mode's filler: the ratchet moved, nothing else happens
    raise reject(RejectReason.UNEXPECTED, f"{type(message).__name__} in a 1:1 session")


def forget_delivered(ctx: Context, contact: Contact, message_ids: tuple[bytes, ...]) -> None:
    """A receipt from ``contact`` names these texts: they arrived, so the send log lets them go."""
    ctx.tx.send_log.remove_delivered(contact.contact_id, [MessageId(m) for m in message_ids])


def _drop_blocked(
    ctx: Context, contact: Contact, usmc: UnidentifiedSenderMessageContent, trusted_key: PublicKey
) -> Outcome:
    """An envelope from a blocked contact: dropped, with no event and no receipt owed (see
    :mod:`sotto.client.flows.contacts`). A 1:1 message is still decrypted, so the session stays
    current, and a mailbox they announce is still taken, so unblocking resumes the conversation."""
    if usmc.message_type not in (CiphertextMessageType.WHISPER, CiphertextMessageType.PREKEY):
        return Outcome()
    message = decode_plaintext(_decrypt(ctx, contact, usmc, trusted_key))
    if isinstance(message, c.ContactAccepted | c.MailboxRotated):
        _apply(ctx, contact, message)
    elif isinstance(message, c.Text):
        ctx.tx.seen.add(_dropped_texts(contact), MessageId(message.message_id), ctx.day)
    return Outcome()


def _dropped_texts(contact: Contact) -> MailboxId:
    """Where the dedupe table remembers the ids of texts dropped while ``contact`` was blocked (a
    key no relay mailbox has), so the sender's resend of one after an unblock is dropped too."""
    return MailboxId(b"blocked:" + contact.contact_id.to_bytes(8, "big"))


def _apply_receipts(
    ctx: Context, contact: Contact, ids: tuple[bytes, ...], kind: ReceiptKind
) -> tuple[MessageId, ...]:
    """Record receipts for our messages that ``contact`` was sent; the ids that matched."""
    tx = ctx.tx
    known: list[MessageId] = []
    for message_id in ids:
        ours = tx.messages.find(None, MessageId(message_id))
        if ours is None:
            continue
        conversation = ours.conversation
        if conversation.contact_id is not None and conversation.contact_id != contact.contact_id:
            continue  # a receipt for a message we sent someone else
        if conversation.group_id is not None and not is_member(ctx, conversation.group_id, contact):
            continue
        tx.messages.add_receipt(ours.row_id, contact.contact_id, kind, ctx.now_ms)
        known.append(ours.message_id)
    return tuple(known)
