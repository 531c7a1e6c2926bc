"""Shared suite, part 1: our account, settings, prekeys, sessions, identities, sender keys."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng
from sotto.errors import MissingRecordError, StoreError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.store.interfaces import Store
from sotto.store.model import IdentityChange, PreKeyKind, TrustedIdentity
from tests.store import factories
from tests.store.factories import NOW_MS


def test_account_round_trip_and_replace(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        assert tx.account.get() is None
    account = factories.account(rng)
    with store.transaction() as tx:
        tx.account.put(account)
    with store.transaction() as tx:
        loaded = tx.account.get()
    assert loaded is not None
    assert loaded.account_id == account.account_id
    assert loaded.device_secret == account.device_secret
    assert loaded.identity.public == account.identity.public
    assert loaded.identity.private.to_bytes() == account.identity.private.to_bytes()
    assert (loaded.registration_id, loaded.server_url, loaded.display_name) == (
        4242,
        account.server_url,
        "Alice",
    )
    assert loaded.address == account.address and loaded.created_ms == NOW_MS
    with store.transaction() as tx:
        tx.account.put(dataclasses.replace(account, display_name="Alice B."))
    with store.transaction() as tx:
        renamed = tx.account.get()
    assert renamed is not None and renamed.display_name == "Alice B."


def test_settings(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.settings.get("cursor") is None
        tx.settings.put("cursor", b"\x00\x01")
        tx.settings.put("other", b"")
    with store.transaction() as tx:
        assert tx.settings.get("cursor") == b"\x00\x01"
        assert tx.settings.get("other") == b""
        tx.settings.put("cursor", b"\x02")
        assert tx.settings.delete("other") is True
        assert tx.settings.delete("other") is False
    with store.transaction() as tx:
        assert tx.settings.get("cursor") == b"\x02"
        assert tx.settings.get("other") is None


def test_prekey_ids_are_never_reused(store: Store) -> None:
    with store.transaction() as tx:
        first = tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 3)
        assert list(first) == [1, 2, 3]
        assert list(tx.prekeys.allocate_ids(PreKeyKind.SIGNED, 1)) == [1]
    with pytest.raises(RuntimeError), store.transaction() as tx:
        # Allocated in a transaction that fails: rolled back with it, so nothing was published.
        tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 5)
        raise RuntimeError
    with store.transaction() as tx:
        assert list(tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 2)) == [4, 5]
        assert list(tx.prekeys.allocate_ids(PreKeyKind.KYBER, 2)) == [1, 2]
        with pytest.raises(ValueError):
            tx.prekeys.allocate_ids(PreKeyKind.KYBER, 0)


def test_prekey_records_and_upload_state(store: Store, rng: Rng) -> None:
    identity = KeyPair.generate(rng)
    with store.transaction() as tx:
        ids = tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 3)
        one_time = [PreKeyRecord.generate(i, rng) for i in ids]
        for record in one_time:
            tx.prekeys.put_one_time(record)
        signed = SignedPreKeyRecord.generate(
            tx.prekeys.allocate_ids(PreKeyKind.SIGNED, 1)[0], identity, NOW_MS, rng
        )
        tx.prekeys.put_signed(signed)
        kyber_ids = tx.prekeys.allocate_ids(PreKeyKind.KYBER, 2)
        kyber = KyberPreKeyRecord.generate(kyber_ids[0], identity, NOW_MS, rng)
        last_resort = KyberPreKeyRecord.generate(kyber_ids[1], identity, NOW_MS, rng, last_resort=True)
        tx.prekeys.put_kyber(kyber)
        tx.prekeys.put_kyber(last_resort)
    with store.transaction() as tx:
        pending = tx.prekeys.pending_upload()
        assert [r.id for r in pending.one_time] == [1, 2, 3]
        assert [r.to_bytes() for r in pending.one_time] == [r.to_bytes() for r in one_time]
        assert [r.id for r in pending.signed] == [1]
        assert [(r.id, r.last_resort) for r in pending.kyber] == [(1, False), (2, True)]
        assert not pending.is_empty()
        tx.prekeys.mark_uploaded(PreKeyKind.ONE_TIME, [1, 2, 99])
        tx.prekeys.mark_uploaded(PreKeyKind.SIGNED, [1])
    with store.transaction() as tx:
        pending = tx.prekeys.pending_upload()
        assert [r.id for r in pending.one_time] == [3]
        assert pending.signed == ()
        tx.prekeys.mark_uploaded(PreKeyKind.ONE_TIME, [3])
        tx.prekeys.mark_uploaded(PreKeyKind.KYBER, [1, 2])
        assert tx.prekeys.pending_upload().is_empty()
        got = tx.prekeys.get_one_time(2)
        assert got is not None and got.to_bytes() == one_time[1].to_bytes()
        got_signed = tx.prekeys.get_signed(1)
        assert got_signed is not None and got_signed.to_bytes() == signed.to_bytes()
        latest_signed = tx.prekeys.latest_signed()
        assert latest_signed is not None and latest_signed.id == 1
        got_kyber = tx.prekeys.get_kyber(1)
        assert got_kyber is not None and got_kyber.to_bytes() == kyber.to_bytes()
        latest = tx.prekeys.latest_last_resort()
        assert latest is not None and latest.id == 2 and latest.last_resort
        assert tx.prekeys.ids(PreKeyKind.KYBER) == [1, 2]
        assert tx.prekeys.ids(PreKeyKind.KYBER, last_resort=False) == [1]
        assert tx.prekeys.ids(PreKeyKind.KYBER, last_resort=True) == [2]
        assert tx.prekeys.remove_one_time(2) is True
        assert tx.prekeys.remove_one_time(2) is False
        assert tx.prekeys.remove_kyber(1) is True
        assert tx.prekeys.remove_signed(1) is True
    with store.transaction() as tx:
        assert tx.prekeys.get_one_time(2) is None
        assert tx.prekeys.ids(PreKeyKind.ONE_TIME) == [1, 3]
        assert tx.prekeys.get_kyber(1) is None
        assert tx.prekeys.latest_signed() is None
        assert tx.prekeys.get_signed(7) is None


def test_reput_same_record_keeps_it_pending_until_marked(store: Store, rng: Rng) -> None:
    record = PreKeyRecord.generate(1, rng)
    with store.transaction() as tx:
        tx.prekeys.put_one_time(record, uploaded=True)
        assert tx.prekeys.pending_upload().is_empty()
        tx.prekeys.put_one_time(record)
        assert [r.id for r in tx.prekeys.pending_upload().one_time] == [1]


def test_last_resort_uses(store: Store) -> None:
    base = b"\x05" + bytes(range(32))
    with store.transaction() as tx:
        assert tx.prekeys.record_last_resort_use((7, 3, base)) is True
        assert tx.prekeys.record_last_resort_use((7, 3, base)) is False
        assert tx.prekeys.record_last_resort_use((7, 4, base)) is True
        assert tx.prekeys.record_last_resort_use((8, 3, base)) is True
        uses = tx.prekeys.last_resort_uses()
        assert (7, 3, base) in uses
        assert (7, 3, base[:-1] + b"\x00") not in uses
        assert "not a triple" not in uses  # type: ignore[comparison-overlap]
    with store.transaction() as tx:
        uses = tx.prekeys.last_resort_uses()
        assert (7, 4, base) in uses and (8, 3, base) in uses
        assert tx.prekeys.forget_last_resort_uses(7) == 2
        assert (7, 3, base) not in uses and (8, 3, base) in uses


def test_last_resort_container_dies_with_its_transaction(store: Store) -> None:
    with store.transaction() as tx:
        uses = tx.prekeys.last_resort_uses()
    with pytest.raises(StoreError):
        (1, 1, b"x") in uses  # noqa: B015


def test_sessions(store: Store, rng: Rng) -> None:
    ours = factories.address(rng)
    bob1 = factories.address(rng)
    bob2 = ProtocolAddress(bob1.name, 2)
    carol = factories.address(rng)
    record = factories.session_record(rng, ours, bob1)
    with store.transaction() as tx:
        assert tx.sessions.get(bob1) is None
        tx.sessions.put(bob1, record)
        tx.sessions.put(bob2, record)
        tx.sessions.put(carol, record)
    with store.transaction() as tx:
        loaded = tx.sessions.get(bob1)
        assert loaded is not None and loaded.to_bytes() == record.to_bytes()
        assert tx.sessions.devices(bob1.name) == [1, 2]
        assert tx.sessions.devices("nobody") == []
        newer = loaded.archive_current_state()
        tx.sessions.put(bob1, newer)
    with store.transaction() as tx:
        again = tx.sessions.get(bob1)
        assert again is not None and again.to_bytes() == newer.to_bytes() != record.to_bytes()
        assert tx.sessions.delete(bob2) is True
        assert tx.sessions.delete(bob2) is False
        assert tx.sessions.delete_all(bob1.name) == 1
        assert tx.sessions.get(bob1) is None
        assert tx.sessions.get(carol) is not None


def test_identities_trust_on_first_use(store: Store, rng: Rng) -> None:
    first = KeyPair.generate(rng).public
    second = KeyPair.generate(rng).public
    with store.transaction() as tx:
        assert tx.identities.get("bob") is None
        assert tx.identities.observe("bob", first, NOW_MS) is IdentityChange.NEW
        assert tx.identities.observe("bob", first, NOW_MS + 1) is IdentityChange.UNCHANGED
        assert tx.identities.observe("bob", second, NOW_MS + 2) is IdentityChange.CHANGED
    with store.transaction() as tx:
        trusted = tx.identities.get("bob")
        assert trusted is not None
        assert (trusted.identity_key, trusted.first_seen_ms, trusted.verified) == (first, NOW_MS, False)
        tx.identities.set_verified("bob", True)
        assert tx.identities.get("bob") == dataclasses.replace(trusted, verified=True)
        with pytest.raises(MissingRecordError):
            tx.identities.set_verified("nobody", True)
    with store.transaction() as tx:
        replaced = tx.identities.replace("bob", second, NOW_MS + 5)
        assert replaced.identity_key == second and replaced.previous_key == first
        assert not replaced.verified and replaced.first_seen_ms == NOW_MS + 5
        assert tx.identities.replace("bob", second, NOW_MS + 9) == replaced
    with store.transaction() as tx:
        assert tx.identities.get("bob") == replaced
        assert tx.identities.observe("bob", second, NOW_MS) is IdentityChange.UNCHANGED
        assert tx.identities.delete("bob") is True
        assert tx.identities.delete("bob") is False
        assert tx.identities.observe("bob", first, NOW_MS) is IdentityChange.NEW


def test_the_safety_number_changed_flag_stays_until_cleared(store: Store, rng: Rng) -> None:
    first = KeyPair.generate(rng).public
    second = KeyPair.generate(rng).public
    with store.transaction() as tx:
        tx.identities.observe("bob", first, NOW_MS)
        assert tx.identities.get("bob") == TrustedIdentity("bob", first, NOW_MS)
        tx.identities.set_verified("bob", True)
        tx.identities.set_changed("bob", NOW_MS + 1)
        with pytest.raises(MissingRecordError):
            tx.identities.set_changed("nobody", NOW_MS)
    with store.transaction() as tx:
        flagged = tx.identities.get("bob")
        assert flagged == TrustedIdentity("bob", first, NOW_MS, verified=True, changed_ms=NOW_MS + 1)
        tx.identities.set_verified("bob", False)  # unverified again: the flag stays
        assert tx.identities.get("bob") == dataclasses.replace(flagged, verified=False)
        tx.identities.set_changed("bob", None)
    with store.transaction() as tx:
        assert tx.identities.get("bob") == TrustedIdentity("bob", first, NOW_MS)
        tx.identities.set_changed("bob", NOW_MS + 2)
        replaced = tx.identities.replace("bob", second, NOW_MS + 3)  # a newly trusted key: no flag
        assert replaced.changed_ms is None and replaced.previous_key == first


def test_sender_keys(store: Store, rng: Rng) -> None:
    alice = factories.address(rng)
    bob = factories.address(rng)
    dist = uuid.UUID(bytes=rng(16), version=4)
    other = uuid.UUID(bytes=rng(16), version=4)
    record = factories.sender_key_record(rng, dist)
    with store.transaction() as tx:
        assert tx.sender_keys.get(alice, dist) is None
        tx.sender_keys.put(alice, record)
        tx.sender_keys.put(bob, factories.sender_key_record(rng, dist))
        tx.sender_keys.put(alice, factories.sender_key_record(rng, other))
    with store.transaction() as tx:
        loaded = tx.sender_keys.get(alice, dist)
        assert loaded is not None and loaded.to_bytes() == record.to_bytes()
        bobs = tx.sender_keys.get(bob, dist)
        assert bobs is not None and bobs.to_bytes() != record.to_bytes()
        assert tx.sender_keys.get(ProtocolAddress(alice.name, 2), dist) is None
        assert tx.sender_keys.delete(alice, dist) is True
        assert tx.sender_keys.delete(alice, dist) is False
        assert tx.sender_keys.get(alice, other) is not None
