"""Wycheproof X25519 through ``sotto.crypto.keys`` and ``sotto.crypto.dh``.

Every case runs. Wycheproof marks 254 cases "acceptable" (an implementation may accept or refuse
them). What :func:`dh.agree` does with them, on purpose:

* ``ZeroSharedSecret`` (31 cases, all of them also ``LowOrderPublic``): refused with
  :class:`InvalidKeyAgreementError`, as RFC 7748 section 6.1 permits and libsignal does.
* every other acceptable case (twist points, u >= p, top bit set, edge-case ladders): accepted,
  with exactly the RFC 7748 output Wycheproof gives. libsignal's ``calculate_agreement``
  accepts them too; a peer's long-term keys are not checked further.
* for incoming PreKey base keys libsignal additionally applies ``is_canonical``; ours refuses
  every ``LowOrderPublic``, ``NonCanonicalPublic`` and ``Twist`` key in the file, checked here.
"""

from __future__ import annotations

import nacl.bindings as sodium

from sotto.crypto import dh
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.errors import InvalidKeyAgreementError
from tests.vectors.wycheproof import load, report

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = (1).to_bytes(32, "little")


def _edwards_times(n: int, point: bytes) -> bytes:
    """[n]point by double-and-add over libsodium's point addition (no subgroup check inside)."""
    acc: bytes | None = None
    while n:
        if n & 1:
            acc = point if acc is None else sodium.crypto_core_ed25519_add(acc, point)
        n >>= 1
        if n:
            point = sodium.crypto_core_ed25519_add(point, point)
    assert acc is not None
    return bytes(acc)


def in_prime_order_subgroup(u_bytes: bytes) -> bool:
    """An oracle independent of ``dh.is_canonical``: decode to Edwards (sign 0), check [L]P = O."""
    u = int.from_bytes(u_bytes, "little")
    if u >> 255 or u >= _P or u == _P - 1:
        return False
    y = ((u - 1) * pow(u + 1, -1, _P) % _P).to_bytes(32, "little")
    try:
        return _edwards_times(_L, y) == _IDENTITY and y != _IDENTITY
    except Exception:  # not a point on Ed25519: u is on the twist
        return False


def test_x25519_vectors_through_agree() -> None:
    vectors = load("x25519_test.json")
    selection = vectors.all()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        private = PrivateKey(case.hex("private"))
        public = PublicKey(case.hex("public"))
        expected = case.hex("shared")
        if "ZeroSharedSecret" in case.flags:
            if expected != bytes(32):
                failures.append(f"{case}: flagged ZeroSharedSecret but shared is not zero")
            try:
                dh.agree(private, public)
            except InvalidKeyAgreementError:
                continue
            failures.append(f"{case}: all-zero secret was not refused")
            continue
        if case.result not in ("valid", "acceptable"):
            failures.append(f"{case}: unexpected result class")
            continue
        try:
            shared = dh.agree(private, public)
        except InvalidKeyAgreementError:
            failures.append(f"{case}: refused")
            continue
        if shared != expected:
            failures.append(f"{case}: wrong shared secret")
    report("x25519 agree", selection, ran, failures)


def test_x25519_vectors_suspicious_keys_are_not_canonical() -> None:
    vectors = load("x25519_test.json")
    suspicious = {"LowOrderPublic", "NonCanonicalPublic", "Twist", "ZeroSharedSecret"}
    selection = vectors.select(
        "not flagged LowOrderPublic/NonCanonicalPublic/Twist", lambda c: bool(c.flags & suspicious)
    )
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        if dh.is_canonical(PublicKey(case.hex("public"))):
            failures.append(f"{case}: is_canonical accepted it")
    report("x25519 is_canonical refuses suspicious keys", selection, ran, failures)


def test_x25519_vector_keys_is_canonical_matches_an_independent_oracle() -> None:
    """Every key is_canonical accepts, and a sample of those it refuses, agree with [L]P = O."""
    vectors = load("x25519_test.json")
    accepted = [c for c in vectors.cases if dh.is_canonical(PublicKey(c.hex("public")))]
    refused = [c for c in vectors.cases if not dh.is_canonical(PublicKey(c.hex("public")))]
    assert len(accepted) >= 40, "the file should hold honest, prime-order keys"
    for case in accepted:
        assert in_prime_order_subgroup(case.hex("public")), str(case)
    for case in refused[::8]:
        assert not in_prime_order_subgroup(case.hex("public")), str(case)
