"""AES-256-CBC padding at every length around the block size, against ``cryptography``'s own PKCS7."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sotto.crypto import cipher

KEY = bytes(range(32))
IV = bytes(range(16, 32))


@pytest.mark.parametrize("length", range(50))
def test_padding_matches_pkcs7_at_every_length(length: int) -> None:
    plaintext = bytes((length,)) * length
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES256(KEY), modes.CBC(IV)).encryptor()
    expected = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    ciphertext = cipher.aes256_cbc_encrypt(KEY, IV, plaintext)
    assert ciphertext == expected
    assert len(ciphertext) == (length // 16 + 1) * 16
    assert cipher.aes256_cbc_decrypt(KEY, IV, ciphertext) == plaintext
