"""XEdDSA as libsignal makes and checks it, through ``sotto.crypto.xeddsa``.

Sotto has no separate Ed25519 wrapper; XEdDSA verification converts the Montgomery key to its
Edwards form and calls `cryptography`'s Ed25519 verify. So the Wycheproof Ed25519 vectors are run
through ``xeddsa.verify`` after the inverse conversion: the Edwards key ``(y, sign)`` becomes
``u = (1 + y) / (1 - y)`` and the sign goes into the top bit of ``s``, exactly where a libsignal
signer puts it. Cases that have no XEdDSA form are counted out: a key encoding with ``y >= p``
or ``y = 1`` (no Montgomery u), and a signature whose top bit is already set (that bit carries the
key's sign in XEdDSA).
"""

from __future__ import annotations

import pytest

from sotto.crypto import xeddsa
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import InvalidSignatureError
from tests.vectors.wycheproof import Case, load, report

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493

# libsignal rust/core/src/curve/curve25519.rs, test_signature.
LIBSIGNAL_PRIVATE = bytes.fromhex(
    "c097248412e58bf05df48796820513279417 8e367637f5818f81e0e6ce73e865".replace(" ", "")
)
LIBSIGNAL_PUBLIC = bytes.fromhex("ab7e717d4a163b7d9a1d8071dfe9dcf8cdcd1cea3339b6356be84d887e322c64")
LIBSIGNAL_MESSAGE = bytes.fromhex("05edce9d9c415ca78cb7252e72c2c4a554d3eb29485a0e1d503118d1a82d99fb4a")
LIBSIGNAL_SIGNATURE = bytes.fromhex(
    "5de88ca9a89b4a115da79109c67c9c7464a3e4180274f1cb8c63c2984e286dfb"
    "ede82deb9dcd9fae0bfbb821569b3d9001bd8130cd11d486cef047bd60b86e88"
)


def test_libsignal_signature_vector() -> None:
    private = PrivateKey(LIBSIGNAL_PRIVATE)
    assert private.public_key().raw == LIBSIGNAL_PUBLIC
    public = PublicKey(LIBSIGNAL_PUBLIC)
    xeddsa.verify(public, LIBSIGNAL_MESSAGE, LIBSIGNAL_SIGNATURE)
    assert xeddsa.is_valid(public, LIBSIGNAL_MESSAGE, LIBSIGNAL_SIGNATURE)
    for i in range(len(LIBSIGNAL_SIGNATURE)):
        tampered = bytearray(LIBSIGNAL_SIGNATURE)
        tampered[i] ^= 0x01
        with pytest.raises(InvalidSignatureError):
            xeddsa.verify(public, LIBSIGNAL_MESSAGE, bytes(tampered))


def test_libsignal_vector_top_bit_of_s_is_the_key_sign() -> None:
    tampered = bytearray(LIBSIGNAL_SIGNATURE)
    tampered[63] ^= 0x80
    assert not xeddsa.is_valid(PublicKey(LIBSIGNAL_PUBLIC), LIBSIGNAL_MESSAGE, bytes(tampered))


def _keys(n: int) -> list[PrivateKey]:
    rng = seeded_rng(7)
    return [PrivateKey.generate(rng) for _ in range(n)]


def test_sign_then_verify_and_reject_wrong_key_or_message() -> None:
    keys = _keys(16)
    rng = seeded_rng(8)
    for private, other in zip(keys, keys[1:] + keys[:1], strict=True):
        for message in (b"", b"m", bytes(range(256)) * 5):
            signature = xeddsa.sign(private, message, rng)
            assert len(signature) == xeddsa.SIGNATURE_LENGTH
            xeddsa.verify(private.public_key(), message, signature)
            assert not xeddsa.is_valid(other.public_key(), message, signature)
            assert not xeddsa.is_valid(private.public_key(), message + b"x", signature)


def test_sign_is_deterministic_in_its_randomness_and_randomized_across_calls() -> None:
    private = _keys(1)[0]
    assert xeddsa.sign(private, b"m", seeded_rng(1)) == xeddsa.sign(private, b"m", seeded_rng(1))
    assert xeddsa.sign(private, b"m", seeded_rng(1)) != xeddsa.sign(private, b"m", seeded_rng(2))


