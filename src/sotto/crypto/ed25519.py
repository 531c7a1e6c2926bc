"""Ed25519 keys for mailbox authentication (a mailbox key signs drain challenges and requests).

These are ordinary Ed25519 keys from `cryptography`, separate from the Curve25519 identity keys:
a mailbox key must not be linkable to the account that owns the mailbox.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sotto.crypto.random import Rng
from sotto.errors import InvalidKeyError, InvalidSignatureError

PUBLIC_KEY_LENGTH = 32
SEED_LENGTH = 32
SIGNATURE_LENGTH = 64


class SigningPublicKey:
    """An Ed25519 public key (32 bytes)."""

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != PUBLIC_KEY_LENGTH:
            raise InvalidKeyError(f"Ed25519 public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(raw)}")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise InvalidKeyError("not an Ed25519 public key") from None
        self.raw = bytes(raw)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Return if valid, else raise InvalidSignatureError."""
        if len(signature) != SIGNATURE_LENGTH:
            raise InvalidSignatureError("Ed25519 signature must be 64 bytes")
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise InvalidSignatureError("Ed25519 signature did not verify") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningPublicKey) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"SigningPublicKey({self.raw.hex()[:16]}…)"


class SigningKey:
    """An Ed25519 private key held as its 32-byte seed; the repr hides it."""

    __slots__ = ("_key", "_seed", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LENGTH:
            raise InvalidKeyError(f"Ed25519 seed must be {SEED_LENGTH} bytes")
        self._seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self.public = SigningPublicKey(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, rng: Rng) -> SigningKey:
        return cls(rng(SEED_LENGTH))

    def seed(self) -> bytes:
        return self._seed

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public!r}, <secret>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("signing keys are not picklable; serialize them on purpose with seed()")
