"""Kyber1024 key pairs held as their seed: the keys they derive when asked are ML-KEM's own."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem

from sotto.crypto import kem
from sotto.crypto.random import seeded_rng


def test_a_key_pair_derives_nothing_until_asked() -> None:
    pair = kem.KemKeyPair.from_seed(seeded_rng(1)(kem.SEED_LENGTH))
    assert pair._public is None  # only the seed is held
    public = pair.public
    assert pair.public is public  # derived once, then kept


def test_the_derived_public_key_is_ml_kems_own() -> None:
    seed = seeded_rng(2)(kem.SEED_LENGTH)
    expected = mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
    pair = kem.KemKeyPair.from_seed(seed)
    assert pair.public.raw == expected
    assert pair.public == kem.KemPublicKey(expected)
    assert kem.KemPublicKey.from_bytes(pair.public.to_bytes()) == pair.public


def test_secrets_agree_through_the_derived_keys() -> None:
    pair = kem.KemKeyPair.generate(seeded_rng(3))
    secret, ciphertext = kem.encapsulate(pair.public)
    assert pair.decapsulate(ciphertext) == secret
    again = kem.KemKeyPair.from_seed(pair.seed())  # a stored key pair, read back
    assert again.decapsulate(ciphertext) == secret
    other, ciphertext_to_copy = kem.encapsulate(kem.KemPublicKey.from_bytes(pair.public.to_bytes()))
    assert again.decapsulate(ciphertext_to_copy) == other != secret


def test_the_repr_hides_the_seed_once_keys_are_derived() -> None:
    seed = bytes(range(64))
    pair = kem.KemKeyPair.from_seed(seed)
    pair.decapsulate(kem.encapsulate(pair.public)[1])
    for text in (repr(pair), str(pair), repr(pair.public)):
        assert seed.hex() not in text and seed[:8].hex() not in text
