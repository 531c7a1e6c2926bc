"""PQXDH: both sides derive the same secret; base keys libsignal refuses are refused."""

from __future__ import annotations

import pytest

from sotto.crypto.kdf import hkdf_sha256
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import DecryptionError, InvalidPreKeyBundleError
from sotto.protocol import pqxdh
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord, build_bundle

RNG = seeded_rng(9)
ALICE = KeyPair.generate(RNG)
BOB = KeyPair.generate(RNG)
SIGNED = SignedPreKeyRecord.generate(1, BOB, 0, RNG)
KYBER = KyberPreKeyRecord.generate(2, BOB, 0, RNG)
ONE_TIME = PreKeyRecord.generate(3, RNG)
_P = 2**255 - 19


@pytest.mark.parametrize("with_one_time", [True, False])
def test_both_sides_agree(with_one_time: bool) -> None:
    bundle = build_bundle(
        registration_id=1,
        device_id=1,
        identity_key=BOB.public,
        signed_pre_key=SIGNED,
        kyber_pre_key=KYBER,
        pre_key=ONE_TIME if with_one_time else None,
    )
    sent, secret = pqxdh.initiate(bundle, ALICE, RNG)
    received = pqxdh.respond(
        our_identity=BOB,
        our_signed_pre_key=SIGNED.key_pair,
        our_one_time_pre_key=ONE_TIME.key_pair if with_one_time else None,
        our_kyber_pre_key=KYBER.key_pair,
        their_identity=ALICE.public,
        their_base_key=sent.base_key,
        kyber_ciphertext=sent.kyber_ciphertext,
    )
    assert (received.root_key, received.chain_key, received.pqr_key) == (
        secret.root_key,
        secret.chain_key,
        secret.pqr_key,
    )
    wrong_order = pqxdh.respond(
        our_identity=BOB,
        our_signed_pre_key=SIGNED.key_pair,
        our_one_time_pre_key=None if with_one_time else ONE_TIME.key_pair,
        our_kyber_pre_key=KYBER.key_pair,
        their_identity=ALICE.public,
        their_base_key=sent.base_key,
        kyber_ciphertext=sent.kyber_ciphertext,
    )
    assert wrong_order.root_key != secret.root_key
    assert "secret" in repr(secret) and secret.root_key.hex()[:8] not in repr(secret)


def test_secret_layout() -> None:
    derived = pqxdh.HandshakeSecret.derive(b"ikm")
    okm = hkdf_sha256(b"ikm", 96, b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024")
    assert derived.root_key + derived.chain_key + derived.pqr_key == okm


def _point(u: int) -> PublicKey:
    return PublicKey(u.to_bytes(32, "little"))


# An honest key plus a point of order 8 (mixed order), low-order points, u >= p, top bit set.
_LOW_ORDER_U = 325606250916557431795983626356110631294008115727848805560023387167927233504
_HONEST = BOB.public
_BAD_BASE_KEYS = {
    "zero": _point(0),
    "one": _point(1),
    "order-8": _point(_LOW_ORDER_U),
    "p": _point(_P),
    "p+1": _point(_P + 1),
    "p-1": _point(_P - 1),
    "high-bit": PublicKey(_HONEST.raw[:31] + bytes((_HONEST.raw[31] | 0x80,))),
}


def _mixed_order_key() -> PublicKey:
    # Add the order-8 point to an honest one on the Edwards curve, then map back to Montgomery u.
    import nacl.bindings as sodium

    y_honest = (
        (int.from_bytes(_HONEST.raw, "little") - 1)
        * pow(int.from_bytes(_HONEST.raw, "little") + 1, -1, _P)
        % _P
    )
    y_torsion = (_LOW_ORDER_U - 1) * pow(_LOW_ORDER_U + 1, -1, _P) % _P
    total = sodium.crypto_core_ed25519_add(y_honest.to_bytes(32, "little"), y_torsion.to_bytes(32, "little"))
    y = int.from_bytes(total, "little") & ((1 << 255) - 1)
    return _point((1 + y) * pow(1 - y, -1, _P) % _P)


@pytest.mark.parametrize("name", [*_BAD_BASE_KEYS, "mixed-order"])
def test_non_canonical_base_keys_are_refused(name: str) -> None:
    base_key = _mixed_order_key() if name == "mixed-order" else _BAD_BASE_KEYS[name]
    with pytest.raises(DecryptionError):
        pqxdh.respond(
            our_identity=BOB,
            our_signed_pre_key=SIGNED.key_pair,
            our_one_time_pre_key=None,
            our_kyber_pre_key=KYBER.key_pair,
            their_identity=ALICE.public,
            their_base_key=base_key,
            kyber_ciphertext=b"\x08" + bytes(1568),
        )


def test_unusable_bundle_key() -> None:
    bundle = build_bundle(
        registration_id=1, device_id=1, identity_key=BOB.public, signed_pre_key=SIGNED, kyber_pre_key=KYBER
    )
    from dataclasses import replace

    with pytest.raises(InvalidPreKeyBundleError):
        pqxdh.initiate(replace(bundle, signed_pre_key_public=_point(0)), ALICE, RNG)
