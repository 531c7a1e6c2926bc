"""Sealed sender v2: one ciphertext for many recipients, each with a 48-byte key share.

The sender picks a random ``M`` (32 B) and derives everything from it (HKDF-SHA256, no salt):
``e = HKDF(M, "…: r (2023-08)")`` (an X25519 private key) and ``K = HKDF(M, "…: K")``.
The USMC is encrypted once with AES-256-GCM-SIV under ``K`` (zero nonce: ``K`` is single-use).
For each recipient identity ``IK_R``:

- ``C = M ⊕ HKDF(DH(e, IK_R) ‖ E.pub ‖ IK_R, "…: DH", 32)`` hands over ``M``;
- ``AT = HKDF(DH(IK_S, IK_R) ‖ E.pub ‖ C ‖ IK_S ‖ IK_R, "…: DH-sender", 16)`` binds the sender.

The recipient recovers ``M``, re-derives ``e`` and checks it against ``E.pub`` (so ``C`` cannot be
swapped between messages), decrypts, then checks ``AT`` against the key the certificate names:
a co-recipient who learned ``M`` cannot re-wrap the content under someone else's certificate
(a mismatch is an invalid certificate, as in v1).

The sent form and its split into received forms live in :mod:`.sent_message`; this module
holds the cryptography and the received form ``0x22 ‖ C ‖ AT ‖ E.pub (32) ‖ ct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sotto.crypto.aead import aes256_gcm_siv_decrypt, aes256_gcm_siv_encrypt
from sotto.crypto.dh import agree
from sotto.crypto.kdf import bytes_equal, hkdf_sha256
from sotto.crypto.keys import KeyPair, PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError, InvalidCertificateError, SottoError
from sotto.protocol import protobuf as pb
from sotto.protocol.labels import (
    SEALED_SENDER_V2_DH,
    SEALED_SENDER_V2_DH_SENDER,
    SEALED_SENDER_V2_K,
    SEALED_SENDER_V2_R,
)
from sotto.protocol.sealed_sender.content import UnidentifiedSenderMessageContent
from sotto.protocol.sealed_sender.sent_message import (
    AUTH_TAG_LENGTH,
    GCM_SIV_TAG_LENGTH,
    MESSAGE_KEY_LENGTH,
    RAW_PUBLIC_KEY_LENGTH,
    SERVICE_ID_VERSION,
    ServiceIdLike,
    encode_device_list,
    fixed_width_service_id,
    service_id_string,
)

MAJOR_VERSION = 2
_NONCE = bytes(12)


class SealedRecipient(NamedTuple):
    """One recipient account of a multi-recipient message, with the devices to deliver to."""

    service_id: ServiceIdLike
    devices: Sequence[tuple[int, int]]
    """``(device id, registration id)`` pairs."""
    identity_key: PublicKey


def _ephemeral_from(m: bytes) -> KeyPair:
    return KeyPair(PrivateKey(hkdf_sha256(m, 32, SEALED_SENDER_V2_R)))


def _xor_pad(shared: bytes, ephemeral: PublicKey, recipient: PublicKey) -> bytes:
    return hkdf_sha256(
        shared + ephemeral.to_bytes() + recipient.to_bytes(), MESSAGE_KEY_LENGTH, SEALED_SENDER_V2_DH
    )


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _auth_tag(
    shared: bytes, ephemeral: PublicKey, c: bytes, sender: PublicKey, recipient: PublicKey
) -> bytes:
    return hkdf_sha256(
        shared + ephemeral.to_bytes() + c + sender.to_bytes() + recipient.to_bytes(),
        AUTH_TAG_LENGTH,
        SEALED_SENDER_V2_DH_SENDER,
    )


def seal_v2(
    sender_identity: KeyPair,
    recipients: Sequence[SealedRecipient | tuple[ServiceIdLike, Sequence[tuple[int, int]], PublicKey]],
    content: UnidentifiedSenderMessageContent,
    rng: Rng,
    excluded: Sequence[ServiceIdLike] = (),
) -> bytes:
    """Encrypt ``content`` once for every recipient; return the sent form (version 0x23).

    Each recipient account appears once, with at least one device; ``excluded`` names accounts
    the server should know were left out on purpose (for example, a group member's own
    other account). Argument mistakes are ValueError.
    """
    m = rng(MESSAGE_KEY_LENGTH)
    ephemeral = _ephemeral_from(m)
    ciphertext = aes256_gcm_siv_encrypt(hkdf_sha256(m, 32, SEALED_SENDER_V2_K), _NONCE, content.serialized)

    seen: set[bytes] = set()
    out = bytearray((SERVICE_ID_VERSION,))
    out += pb.encode_varint(len(recipients) + len(excluded))
    for entry in recipients:
        service_id_value, devices, their_identity = entry
        service_id = fixed_width_service_id(service_id_value)
        if service_id in seen:
            raise ValueError(f"recipient {service_id_string(service_id)} listed twice")
        seen.add(service_id)
        out += service_id
        out += encode_device_list(devices)
        c = _xor(m, _xor_pad(agree(ephemeral.private, their_identity), ephemeral.public, their_identity))
        out += c
        out += _auth_tag(
            agree(sender_identity.private, their_identity),
            ephemeral.public,
            c,
            sender_identity.public,
            their_identity,
        )
    for excluded_value in excluded:
        service_id = fixed_width_service_id(excluded_value)
        if service_id in seen:
            raise ValueError(f"recipient {service_id_string(service_id)} listed twice")
        seen.add(service_id)
        out += service_id + b"\x00"
    out += ephemeral.public.raw
    out += ciphertext
    return bytes(out)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A parsed received form, before any decryption."""

    version: int
    encrypted_message_key: bytes
    """C: M masked for this recipient."""
    authentication_tag: bytes
    ephemeral_public: PublicKey
    ciphertext: bytes

    @classmethod
    def decode(cls, data: bytes) -> ReceivedMessage:
        """Parse; raises DecodeError only. Any version byte with major version 2 is accepted."""
        if not data:
            raise DecodeError("empty sealed sender message")
        if data[0] >> 4 != MAJOR_VERSION:
            raise DecodeError(f"not a sealed sender v2 message (version byte {data[0]:#04x})")
        head = 1 + MESSAGE_KEY_LENGTH + AUTH_TAG_LENGTH + RAW_PUBLIC_KEY_LENGTH
        if len(data) < head + GCM_SIV_TAG_LENGTH:
            raise DecodeError("truncated sealed sender v2 message")
        c_end = 1 + MESSAGE_KEY_LENGTH
        at_end = c_end + AUTH_TAG_LENGTH
        return cls(
            data[0],
            bytes(data[1:c_end]),
            bytes(data[c_end:at_end]),
            PublicKey(bytes(data[at_end:head])),
            bytes(data[head:]),
        )

    def encode(self) -> bytes:
        return (
            bytes((self.version,))
            + self.encrypted_message_key
            + self.authentication_tag
            + self.ephemeral_public.raw
            + self.ciphertext
        )

    def __repr__(self) -> str:
        return f"ReceivedMessage(version={self.version:#04x}, ciphertext=<{len(self.ciphertext)} bytes>)"