def test_sign_bit_is_carried_for_both_signs() -> None:
    """About half of all keys have an Edwards A with x negative; both kinds must verify."""
    seen: set[int] = set()
    rng = seeded_rng(9)
    for private in _keys(32):
        signature = xeddsa.sign(private, b"sign bit", rng)
        sign = signature[63] >> 7
        seen.add(sign)
        flipped = bytearray(signature)
        flipped[63] ^= 0x80
        assert xeddsa.is_valid(private.public_key(), b"sign bit", signature)
        assert not xeddsa.is_valid(private.public_key(), b"sign bit", bytes(flipped))
    assert seen == {0, 1}


def test_scalar_at_or_above_2_253_is_refused() -> None:
    private = _keys(1)[0]
    signature = xeddsa.sign(private, b"m", seeded_rng(3))
    for bit in (0x20, 0x40, 0x60):
        bad = bytearray(signature)
        bad[63] |= bit
        with pytest.raises(InvalidSignatureError, match="out of range"):
            xeddsa.verify(private.public_key(), b"m", bytes(bad))


def test_non_reduced_scalar_is_refused() -> None:
    """s + L (still below 2^253) verifies in libsignal's mod-L check; we are stricter (s < L)."""
    private = _keys(1)[0]
    signature = xeddsa.sign(private, b"m", seeded_rng(4))
    sign_bit = signature[63] & 0x80
    s = int.from_bytes(signature[32:63] + bytes((signature[63] & 0x7F,)), "little")
    bigger = bytearray((s + _L).to_bytes(32, "little"))
    assert bigger[31] & 0xE0 == 0
    bigger[31] |= sign_bit
    assert not xeddsa.is_valid(private.public_key(), b"m", signature[:32] + bytes(bigger))


@pytest.mark.parametrize("length", [0, 63, 65, 128])
def test_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(InvalidSignatureError):
        xeddsa.verify(PublicKey(LIBSIGNAL_PUBLIC), LIBSIGNAL_MESSAGE, (LIBSIGNAL_SIGNATURE * 2)[:length])


def test_key_without_edwards_form_is_refused() -> None:
    with pytest.raises(InvalidSignatureError):
        xeddsa.verify(PublicKey((_P - 1).to_bytes(32, "little")), b"m", LIBSIGNAL_SIGNATURE)


def _edwards_key(case: Case) -> tuple[int, int]:
    pk = bytes.fromhex(case.group["publicKey"]["pk"])
    assert len(pk) == 32
    return int.from_bytes(pk, "little") & ((1 << 255) - 1), pk[31] >> 7


def _has_montgomery_form(case: Case) -> bool:
    y, _ = _edwards_key(case)
    return y < _P and y != 1


def _top_bit_free(case: Case) -> bool:
    signature = case.hex("sig")
    return not (len(signature) == 64 and signature[63] & 0x80)


def _as_xeddsa(case: Case) -> tuple[PublicKey, bytes]:
    """The XEdDSA (Montgomery key, signature) pair for an Ed25519 case."""
    y, sign = _edwards_key(case)
    u = (1 + y) * pow(1 - y, -1, _P) % _P
    signature = case.hex("sig")
    if len(signature) == 64:
        signature = signature[:63] + bytes((signature[63] | sign << 7,))
    return PublicKey(u.to_bytes(32, "little")), signature


def test_ed25519_vectors_through_xeddsa_verify() -> None:
    selection = (
        load("ed25519_test.json")
        .select("key has no Montgomery form (y >= p or y = 1)", _has_montgomery_form)
        .select("signature top bit set (XEdDSA keeps the key sign there)", _top_bit_free)
    )
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        public, signature = _as_xeddsa(case)
        accepted = xeddsa.is_valid(public, case.hex("msg"), signature)
        if accepted != (case.result == "valid"):
            failures.append(f"{case}: accepted={accepted}")
    report("ed25519 via xeddsa.verify", selection, ran, failures)
