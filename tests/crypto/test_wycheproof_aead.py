"""Wycheproof AES-GCM-SIV and AES-GCM through ``sotto.crypto.aead``.

The wrappers take 32-byte keys and 12-byte nonces only (the sizes Sotto uses). Cases with other
key or nonce sizes are left out of the known-answer run by a counted filter, and a separate test
checks the wrappers refuse every one of them with ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sotto.crypto import aead
from sotto.errors import DecryptionError
from tests.vectors.wycheproof import Case, Selection, load, report

Encrypt = Callable[[bytes, bytes, bytes, bytes | None], bytes]
Decrypt = Callable[[bytes, bytes, bytes, bytes | None], bytes]

SUITES: dict[str, tuple[str, Encrypt, Decrypt]] = {
    "aes_gcm_siv": ("aes_gcm_siv_test.json", aead.aes256_gcm_siv_encrypt, aead.aes256_gcm_siv_decrypt),
    "aes_gcm": ("aes_gcm_test.json", aead.aes256_gcm_encrypt, aead.aes256_gcm_decrypt),
}


def _sized(file: str) -> Selection:
    return (
        load(file)
        .select("key not 256 bits", lambda c: c.group["keySize"] == 256)
        .select("nonce not 96 bits", lambda c: c.group["ivSize"] == 96)
        .select("tag not 128 bits", lambda c: c.group["tagSize"] == 128)
    )


def _run(case: Case, encrypt: Encrypt, decrypt: Decrypt) -> str | None:
    key, nonce, aad = case.hex("key"), case.hex("iv"), case.hex("aad")
    msg, sealed = case.hex("msg"), case.hex("ct") + case.hex("tag")
    if case.result == "valid":
        if encrypt(key, nonce, msg, aad) != sealed:
            return "encrypt gave the wrong ciphertext"
        try:
            if decrypt(key, nonce, sealed, aad) != msg:
                return "decrypt gave the wrong plaintext"
        except DecryptionError:
            return "decrypt refused a valid ciphertext"
        # The same call with no AAD must agree with an empty AAD (None is how callers say "none").
        if not aad and decrypt(key, nonce, sealed, None) != msg:
            return "aad=None differs from aad=b''"
        return None
    try:
        decrypt(key, nonce, sealed, aad)
    except DecryptionError:
        return None
    return f"{case.result} ciphertext was accepted"


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_aead_vectors(suite: str) -> None:
    file, encrypt, decrypt = SUITES[suite]
    selection = _sized(file)
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        problem = _run(case, encrypt, decrypt)
        if problem:
            failures.append(f"{case}: {problem}")
    report(f"{suite} 256-bit key, 96-bit nonce", selection, ran, failures)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_aead_other_sizes_are_refused(suite: str) -> None:
    file, encrypt, decrypt = SUITES[suite]
    others = _sized(file).left_out()
    assert others or suite == "aes_gcm_siv"
    for case in others:
        key, nonce, aad = case.hex("key"), case.hex("iv"), case.hex("aad")
        with pytest.raises(ValueError):
            encrypt(key, nonce, case.hex("msg"), aad)
        with pytest.raises(ValueError):
            decrypt(key, nonce, case.hex("ct") + case.hex("tag"), aad)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_aead_short_and_tampered_inputs_are_decryption_errors(suite: str) -> None:
    _, encrypt, decrypt = SUITES[suite]
    key, nonce = bytes(range(32)), bytes(12)
    sealed = encrypt(key, nonce, b"hello", b"ad")
    for bad in (b"", sealed[:15], sealed[:-1], sealed + b"\x00", bytes([sealed[0] ^ 1]) + sealed[1:]):
        with pytest.raises(DecryptionError):
            decrypt(key, nonce, bad, b"ad")
    with pytest.raises(DecryptionError):
        decrypt(key, nonce, sealed, b"other ad")
    with pytest.raises(DecryptionError):
        decrypt(bytes(32), nonce, sealed, b"ad")
