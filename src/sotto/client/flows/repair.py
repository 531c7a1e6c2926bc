"""Session repair: retry receipts and the message send log, as Signal recovers a broken session.

A session breaks when one side's state goes back in time (a profile restored from an older
copy, a phone restore): its messages reuse keys the other side already moved past, and it
cannot follow the other side's new ratchet keys. Nothing the user types fixes that; this does:

1. **Request** (:func:`request_repair`). We cannot decrypt a 1:1 message from a contact (the
   envelope came through that contact's mailbox, sealed by the identity key we trust for them,
   so we know who sent it). We answer with a retry receipt: a sealed
   :class:`~sotto.protocol.decryption_error.PlaintextContent` (type 8, readable without any
   session) holding libsignal's ``DecryptionErrorMessage`` (the failed message's ratchet key,
   which envelope, our device) and our prekey bundle (signed prekey and last-resort Kyber
   prekey; a Sotto relay gives bundles only to invite holders, so we hand it over ourselves).
2. **Repair** (:func:`receive_retry_request`). The contact's client, if that ratchet key is
   still its current one (or it has no session), starts a new session from our bundle (the old
   state is archived, as libsignal's ``archive_current_state``), and sends again on it every
   entry of its **send log** for us: the content it sent us in the last
   :data:`SEND_LOG_RETENTION_MS` that no delivery receipt has confirmed yet. Texts keep their
   message ids, so a copy we already hold is dropped as a duplicate.
3. A delivery receipt that names a later text while an earlier one is still unconfirmed means
   the earlier one was lost (the receiving device went back to an older copy after receiving
   it, and the session still works): it is sent again (:func:`confirm_delivered`).
4. Both sides get :class:`~sotto.client.events.SessionRepaired`: the repairer when it starts
   the new session, the requester when the first message of a new session arrives after its
   request (:func:`repaired_by_peer`).

If both sides were broken, both ask and both repair; the two new sessions cross, and each side
decrypts the other's with the state it keeps archived (libsignal's simultaneous initiation).

No storm: a retry receipt is plaintext, so it never fails to decrypt and is never answered with
another; we ask a contact at most once per :data:`REPAIR_INTERVAL_MS` and repair for a contact at
most once per interval, so a repair whose messages fail again is not repaired again until then.
The times are kept in the store's settings (sealed), so a restart does not reset them.
"""

from __future__ import annotations

from sotto.client.events import Event, RejectReason, SessionRepaired
from sotto.client.flows.account import generate_prekeys
from sotto.client.flows.context import DEVICE_ID, Context, Outcome, reject
from sotto.client.flows.sending import SEND_LOG_RETENTION_MS, queue_encoded, queue_plaintext
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.keys import PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, ProtocolError
from sotto.protocol import session
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.decryption_error import DecryptionErrorMessage, PlaintextContent
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent
from sotto.store.interfaces import Transaction
from sotto.store.model import Account, Contact, ContactId, MailboxId, MessageId, PreKeyKind

REPAIR_INTERVAL_MS = 3_600_000
"""At most one retry receipt to a contact, and one repair for a contact, an hour (as Signal
Desktop resets a session at most once an hour per conversation)."""

RESEND_LIMIT = 500
"""Send log entries resent per repair, newest kept (a day of a busy conversation)."""

_REQUESTED = "repair/requested/"
"""When we last asked the contact for a new session (the rate limit)."""
_OPEN = "repair/open/"
"""When we asked, until the answer arrives (for the event)."""
_REPAIRED = "repair/repaired/"
"""When we last started a new session at the contact's request."""


def envelope_number(envelope_id: bytes) -> int:
    """What a retry receipt's ``timestamp`` holds in Sotto: the failed envelope's id, its first
    eight bytes big-endian (Signal puts the message's send time there, which our envelopes do
    not carry; the id is what the sender's send log knows)."""
    return int.from_bytes(envelope_id[:8], "big")


# --------------------------------------------------------------------------- timers
def _read_ms(ctx: Context, key: str) -> int | None:
    value = ctx.tx.settings.get(key)
    return None if value is None or len(value) != 8 else int.from_bytes(value, "big")


def _write_ms(ctx: Context, key: str, value: int) -> None:
    ctx.tx.settings.put(key, max(value, 0).to_bytes(8, "big"))


def _recently(ctx: Context, key: str, contact_id: ContactId) -> bool:
    at = _read_ms(ctx, f"{key}{contact_id}")
    return at is not None and 0 <= ctx.now_ms - at < REPAIR_INTERVAL_MS


