"""AES-256-GCM-SIV (sealed sender v2) and AES-256-GCM; a failed tag is DecryptionError.

Only 32-byte keys and 12-byte nonces: `cryptography` would quietly run AES-128 on a 16-byte key
or take a GCM nonce of any length, so a caller's slicing mistake would still "work". A wrong
size is a programming error (``ValueError``), not a forgery.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV

from sotto.errors import DecryptionError

KEY_LENGTH = 32
NONCE_LENGTH = 12


def _check_sizes(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"AES-256 key must be {KEY_LENGTH} bytes, got {len(key)}")
    if len(nonce) != NONCE_LENGTH:
        raise ValueError(f"nonce must be {NONCE_LENGTH} bytes, got {len(nonce)}")


def aes256_gcm_siv_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes | None = None) -> bytes:
    _check_sizes(key, nonce)
    return AESGCMSIV(key).encrypt(nonce, plaintext, aad)


def aes256_gcm_siv_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes | None = None) -> bytes:
    _check_sizes(key, nonce)
    try:
        return AESGCMSIV(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):
        raise DecryptionError from None


def aes256_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes | None = None) -> bytes:
    _check_sizes(key, nonce)
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aes256_gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes | None = None) -> bytes:
    _check_sizes(key, nonce)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):
        raise DecryptionError from None
