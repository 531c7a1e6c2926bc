"""The protocol's calls through a store, as libsignal's ``message_encrypt`` & co. use theirs.

Each call loads what :mod:`sotto.protocol.session` or :mod:`sotto.protocol.group` needs from an
:class:`~.memory.InMemoryProtocolStore`, runs the pure function, and writes back only after it
succeeded, so a failure leaves the store as it was. On top of the pure functions they do the
caller's duties: identity trust (TOFU, checked where libsignal checks it: before a session is
started or used to send, before a PreKey message is processed, after a Whisper message
decrypted), deleting used one-time prekeys and remembering last-resort uses.
"""

from __future__ import annotations

import uuid

from sotto.crypto.keys import PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, NoSenderKeyStateError, UntrustedIdentityError
from sotto.protocol import group, session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.group.messages import SenderKeyDistributionMessage, SenderKeyMessage
from sotto.protocol.messages import (
    BytesLike,
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from sotto.protocol.store.memory import InMemoryProtocolStore


def _check_trusted(store: InMemoryProtocolStore, address: ProtocolAddress, identity: PublicKey) -> None:
    if not store.is_trusted_identity(address, identity):
        raise UntrustedIdentityError(f"the identity key of {address} changed; accept it to go on")


def process_prekey_bundle(
    store: InMemoryProtocolStore,
    their_address: ProtocolAddress,
    bundle: PreKeyBundle,
    *,
    now_ms: int,
    rng: Rng,
) -> None:
    """Start a session with ``their_address`` from ``bundle`` (the current one, if any, is archived).

    Raises UntrustedIdentityError if the bundle's identity key is not the one trusted for the
    address, InvalidPreKeyBundleError for a bundle that does not verify.
    """
    _check_trusted(store, their_address, bundle.identity_key)
    record = session.process_prekey_bundle(
        store.load_session(their_address),
        our_identity=store.identity,
        our_registration_id=store.registration_id,
        our_address=store.address,
        their_address=their_address,
        bundle=bundle,
        now_ms=now_ms,
        rng=rng,
    )
    store.save_identity(their_address, bundle.identity_key)
    store.store_session(their_address, record)


def message_encrypt(
    store: InMemoryProtocolStore, their_address: ProtocolAddress, plaintext: bytes, *, now_ms: int, rng: Rng
) -> CiphertextMessage:
    """Encrypt for ``their_address`` with the stored session (a PreKey message until they reply).

    Raises SessionNotFoundError, or UntrustedIdentityError if the session's peer key is no
    longer the trusted one.
    """
    record = store.load_session(their_address)
    identity = session.remote_identity(record)
    if identity is not None:
        _check_trusted(store, their_address, identity)
    new_record, message = session.encrypt(
        record, plaintext, our_address=store.address, their_address=their_address, now_ms=now_ms, rng=rng
    )
    if identity is not None:
        store.save_identity(their_address, identity)
    store.store_session(their_address, new_record)
    return message


def message_decrypt_signal(
    store: InMemoryProtocolStore,
    their_address: ProtocolAddress,
    message: BytesLike | SignalMessage,
    *,
    rng: Rng,
) -> bytes:
    """Decrypt a Whisper (type 2) message from ``their_address``; see :func:`session.decrypt_signal_message`.

    The session's peer key must still be trusted (checked after decryption, as libsignal does),
    else UntrustedIdentityError and nothing is stored.
    """
    new_record, plaintext = session.decrypt_signal_message(
        store.load_session(their_address),
        message,
        our_address=store.address,
        their_address=their_address,
        rng=rng,
    )
    identity = session.remote_identity(new_record)
    if identity is not None:
        _check_trusted(store, their_address, identity)
        store.save_identity(their_address, identity)
    store.store_session(their_address, new_record)
    return plaintext


def message_decrypt_prekey(
    store: InMemoryProtocolStore,
    their_address: ProtocolAddress,
    message: BytesLike | PreKeySignalMessage,
    *,
    rng: Rng,
) -> session.PreKeyDecryptResult:
    """Decrypt a PreKey (type 3) message from ``their_address``, consuming the prekeys it names.

    The sender's identity key must be trusted for the address (UntrustedIdentityError before
    anything is tried). On success the session is stored, the identity saved, and the used
    one-time EC and Kyber prekeys deleted or the last-resort use remembered; the result names
    them. Other errors are :func:`session.decrypt_prekey_message`'s.
    """
    parsed = message if isinstance(message, PreKeySignalMessage) else PreKeySignalMessage.decode(message)
    _check_trusted(store, their_address, parsed.identity_key)
    result = session.decrypt_prekey_message(
        store.load_session(their_address),
        parsed,
        our_identity=store.identity,
        our_registration_id=store.registration_id,
        our_address=store.address,
        their_address=their_address,
        signed_pre_key=store.signed_pre_keys.get(parsed.signed_pre_key_id),
        kyber_pre_key=store.kyber_pre_keys.get(parsed.kyber_pre_key_id),
        one_time_pre_key=None if parsed.pre_key_id is None else store.pre_keys.get(parsed.pre_key_id),
        used_last_resort=store.last_resort_uses,
        rng=rng,
    )
    store.save_identity(their_address, result.their_identity)
    store.consume_pre_keys(result)
    store.store_session(their_address, result.record)
    return result


def message_decrypt(
    store: InMemoryProtocolStore,
    their_address: ProtocolAddress,
    message: CiphertextMessage | tuple[int, bytes],
    *,
    rng: Rng,
) -> bytes:
    """Decrypt a 1:1 message of either type (Whisper or PreKey); other types are DecodeError."""
    message_type, body = message
    if message_type == CiphertextMessageType.WHISPER:
        return message_decrypt_signal(store, their_address, body, rng=rng)
    if message_type == CiphertextMessageType.PREKEY:
        return message_decrypt_prekey(store, their_address, body, rng=rng).plaintext
    raise DecodeError(f"message type {int(message_type)} is not a 1:1 session message")


# ---------------------------------------------------------------------- groups (sender keys)
def create_sender_key_distribution(
    store: InMemoryProtocolStore, distribution_id: uuid.UUID, rng: Rng
) -> SenderKeyDistributionMessage:
    """Our SKDM for ``distribution_id`` (a chain is started on first use); send it over 1:1 sessions."""
    record, skdm = group.create_distribution(
        store.load_sender_key(store.address, distribution_id), distribution_id, rng
    )
    store.store_sender_key(store.address, distribution_id, record)
    return skdm


def process_sender_key_distribution(
    store: InMemoryProtocolStore,
    sender: ProtocolAddress,
    skdm: SenderKeyDistributionMessage | BytesLike,
) -> None:
    """Learn ``sender``'s chain from their SKDM (which arrived over a 1:1 session)."""
    parsed = (
        skdm
        if isinstance(skdm, SenderKeyDistributionMessage)
        else SenderKeyDistributionMessage.decode(bytes(skdm))
    )
    record = group.process_distribution(store.load_sender_key(sender, parsed.distribution_id), parsed)
    store.store_sender_key(sender, parsed.distribution_id, record)


def group_encrypt(
    store: InMemoryProtocolStore, distribution_id: uuid.UUID, plaintext: bytes, *, rng: Rng
) -> bytes:
    """A SenderKeyMessage for the group ``distribution_id``; NoSenderKeyStateError before a distribution."""
    record = store.load_sender_key(store.address, distribution_id)
    if record is None:
        raise NoSenderKeyStateError(f"no sender key for distribution {distribution_id}")
    new_record, message = group.group_encrypt(record, plaintext, rng)
    store.store_sender_key(store.address, distribution_id, new_record)
    return message


def group_decrypt(store: InMemoryProtocolStore, sender: ProtocolAddress, message: BytesLike) -> bytes:
    """Decrypt ``sender``'s SenderKeyMessage; see :func:`sotto.protocol.group.group_decrypt`."""
    data = bytes(message)
    distribution_id = SenderKeyMessage.decode(data).distribution_id
    record = store.load_sender_key(sender, distribution_id)
    if record is None:
        raise NoSenderKeyStateError(f"no sender key from {sender} for distribution {distribution_id}")
    new_record, plaintext = group.group_decrypt(record, data)
    store.store_sender_key(sender, distribution_id, new_record)
    return plaintext
