"""The 1:1 protocol's wire messages: SignalMessage (type 2) and PreKeySignalMessage (type 3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from hmac import compare_digest
from typing import Final, NamedTuple

from sotto.crypto.kdf import hmac_sha256
from sotto.crypto.kem import CIPHERTEXT_LENGTH as KEM_CIPHERTEXT_LENGTH
from sotto.crypto.kem import KYBER1024_TYPE
from sotto.crypto.keys import DJB_TYPE, PUBLIC_KEY_LENGTH, PublicKey
from sotto.errors import DecodeError, InvalidKeyError, UnsupportedVersionError
from sotto.protocol.protobuf import (
    LENGTH_DELIMITED,
    VARINT,
    Fields,
    bytes_field,
    decode_fields,
    encode_varint,
    get_bytes,
    get_uint,
    read_varint,
    uint_field,
)
from sotto.protocol.values import new_tuple

BytesLike = bytes | bytearray | memoryview
"""What the decoders take (they copy it to bytes first). Spelled out rather than ``bytes``: in the
mypyc-compiled build an argument's annotation is checked on entry, and a bytearray is not bytes."""


class CiphertextMessageType(enum.IntEnum):
    """libsignal's ``CiphertextMessageType``: the number an envelope carries to say what is inside."""

    WHISPER = 2
    PREKEY = 3
    SENDER_KEY = 7
    PLAINTEXT = 8


CURRENT_VERSION: Final = 4
"""Session version of PQXDH sessions; the version byte is ``(version << 4) | CURRENT_VERSION``."""
PRE_KYBER_VERSION: Final = 3
"""X3DH sessions: no longer accepted (libsignal refuses them too)."""
VERSION_BYTE: Final = (CURRENT_VERSION << 4) | CURRENT_VERSION
_VERSION_PREFIX: Final = bytes((VERSION_BYTE,))
MAC_LENGTH: Final = 8
_UINT32: Final = 32


class CiphertextMessage(NamedTuple):
    """What encryption hands to the transport: the message type and its serialized bytes."""

    type: CiphertextMessageType
    body: bytes


def _check_version(version_byte: int) -> int:
    version = version_byte >> 4
    if version < PRE_KYBER_VERSION:
        raise UnsupportedVersionError(f"legacy ciphertext version {version}")
    if version == PRE_KYBER_VERSION:
        raise UnsupportedVersionError("X3DH (version 3) sessions are no longer supported")
    if version > CURRENT_VERSION:
        raise UnsupportedVersionError(f"unrecognized ciphertext version {version}")
    return version


def _public_key(data: bytes, what: str) -> PublicKey:
    try:
        return PublicKey.from_bytes(data)
    except InvalidKeyError:
        raise DecodeError(f"invalid {what}") from None


def compute_mac(
    sender_identity: PublicKey, receiver_identity: PublicKey, mac_key: bytes, content: bytes
) -> bytes:
    """HMAC-SHA256(mac key, IK_sender ‖ IK_receiver ‖ version ‖ protobuf), truncated to 8 bytes."""
    return hmac_sha256(mac_key, sender_identity.serialized + receiver_identity.serialized + content)[
        :MAC_LENGTH
    ]


def encode_signal_message(  # noqa: PLR0917 (positional: it runs for every message sent)
    mac_key: bytes,
    sender_identity: PublicKey,
    receiver_identity: PublicKey,
    ratchet_key: PublicKey,
    counter: int,
    previous_counter: int,
    ciphertext: bytes,
    pq_ratchet: bytes,
    addresses: bytes | None,
) -> bytes:
    """A SignalMessage's bytes, MAC included: what :meth:`SignalMessage.create` holds as ``serialized``.

    The ratchet sends these bytes without building a :class:`SignalMessage` (one per message
    sent), so the arguments are positional and the protobuf is written directly.
    """
    body = b"".join(
        (
            _VERSION_PREFIX,
            _RATCHET_KEY_FIELD,
            ratchet_key.serialized,
            _COUNTER_FIELD,
            encode_varint(counter),
            _PREVIOUS_COUNTER_FIELD,
            encode_varint(previous_counter),
            _CIPHERTEXT_FIELD,
            encode_varint(len(ciphertext)),
            ciphertext,
            _PQ_RATCHET_FIELD + encode_varint(len(pq_ratchet)) + pq_ratchet if pq_ratchet else b"",
        )
    )
    if addresses is not None:
        body += _ADDRESSES_FIELD + encode_varint(len(addresses)) + addresses
    return body + compute_mac(sender_identity, receiver_identity, mac_key, body)


_SignalMessageFields = tuple[PublicKey, int, int, bytes, bytes, "bytes | None"]
"""ratchet key, counter, previous counter, ciphertext, pq_ratchet, addresses."""

