"""Curve25519 keys and libsignal's serialized form of them.

A public key travels as 33 bytes: the type byte ``0x05`` ("Djb") then the 32-byte X25519
u-coordinate. A private key is 32 bytes, clamped on load; the same clamped scalar is the
XEdDSA signing key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sotto.crypto.kdf import bytes_equal
from sotto.crypto.random import Rng
from sotto.errors import InvalidKeyError

DJB_TYPE = 0x05
PUBLIC_KEY_LENGTH = 33
RAW_KEY_LENGTH = 32


def clamp(scalar: bytes) -> bytes:
    b = bytearray(scalar)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


_DJB_PREFIX = bytes((DJB_TYPE,))


class PublicKey:
    """An X25519 public key.

    The serialized form is kept beside the raw one, as the ``serialized`` attribute (what
    ``to_bytes`` returns): every message's MAC covers both identity keys and carries the ratchet
    key, so the hot path reads it directly.
    """

    __slots__ = ("_key", "raw", "serialized")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != RAW_KEY_LENGTH:
            raise InvalidKeyError(f"X25519 public key must be {RAW_KEY_LENGTH} bytes, got {len(raw)}")
        self.raw = bytes(raw)
        self.serialized = _DJB_PREFIX + self.raw
        self._key: X25519PublicKey | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Parse the 33-byte serialized form; anything else is :class:`InvalidKeyError`."""
        if len(data) != PUBLIC_KEY_LENGTH:
            raise InvalidKeyError(f"serialized public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(data)}")
        if data[0] != DJB_TYPE:
            raise InvalidKeyError(f"unknown public key type {data[0]:#04x}")
        key = cls.__new__(cls)
        key.serialized = bytes(data)
        key.raw = key.serialized[1:]
        key._key = None
        return key

    def to_bytes(self) -> bytes:
        return self.serialized

    def x25519(self) -> X25519PublicKey:
        if self._key is None:
            self._key = X25519PublicKey.from_public_bytes(self.raw)
        return self._key

    def __eq__(self, other: object) -> bool:
        # Constant-time, as libsignal's PartialEq (ct_eq): protocol code compares keys with ==.
        return isinstance(other, PublicKey) and bytes_equal(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()[:16]}…)"


class PrivateKey:
    """An X25519 private key (clamped); its repr never shows key material."""

    __slots__ = ("_key", "_public", "_raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != RAW_KEY_LENGTH:
            raise InvalidKeyError(f"X25519 private key must be {RAW_KEY_LENGTH} bytes, got {len(raw)}")
        self._raw = clamp(raw)
        self._key = X25519PrivateKey.from_private_bytes(self._raw)
        self._public: PublicKey | None = None

    @classmethod
    def generate(cls, rng: Rng) -> PrivateKey:
        return cls(rng(RAW_KEY_LENGTH))

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        return cls(data)

    def to_bytes(self) -> bytes:
        return self._raw

    def public_key(self) -> PublicKey:
        if self._public is None:
            self._public = PublicKey(self._key.public_key().public_bytes_raw())
            self._public._key = self._key.public_key()
        return self._public

    def x25519(self) -> X25519PrivateKey:
        return self._key

    def __repr__(self) -> str:
        return "PrivateKey(<secret>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("private keys are not picklable; serialize them on purpose with to_bytes()")


class KeyPair:
    """A private key with its public key."""

    __slots__ = ("private", "public")

    def __init__(self, private: PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()

    @classmethod
    def generate(cls, rng: Rng) -> KeyPair:
        return cls(PrivateKey.generate(rng))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> KeyPair:
        return cls(PrivateKey(data))

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"
