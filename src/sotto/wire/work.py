"""Proof of work for anonymous creations (relay-protocol §8): the challenge's bytes, the hash a
solution must meet, and the solver. Pure: no clock, no I/O; the relay's side (issuing, checking
the tag, remembering spent challenges) is :mod:`sotto.server.challenge`.

A challenge is opaque to the client except for its difficulty::

    version (1) ‖ purpose (1) ‖ difficulty in bits (1) ‖ issued, unix ms (8, big-endian)
      ‖ salt (16, random) ‖ tag (16: HMAC-SHA256 under the relay's challenge key, truncated)

A solution is an 8-byte nonce such that ``SHA-256(context ‖ 0x00 ‖ challenge ‖ nonce)`` starts
with ``difficulty`` zero bits. It travels as ``Sotto-Work: <challenge>.<nonce>`` (base64url).
Checking one costs one SHA-256; finding one costs ``2^difficulty`` of them on average.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from sotto.errors import DecodeError
from sotto.wire import b64

__all__ = [
    "CHALLENGE_LENGTH",
    "MAX_DIFFICULTY",
    "NONCE_LENGTH",
    "WORK_HEADER",
    "Challenge",
    "Purpose",
    "decode_header",
    "encode_header",
    "meets",
    "solve",
    "solve_range",
]

VERSION = 1
CONTEXT = b"sotto-work-v1\x00"
WORK_HEADER = "sotto-work"
SALT_LENGTH = 16
TAG_LENGTH = 16
NONCE_LENGTH = 8
MAX_DIFFICULTY = 64
"""Bits a challenge may ask for at most (the check reads the digest's first 8 bytes)."""

_FIELDS = struct.Struct(">BBBQ")
SIGNED_LENGTH = _FIELDS.size + SALT_LENGTH
CHALLENGE_LENGTH = SIGNED_LENGTH + TAG_LENGTH


class Purpose:
    """What a challenge is good for: a solution for one call opens no other."""

    ACCOUNT = 1
    """``POST /v1/accounts``."""
    MAILBOX = 2
    """``POST /v1/mailboxes``."""


@dataclass(frozen=True, slots=True)
class Challenge:
    purpose: int
    difficulty: int
    issued_ms: int
    salt: bytes
    tag: bytes

    def signed_bytes(self) -> bytes:
        """What the tag covers: every field before it."""
        return _FIELDS.pack(VERSION, self.purpose, self.difficulty, self.issued_ms) + self.salt

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.tag

    @classmethod
    def from_bytes(cls, data: bytes) -> Challenge:
        """Parse; DecodeError for a wrong length, version or difficulty (the tag is not checked)."""
        if len(data) != CHALLENGE_LENGTH:
            raise DecodeError(f"a challenge is {CHALLENGE_LENGTH} bytes")
        version, purpose, difficulty, issued_ms = _FIELDS.unpack_from(data)
        if version != VERSION:
            raise DecodeError(f"unknown challenge version {version}")
        if difficulty > MAX_DIFFICULTY:
            raise DecodeError(f"a challenge asks for at most {MAX_DIFFICULTY} bits")
        salt = data[_FIELDS.size : SIGNED_LENGTH]
        return cls(purpose, difficulty, issued_ms, salt, data[SIGNED_LENGTH:])


def _prefix(challenge: bytes) -> hashlib._Hash:
    return hashlib.sha256(CONTEXT + challenge)


def meets(challenge: bytes, nonce: bytes, difficulty: int) -> bool:
    """Whether ``nonce`` solves ``challenge`` at ``difficulty`` bits: one SHA-256."""
    if len(nonce) != NONCE_LENGTH or not 0 <= difficulty <= MAX_DIFFICULTY:
        return False
    digest = _prefix(challenge)
    digest.update(nonce)
    return int.from_bytes(digest.digest()[:8], "big") < 1 << (64 - difficulty)


def solve(challenge: bytes, difficulty: int) -> bytes:
    """A nonce that meets ``difficulty``: about ``2^difficulty`` hashes (a geometric count, so
    some searches take several times longer). Synchronous and CPU-bound: run it off an event
    loop's thread (:func:`sotto.client.work.solve` does, in slices it can stop between)."""
    start = 0
    while True:
        found = solve_range(challenge, difficulty, start, SLICE)
        if found is not None:
            return found
        start += SLICE


SLICE = 1 << 16
"""Nonces one :func:`solve_range` call tries by default: about 0.1 s of Python."""


def solve_range(challenge: bytes, difficulty: int, start: int, count: int) -> bytes | None:
    """The first nonce in ``[start, start + count)`` that meets ``difficulty``, or None."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 0 to {MAX_DIFFICULTY} bits")
    prefix = _prefix(challenge)
    bound = 1 << (64 - difficulty)  # the digest's first 8 bytes, read as a number, stay below it
    pack = _NONCE.pack
    for counter in range(start, min(start + count, 1 << 64)):
        nonce = pack(counter)
        digest = prefix.copy()
        digest.update(nonce)
        if int.from_bytes(digest.digest()[:8], "big") < bound:
            return nonce
    return None


_NONCE = struct.Struct(">Q")


def encode_header(challenge: bytes, nonce: bytes) -> str:
    """The ``Sotto-Work`` header that presents ``nonce`` for ``challenge``."""
    return f"{b64.encode(challenge)}.{b64.encode(nonce)}"


def decode_header(value: str) -> tuple[bytes, bytes]:
    """``(challenge, nonce)`` from a ``Sotto-Work`` header; DecodeError for anything else."""
    challenge, dot, nonce = value.partition(".")
    if not dot:
        raise DecodeError("expected <challenge>.<nonce>")
    return b64.decode(challenge, length=CHALLENGE_LENGTH), b64.decode(nonce, length=NONCE_LENGTH)
