"""AES-256-CBC with PKCS#7 padding and AES-256-CTR with a zero initial counter block."""

from __future__ import annotations

from hmac import compare_digest
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sotto.errors import DecryptionError

_BLOCK: Final = 16
_ZERO_BLOCK: Final = bytes(16)
_PADDING: Final = tuple(bytes((n,)) * n for n in range(_BLOCK + 1))
"""PKCS#7 padding by its length n (n bytes of the value n, n = 1..16)."""


def aes256_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    padded = plaintext + _PADDING[_BLOCK - len(plaintext) % _BLOCK]
    encryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes256_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Decrypt and unpad; any failure is :class:`DecryptionError` (no padding oracle detail)."""
    if not ciphertext or len(ciphertext) % _BLOCK:
        raise DecryptionError
    decryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    # Read from the table rather than with cryptography's unpadder (an object per message).
    # Every caller checks a MAC or signature over the ciphertext first, so this is no padding
    # oracle; the bytes are compared in constant time all the same (compare_digest directly, as
    # both are bytes). Their count, n, is what the plaintext's length shows anyway.
    n = padded[-1]
    if not 0 < n <= _BLOCK or not compare_digest(padded[-n:], _PADDING[n]):
        raise DecryptionError
    return padded[:-n]


def aes256_ctr_zero(key: bytes, data: bytes) -> bytes:
    """AES-256-CTR from an all-zero counter block (sealed sender v1); encrypts and decrypts."""
    encryptor = Cipher(algorithms.AES256(key), modes.CTR(_ZERO_BLOCK)).encryptor()
    return encryptor.update(data) + encryptor.finalize()
