"""Sealed sender through a store: one call opens any message (libsignal's ``sealed_sender_decrypt``).

v1 or v2, the content a 1:1 Whisper or PreKey message or a group SenderKeyMessage: the envelope
is opened and its certificate checked by :func:`~sotto.protocol.sealed_sender.open_sealed`, then
the content is decrypted with the store's session (or sender key) for the device the
certificate names. Plaintext content (type 8, such as a decryption error message) carries no
ciphertext to decrypt here: open it with ``open_sealed``.

:func:`sealed_sender_encrypt` (v1, one device) and :func:`sealed_sender_multi_recipient_encrypt`
(v2) seal with the identities and registration ids the store holds for the recipients.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sotto.crypto.keys import PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, SessionNotFoundError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender.certificate import SenderCertificate, ServerCertificate
from sotto.protocol.sealed_sender.content import ContentHint, UnidentifiedSenderMessageContent
from sotto.protocol.sealed_sender.open import open_sealed
from sotto.protocol.sealed_sender.v1 import seal_v1
from sotto.protocol.sealed_sender.v2 import SealedRecipient, seal_v2
from sotto.protocol.store.calls import (
    group_decrypt,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
)
from sotto.protocol.store.memory import InMemoryProtocolStore


@dataclass(frozen=True, slots=True, repr=False)
class SealedSenderDecryptResult:
    """Who sent a sealed message, and what they said."""

    sender: ProtocolAddress
    """The sender's device, as its validated certificate names it."""
    sender_e164: str | None
    message_type: CiphertextMessageType
    """WHISPER, PREKEY or SENDER_KEY: what the content was."""
    content_hint: int
    group_id: bytes | None
    plaintext: bytes

    def __repr__(self) -> str:
        return (
            f"SealedSenderDecryptResult(sender={self.sender}, message_type={self.message_type.name}, "
            f"plaintext=<{len(self.plaintext)} bytes>)"
        )


def sealed_sender_decrypt(
    store: InMemoryProtocolStore,
    data: bytes,
    *,
    trust_root: PublicKey | Collection[PublicKey],
    now_ms: int,
    rng: Rng,
    our_e164: str | None = None,
    known_server_certificates: Mapping[int, ServerCertificate] | None = None,
) -> SealedSenderDecryptResult:
    """Open a sealed message addressed to ``store`` and decrypt its content; return the sender and plaintext.

    Raises what :func:`~sotto.protocol.sealed_sender.open_sealed` raises (DecryptionError,
    InvalidCertificateError, SelfSendError, UnsupportedVersionError), then what decrypting the
    content raises (the 1:1 session's errors, UntrustedIdentityError, the group's errors), and
    DecodeError for plaintext content. Nothing in the store changes unless it all succeeds.
    """
    content, certificate = open_sealed(
        store.identity,
        data,
        trust_root,
        now_ms,
        store.address,
        our_e164=our_e164,
        known_server_certificates=known_server_certificates,
    )
    sender = ProtocolAddress(certificate.sender_uuid, certificate.sender_device_id)
    if content.message_type is CiphertextMessageType.WHISPER:
        plaintext = message_decrypt_signal(store, sender, content.content, rng=rng)
    elif content.message_type is CiphertextMessageType.PREKEY:
        plaintext = message_decrypt_prekey(store, sender, content.content, rng=rng).plaintext
    elif content.message_type is CiphertextMessageType.SENDER_KEY:
        plaintext = group_decrypt(store, sender, content.content)
    else:
        raise DecodeError(
            f"sealed content of type {int(content.message_type)} holds no ciphertext to decrypt"
        )
    return SealedSenderDecryptResult(
        sender,
        certificate.sender_e164,
        content.message_type,
        content.content_hint,
        content.group_id,
        plaintext,
    )


def _their_identity(store: InMemoryProtocolStore, address: ProtocolAddress) -> PublicKey:
    identity = store.identity_of(address)
    if identity is None:
        raise SessionNotFoundError(f"no identity key known for {address}")
    return identity


def sealed_sender_encrypt(
    store: InMemoryProtocolStore,
    their_address: ProtocolAddress,
    certificate: SenderCertificate,
    plaintext: bytes,
    *,
    now_ms: int,
    rng: Rng,
    content_hint: int = ContentHint.DEFAULT,
    group_id: bytes | None = None,
) -> bytes:
    """Encrypt ``plaintext`` with the session for ``their_address`` and seal it (v1) under ``certificate``."""
    message = message_encrypt(store, their_address, plaintext, now_ms=now_ms, rng=rng)
    content = UnidentifiedSenderMessageContent.new(
        message.type, certificate, message.body, content_hint=content_hint, group_id=group_id
    )
    return seal_v1(store.identity, _their_identity(store, their_address), content, rng)


def sealed_sender_multi_recipient_encrypt(
    store: InMemoryProtocolStore,
    recipients: Sequence[ProtocolAddress],
    content: UnidentifiedSenderMessageContent,
    *,
    rng: Rng,
) -> bytes:
    """Seal ``content`` once for every device in ``recipients`` (v2 sent form, for the server to split).

    Each device needs a session (for its registration id) and a trusted identity key; devices of
    one account are grouped under it. Raises SessionNotFoundError otherwise.
    """
    by_account: dict[str, list[tuple[int, int]]] = {}
    identities: dict[str, PublicKey] = {}
    for address in recipients:
        record = store.load_session(address)
        if record is None or record.current is None:
            raise SessionNotFoundError(f"no session with {address}")
        by_account.setdefault(address.name, []).append(
            (address.device_id, record.current.remote_registration_id)
        )
        identities[address.name] = _their_identity(store, address)
    sealed = [SealedRecipient(name, devices, identities[name]) for name, devices in by_account.items()]
    return seal_v2(store.identity, sealed, content, rng)
