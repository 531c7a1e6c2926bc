"""Argon2id: a key-encryption key from a passphrase, slow and memory-hard on purpose.

The parameters travel with the salt (a store keeps them next to its wrapped data key), so they
can grow over time without breaking old files. A file's parameters are checked against caps
before use: a tampered header must not make us allocate gigabytes or spin for minutes.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import ClassVar

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

SALT_LENGTH = 16
KEY_LENGTH = 32

MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_ITERATIONS = 64
MAX_LANES = 64


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost: passes over memory, memory in KiB, parallel lanes."""

    iterations: int
    memory_kib: int
    lanes: int

    INTERACTIVE: ClassVar[Argon2Params]
    """~0.3 s on a 2-core x86 VM (4 passes over 128 MiB, 4 lanes): above RFC 9106's second choice."""
    TESTING: ClassVar[Argon2Params]
    """Milliseconds: for tests only, never for a real store."""

    def check(self) -> None:
        """ValueError unless the parameters are within what Argon2 allows and what we will spend."""
        if not 1 <= self.lanes <= MAX_LANES:
            raise ValueError("Argon2 lanes out of range")
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise ValueError("Argon2 iterations out of range")
        if not 8 * self.lanes <= self.memory_kib <= MAX_MEMORY_KIB:
            raise ValueError("Argon2 memory out of range")


Argon2Params.INTERACTIVE = Argon2Params(iterations=4, memory_kib=128 * 1024, lanes=4)
Argon2Params.TESTING = Argon2Params(iterations=1, memory_kib=64, lanes=1)


def normalize(passphrase: str) -> bytes:
    """NFC then UTF-8, so the same passphrase typed on another keyboard or OS derives the same key."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def derive_key(passphrase: str, salt: bytes, params: Argon2Params, length: int = KEY_LENGTH) -> bytes:
    """The Argon2id key for ``passphrase``; ValueError for a short salt or out-of-range parameters."""
    if len(salt) < SALT_LENGTH:
        raise ValueError(f"salt must be at least {SALT_LENGTH} bytes")
    params.check()
    kdf = Argon2id(
        salt=bytes(salt),
        length=length,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(normalize(passphrase))
