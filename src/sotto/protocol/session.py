"""The 1:1 protocol's public API: pure functions, state in and state out.

Nothing here stores, trusts or looks anything up. The caller

* loads the :class:`~sotto.protocol.record.SessionRecord` for the peer and stores the returned one
  (only after success: a failure returns nothing and leaves the input as it was);
* decides identity trust (TOFU) with the remote identity key these functions expose;
* looks up our prekey records by the ids a parsed :class:`PreKeySignalMessage` carries, deletes
  the used one-time EC and Kyber prekeys and remembers the (Kyber id, signed id, base key)
  triple of a used last-resort Kyber prekey, as :class:`PreKeyDecryptResult` names them.

:mod:`sotto.protocol.store` does all of that in memory, as libsignal's in-memory store does.

The clock (``now_ms``) and the randomness (``rng``) are arguments.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import (
    DecryptionError,
    InvalidKeyAgreementError,
    InvalidPreKeyBundleError,
    MessageTooFarAheadError,
    MissingPreKeyError,
    ReusedBaseKeyError,
    SessionNotFoundError,
)
from sotto.protocol import pqxdh
from sotto.protocol.address import ProtocolAddress, encode_addresses, service_id_fixed_width
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.messages import (
    CURRENT_VERSION,
    BytesLike,
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from sotto.protocol.ratchet.chain import ChainKey
from sotto.protocol.ratchet.root import RootKey
from sotto.protocol.ratchet.session import encrypt_message
from sotto.protocol.ratchet.skipped import EMPTY_SKIPPED_KEYS
from sotto.protocol.ratchet.spqr import SpqrChain
from sotto.protocol.ratchet.state import PendingPreKey, ReceiverChain, SenderChain, SessionState
from sotto.protocol.record import SessionRecord
from sotto.protocol.values import new_tuple

LastResortUse = tuple[int, int, bytes]
"""(Kyber prekey id, signed prekey id, serialized 33-byte base key) of a last-resort key's use."""


def is_same_account(
    our_identity: PublicKey,
    our_address: ProtocolAddress,
    their_identity: PublicKey,
    their_address: ProtocolAddress,
) -> bool:
    """libsignal's self-session test: equal identity keys and equal ServiceIds (device ids aside)."""
    if our_identity != their_identity:
        return False
    ours = service_id_fixed_width(our_address.name)
    return ours is not None and ours == service_id_fixed_width(their_address.name)


def process_prekey_bundle(
    record: SessionRecord | None,
    *,
    our_identity: KeyPair,
    our_registration_id: int,
    our_address: ProtocolAddress,
    their_address: ProtocolAddress,
    bundle: PreKeyBundle,
    now_ms: int,
    rng: Rng,
) -> SessionRecord:
    """Start a session as initiator from ``bundle``; the current state (if any) is archived.

    Raises InvalidPreKeyBundleError. Checking the bundle's identity key against the one we
    trust for ``their_address`` is the caller's job (``bundle.identity_key``).
    """
    bundle.validate()
    sent, secret = pqxdh.initiate(bundle, our_identity, rng)
    self_session = is_same_account(our_identity.public, our_address, bundle.identity_key, their_address)
    sending_ratchet_key = KeyPair.generate(rng)
    try:
        root_key, sending_chain = RootKey(secret.root_key).create_chain(
            bundle.signed_pre_key_public, sending_ratchet_key.private
        )
    except InvalidKeyAgreementError:
        raise InvalidPreKeyBundleError("unusable signed prekey") from None
    state = SessionState(
        version=CURRENT_VERSION,
        local_identity=our_identity.public,
        remote_identity=bundle.identity_key,
        root_key=root_key,
        sender_chain=SenderChain(sending_ratchet_key, sending_chain),
        # libsignal records the signed prekey as a receiver chain; it counts toward the limit.
        receiver_chains=(
            ReceiverChain(bundle.signed_pre_key_public, ChainKey(secret.chain_key, 0), EMPTY_SKIPPED_KEYS),
        ),
        previous_counter=0,
        spqr=SpqrChain.start(secret.pqr_key, initiator=True, self_session=self_session),
        local_registration_id=our_registration_id,
        remote_registration_id=bundle.registration_id,
        alice_base_key=sent.base_key,
        self_session=self_session,
        pending_prekey=PendingPreKey(
            pre_key_id=bundle.pre_key_id,
            signed_pre_key_id=bundle.signed_pre_key_id,
            kyber_pre_key_id=bundle.kyber_pre_key_id,
            kyber_ciphertext=sent.kyber_ciphertext,
            base_key=sent.base_key,
            timestamp_ms=now_ms,
        ),
    )
    return (record or SessionRecord()).promote_state(state)


def has_usable_session(record: SessionRecord | None, now_ms: int) -> bool:
    """True if :func:`encrypt` would find a state to send with."""
    return record is not None and record.current is not None and not record.current.is_stale(now_ms)


