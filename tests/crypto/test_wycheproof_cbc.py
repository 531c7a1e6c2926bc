"""Wycheproof AES-CBC-PKCS5 through ``sotto.crypto.cipher``.

``aes256_cbc_*`` take 32-byte keys only: the 128- and 192-bit groups are left out of the
known-answer run by a counted filter and checked to be refused with ``ValueError``. Every
invalid case (bad padding, no padding) must be a bare :class:`DecryptionError`.
"""

from __future__ import annotations

import pytest

from sotto.crypto import cipher
from sotto.errors import DecryptionError
from tests.vectors.wycheproof import Selection, load, report


def _sized() -> Selection:
    return load("aes_cbc_pkcs5_test.json").select("key not 256 bits", lambda c: c.group["keySize"] == 256)


def test_aes_cbc_pkcs5_vectors() -> None:
    selection = _sized()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        key, iv, msg, ct = case.hex("key"), case.hex("iv"), case.hex("msg"), case.hex("ct")
        if case.result == "valid":
            if cipher.aes256_cbc_encrypt(key, iv, msg) != ct:
                failures.append(f"{case}: wrong ciphertext")
            try:
                if cipher.aes256_cbc_decrypt(key, iv, ct) != msg:
                    failures.append(f"{case}: wrong plaintext")
            except DecryptionError:
                failures.append(f"{case}: valid ciphertext refused")
            continue
        try:
            cipher.aes256_cbc_decrypt(key, iv, ct)
        except DecryptionError as exc:
            if str(exc) != "decryption failed":
                failures.append(f"{case}: error names its cause: {exc}")
            continue
        failures.append(f"{case}: invalid ciphertext accepted")
    report("aes_cbc_pkcs5 256-bit key", selection, ran, failures)


def test_aes_cbc_other_key_sizes_are_refused() -> None:
    others = _sized().left_out()
    assert len(others) == 144
    for case in others:
        with pytest.raises(ValueError):
            cipher.aes256_cbc_encrypt(case.hex("key"), case.hex("iv"), case.hex("msg"))
        with pytest.raises(ValueError):
            cipher.aes256_cbc_decrypt(case.hex("key"), case.hex("iv"), case.hex("ct") or bytes(16))


def test_aes_cbc_ragged_ciphertexts_are_decryption_errors() -> None:
    key, iv = bytes(range(32)), bytes(16)
    ct = cipher.aes256_cbc_encrypt(key, iv, b"x" * 20)
    for bad in (b"", ct[:-1], ct[:15], ct + b"\x00"):
        with pytest.raises(DecryptionError):
            cipher.aes256_cbc_decrypt(key, iv, bad)


def test_aes_ctr_zero_is_its_own_inverse_and_matches_cbc_first_block() -> None:
    key = bytes(range(32))
    data = bytes(range(100))
    assert cipher.aes256_ctr_zero(key, cipher.aes256_ctr_zero(key, data)) == data
    # CTR block 0 is AES_k(0^16) xor P0; CBC with a zero IV encrypts P0 as AES_k(P0): equal for P0 = 0.
    keystream = cipher.aes256_ctr_zero(key, bytes(16))
    assert keystream == cipher.aes256_cbc_encrypt(key, bytes(16), bytes(16))[:16]
