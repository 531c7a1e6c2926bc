"""HKDF-SHA256, HMAC-SHA256, SHA-256, SHA-512, SHA3-256, SHAKE-256 and constant-time comparison."""

from __future__ import annotations

import hmac
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SHA256: Final = hashes.SHA256()
_SHA512: Final = hashes.SHA512()
_SHA3_256: Final = hashes.SHA3_256()


def hkdf_sha256(ikm: bytes, length: int, info: bytes, salt: bytes | None = None) -> bytes:
    """RFC 5869 HKDF with SHA-256; an absent salt means 32 zero bytes."""
    # Positional arguments: measurably cheaper than keywords, and this runs four times a message.
    return HKDF(_SHA256, length, salt, info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key`` (32 bytes)."""
    mac = HMAC(key, _SHA256)
    mac.update(data)
    return mac.finalize()


def hmac_sha256_pair(key: bytes, first: bytes, second: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256 of two messages under one key, keying once and copying the keyed state.

    Same results as two :func:`hmac_sha256` calls; setting up the key is most of an HMAC's
    cost on short inputs, and a chain key step needs exactly two MACs under one key.
    """
    mac = HMAC(key, _SHA256)
    other = mac.copy()
    mac.update(first)
    other.update(second)
    return mac.finalize(), other.finalize()


def sha256(data: bytes) -> bytes:
    digest = hashes.Hash(_SHA256)
    digest.update(data)
    return digest.finalize()


def sha512(data: bytes) -> bytes:
    digest = hashes.Hash(_SHA512)
    digest.update(data)
    return digest.finalize()


def sha3_256(data: bytes) -> bytes:
    digest = hashes.Hash(_SHA3_256)
    digest.update(data)
    return digest.finalize()


def shake256(data: bytes, length: int) -> bytes:
    digest = hashes.Hash(hashes.SHAKE256(digest_size=length))
    digest.update(data)
    return digest.finalize()


def bytes_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets (MACs, tags, keys) in time that does not depend on where they differ."""
    # What cryptography's constant_time.bytes_eq does, one call shallower (two run per message).
    if not isinstance(a, bytes) or not isinstance(b, bytes):
        raise TypeError("bytes_equal compares bytes")
    return hmac.compare_digest(a, b)