def remote_identity(record: SessionRecord | None) -> PublicKey | None:
    """The current session's peer identity key (what the caller's trust check compares)."""
    if record is None or record.current is None:
        return None
    return record.current.remote_identity


def encrypt(
    record: SessionRecord | None,
    plaintext: bytes,
    *,
    our_address: ProtocolAddress,
    their_address: ProtocolAddress,
    now_ms: int,
    rng: Rng,
) -> tuple[SessionRecord, CiphertextMessage]:
    """Encrypt with the current state: a PreKey message until the peer has replied, then Whisper.

    Raises SessionNotFoundError without a current state, or when an unanswered session is
    older than 30 days. ``rng`` is unused by chain-only SPQR; the ML-KEM braid will need it.
    """
    del rng
    if record is None or record.current is None:
        raise SessionNotFoundError(f"no usable session with {their_address}")
    state = record.current
    pending = state.pending_prekey
    if pending is not None and state.is_stale(now_ms):
        raise SessionNotFoundError(f"no usable session with {their_address}")
    if pending is None:
        new_state, serialized = encrypt_message(state, plaintext)
        out = new_tuple(CiphertextMessage, (CiphertextMessageType.WHISPER, serialized))
    else:
        addresses = encode_addresses(our_address, their_address)
        new_state, serialized = encrypt_message(state, plaintext, addresses)
        prekey_message = PreKeySignalMessage.create(
            registration_id=state.local_registration_id,
            pre_key_id=pending.pre_key_id,
            signed_pre_key_id=pending.signed_pre_key_id,
            kyber_pre_key_id=pending.kyber_pre_key_id,
            kyber_ciphertext=pending.kyber_ciphertext,
            base_key=pending.base_key,
            identity_key=state.local_identity,
            message=SignalMessage.decode(serialized),
        )
        out = CiphertextMessage(CiphertextMessageType.PREKEY, prekey_message.serialized)
    return new_tuple(SessionRecord, (new_state, record.previous)), out


def decrypt_signal_message(
    record: SessionRecord | None,
    message: BytesLike | SignalMessage,
    *,
    our_address: ProtocolAddress,
    their_address: ProtocolAddress,
    rng: Rng,
) -> tuple[SessionRecord, bytes]:
    """Decrypt a Whisper (type 2) message with the current or an archived state.

    Returns the new record (the state that worked is current) and the plaintext. Raises
    DecodeError/UnsupportedVersionError for bytes that do not parse, SessionNotFoundError,
    DuplicateMessageError, MessageTooFarAheadError, DecryptionError. The peer identity to check
    afterwards is ``remote_identity(new_record)``.
    """
    parsed = message if isinstance(message, SignalMessage) else SignalMessage.decode(message)
    if record is None or (record.current is None and not record.previous):
        raise SessionNotFoundError(f"no session with {their_address}")
    # Only a message that carries the addresses binding needs ours to compare it with.
    expected_addresses = None if parsed.addresses is None else encode_addresses(their_address, our_address)
    return record.decrypt(parsed, expected_addresses, rng)


@dataclass(frozen=True, slots=True, repr=False)
class PreKeyDecryptResult:
    """What a PreKey message decryption hands back, and what the caller must do with it.

    Every prekey the message consumed is named here, so the caller never has to infer one: on
    success, store ``record``, delete the one-time EC prekey ``used_one_time_pre_key_id`` and the
    Kyber prekey ``used_kyber_pre_key_id`` unless it is last-resort, and remember
    ``last_resort_use`` when it is. All of these are None when the message named a session we
    already had (nothing was consumed).
    """

    record: SessionRecord
    plaintext: bytes
    used_one_time_pre_key_id: int | None
    """Delete this one-time EC prekey (None when none was used or the session already existed)."""
    used_kyber_pre_key_id: int | None
    """The Kyber prekey the handshake used (None when the session already existed)."""
    used_signed_pre_key_id: int | None
    """The signed EC prekey the handshake used (kept: it is medium-term, rotated by the caller)."""
    last_resort_use: LastResortUse | None
    """Remember this triple (the Kyber prekey is last-resort) so a replay is refused."""
    their_identity: PublicKey
    """The sender's identity key: check it against the one trusted for the address."""

    @property
    def kyber_pre_key_last_resort(self) -> bool:
        """True if the Kyber prekey used is a last-resort one: keep it, remember the triple."""
        return self.last_resort_use is not None

    @property
    def one_time_kyber_pre_key_id(self) -> int | None:
        """The one-time Kyber prekey to delete, if the handshake used one."""
        return None if self.last_resort_use is not None else self.used_kyber_pre_key_id

    def __repr__(self) -> str:
        return (
            f"PreKeyDecryptResult(used_one_time_pre_key_id={self.used_one_time_pre_key_id}, "
            f"used_kyber_pre_key_id={self.used_kyber_pre_key_id}, "
            f"last_resort_use={self.last_resort_use is not None}, their_identity={self.their_identity!r})"
        )


