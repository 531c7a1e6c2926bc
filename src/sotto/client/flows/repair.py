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
   message ids, so a copy we already hold is dropped as a duplicate. If its session has moved
   on since (typically: a new session *we* started, answering its own retry receipt, reached it
   first, and our request names the session it wrote on before), it starts none, but sends
   again, on the session it has now, the message the receipt names and what it logged after
   it (as Signal resends the message a retry receipt names whether or not it resets the
   session): else that message would be lost, since the new session cannot decrypt the old.
3. A delivery receipt that names a later text while an earlier one is still unconfirmed means
   the earlier one was lost (the receiving device went back to an older copy after receiving
   it, and the session still works): it is sent again (:func:`confirm_delivered`).
4. Both sides get :class:`~sotto.client.events.SessionRepaired`: the repairer when it starts
   the new session, the requester when the first message of a new session arrives after its
   request (:func:`repaired_by_peer`).

**A side with no session** (a profile restored from a backup, which keeps none) that wants to
write first asks the same way (:func:`request_session`, called when sending finds no session):
a retry receipt without a ratchet key (no message failed: there is none to name) and with our
bundle. The contact's client starts a new session from it even though its own session still
works (it is the one we lost), resends its send log and, if that was empty, sends an empty
message so that the new session reaches us. Every repair also re-keys the repairer's sender
key in the groups it shares with the requester and hands the new one out at once: a device
whose session went back in time lost the sender keys it had received since, too. When the new
session's first message arrives (:func:`repaired_by_peer`), our texts that waited go out, and
our sender key goes to the group members who lack it. The relay hands out bundles only to
holders of an invite's access token, used once, so this is the only way to a bundle.

If both sides were broken, both ask and both repair; the two new sessions cross, and each side
decrypts the other's with the state it keeps archived (libsignal's simultaneous initiation).

