"""Key types: serialized forms, refusal of wrong types and lengths, hidden secrets, clamping."""

from __future__ import annotations

import copy
import pickle

import pytest

from sotto.crypto import kem
from sotto.crypto.keys import DJB_TYPE, KeyPair, PrivateKey, PublicKey, clamp
from sotto.crypto.random import seeded_rng, system_rng
from sotto.errors import InvalidKeyError


def _secret_renderings(secret: bytes) -> list[str]:
    """Ways key bytes could leak into a string: hex (either case), bytes repr, and 8-byte pieces."""
    out = [secret.hex(), secret.hex().upper(), repr(secret), str(list(secret))]
    out += [secret[i : i + 8].hex() for i in range(0, len(secret) - 7, 8)]
    out += [repr(secret[i : i + 8])[2:-1] for i in range(0, len(secret) - 7, 8)]
    return out


def test_public_key_round_trip() -> None:
    pair = KeyPair.generate(seeded_rng(1))
    data = pair.public.to_bytes()
    assert len(data) == 33 and data[0] == DJB_TYPE == 0x05
    assert PublicKey.from_bytes(data) == pair.public
    assert hash(PublicKey.from_bytes(data)) == hash(pair.public)
    assert PublicKey(data[1:]).raw == data[1:]


@pytest.mark.parametrize("data", [b"", b"\x05", b"\x05" + bytes(31), b"\x05" + bytes(33), bytes(32)])
def test_public_key_wrong_length(data: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_bytes(data)


@pytest.mark.parametrize("type_byte", [0x00, 0x04, 0x06, 0x08, 0xFF])
def test_public_key_wrong_type(type_byte: int) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_bytes(bytes((type_byte,)) + bytes(range(32)))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_raw_keys_wrong_length(length: int) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey(bytes(length))
    with pytest.raises(InvalidKeyError):
        PrivateKey(bytes(length))


def test_private_key_clamps_and_round_trips() -> None:
    raw = bytes([0xFF] * 32)
    private = PrivateKey(raw)
    assert private.to_bytes() == clamp(raw)
    assert private.to_bytes()[0] & 7 == 0
    assert private.to_bytes()[31] & 0x80 == 0
    assert private.to_bytes()[31] & 0x40
    assert PrivateKey.from_bytes(private.to_bytes()).to_bytes() == private.to_bytes()
    assert clamp(clamp(raw)) == clamp(raw)
    assert clamp(bytes(32)) == bytes(31) + b"\x40"
    # Clamping is what X25519 does anyway: unclamped and clamped scalars give one public key.
    assert PrivateKey(raw).public_key() == PrivateKey(clamp(raw)).public_key()
    assert KeyPair.from_private_bytes(raw).public == private.public_key()


def test_private_reprs_hide_key_material() -> None:
    pair = KeyPair.generate(seeded_rng(2))
    secret = pair.private.to_bytes()
    for text in (repr(pair.private), str(pair.private), repr(pair), str(pair), f"{pair.private!r}"):
        for leak in _secret_renderings(secret):
            assert leak not in text, text


def test_kem_key_pair_repr_hides_the_seed() -> None:
    seed = bytes(range(64))
    pair = kem.KemKeyPair.from_seed(seed)
    for text in (repr(pair), str(pair)):
        for leak in _secret_renderings(seed):
            assert leak not in text, text


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_holders_refuse_pickling(protocol: int) -> None:
    private = PrivateKey.generate(seeded_rng(3))
    with pytest.raises(TypeError):
        pickle.dumps(private, protocol)
    with pytest.raises(TypeError):
        pickle.dumps(KeyPair(private), protocol)
    with pytest.raises(TypeError):
        pickle.dumps(kem.KemKeyPair.generate(seeded_rng(3)), protocol)


def test_secret_holders_refuse_copy() -> None:
    private = PrivateKey.generate(seeded_rng(4))
    with pytest.raises(TypeError):
        copy.copy(private)
    with pytest.raises(TypeError):
        copy.deepcopy(kem.KemKeyPair.generate(seeded_rng(4)))


def test_kem_public_key_round_trip_and_refusals() -> None:
    pair = kem.KemKeyPair.generate(seeded_rng(5))
    data = pair.public.to_bytes()
    assert len(data) == kem.PUBLIC_KEY_LENGTH == 1569 and data[0] == 0x08
    assert kem.KemPublicKey.from_bytes(data) == pair.public
    assert hash(kem.KemPublicKey.from_bytes(data)) == hash(pair.public)
    assert pair.public != PublicKey(bytes(32))
    for bad in (b"", b"\x05" + data[1:], data[:-1], data + b"\x00", data[1:]):
        with pytest.raises(InvalidKeyError):
            kem.KemPublicKey.from_bytes(bad)
    with pytest.raises(InvalidKeyError):
        kem.KemKeyPair(bytes(63))
    assert kem.KemKeyPair.from_seed(pair.seed()).public == pair.public


def test_seeded_rng_is_deterministic() -> None:
    assert seeded_rng(42)(100) == seeded_rng(42)(100)
    assert seeded_rng(42)(100) != seeded_rng(43)(100)
    rng = seeded_rng(42)
    first, second = rng(32), rng(32)
    assert first != second
    assert first + second == seeded_rng(42)(64)
    assert KeyPair.generate(seeded_rng(6)).public == KeyPair.generate(seeded_rng(6)).public
    assert len(system_rng(32)) == 32 and system_rng(32) != system_rng(32)