# --------------------------------------------------------------------------- requesting
def our_bundle(ctx: Context) -> PreKeyBundle | None:
    """Our current signed prekey and last-resort Kyber prekey as a bundle (no one-time prekey:
    it would have to be kept off the relay and forgotten by hand). None before we have both."""
    tx, account = ctx.tx, ctx.me.account
    signed, kyber = tx.prekeys.latest_signed(), tx.prekeys.latest_last_resort()
    if signed is None or kyber is None:
        return None
    return PreKeyBundle(
        registration_id=account.registration_id,
        device_id=account.address.device_id,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.key_pair.public,
        signed_pre_key_signature=signed.signature,
        identity_key=account.identity.public,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key_public=kyber.key_pair.public,
        kyber_pre_key_signature=kyber.signature,
    )


def request_repair(
    ctx: Context,
    *,
    mailbox_id: MailboxId,
    envelope_id: bytes,
    sender_name: str,
    sender_identity: PublicKey,
    usmc: UnidentifiedSenderMessageContent,
) -> bool:
    """After a 1:1 message from a contact failed to decrypt: queue a retry receipt to them.

    Only for a WHISPER or PREKEY message that came through the sender's own mailbox under the
    identity key we trust for them, at most once per contact per :data:`REPAIR_INTERVAL_MS`,
    and only if they gave us a mailbox. True if one was queued.
    """
    tx = ctx.tx
    if usmc.message_type not in (CiphertextMessageType.WHISPER, CiphertextMessageType.PREKEY):
        return False
    mailbox = tx.mailboxes.get(mailbox_id)
    contact = None if mailbox is None else tx.contacts.get(mailbox.contact_id)
    if contact is None or contact.address.name != sender_name:
        return False
    trusted = tx.identities.get(sender_name)
    if trusted is None or not bytes_equal(trusted.identity_key.to_bytes(), sender_identity.to_bytes()):
        return False
    if _recently(ctx, _REQUESTED, contact.contact_id) or tx.their_mailboxes.get(contact.contact_id) is None:
        return False
    bundle = our_bundle(ctx)
    if bundle is None:
        return False
    try:
        error = DecryptionErrorMessage.for_original(
            usmc.content, usmc.message_type, envelope_number(envelope_id), DEVICE_ID
        )
    except (DecodeError, ProtocolError):
        return False  # not a message at all: nothing a new session would fix
    if not queue_plaintext(ctx, contact, PlaintextContent.new(error, bundle).encode()):
        return False
    _write_ms(ctx, f"{_REQUESTED}{contact.contact_id}", ctx.now_ms)
    _write_ms(ctx, f"{_OPEN}{contact.contact_id}", ctx.now_ms)
    return True


def repaired_by_peer(ctx: Context, contact: Contact) -> list[Event]:
    """A PreKey message from ``contact`` just decrypted: if we asked them for a new session in
    the last day and have not heard since, this is their answer (reported once)."""
    key = f"{_OPEN}{contact.contact_id}"
    at = _read_ms(ctx, key)
    if at is None:
        return []
    ctx.tx.settings.delete(key)
    if not 0 <= ctx.now_ms - at < SEND_LOG_RETENTION_MS:
        return []
    return [SessionRepaired(contact, requested=True)]


# --------------------------------------------------------------------------- repairing
def receive_retry_request(
    ctx: Context, contact: Contact, usmc: UnidentifiedSenderMessageContent, trusted_key: PublicKey
) -> Outcome:
    """A retry receipt from ``contact`` (already checked: their mailbox, their trusted key).

    Starts a new session from their bundle if the failed message's ratchet key is our current
    one (or we have no session to send with), then resends our send log for them; otherwise
    (the session moved on since, or we repaired within the interval) nothing happens.
    Rejections: MALFORMED (not a retry receipt, or an unusable bundle).
    """
    tx = ctx.tx
    try:
        content = PlaintextContent.decode(usmc.content)
        bundle = content.prekey_bundle(trusted_key)
    except DecodeError as e:
        raise reject(RejectReason.MALFORMED, e) from None
    record = tx.sessions.get(contact.address)
    current = None if record is None else record.current
    ratchet_key = content.decryption_error.ratchet_key
    if current is not None and (
        ratchet_key is None
        or not bytes_equal(current.sender_chain.ratchet_key.public.to_bytes(), ratchet_key.to_bytes())
    ):
        return Outcome()  # not our current session that failed: it was repaired or moved on
    if bundle is None or _recently(ctx, _REPAIRED, contact.contact_id):
        return Outcome()
    try:
        record = session.process_prekey_bundle(
            record,
            our_identity=ctx.me.identity,
            our_registration_id=ctx.me.account.registration_id,
            our_address=ctx.me.address,
            their_address=contact.address,
            bundle=bundle,
            now_ms=ctx.now_ms,
            rng=ctx.rng,
        )
    except ProtocolError as e:
        raise reject(RejectReason.MALFORMED, e) from None
    tx.sessions.put(contact.address, record)
    _write_ms(ctx, f"{_REPAIRED}{contact.contact_id}", ctx.now_ms)
    resend_log(ctx, contact)
    return Outcome(events=[SessionRepaired(contact, requested=False)])


