"""The reference store itself: TOFU trust, prekey deletion, the last-resort use set, snapshots."""

from __future__ import annotations

import pytest

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import SignedPreKeyRecord
from sotto.protocol.store import IdentityChange, InMemoryProtocolStore

NOW_MS = 1_750_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)


def test_trust_on_first_use_then_refuse_a_changed_key_until_accepted() -> None:
    rng = seeded_rng(1)
    store = InMemoryProtocolStore.generate(ALICE, rng, NOW_MS)
    first, second = KeyPair.generate(rng).public, KeyPair.generate(rng).public
    assert store.identity_of(BOB) is None
    assert store.is_trusted_identity(BOB, first)
    assert store.save_identity(BOB, first) is IdentityChange.NEW_OR_UNCHANGED
    assert store.is_trusted_identity(BOB, first)
    assert not store.is_trusted_identity(BOB, second)
    assert store.save_identity(BOB, first) is IdentityChange.NEW_OR_UNCHANGED
    # Accepting the new key is saving it; the old one is then the untrusted one.
    assert store.save_identity(BOB, second) is IdentityChange.REPLACED_EXISTING
    assert store.is_trusted_identity(BOB, second) and not store.is_trusted_identity(BOB, first)
    # Trust is per device address.
    assert store.is_trusted_identity(ProtocolAddress(BOB.name, 2), first)


def test_generate_makes_a_publishable_device() -> None:
    rng = seeded_rng(2)
    store = InMemoryProtocolStore.generate(ALICE, rng, NOW_MS)
    assert 1 <= store.registration_id <= 0x3FFF
    assert store.pre_keys == {}
    assert store.last_resort_kyber_pre_key.last_resort
    one_time = store.generate_pre_key(rng)
    kyber = store.generate_kyber_pre_key(rng, NOW_MS)
    assert store.generate_pre_key(rng).id == one_time.id + 1
    assert not kyber.last_resort and kyber.id != store.last_resort_kyber_pre_key.id
    bundle = store.bundle(pre_key=one_time, kyber_pre_key=kyber)
    bundle.validate()
    assert (bundle.pre_key_id, bundle.kyber_pre_key_id, bundle.device_id) == (one_time.id, kyber.id, 1)
    fallback = store.bundle()
    assert fallback.pre_key_id is None and fallback.kyber_pre_key_id == store.last_resort_kyber_pre_key.id


def test_snapshot_is_independent() -> None:
    rng = seeded_rng(3)
    store = InMemoryProtocolStore.generate(ALICE, rng, NOW_MS)
    store.generate_pre_key(rng)
    copy = store.snapshot()
    store.generate_pre_key(rng)
    store.last_resort_uses.add((1, 1, b"k" * 33))
    store.save_identity(BOB, KeyPair.generate(rng).public)
    assert len(copy.pre_keys) == 1 and copy.last_resort_uses == set() and copy.identities == {}
    assert copy.next_pre_key_id == 2 and store.next_pre_key_id == 3


def test_repr_shows_counts_not_keys() -> None:
    store = InMemoryProtocolStore.generate(ALICE, seeded_rng(4), NOW_MS)
    text = repr(store)
    assert "pre_keys=0" in text and "sessions=0" in text
    assert store.identity.private.to_bytes().hex()[:16] not in text


def test_a_store_without_prekeys_says_so() -> None:
    rng = seeded_rng(5)
    store = InMemoryProtocolStore(KeyPair.generate(rng), 7, ALICE)
    with pytest.raises(KeyError, match="signed prekey"):
        store.bundle()
    store.save_signed_pre_key(SignedPreKeyRecord.generate(3, store.identity, NOW_MS, rng))
    with pytest.raises(KeyError, match="last-resort"):
        store.bundle()
    store.generate_kyber_pre_key(rng, NOW_MS)  # one-time only: still no fallback
    with pytest.raises(KeyError, match="last-resort"):
        _ = store.last_resort_kyber_pre_key