def open_v2(our_identity: KeyPair, data: bytes) -> tuple[UnidentifiedSenderMessageContent, PublicKey]:
    """Decrypt a received form; return the USMC and the sender identity key its tag proved.

    Every failure to reach a well-formed USMC (framing, a re-derived ephemeral key that does not
    match, the AEAD, a malformed USMC) is :class:`DecryptionError`. An authentication tag that does
    not match the key the certificate names is :class:`InvalidCertificateError`, as in v1 (and as
    libsignal refuses both: the content decrypted, but it claims a sender who did not seal it).
    The certificate chain itself is not checked here.
    """
    try:
        message = ReceivedMessage.decode(data)
        e_pub = message.ephemeral_public
        m = _xor(
            message.encrypted_message_key,
            _xor_pad(agree(our_identity.private, e_pub), e_pub, our_identity.public),
        )
        ephemeral_ok = bytes_equal(_ephemeral_from(m).public.raw, e_pub.raw)
        if not ephemeral_ok:
            raise DecryptionError
        plaintext = aes256_gcm_siv_decrypt(hkdf_sha256(m, 32, SEALED_SENDER_V2_K), _NONCE, message.ciphertext)
        content = UnidentifiedSenderMessageContent.decode(plaintext)
        sender_key = content.sender_certificate.identity_key
        expected = _auth_tag(
            agree(our_identity.private, sender_key),
            e_pub,
            message.encrypted_message_key,
            sender_key,
            our_identity.public,
        )
    except DecryptionError:
        raise
    except SottoError:
        raise DecryptionError from None
    if not bytes_equal(expected, message.authentication_tag):
        raise InvalidCertificateError("sender certificate key does not match the authentication tag")
    return content, sender_key