# SignalMessage's field keys (number << 3 | wire type), in the order every encoder writes them.
# Each is one byte: the encoder copies it, the decoder compares it with ``body[pos]``.
_RATCHET_KEY_FIELD: Final = bytes((1 << 3 | LENGTH_DELIMITED, PUBLIC_KEY_LENGTH))
"""Field 1's key and length: the ratchet key is always 33 bytes."""
_COUNTER_TAG: Final = 2 << 3 | VARINT
_PREVIOUS_COUNTER_TAG: Final = 3 << 3 | VARINT
_CIPHERTEXT_TAG: Final = 4 << 3 | LENGTH_DELIMITED
_PQ_RATCHET_TAG: Final = 5 << 3 | LENGTH_DELIMITED
_ADDRESSES_TAG: Final = 6 << 3 | LENGTH_DELIMITED
_COUNTER_FIELD: Final = bytes((_COUNTER_TAG,))
_PREVIOUS_COUNTER_FIELD: Final = bytes((_PREVIOUS_COUNTER_TAG,))
_CIPHERTEXT_FIELD: Final = bytes((_CIPHERTEXT_TAG,))
_PQ_RATCHET_FIELD: Final = bytes((_PQ_RATCHET_TAG,))
_ADDRESSES_FIELD: Final = bytes((_ADDRESSES_TAG,))
_USUAL_START: Final = _RATCHET_KEY_FIELD + bytes((DJB_TYPE,))
"""How a body in the usual layout starts: field 1's key and length, then the key's type byte."""
_KEY_START: Final = 1 + len(_RATCHET_KEY_FIELD)
"""Where the ratchet key starts in a SignalMessage's bytes (after the version byte)."""
_KEY_END: Final = _KEY_START + PUBLIC_KEY_LENGTH


class SignalMessage(NamedTuple):
    """Type 2: ``0x44`` ‖ protobuf ‖ 8-byte MAC. ``serialized`` is the exact bytes (the MAC covers them).

    A ``NamedTuple`` (immutable, and cheaper to build than a frozen dataclass): one is built for
    every message sent and every message received.
    """

    version: int
    ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes
    pq_ratchet: bytes
    addresses: bytes | None
    serialized: bytes

    @classmethod
    def create(
        cls,
        *,
        mac_key: bytes,
        sender_identity: PublicKey,
        receiver_identity: PublicKey,
        ratchet_key: PublicKey,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        pq_ratchet: bytes,
        addresses: bytes | None = None,
    ) -> SignalMessage:
        serialized = encode_signal_message(
            mac_key,
            sender_identity,
            receiver_identity,
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            pq_ratchet,
            addresses,
        )
        return cls(
            CURRENT_VERSION,
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            pq_ratchet,
            addresses,
            serialized,
        )

    @classmethod
    def decode(cls, data: BytesLike) -> SignalMessage:
        """Parse; raises DecodeError (or UnsupportedVersionError for a refused version) and nothing else."""
        data = bytes(data)
        if len(data) < MAC_LENGTH + 1:
            raise DecodeError("SignalMessage too short")
        version = CURRENT_VERSION if data[0] == VERSION_BYTE else _check_version(data[0])
        values = _decode_usual_layout(data) or _decode_any_layout(data[1:-MAC_LENGTH])
        return new_tuple(cls, (version, *values, data))

    @property
    def mac(self) -> bytes:
        return self.serialized[-MAC_LENGTH:]

    def verify_mac(self, sender_identity: PublicKey, receiver_identity: PublicKey, mac_key: bytes) -> bool:
        serialized = self.serialized
        expected = compute_mac(sender_identity, receiver_identity, mac_key, serialized[:-MAC_LENGTH])
        # compare_digest itself, not bytes_equal: both are bytes here, and this runs per message.
        return compare_digest(expected, serialized[-MAC_LENGTH:])

    def __repr__(self) -> str:
        size = len(self.serialized)
        return f"SignalMessage(counter={self.counter}, ratchet_key={self.ratchet_key!r}, size={size})"


def _decode_usual_layout(data: bytes) -> _SignalMessageFields | None:
    """The layout Sotto and libsignal write: fields 1-4 (and 5, 6 if present) once each, in order.

    Reads the protobuf in place, between the version byte and the MAC. Returns None for
    anything else, leaving it to :func:`_decode_any_layout`. It reads the bytes exactly as the
    general parser does up to the first difference, so it accepts nothing that parser refuses
    and refuses (with DecodeError) only what it refuses. A varint that runs past the protobuf
    reads into the MAC (never past the data), and the position checks then hand over.
    """
    n = len(data) - MAC_LENGTH
    if n <= _KEY_END or not data.startswith(_USUAL_START, 1) or data[_KEY_END] != _COUNTER_TAG:
        return None
    counter, pos = read_varint(data, _KEY_END + 1)
    if pos >= n or data[pos] != _PREVIOUS_COUNTER_TAG:
        return None
    previous_counter, pos = read_varint(data, pos + 1)
    if (counter | previous_counter) >> _UINT32 or pos >= n or data[pos] != _CIPHERTEXT_TAG:
        return None
    ciphertext, pos = _read_bytes(data, pos + 1, n)
    pq_ratchet = b""
    if pos < n and data[pos] == _PQ_RATCHET_TAG:
        pq_ratchet, pos = _read_bytes(data, pos + 1, n)
    addresses = None
    if pos < n and data[pos] == _ADDRESSES_TAG:
        addresses, pos = _read_bytes(data, pos + 1, n)
    if pos != n:
        return None
    ratchet_key = PublicKey.from_bytes(data[_KEY_START:_KEY_END])
    return ratchet_key, counter, previous_counter, ciphertext, pq_ratchet, addresses