def confirm_delivered(ctx: Context, contact: Contact, message_ids: tuple[bytes, ...]) -> int:
    """A delivery receipt from ``contact`` names these texts: they arrived, so they leave the
    send log. A text we sent them *before* the newest of these that no receipt named yet was
    lost on the way (their device went back to an older copy after receiving it, or it did not
    decrypt there): a device receipts texts in the order they arrive, and one mailbox delivers
    in order. Each such text is sent again, in a new envelope on the current session, and
    logged as sent then (a device that already holds a text receipts the copy at once, so a
    copy is sent again only if it is lost too). How many went again.
    """
    tx = ctx.tx
    named = {bytes(m) for m in message_ids}
    entries = tx.send_log.for_contact(contact.contact_id)
    tx.send_log.remove_delivered(contact.contact_id, [MessageId(m) for m in named])
    newest = max(
        (i for i, e in enumerate(entries) if e.message_id is not None and e.message_id in named), default=-1
    )
    lost = [e for e in entries[:newest] if e.message_id is not None and e.message_id not in named]
    for entry in lost:
        envelope_id = queue_encoded(ctx, contact, entry.content)
        if envelope_id is None:
            break
        # Logged again as sent now (its expiry unchanged), so that only a receipt for a text
        # sent after this copy counts it lost once more.
        tx.send_log.remove_delivered(contact.contact_id, [entry.message_id])  # type: ignore[list-item]
        tx.send_log.add(
            contact_id=contact.contact_id,
            envelope_id=envelope_id,
            message_id=entry.message_id,
            content=entry.content,
            sent_ms=entry.sent_ms,
        )
    return len(lost)


def resend_log(ctx: Context, contact: Contact) -> int:
    """Send every unexpired send log entry for ``contact`` again, oldest first, each in a new
    envelope on the current session; how many."""
    tx = ctx.tx
    tx.send_log.expire(ctx.now_ms - SEND_LOG_RETENTION_MS)
    entries = tx.send_log.for_contact(contact.contact_id)[-RESEND_LIMIT:]
    for entry in entries:
        if queue_encoded(ctx, contact, entry.content) is None:
            return 0
    return len(entries)


# --------------------------------------------------------------------------- prekeys after a restore
PREKEY_ID_JUMP = 10_000
"""How far our prekey id counters skip when the relay already holds other keys under our ids."""


def reissue_prekeys(tx: Transaction, account: Account, *, now_ms: int, rng: Rng) -> int:
    """The relay refused our prekey upload as a conflict: it holds other keys under ids we were
    about to upload, so this store is older than the one that uploaded them (a restored copy).

    Our id counters skip :data:`PREKEY_ID_JUMP` ahead of whatever that copy may have used, and
    the pending keys are issued again under fresh ids (a new signed and last-resort prekey if
    one of those was pending). The old pending records are kept, marked as uploaded so they are
    not offered again: the relay may hold some of them from before the copy, and a session
    started with one must still find it. How many keys were issued again.
    """
    pending = tx.prekeys.pending_upload()
    for kind in PreKeyKind:
        tx.prekeys.allocate_ids(kind, PREKEY_ID_JUMP)
    tx.prekeys.mark_uploaded(PreKeyKind.ONE_TIME, [r.id for r in pending.one_time])
    tx.prekeys.mark_uploaded(PreKeyKind.SIGNED, [r.id for r in pending.signed])
    tx.prekeys.mark_uploaded(PreKeyKind.KYBER, [r.id for r in pending.kyber])
    one_time = max(len(pending.one_time), sum(1 for k in pending.kyber if not k.last_resort))
    rotate = bool(pending.signed) or any(k.last_resort for k in pending.kyber)
    generate_prekeys(tx, account, now_ms=now_ms, rng=rng, one_time=one_time, rotate=rotate)
    return one_time + 2 * rotate
