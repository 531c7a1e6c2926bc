"""The two wire messages of sender keys, byte-compatible with libsignal.

``SenderKeyDistributionMessage`` (SKDM), sent to each member inside a 1:1 session::

    0x33 ‖ protobuf {1 distribution uuid (16 B), 2 chain id, 3 iteration,
                     4 chain key (32 B), 5 signing public key (33 B)}

``SenderKeyMessage`` (SKM), sent once to the whole group::

    0x33 ‖ protobuf {1 distribution uuid, 2 chain id, 3 iteration, 4 ciphertext}
         ‖ 64-byte XEdDSA signature over every preceding byte

The version byte's high nibble is the message version (3, the only sender-key version); the
low nibble is the sender's current version and is ignored, as libsignal does.

Decoder contract: ``decode`` raises :class:`~sotto.errors.DecodeError` on bytes that do not
parse, :class:`~sotto.errors.UnsupportedVersionError` on bytes that parse but carry another
version, and nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sotto.crypto import xeddsa
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, InvalidKeyError, UnsupportedVersionError
from sotto.protocol.protobuf import Fields, bytes_field, decode_fields, get_bytes, get_uint, uint_field

SENDER_KEY_VERSION = 3
VERSION_BYTE = (SENDER_KEY_VERSION << 4) | SENDER_KEY_VERSION
CHAIN_KEY_LENGTH = 32
SIGNATURE_LENGTH = xeddsa.SIGNATURE_LENGTH
_UUID_LENGTH = 16
# libsignal refuses an SKDM shorter than a version byte plus a key and a chain key.
_MIN_SKDM_LENGTH = 1 + 32 + 32


def _parse_body(body: bytes, version_byte: int) -> Fields:
    """Parse the protobuf, then judge the version: only well-formed bytes earn a version error."""
    fields = decode_fields(body)
    version = version_byte >> 4
    if version != SENDER_KEY_VERSION:
        raise UnsupportedVersionError(f"sender-key message version {version}, expected {SENDER_KEY_VERSION}")
    return fields


def _bytes(fields: Fields, number: int) -> bytes:
    value = get_bytes(fields, number)
    if value is None:  # required fields raise inside get_bytes; this only narrows the type
        raise DecodeError(f"missing field {number}")
    return bytes(value)


def _uint32(fields: Fields, number: int) -> int:
    value = get_uint(fields, number)
    if value is None:
        raise DecodeError(f"missing field {number}")
    return value


def _distribution_id(fields: Fields) -> uuid.UUID:
    raw = _bytes(fields, 1)
    if len(raw) != _UUID_LENGTH:
        raise DecodeError("distribution id must be 16 bytes")
    return uuid.UUID(bytes=raw)


@dataclass(frozen=True, slots=True)
class SenderKeyDistributionMessage:
    """Everything a group member needs to read one sender's chain: it carries the chain key."""

    distribution_id: uuid.UUID
    chain_id: int
    iteration: int
    chain_key: bytes
    signing_key: PublicKey

    def encode(self) -> bytes:
        return bytes((VERSION_BYTE,)) + (
            bytes_field(1, self.distribution_id.bytes)
            + uint_field(2, self.chain_id)
            + uint_field(3, self.iteration)
            + bytes_field(4, self.chain_key)
            + bytes_field(5, self.signing_key.to_bytes())
        )

    @classmethod
    def decode(cls, data: bytes) -> SenderKeyDistributionMessage:
        if len(data) < _MIN_SKDM_LENGTH:
            raise DecodeError("sender key distribution message too short")
        fields = _parse_body(data[1:], data[0])
        chain_key = _bytes(fields, 4)
        signing_key = _bytes(fields, 5)
        if len(chain_key) != CHAIN_KEY_LENGTH:
            raise DecodeError("chain key must be 32 bytes")
        try:
            public = PublicKey.from_bytes(signing_key)
        except InvalidKeyError as e:
            raise DecodeError(f"bad signing key: {e}") from None
        return cls(
            distribution_id=_distribution_id(fields),
            chain_id=_uint32(fields, 2),
            iteration=_uint32(fields, 3),
            chain_key=chain_key,
            signing_key=public,
        )

    def __repr__(self) -> str:
        return (
            f"SenderKeyDistributionMessage(distribution_id={self.distribution_id}, chain_id={self.chain_id}, "
            f"iteration={self.iteration}, chain_key=<secret>, signing_key={self.signing_key!r})"
        )


@dataclass(frozen=True, slots=True)
class SenderKeyMessage:
    """One signed group message. ``serialized`` is kept so the signature covers the bytes as sent."""

    distribution_id: uuid.UUID
    chain_id: int
    iteration: int
    ciphertext: bytes
    serialized: bytes

    @classmethod
    def create(
        cls,
        *,
        distribution_id: uuid.UUID,
        chain_id: int,
        iteration: int,
        ciphertext: bytes,
        signing_key: PrivateKey,
        rng: Rng,
    ) -> SenderKeyMessage:
        body = bytes((VERSION_BYTE,)) + (
            bytes_field(1, distribution_id.bytes)
            + uint_field(2, chain_id)
            + uint_field(3, iteration)
            + bytes_field(4, ciphertext)
        )
        signature = xeddsa.sign(signing_key, body, rng)
        return cls(distribution_id, chain_id, iteration, ciphertext, body + signature)

    def encode(self) -> bytes:
        return self.serialized

    @classmethod
    def decode(cls, data: bytes) -> SenderKeyMessage:
        if len(data) < 1 + SIGNATURE_LENGTH:
            raise DecodeError("sender key message too short")
        fields = _parse_body(data[1:-SIGNATURE_LENGTH], data[0])
        return cls(
            distribution_id=_distribution_id(fields),
            chain_id=_uint32(fields, 2),
            iteration=_uint32(fields, 3),
            ciphertext=_bytes(fields, 4),
            serialized=bytes(data),
        )

    def verify_signature(self, signing_key: PublicKey) -> None:
        """Return if the sender's signing key signed these bytes, else raise InvalidSignatureError."""
        xeddsa.verify(signing_key, self.serialized[:-SIGNATURE_LENGTH], self.serialized[-SIGNATURE_LENGTH:])

    def __repr__(self) -> str:
        return (
            f"SenderKeyMessage(distribution_id={self.distribution_id}, chain_id={self.chain_id}, "
            f"iteration={self.iteration}, ciphertext=<{len(self.ciphertext)} bytes>)"
        )
