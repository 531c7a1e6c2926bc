"""AES-256-CBC with PKCS#7 padding and AES-256-CTR with a zero initial counter block."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sotto.errors import DecryptionError

_BLOCK = 16
_ZERO_BLOCK = bytes(16)
_PKCS7 = padding.PKCS7(8 * _BLOCK)
"""Stateless: one instance hands out a fresh unpadder per message."""
_PADDING = tuple(bytes((n,)) * n for n in range(_BLOCK + 1))
"""PKCS#7 padding by its length (1-16 bytes of the value n): adding it depends only on the
plaintext's length, which the ciphertext shows anyway. Removing it is left to ``cryptography``,
whose unpadder checks in constant time."""


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
    unpadder = _PKCS7.unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError from None


def aes256_ctr_zero(key: bytes, data: bytes) -> bytes:
    """AES-256-CTR from an all-zero counter block (sealed sender v1); encrypts and decrypts."""
    encryptor = Cipher(algorithms.AES256(key), modes.CTR(_ZERO_BLOCK)).encryptor()
    return encryptor.update(data) + encryptor.finalize()
