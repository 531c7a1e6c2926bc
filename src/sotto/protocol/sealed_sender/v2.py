"""Sealed sender v2: one ciphertext for many recipients, each with a 48-byte key share.

The sender picks a random ``M`` (32 B) and derives everything from it (HKDF-SHA256, no salt):
``e = HKDF(M, "…: r (2023-08)")`` (an X25519 private key) and ``K = HKDF(M, "…: K")``.
The USMC is encrypted once with AES-256-GCM-SIV under ``K`` (zero nonce: ``K`` is single-use).
For each recipient identity ``IK_R``:

- ``C = M ⊕ HKDF(DH(e, IK_R) ‖ E.pub ‖ IK_R, "…: DH", 32)`` hands over ``M``;
- ``AT = HKDF(DH(IK_S, IK_R) ‖ E.pub ‖ C ‖ IK_S ‖ IK_R, "…: DH-sender", 16)`` binds the sender.

The recipient recovers ``M``, re-derives ``e`` and checks it against ``E.pub`` (so ``C`` cannot be
swapped between messages), decrypts, then checks ``AT`` against the key the certificate names:
a co-recipient who learned ``M`` cannot re-wrap the content under someone else's certificate.

Sent form (client → server), version ``0x23`` (17-byte ServiceIds) or ``0x22`` (ACI UUIDs)::

    version ‖ varint n ‖ n × (ServiceId ‖ devices ‖ C ‖ AT  |  ServiceId ‖ 0x00) ‖ E.pub (32) ‖ ct

with ``devices`` = entries of device id (1 B) ‖ u16 BE (bit 15 "more follow", bits 0–13 the
registration id); ``ServiceId ‖ 0x00`` marks a recipient deliberately excluded. The server
splits it into one received form per recipient (the relay never needs a key)::

    0x22 ‖ C ‖ AT ‖ E.pub (32) ‖ ct
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sotto.crypto.aead import aes256_gcm_siv_decrypt, aes256_gcm_siv_encrypt
from sotto.crypto.dh import agree
from sotto.crypto.kdf import bytes_equal, hkdf_sha256
from sotto.crypto.keys import KeyPair, PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError, SottoError
from sotto.protocol import protobuf as pb
from sotto.protocol.address import (
    ACI_KIND,
    PNI_KIND,
    SERVICE_ID_FIXED_WIDTH_LENGTH,
    ProtocolAddress,
    service_id_fixed_width,
)
from sotto.protocol.labels import (
    SEALED_SENDER_V2_DH,
    SEALED_SENDER_V2_DH_SENDER,
    SEALED_SENDER_V2_K,
    SEALED_SENDER_V2_R,
)
from sotto.protocol.limits import MAX_DEVICE_ID, MAX_REGISTRATION_ID
from sotto.protocol.sealed_sender.content import UnidentifiedSenderMessageContent

UUID_VERSION = 0x22
"""Sent form naming recipients by raw ACI UUID; also the only received-form version written."""
SERVICE_ID_VERSION = 0x23
"""Sent form naming recipients by 17-byte ServiceId; what :func:`seal_v2` writes."""
RECEIVED_VERSION = UUID_VERSION
MAJOR_VERSION = 2

MESSAGE_KEY_LENGTH = 32
AUTH_TAG_LENGTH = 16
RAW_PUBLIC_KEY_LENGTH = 32
GCM_SIV_TAG_LENGTH = 16
_NONCE = bytes(12)
_HAS_MORE = 0x8000
_UUID_LENGTH = 16
_U32 = 0xFFFF_FFFF


ServiceIdLike = bytes | str | ProtocolAddress
"""A recipient account: its 17-byte fixed-width ServiceId, its ServiceId string, or an address
whose name is one."""


class SealedRecipient(NamedTuple):
    """One recipient account of a multi-recipient message, with the devices to deliver to."""

    service_id: ServiceIdLike
    devices: Sequence[tuple[int, int]]
    """``(device id, registration id)`` pairs."""
    identity_key: PublicKey


def _fixed_width(value: ServiceIdLike) -> bytes:
    """The 17-byte form of ``value``; ValueError if it names no ServiceId."""
    if isinstance(value, bytes):
        if len(value) != SERVICE_ID_FIXED_WIDTH_LENGTH or value[0] not in (ACI_KIND, PNI_KIND):
            raise ValueError("a fixed-width ServiceId is a kind byte (0 or 1) and 16 UUID bytes")
        return value
    name = value.name if isinstance(value, ProtocolAddress) else value
    fixed = service_id_fixed_width(name)
    if fixed is None:
        raise ValueError("multi-recipient sealed sender needs ServiceIds (a UUID, or PNI: and a UUID)")
    return fixed


def service_id_string(fixed_width: bytes) -> str:
    """The ServiceId string (``<uuid>`` or ``PNI:<uuid>``) of a 17-byte fixed-width ServiceId."""
    text = str(uuid.UUID(bytes=fixed_width[1:]))
    return "PNI:" + text if fixed_width[0] == PNI_KIND else text


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
        service_id = _fixed_width(service_id_value)
        if service_id in seen:
            raise ValueError(f"recipient {service_id_string(service_id)} listed twice")
        seen.add(service_id)
        if not devices:
            raise ValueError(f"recipient {service_id_string(service_id)} has no devices")
        out += service_id
        for i, (device_id, registration_id) in enumerate(devices):
            if not 1 <= device_id <= MAX_DEVICE_ID:
                raise ValueError(f"device id {device_id} out of range")
            if not 0 <= registration_id <= MAX_REGISTRATION_ID:
                raise ValueError(f"registration id {registration_id} is not 14-bit")
            more = _HAS_MORE if i + 1 < len(devices) else 0
            out.append(device_id)
            out += (registration_id | more).to_bytes(2, "big")
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
        service_id = _fixed_width(excluded_value)
        if service_id in seen:
            raise ValueError(f"recipient {service_id_string(service_id)} listed twice")
        seen.add(service_id)
        out += service_id + b"\x00"
    out += ephemeral.public.raw
    out += ciphertext
    return bytes(out)


@dataclass(frozen=True, slots=True)
class SentRecipient:
    """One account in a sent form: its devices and its 48-byte key share (empty if excluded)."""

    service_id: bytes
    """17-byte fixed width (a 0x22 sent form's raw UUIDs are read as ACIs)."""
    devices: tuple[tuple[int, int], ...]
    c_and_at: bytes

    @property
    def excluded(self) -> bool:
        return not self.devices


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A parsed sent form: what the relay needs to fan a message out, and nothing it can read."""

    version: int
    recipients: tuple[SentRecipient, ...]
    shared_bytes: bytes
    """``E.pub ‖ ciphertext``, identical in every recipient's received form."""

    @classmethod
    def parse(cls, data: bytes) -> SentMessage:
        """Parse strictly; raises DecodeError only.

        Refused, beyond truncation: an unknown version or ServiceId kind, a device id outside
        1..127, a registration id with bit 14 set, a 0 device after real ones, a recipient both
        excluded and included, two entries for one account with different key shares, and
        fewer than 48 bytes (E.pub and the GCM-SIV tag) after the recipients. Two entries for
        one account with the same share are merged, as libsignal does.
        """
        if not data:
            raise DecodeError("empty sealed sender v2 message")
        version = data[0]
        if version not in (UUID_VERSION, SERVICE_ID_VERSION):
            raise DecodeError(f"unknown sealed sender v2 sent-form version {version:#04x}")
        count, pos = pb.read_varint(data, 1)
        if count > _U32:
            raise DecodeError("recipient count does not fit in 32 bits")
        n = len(data)
        id_length = _UUID_LENGTH if version == UUID_VERSION else SERVICE_ID_FIXED_WIDTH_LENGTH
        by_id: dict[bytes, SentRecipient] = {}
        for _ in range(count):
            if pos + id_length > n:
                raise DecodeError("truncated recipient ServiceId")
            service_id = bytes(data[pos : pos + id_length])
            pos += id_length
            if version == UUID_VERSION:
                service_id = bytes((ACI_KIND,)) + service_id
            elif service_id[0] not in (ACI_KIND, PNI_KIND):
                raise DecodeError(f"unknown ServiceId kind {service_id[0]}")
            devices: list[tuple[int, int]] = []
            while True:
                if pos >= n:
                    raise DecodeError("truncated device list")
                device_id = data[pos]
                pos += 1
                if device_id == 0:
                    if devices:
                        raise DecodeError("device id 0 inside a device list")
                    break
                if device_id > MAX_DEVICE_ID:
                    raise DecodeError(f"device id {device_id} out of range")
                if pos + 2 > n:
                    raise DecodeError("truncated registration id")
                word = int.from_bytes(data[pos : pos + 2], "big")
                pos += 2
                registration_id = word & ~_HAS_MORE
                if registration_id > MAX_REGISTRATION_ID:
                    raise DecodeError("registration id is not 14-bit")
                devices.append((device_id, registration_id))
                if not word & _HAS_MORE:
                    break
            c_and_at = b""
            if devices:
                share = MESSAGE_KEY_LENGTH + AUTH_TAG_LENGTH
                if pos + share > n:
                    raise DecodeError("truncated key share")
                c_and_at = bytes(data[pos : pos + share])
                pos += share
            previous = by_id.get(service_id)
            if previous is None:
                by_id[service_id] = SentRecipient(service_id, tuple(devices), c_and_at)
                continue
            if previous.excluded or not devices:
                raise DecodeError("a recipient is both excluded and included")
            if previous.c_and_at != c_and_at:
                raise DecodeError("a recipient is listed twice with different key shares")
            by_id[service_id] = SentRecipient(service_id, previous.devices + tuple(devices), c_and_at)
        if n - pos < RAW_PUBLIC_KEY_LENGTH + GCM_SIV_TAG_LENGTH:
            raise DecodeError("missing ephemeral key or ciphertext")
        return cls(version, tuple(by_id.values()), bytes(data[pos:]))

    def recipient(self, which: int | ServiceIdLike) -> SentRecipient:
        """A recipient by position (in the order parsed) or by ServiceId; else KeyError/IndexError."""
        if isinstance(which, int):
            return self.recipients[which]
        wanted = _fixed_width(which)
        for recipient in self.recipients:
            if recipient.service_id == wanted:
                return recipient
        raise KeyError(service_id_string(wanted))

    def received_message_for(self, which: int | ServiceIdLike) -> bytes:
        """The received form for one recipient: ``0x22 ‖ C ‖ AT ‖ E.pub ‖ ciphertext``.

        An excluded recipient has no share to receive; asking for one is ValueError.
        """
        recipient = self.recipient(which)
        if recipient.excluded:
            raise ValueError(f"recipient {service_id_string(recipient.service_id)} was excluded")
        return bytes((RECEIVED_VERSION,)) + recipient.c_and_at + self.shared_bytes

    def __repr__(self) -> str:
        return (
            f"SentMessage(version={self.version:#04x}, recipients={len(self.recipients)}, "
            f"shared=<{len(self.shared_bytes)} bytes>)"
        )


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


def open_v2(our_identity: KeyPair, data: bytes) -> tuple[UnidentifiedSenderMessageContent, PublicKey]:
    """Decrypt a received form; return the USMC and the sender identity key its tag proved.

    Every failure (framing, a re-derived ephemeral key that does not match, the AEAD, a malformed
    USMC, an authentication tag that does not match the certificate's key) is
    :class:`DecryptionError`. The certificate chain itself is not checked here.
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
        raise DecryptionError
    return content, sender_key