def _read_bytes(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """A length-delimited field's value at ``pos`` (its length varint) that must end by ``end``."""
    length, pos = read_varint(data, pos)
    stop = pos + length
    if stop > end:
        raise DecodeError("length-delimited field runs past the end")
    return data[pos:stop], stop


def _decode_any_layout(body: bytes) -> _SignalMessageFields:
    """Any proto2 encoding of the fields: unknown fields skipped, a repeated field's last value kept."""
    fields = decode_fields(body)
    ratchet_key = _public_key(_required_bytes(fields, 1), "ratchet key")
    counter = _required_uint(fields, 2)
    previous_counter = get_uint(fields, 3, required=False) or 0
    ciphertext = _required_bytes(fields, 4)
    pq_ratchet = get_bytes(fields, 5, required=False) or b""
    addresses = get_bytes(fields, 6, required=False)
    return ratchet_key, counter, previous_counter, ciphertext, pq_ratchet, addresses


def _required_bytes(fields: Fields, number: int) -> bytes:
    value = get_bytes(fields, number)
    assert value is not None  # required=True raised otherwise
    return value


def _required_uint(fields: Fields, number: int) -> int:
    value = get_uint(fields, number, bits=_UINT32)
    assert value is not None
    return value


@dataclass(frozen=True, slots=True)
class PreKeySignalMessage:
    """Type 3: ``0x44`` ‖ protobuf; carries the PQXDH values and the first SignalMessage.

    It has no MAC of its own: PQXDH and the inner message's MAC bind it. The prekey ids are
    exposed so the caller can look the records up before decrypting.
    """

    version: int
    registration_id: int
    pre_key_id: int | None
    signed_pre_key_id: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes
    base_key: PublicKey
    identity_key: PublicKey
    message: SignalMessage
    serialized: bytes

    @classmethod
    def create(
        cls,
        *,
        registration_id: int,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        kyber_pre_key_id: int,
        kyber_ciphertext: bytes,
        base_key: PublicKey,
        identity_key: PublicKey,
        message: SignalMessage,
    ) -> PreKeySignalMessage:
        body = bytes((VERSION_BYTE,))
        if pre_key_id is not None:
            body += uint_field(1, pre_key_id)
        body += (
            bytes_field(2, base_key.to_bytes())
            + bytes_field(3, identity_key.to_bytes())
            + bytes_field(4, message.serialized)
            + uint_field(5, registration_id)
            + uint_field(6, signed_pre_key_id)
            + uint_field(7, kyber_pre_key_id)
            + bytes_field(8, kyber_ciphertext)
        )
        return cls(
            CURRENT_VERSION,
            registration_id,
            pre_key_id,
            signed_pre_key_id,
            kyber_pre_key_id,
            kyber_ciphertext,
            base_key,
            identity_key,
            message,
            body,
        )

    @classmethod
    def decode(cls, data: BytesLike) -> PreKeySignalMessage:
        """Parse; raises DecodeError (or UnsupportedVersionError for a refused version) and nothing else.

        A version-4 message without both Kyber fields is refused, as libsignal does.
        """
        data = bytes(data)
        if not data:
            raise DecodeError("empty PreKeySignalMessage")
        version = _check_version(data[0])
        fields = decode_fields(data[1:])
        base_key = _public_key(_required_bytes(fields, 2), "base key")
        identity_key = _public_key(_required_bytes(fields, 3), "identity key")
        inner = _required_bytes(fields, 4)
        signed_pre_key_id = _required_uint(fields, 6)
        kyber_pre_key_id = get_uint(fields, 7, required=False)
        kyber_ciphertext = get_bytes(fields, 8, required=False)
        if kyber_pre_key_id is None or kyber_ciphertext is None:
            raise DecodeError("Kyber pre key must be present for this session version")
        if len(kyber_ciphertext) != KEM_CIPHERTEXT_LENGTH or kyber_ciphertext[0] != KYBER1024_TYPE:
            raise DecodeError("Kyber ciphertext must be 0x08 ‖ 1568 bytes")
        return cls(
            version,
            get_uint(fields, 5, required=False) or 0,
            get_uint(fields, 1, required=False),
            signed_pre_key_id,
            kyber_pre_key_id,
            kyber_ciphertext,
            base_key,
            identity_key,
            SignalMessage.decode(inner),
            data,
        )

    def __repr__(self) -> str:
        return (
            f"PreKeySignalMessage(pre_key_id={self.pre_key_id}, signed_pre_key_id={self.signed_pre_key_id}, "
            f"kyber_pre_key_id={self.kyber_pre_key_id}, base_key={self.base_key!r})"
        )
