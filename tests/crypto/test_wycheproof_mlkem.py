"""Wycheproof ML-KEM-1024 through ``sotto.crypto.kem`` (Kyber1024 over ML-KEM-1024).

* keygen from seed: ``KemKeyPair.from_seed(seed).public`` is the vector's ``ek``.
* decapsulation: our pair returns the *Kyber* secret ``SHAKE-256(K ‖ SHA3-256(c))[:32]`` where
  ``K`` is what ML-KEM returns, so the expected value is computed from the vector's ``K`` with
  ``sotto.crypto.kdf``. This includes the implicit-rejection cases ("Bit flipped ciphertext",
  "Random ciphertext"), whose ``K`` is ML-KEM's rejection value: libsignal's libcrux Kyber applies
  the same final KDF to it. Invalid cases (seed or ciphertext of the wrong length) must be
  :class:`InvalidKeyError`.
* encapsulation: the randomness cannot be injected into `cryptography`, so valid keys are checked
  to load and encapsulate to a well-formed ciphertext; invalid keys (wrong length, coefficients
  not reduced mod q) must be :class:`InvalidKeyError` when the key is built.
"""

from __future__ import annotations

import pytest

from sotto.crypto import kem
from sotto.crypto.kdf import sha3_256, shake256
from sotto.errors import InvalidKeyError
from tests.vectors.wycheproof import load, report


def _kyber_secret(mlkem_k: bytes, raw_ciphertext: bytes) -> bytes:
    return shake256(mlkem_k + sha3_256(raw_ciphertext), 32)


def test_mlkem1024_keygen_from_seed() -> None:
    selection = load("mlkem_1024_keygen_seed_test.json").all()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        assert case.result == "valid"
        pair = kem.KemKeyPair.from_seed(case.hex("seed"))
        if pair.public.raw != case.hex("ek"):
            failures.append(f"{case}: wrong public key")
        if pair.public.to_bytes() != b"\x08" + case.hex("ek"):
            failures.append(f"{case}: wrong serialized public key")
        if pair.seed() != case.hex("seed"):
            failures.append(f"{case}: seed not kept")
    report("mlkem1024 keygen", selection, ran, failures)


def test_mlkem1024_decapsulation() -> None:
    selection = load("mlkem_1024_test.json").all()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        seed, ct = case.hex("seed"), case.hex("c")
        if case.result == "valid":
            pair = kem.KemKeyPair.from_seed(seed)
            if case.has("ek") and pair.public.raw != case.hex("ek"):
                failures.append(f"{case}: wrong public key")
            if pair.decapsulate(b"\x08" + ct) != _kyber_secret(case.hex("K"), ct):
                failures.append(f"{case}: wrong Kyber secret")
            continue
        try:
            pair = kem.KemKeyPair.from_seed(seed)
            pair.decapsulate(b"\x08" + ct)
        except InvalidKeyError:
            continue
        failures.append(f"{case}: accepted")
    report("mlkem1024 decapsulate", selection, ran, failures)


def test_mlkem1024_encapsulation_keys() -> None:
    selection = load("mlkem_1024_encaps_test.json").all()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        ek = case.hex("ek")
        if case.result == "valid":
            public = kem.KemPublicKey.from_bytes(b"\x08" + ek)
            secret, ciphertext = kem.encapsulate(public)
            if len(secret) != 32 or len(ciphertext) != kem.CIPHERTEXT_LENGTH or ciphertext[0] != 0x08:
                failures.append(f"{case}: malformed encapsulation")
            continue
        for build, data in ((kem.KemPublicKey, ek), (kem.KemPublicKey.from_bytes, b"\x08" + ek)):
            try:
                build(data)
            except InvalidKeyError:
                continue
            failures.append(f"{case}: invalid key accepted")
    report("mlkem1024 encapsulation keys", selection, ran, failures)


def test_kyber_secret_is_not_the_mlkem_secret_and_round_trips() -> None:
    pair = kem.KemKeyPair.from_seed(bytes(range(64)))
    secret, ciphertext = kem.encapsulate(pair.public)
    assert pair.decapsulate(ciphertext) == secret
    raw_secret, raw_ct = kem.encapsulate_mlkem_secret_unsafe(pair.public)
    assert pair.decapsulate(raw_ct) != raw_secret
    assert pair.decapsulate(raw_ct) == _kyber_secret(raw_secret, raw_ct[1:])


@pytest.mark.parametrize(
    "ciphertext",
    [b"", b"\x05" + bytes(1568), b"\x08" + bytes(1567), b"\x08" + bytes(1569), bytes(1568)],
)
def test_decapsulate_refuses_wrong_type_or_length(ciphertext: bytes) -> None:
    pair = kem.KemKeyPair.from_seed(bytes(64))
    with pytest.raises(InvalidKeyError):
        pair.decapsulate(ciphertext)


def test_mlkem768_vectors_are_not_kyber1024() -> None:
    """The 768 file belongs to the SPQR braid; here it only proves 1184-byte keys are refused."""
    selection = load("mlkem_768_test.json").select("no ek field", lambda c: c.has("ek"))
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        try:
            kem.KemPublicKey(case.hex("ek"))
        except InvalidKeyError:
            continue
        failures.append(f"{case}: an ML-KEM-768 key was taken as Kyber1024")
    report("mlkem768 keys refused as Kyber1024", selection, ran, failures)