No storm: a retry receipt is plaintext, so it never fails to decrypt and is never answered with
another. We ask a contact at most :data:`REPAIR_ATTEMPTS` times per :data:`REPAIR_INTERVAL_MS`,
and repair for a contact at most as often; a second request within :data:`REPAIR_RETRY_MS` of
the first goes out only if the failed message names another ratchet key than the first did (the
repair's own messages failed), so a burst of failures on one broken session asks once. A
repair that fails (its answer lost, or its messages undecryptable) is thus asked for and made
again within seconds or a minute, not an hour later. The counts and times are kept in the
store's settings (sealed), so a restart does not reset them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from sotto.client import content as c
from sotto.client.events import Event, RejectReason, SessionRepaired
from sotto.client.flows import groups
from sotto.client.flows.account import generate_prekeys
from sotto.client.flows.context import DEVICE_ID, Context, Outcome, reject
from sotto.client.flows.sending import (
    SEND_LOG_RETENTION_MS,
    NoSessionError,
    enqueue,
    queue_encoded,
    queue_plaintext,
    release_held,
    send_control,
    take_held_group_messages,
)
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.keys import PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, ProtocolError
from sotto.protocol import session
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.decryption_error import DecryptionErrorMessage, PlaintextContent
from sotto.protocol.group import group_encrypt
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, seal_v1
from sotto.store.interfaces import Transaction
from sotto.store.model import Account, Contact, ContactId, MailboxId, MessageId, PreKeyKind, SendLogEntry
from sotto.wire.padding import pad

REPAIR_INTERVAL_MS = 3_600_000
"""The window of the rate limits (Signal Desktop resets a session at most once an hour per
conversation; we allow a few attempts, so that a race or a lost answer does not leave the
conversation broken for the rest of the hour)."""

REPAIR_ATTEMPTS = 3
"""Retry receipts to a contact, and repairs for a contact, per :data:`REPAIR_INTERVAL_MS`."""

REPAIR_RETRY_MS = 60_000
"""A failure on the ratchet key we already asked about waits this long before asking again
(the first answer is likely on its way); a failure on another key asks at once."""

RESEND_LIMIT = 500
"""Send log entries resent per repair, newest kept (a day of a busy conversation)."""

_REQUESTED = "repair/requested/"
"""When we last asked the contact for a new session (the rate limit)."""
_OPEN = "repair/open/"
"""When we asked, until the answer arrives (for the event)."""
_NO_SESSION = b"\x00"
"""What a session request is recorded under in place of a failed ratchet key (a real one is 33
bytes), so that the rate limit's "same key, wait a minute" applies to repeated requests."""
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


@dataclass(frozen=True, slots=True)
class _Attempts:
    """How often we asked (or repaired) for one contact in the current window, and the last time:
    ``window_ms`` (8 bytes) ‖ ``count`` (1) ‖ ``last_ms`` (8) ‖ the ratchet key last asked about.
    A bare 8-byte value (the format before) is one attempt at that time."""

    window_ms: int
    count: int
    last_ms: int
    ratchet_key: bytes = b""

    @classmethod
    def read(cls, ctx: Context, key: str) -> _Attempts | None:
        value = ctx.tx.settings.get(key)
        if value is None:
            return None
        if len(value) == 8:
            at = int.from_bytes(value, "big")
            return cls(at, 1, at)
        if len(value) < 17:
            return None
        return cls(
            int.from_bytes(value[:8], "big"), value[8], int.from_bytes(value[9:17], "big"), bytes(value[17:])
        )

    def current(self, now_ms: int) -> _Attempts | None:
        """These attempts, if their window is still open at ``now_ms`` (None: a fresh window)."""
        return self if 0 <= now_ms - self.window_ms < REPAIR_INTERVAL_MS else None

    def write(self, ctx: Context, key: str) -> None:
        ctx.tx.settings.put(
            key,
            max(self.window_ms, 0).to_bytes(8, "big")
            + min(self.count, 255).to_bytes(1, "big")
            + max(self.last_ms, 0).to_bytes(8, "big")
            + self.ratchet_key,
        )


def _attempts(ctx: Context, key: str) -> _Attempts | None:
    found = _Attempts.read(ctx, key)
    return None if found is None else found.current(ctx.now_ms)


def _record_attempt(ctx: Context, key: str, ratchet_key: bytes = b"") -> None:
    before = _attempts(ctx, key)
    if before is None:
        _Attempts(ctx.now_ms, 1, ctx.now_ms, ratchet_key).write(ctx, key)
    else:
        _Attempts(before.window_ms, before.count + 1, ctx.now_ms, ratchet_key).write(ctx, key)


def _may_ask(ctx: Context, contact_id: ContactId, ratchet_key: bytes) -> bool:
    """Whether a failure on ``ratchet_key`` may ask the contact again (module docstring)."""
    before = _attempts(ctx, f"{_REQUESTED}{contact_id}")
    if before is None:
        return True
    if before.count >= REPAIR_ATTEMPTS:
        return False
    same = bool(before.ratchet_key) and bytes_equal(before.ratchet_key, ratchet_key)
    return not same or not 0 <= ctx.now_ms - before.last_ms < REPAIR_RETRY_MS


def _may_repair(ctx: Context, contact_id: ContactId) -> bool:
    before = _attempts(ctx, f"{_REPAIRED}{contact_id}")
    return before is None or before.count < REPAIR_ATTEMPTS


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
    identity key we trust for them, within the rate limits (module docstring), and only if they
    gave us a mailbox. True if one was queued.
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
    if tx.their_mailboxes.get(contact.contact_id) is None:
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
    failed_key = b"" if error.ratchet_key is None else error.ratchet_key.to_bytes()
    if not _may_ask(ctx, contact.contact_id, failed_key):
        return False
    if not queue_plaintext(ctx, contact, PlaintextContent.new(error, bundle).encode()):
        return False
    _record_attempt(ctx, f"{_REQUESTED}{contact.contact_id}", failed_key)
    _write_ms(ctx, f"{_OPEN}{contact.contact_id}", ctx.now_ms)
    return True


def request_session(ctx: Context, contact: Contact) -> bool:
    """We hold no session with ``contact`` (a restore) and want to write: queue a retry receipt
    naming no failed message, with our bundle, so that they start a new session with us.

    Within the rate limits of :func:`request_repair` (a second request within
    :data:`REPAIR_RETRY_MS` waits for the first one's answer). True if one was queued. Raises
    :class:`~sotto.client.flows.sending.NoSessionError` when it cannot work at all: the contact
    was removed, or gave us no mailbox, or we trust no identity key for them, or we have no
    prekeys to hand them.
    """
    tx = ctx.tx
    if contact.removed:
        raise NoSessionError(contact, "they are no longer a contact")
    if tx.identities.get(contact.address.name) is None:
        raise NoSessionError(contact, "we trust no identity key for them")
    if tx.their_mailboxes.get(contact.contact_id) is None:
        raise NoSessionError(contact, "they gave us no mailbox")
    bundle = our_bundle(ctx)
    if bundle is None:
        raise NoSessionError(contact, "we have no signed or last-resort prekey to hand them")
    if not _may_ask(ctx, contact.contact_id, _NO_SESSION):
        return False
    error = DecryptionErrorMessage.new(None, 0, DEVICE_ID)
    if not queue_plaintext(ctx, contact, PlaintextContent.new(error, bundle).encode()):
        return False
    _record_attempt(ctx, f"{_REQUESTED}{contact.contact_id}", _NO_SESSION)
    _write_ms(ctx, f"{_OPEN}{contact.contact_id}", ctx.now_ms)
    return True


def repaired_by_peer(ctx: Context, contact: Contact) -> list[Event]:
    """A PreKey message from ``contact`` just decrypted: if we asked them for a new session in
    the last day and have not heard since, this is their answer (reported once). What waited
    for it goes out now: our held texts, and our sender key to the members of our groups who
    lack it."""
    key = f"{_OPEN}{contact.contact_id}"
    at = _read_ms(ctx, key)
    if at is None:
        return []
    ctx.tx.settings.delete(key)
    if not 0 <= ctx.now_ms - at < SEND_LOG_RETENTION_MS:
        return []
    release_held(ctx, contact)
    for group_id in ctx.tx.groups.groups_of(contact.contact_id):
        group = ctx.tx.groups.get(group_id)
        if group is not None:
            groups.distribute_sender_key(ctx, group)
    _release_group_messages(ctx, contact)
    return [SessionRepaired(contact, requested=True)]


def _release_group_messages(ctx: Context, contact: Contact) -> None:
    """Send ``contact`` the group messages held for them, each encrypted again under our sender
    key (which they were just handed) and sealed to them alone."""
    tx, me = ctx.tx, ctx.me
    theirs, trusted = tx.their_mailboxes.get(contact.contact_id), tx.identities.get(contact.address.name)
    for group_id, encoded in take_held_group_messages(ctx, contact):
        group = tx.groups.get(group_id)
        if theirs is None or trusted is None or group is None:
            continue
        if not groups.is_member(ctx, group_id, contact):
            continue
        record = tx.sender_keys.get(me.address, group.distribution_id)
        if record is None:
            continue
        record, skm = group_encrypt(record, pad(encoded), ctx.rng)
        tx.sender_keys.put(me.address, record)
        usmc = UnidentifiedSenderMessageContent.new(
            CiphertextMessageType.SENDER_KEY, me.certificate, skm, group_id=group_id
        )
        enqueue(ctx, theirs, ctx.random_id(), pad(seal_v1(me.identity, trusted.identity_key, usmc, ctx.rng)))


# --------------------------------------------------------------------------- repairing
def receive_retry_request(
    ctx: Context, contact: Contact, usmc: UnidentifiedSenderMessageContent, trusted_key: PublicKey
) -> Outcome:
    """A retry receipt from ``contact`` (already checked: their mailbox, their trusted key).

    Starts a new session from their bundle if the failed message's ratchet key is our current
    one (or we have no session to send with, or the receipt names no ratchet key: they hold no
    session with us), then resends our send log for them. If our
    session moved on since, the message the receipt names and what we logged after it go again
    on the session we have now (nothing, if the log no longer holds it). Past the rate limit,
    nothing happens. Rejections: MALFORMED (not a retry receipt, or an unusable bundle).
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
    lost = ratchet_key is None  # a session request: they hold no session with us
    if (
        current is not None
        and ratchet_key is not None
        and not bytes_equal(current.sender_chain.ratchet_key.public.to_bytes(), ratchet_key.to_bytes())
    ):
        # Not our current session that failed: it was repaired or moved on since. What failed
        # on the old one is lost to them unless it goes again on this one.
        resend_from(ctx, contact, content.decryption_error.timestamp)
        return Outcome()
    if bundle is None or not _may_repair(ctx, contact.contact_id):
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
    _record_attempt(ctx, f"{_REPAIRED}{contact.contact_id}")
    sent = resend_log(ctx, contact)
    _rekey_shared_groups(ctx, contact)  # a device that lost its session may lack our sender keys
    if lost and sent == 0:
        send_control(ctx, contact, c.Cover())  # the new session must reach them
    return Outcome(events=[SessionRepaired(contact, requested=False)])


def _rekey_shared_groups(ctx: Context, contact: Contact) -> None:
    """``contact`` lost its session with us, and with it (a restore) likely our sender keys: in
    each group we share, our sender key changes, so that the new one goes to every member, them
    included, at once on the new session."""
    tx = ctx.tx
    for group_id in tx.groups.groups_of(contact.contact_id):
        group = tx.groups.get(group_id)
        if group is None:
            continue
        fresh = uuid.UUID(bytes=ctx.random_id(), version=4)
        tx.groups.set_distribution(group_id, fresh)
        groups.distribute_sender_key(ctx, replace(group, distribution_id=fresh))


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
    # Logged again as sent now (their expiry unchanged), so that only a receipt for a text sent
    # after this copy counts it lost once more.
    _send_again(ctx, contact, lost)
    return len(lost)


def resend_from(ctx: Context, contact: Contact, envelope: int) -> int:
    """Send again, on the current session, the send log entry a retry receipt names (by
    :func:`envelope_number`) and every entry logged after it; how many (0 if the log does not
    hold it: it expired, was confirmed, or was answered already)."""
    tx = ctx.tx
    tx.send_log.expire(ctx.now_ms - SEND_LOG_RETENTION_MS)
    entries = tx.send_log.for_contact(contact.contact_id)
    start = next((i for i, e in enumerate(entries) if envelope_number(e.envelope_id) == envelope), None)
    if start is None:
        return 0
    again = entries[start:][-RESEND_LIMIT:]
    return _send_again(ctx, contact, again)


def _send_again(ctx: Context, contact: Contact, entries: list[SendLogEntry]) -> int:
    """Queue each entry again in a new envelope on the current session; a text is logged again
    under its new envelope (its expiry unchanged), so a later receipt or request for the old
    envelope does not send it once more. How many were queued."""
    tx = ctx.tx
    sent = 0
    for entry in entries:
        envelope_id = queue_encoded(ctx, contact, entry.content)
        if envelope_id is None:
            break
        sent += 1
        if entry.message_id is None:
            continue
        tx.send_log.remove_delivered(contact.contact_id, [entry.message_id])
        tx.send_log.add(
            contact_id=contact.contact_id,
            envelope_id=envelope_id,
            message_id=entry.message_id,
            content=entry.content,
            sent_ms=entry.sent_ms,
        )
    return sent


def resend_log(ctx: Context, contact: Contact) -> int:
    """Send every unexpired send log entry for ``contact`` again, oldest first, each in a new
    envelope on the current session (texts logged again under it); how many."""
    tx = ctx.tx
    tx.send_log.expire(ctx.now_ms - SEND_LOG_RETENTION_MS)
    entries = tx.send_log.for_contact(contact.contact_id)[-RESEND_LIMIT:]
    sent = _send_again(ctx, contact, entries)
    return sent if sent == len(entries) else 0


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
