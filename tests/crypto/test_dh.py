"""``dh.agree`` and ``dh.is_canonical``: the checks libsignal applies to incoming base keys.

The mixed-order key is built independently of the code under test: an honest key's Edwards
point plus a point of order 8, added with libsodium, then mapped back to Montgomery u.
"""

from __future__ import annotations

import nacl.bindings as sodium
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from sotto.crypto import dh
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import InvalidKeyAgreementError
from tests.crypto.test_wycheproof_x25519 import in_prime_order_subgroup

_P = 2**255 - 19

# The five classic low-order u-coordinates (orders 4/1 via u = 0 and u = 1 map, two of order 8, order 2).
LOW_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
]


def _u(value: int) -> PublicKey:
    return PublicKey(value.to_bytes(32, "little"))


def _edwards_y(u: int) -> bytes:
    return ((u - 1) * pow(u + 1, -1, _P) % _P).to_bytes(32, "little")


def _montgomery_u(edwards: bytes) -> int:
    y = int.from_bytes(edwards, "little") & ((1 << 255) - 1)
    return (1 + y) * pow(1 - y, -1, _P) % _P


def _order_8_point() -> bytes:
    """An Edwards point T with 8T = O and 4T != O, derived from the order-8 u above."""
    y = _edwards_y(LOW_ORDER_U[2])
    two = sodium.crypto_core_ed25519_add(y, y)
    four = sodium.crypto_core_ed25519_add(two, two)
    eight = sodium.crypto_core_ed25519_add(four, four)
    identity = (1).to_bytes(32, "little")
    assert four != identity and eight == identity
    return y


def _honest_keys(n: int) -> list[PrivateKey]:
    rng = seeded_rng(11)
    return [PrivateKey.generate(rng) for _ in range(n)]


def _mixed_order(public: PublicKey) -> PublicKey:
    a = _edwards_y(int.from_bytes(public.raw, "little"))  # sign 0: either sign works for the test
    return _u(_montgomery_u(sodium.crypto_core_ed25519_add(a, _order_8_point())))


def test_honest_keys_are_canonical() -> None:
    for private in _honest_keys(50):
        assert dh.is_canonical(private.public_key())


@pytest.mark.parametrize("u", LOW_ORDER_U)
def test_low_order_points_are_not_canonical(u: int) -> None:
    assert not dh.is_canonical(_u(u))
    assert not in_prime_order_subgroup(u.to_bytes(32, "little"))


@pytest.mark.parametrize("u", [u + _P for u in LOW_ORDER_U if u + _P < 2**255])
def test_low_order_points_encoded_as_u_plus_p_are_not_canonical(u: int) -> None:
    assert not dh.is_canonical(_u(u))


@pytest.mark.parametrize("u", LOW_ORDER_U)
def test_low_order_points_give_no_agreement(u: int) -> None:
    private = _honest_keys(1)[0]
    with pytest.raises(InvalidKeyAgreementError):
        dh.agree(private, _u(u))


def test_mixed_order_key_is_refused_only_by_is_canonical() -> None:
    for private in _honest_keys(8):
        honest = private.public_key()
        mixed = _mixed_order(honest)
        assert mixed != honest
        assert not in_prime_order_subgroup(mixed.raw)
        assert not dh.is_canonical(mixed)
        # `cryptography` alone takes it, and since clamped scalars are multiples of 8 the
        # torsion part vanishes: the secret equals the honest one, so the key is malleable.
        peer = _honest_keys(2)[1]
        raw_secret = peer.x25519().exchange(X25519PublicKey.from_public_bytes(mixed.raw))
        assert raw_secret != bytes(32)
        assert raw_secret == dh.agree(peer, honest)
        assert dh.agree(peer, mixed) == raw_secret


def test_out_of_range_encodings_are_not_canonical() -> None:
    honest = _honest_keys(1)[0].public_key()
    u = int.from_bytes(honest.raw, "little")
    assert u + _P >= 2**255  # an honest u has no second encoding below 2^255 ...
    top = bytearray(honest.raw)
    top[31] |= 0x80
    assert not dh.is_canonical(PublicKey(bytes(top)))  # ... but the top bit can be set
    for value in (_P, _P + 1, _P + 18, 2**255 - 1, 2**255, 2**256 - 1):
        assert not dh.is_canonical(_u(value)), value
    assert dh.is_canonical(_u(9))  # the base point: the largest prime-order subgroup


def test_agree_is_symmetric() -> None:
    a, b = _honest_keys(2)
    assert dh.agree(a, b.public_key()) == dh.agree(b, a.public_key())
    assert len(dh.agree(a, b.public_key())) == 32
