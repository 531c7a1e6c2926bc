"""AES-256-CBC padding at every length around the block size, against ``cryptography``'s own PKCS7."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sotto.crypto import cipher
from sotto.errors import DecryptionError

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


def _encrypt_raw(padded: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES256(KEY), modes.CBC(IV)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


@pytest.mark.parametrize("n", range(1, 17))
def test_every_padding_length_is_removed_and_every_bad_byte_refused(n: int) -> None:
    plaintext = b"m" * (32 - n)
    padded = plaintext + bytes((n,)) * n
    assert cipher.aes256_cbc_decrypt(KEY, IV, _encrypt_raw(padded)) == plaintext
    for i in range(1, n + 1):  # any padding byte off by one
        bad = bytearray(padded)
        bad[-i] ^= 0x01
        with pytest.raises(DecryptionError):
            cipher.aes256_cbc_decrypt(KEY, IV, _encrypt_raw(bytes(bad)))


@pytest.mark.parametrize("last", [0, 17, 0x80, 0xFF])
def test_a_padding_length_outside_1_to_16_is_refused(last: int) -> None:
    padded = bytes(31) + bytes((last,))
    with pytest.raises(DecryptionError):
        cipher.aes256_cbc_decrypt(KEY, IV, _encrypt_raw(padded))
