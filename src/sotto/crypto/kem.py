"""Kyber1024 (round 3), as libsignal's PQXDH uses it, served by `cryptography`'s ML-KEM-1024.

Kyber r3 and ML-KEM share K-PKE and the hashes, so keys and ciphertexts are interchangeable.
Only the final secret differs: Kyber's is ``SHAKE-256(K̄ ‖ SHA3-256(c))[:32]`` where ``K̄`` is
what ML-KEM returns. On the wire every key and ciphertext carries the type byte ``0x08``.
A private key is kept as ML-KEM's 64-byte seed (libsignal keeps the expanded form, so private
keys cannot move between the two; the wire is unaffected).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem

from sotto.crypto.kdf import bytes_equal, sha3_256, shake256
from sotto.crypto.random import Rng
from sotto.errors import InvalidKeyError

KYBER1024_TYPE = 0x08
RAW_PUBLIC_KEY_LENGTH = 1568
RAW_CIPHERTEXT_LENGTH = 1568
PUBLIC_KEY_LENGTH = 1 + RAW_PUBLIC_KEY_LENGTH
CIPHERTEXT_LENGTH = 1 + RAW_CIPHERTEXT_LENGTH
SEED_LENGTH = 64
SHARED_SECRET_LENGTH = 32


def _kyber_secret(mlkem_secret: bytes, raw_ciphertext: bytes) -> bytes:
    return shake256(mlkem_secret + sha3_256(raw_ciphertext), SHARED_SECRET_LENGTH)


class KemPublicKey:
    """A Kyber1024 public key (serialized: ``0x08`` ‖ 1568 bytes).

    Checked when built: a key whose coefficients are not reduced mod q (FIPS 203's encapsulation
    key check) is :class:`InvalidKeyError` here, so a bad prekey is refused when it is decoded.
    """

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != RAW_PUBLIC_KEY_LENGTH:
            raise InvalidKeyError(
                f"Kyber1024 public key must be {RAW_PUBLIC_KEY_LENGTH} bytes, got {len(raw)}"
            )
        self.raw = bytes(raw)
        try:
            self._key: mlkem.MLKEM1024PublicKey | None = mlkem.MLKEM1024PublicKey.from_public_bytes(self.raw)
        except ValueError:
            raise InvalidKeyError("not a valid Kyber1024 public key") from None

    @classmethod
    def _derived(cls, raw: bytes) -> KemPublicKey:
        """A public key ML-KEM itself derived from a seed: valid, so not checked again; its
        ML-KEM object is built when something is first encapsulated to it."""
        key = cls.__new__(cls)
        key.raw = bytes(raw)
        key._key = None
        return key

    @classmethod
    def from_bytes(cls, data: bytes) -> KemPublicKey:
        if not data or data[0] != KYBER1024_TYPE:
            raise InvalidKeyError("expected a Kyber1024 (type 0x08) public key")
        if len(data) != PUBLIC_KEY_LENGTH:
            raise InvalidKeyError(f"Kyber1024 public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(data)}")
        return cls(data[1:])

    def to_bytes(self) -> bytes:
        return bytes((KYBER1024_TYPE,)) + self.raw

    def _mlkem(self) -> mlkem.MLKEM1024PublicKey:
        if self._key is None:
            try:
                self._key = mlkem.MLKEM1024PublicKey.from_public_bytes(self.raw)
            except ValueError:
                raise InvalidKeyError("not a valid Kyber1024 public key") from None
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KemPublicKey) and bytes_equal(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"KemPublicKey({self.raw[:8].hex()}…)"


class KemKeyPair:
    """A Kyber1024 key pair held as its 64-byte seed; the repr hides the seed.

    Only the seed is kept: the public key is derived from it when first asked for (and kept,
    its ML-KEM object built only when something is encapsulated to it), the private key each
    time something is decapsulated. A device holds many Kyber prekeys and uses each rarely;
    ML-KEM-1024's expanded keys are several KiB each."""

    __slots__ = ("_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LENGTH:
            raise InvalidKeyError(f"ML-KEM seed must be {SEED_LENGTH} bytes")
        self._seed = bytes(seed)
        self._public: KemPublicKey | None = None

    def _private(self) -> mlkem.MLKEM1024PrivateKey:
        return mlkem.MLKEM1024PrivateKey.from_seed_bytes(self._seed)

    @property
    def public(self) -> KemPublicKey:
        if self._public is None:
            self._public = KemPublicKey._derived(self._private().public_key().public_bytes_raw())
        return self._public

    @classmethod
    def generate(cls, rng: Rng) -> KemKeyPair:
        return cls(rng(SEED_LENGTH))

    @classmethod
    def from_seed(cls, seed: bytes) -> KemKeyPair:
        return cls(seed)

    def seed(self) -> bytes:
        return self._seed

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The 32-byte Kyber secret from a serialized (``0x08``-prefixed) ciphertext."""
        if not ciphertext or ciphertext[0] != KYBER1024_TYPE:
            raise InvalidKeyError("expected a Kyber1024 (type 0x08) ciphertext")
        if len(ciphertext) != CIPHERTEXT_LENGTH:
            raise InvalidKeyError(f"Kyber1024 ciphertext must be {CIPHERTEXT_LENGTH} bytes")
        raw = ciphertext[1:]
        return _kyber_secret(self._private().decapsulate(raw), raw)

    def __repr__(self) -> str:
        return f"KemKeyPair(public={self.public!r}, <secret>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("KEM key pairs are not picklable; serialize them on purpose with seed()")


def encapsulate(public: KemPublicKey) -> tuple[bytes, bytes]:
    """Return ``(shared_secret, serialized_ciphertext)`` for ``public``.

    `cryptography` draws the encapsulation randomness itself; it cannot be seeded.
    """
    mlkem_secret, raw = public._mlkem().encapsulate()
    return _kyber_secret(mlkem_secret, raw), bytes((KYBER1024_TYPE,)) + raw


def encapsulate_mlkem_secret_unsafe(public: KemPublicKey) -> tuple[bytes, bytes]:
    """Test hook: the raw ML-KEM secret without the Kyber step (a peer must reject it)."""
    mlkem_secret, raw = public._mlkem().encapsulate()
    return mlkem_secret, bytes((KYBER1024_TYPE,)) + raw