def decrypt_prekey_message(
    record: SessionRecord | None,
    message: BytesLike | PreKeySignalMessage,
    *,
    our_identity: KeyPair,
    our_registration_id: int,
    our_address: ProtocolAddress,
    their_address: ProtocolAddress,
    signed_pre_key: SignedPreKeyRecord | None,
    kyber_pre_key: KyberPreKeyRecord | None,
    one_time_pre_key: PreKeyRecord | None,
    used_last_resort: Container[LastResortUse] = frozenset(),
    rng: Rng,
) -> PreKeyDecryptResult:
    """Decrypt a PreKey (type 3) message, setting up the responder's session if it is new.

    Pass the records named by ``message.signed_pre_key_id``, ``kyber_pre_key_id`` and
    ``pre_key_id`` (None where not found). If the base key belongs to a session we already
    have, that session is promoted and used and the prekeys are not needed; a copy of a message
    already decrypted is then DuplicateMessageError. Otherwise a missing record is
    MissingPreKeyError and any failure of the handshake or the inner message DecryptionError.
    A last-resort triple found in ``used_last_resort`` is ReusedBaseKeyError, checked only once
    the message has decrypted (where libsignal consults its store): a message that fails anyway
    reports its own failure.
    """
    parsed = message if isinstance(message, PreKeySignalMessage) else PreKeySignalMessage.decode(message)
    record = record or SessionRecord()
    expected_addresses = encode_addresses(their_address, our_address)

    position = record.find_base_key(parsed.version, parsed.base_key)
    if position is not None:
        new_record, plaintext = _decrypt_current(
            record.promote_position(position), parsed, expected_addresses, rng
        )
        return PreKeyDecryptResult(new_record, plaintext, None, None, None, None, parsed.identity_key)

    if signed_pre_key is None or signed_pre_key.id != parsed.signed_pre_key_id:
        raise MissingPreKeyError("signed", parsed.signed_pre_key_id)
    if kyber_pre_key is None or kyber_pre_key.id != parsed.kyber_pre_key_id:
        raise MissingPreKeyError("Kyber", parsed.kyber_pre_key_id)
    if parsed.pre_key_id is not None and (
        one_time_pre_key is None or one_time_pre_key.id != parsed.pre_key_id
    ):
        raise MissingPreKeyError("one-time", parsed.pre_key_id)
    secret = pqxdh.respond(
        our_identity=our_identity,
        our_signed_pre_key=signed_pre_key.key_pair,
        our_one_time_pre_key=None
        if parsed.pre_key_id is None or one_time_pre_key is None
        else one_time_pre_key.key_pair,
        our_kyber_pre_key=kyber_pre_key.key_pair,
        their_identity=parsed.identity_key,
        their_base_key=parsed.base_key,
        kyber_ciphertext=parsed.kyber_ciphertext,
    )
    self_session = is_same_account(our_identity.public, our_address, parsed.identity_key, their_address)
    state = SessionState(
        version=CURRENT_VERSION,
        local_identity=our_identity.public,
        remote_identity=parsed.identity_key,
        root_key=RootKey(secret.root_key),
        # The responder's first ratchet key is its signed prekey.
        sender_chain=SenderChain(signed_pre_key.key_pair, ChainKey(secret.chain_key, 0)),
        receiver_chains=(),
        previous_counter=0,
        spqr=SpqrChain.start(secret.pqr_key, initiator=False, self_session=self_session),
        local_registration_id=our_registration_id,
        remote_registration_id=parsed.registration_id,
        alice_base_key=parsed.base_key,
        self_session=self_session,
        pending_prekey=None,
    )
    new_record, plaintext = _decrypt_current(record.promote_state(state), parsed, expected_addresses, rng)
    last_resort_use = None
    if kyber_pre_key.last_resort:
        last_resort_use = (kyber_pre_key.id, signed_pre_key.id, parsed.base_key.to_bytes())
        if last_resort_use in used_last_resort:
            raise ReusedBaseKeyError("this last-resort Kyber prekey was already used with this base key")
    return PreKeyDecryptResult(
        new_record,
        plaintext,
        parsed.pre_key_id,
        kyber_pre_key.id,
        signed_pre_key.id,
        last_resort_use,
        parsed.identity_key,
    )


def _decrypt_current(
    record: SessionRecord, message: PreKeySignalMessage, expected_addresses: bytes | None, rng: Rng
) -> tuple[SessionRecord, bytes]:
    # A PreKey message sets up (or names) exactly one session: no archived state is tried, and
    # every failure but a duplicate reads as "decryption failed", as in libsignal.
    try:
        return record.decrypt(message.message, expected_addresses, rng, current_only=True)
    except MessageTooFarAheadError:
        raise DecryptionError from None
