"""Calls through the reference store: prekeys consumed as the result names them, trust enforced."""

from __future__ import annotations

import uuid

import pytest

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, seeded_rng
from sotto.errors import (
    DecodeError,
    DecryptionError,
    NoSenderKeyStateError,
    SessionNotFoundError,
    UntrustedIdentityError,
)
from sotto.protocol import store as ps
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType, PreKeySignalMessage
from sotto.protocol.store import InMemoryProtocolStore

NOW_MS = 1_750_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)


def _pair(seed: int) -> tuple[Rng, InMemoryProtocolStore, InMemoryProtocolStore]:
    rng = seeded_rng(seed)
    return (
        rng,
        InMemoryProtocolStore.generate(ALICE, rng, NOW_MS),
        InMemoryProtocolStore.generate(BOB, rng, NOW_MS),
    )


def test_one_time_ec_and_kyber_prekeys_are_named_and_deleted() -> None:
    rng, alice, bob = _pair(1)
    pre_key, kyber = bob.generate_pre_key(rng), bob.generate_kyber_pre_key(rng, NOW_MS)
    ps.process_prekey_bundle(
        alice, BOB, bob.bundle(pre_key=pre_key, kyber_pre_key=kyber), now_ms=NOW_MS, rng=rng
    )
    first = ps.message_encrypt(alice, BOB, b"one", now_ms=NOW_MS, rng=rng)
    result = ps.message_decrypt_prekey(bob, ALICE, first.body, rng=rng)
    assert result.plaintext == b"one"
    assert result.used_one_time_pre_key_id == pre_key.id
    assert result.used_kyber_pre_key_id == result.one_time_kyber_pre_key_id == kyber.id
    assert result.used_signed_pre_key_id == bob.signed_pre_key.id
    assert not result.kyber_pre_key_last_resort and result.last_resort_use is None
    assert pre_key.id not in bob.pre_keys and kyber.id not in bob.kyber_pre_keys
    assert bob.last_resort_uses == set()
    assert bob.identity_of(ALICE) == alice.identity.public
    # A second PreKey message of the same session consumes nothing.
    again = ps.message_decrypt_prekey(
        bob, ALICE, ps.message_encrypt(alice, BOB, b"two", now_ms=NOW_MS, rng=rng).body, rng=rng
    )
    assert again.plaintext == b"two"
    assert (again.used_one_time_pre_key_id, again.used_kyber_pre_key_id, again.last_resort_use) == (
        None,
        None,
        None,
    )


def test_last_resort_kyber_prekey_is_kept_and_its_use_remembered() -> None:
    rng, alice, bob = _pair(2)
    last_resort = bob.last_resort_kyber_pre_key
    ps.process_prekey_bundle(alice, BOB, bob.bundle(), now_ms=NOW_MS, rng=rng)
    first = ps.message_encrypt(alice, BOB, b"one", now_ms=NOW_MS, rng=rng)
    base_key = PreKeySignalMessage.decode(first.body).base_key.to_bytes()
    result = ps.message_decrypt_prekey(bob, ALICE, first.body, rng=rng)
    assert result.used_one_time_pre_key_id is None
    assert result.used_kyber_pre_key_id == last_resort.id and result.one_time_kyber_pre_key_id is None
    assert result.kyber_pre_key_last_resort
    assert result.last_resort_use == (last_resort.id, bob.signed_pre_key.id, base_key)
    assert bob.last_resort_uses == {result.last_resort_use}
    assert last_resort.id in bob.kyber_pre_keys


def test_a_failed_prekey_message_changes_nothing() -> None:
    rng, alice, bob = _pair(3)
    pre_key = bob.generate_pre_key(rng)
    ps.process_prekey_bundle(alice, BOB, bob.bundle(pre_key=pre_key), now_ms=NOW_MS, rng=rng)
    first = ps.message_encrypt(alice, BOB, b"one", now_ms=NOW_MS, rng=rng)
    before = bob.snapshot()
    bad = CiphertextMessage(first.type, first.body[:-1] + bytes((first.body[-1] ^ 1,)))
    with pytest.raises((DecryptionError, DecodeError)):
        ps.message_decrypt(bob, ALICE, bad, rng=rng)
    assert bob.pre_keys == before.pre_keys and bob.sessions == {} and bob.identities == {}
    assert ps.message_decrypt(bob, ALICE, first, rng=rng) == b"one"


def test_changed_identity_is_refused_everywhere_until_accepted() -> None:
    rng, alice, bob = _pair(4)
    ps.process_prekey_bundle(alice, BOB, bob.bundle(), now_ms=NOW_MS, rng=rng)
    assert (
        ps.message_decrypt(bob, ALICE, ps.message_encrypt(alice, BOB, b"hi", now_ms=NOW_MS, rng=rng), rng=rng)
        == b"hi"
    )
    assert (
        ps.message_decrypt(alice, BOB, ps.message_encrypt(bob, ALICE, b"yo", now_ms=NOW_MS, rng=rng), rng=rng)
        == b"yo"
    )
    # Bob reinstalls: a new identity at the same address.
    new_bob = InMemoryProtocolStore.generate(BOB, rng, NOW_MS)
    with pytest.raises(UntrustedIdentityError):
        ps.process_prekey_bundle(alice, BOB, new_bob.bundle(), now_ms=NOW_MS, rng=rng)
    ps.process_prekey_bundle(new_bob, ALICE, alice.bundle(), now_ms=NOW_MS, rng=rng)
    from_new = ps.message_encrypt(new_bob, ALICE, b"it's me", now_ms=NOW_MS, rng=rng)
    session_before = alice.sessions[BOB]
    with pytest.raises(UntrustedIdentityError):
        ps.message_decrypt(alice, BOB, from_new, rng=rng)
    assert alice.sessions[BOB] is session_before
    alice.save_identity(BOB, new_bob.identity.public)  # the person accepted the new key
    assert ps.message_decrypt(alice, BOB, from_new, rng=rng) == b"it's me"
    # Sending on a session whose peer key is no longer trusted is refused too.
    alice.save_identity(BOB, KeyPair.generate(rng).public)
    with pytest.raises(UntrustedIdentityError):
        ps.message_encrypt(alice, BOB, b"x", now_ms=NOW_MS, rng=rng)


def test_whisper_from_a_session_with_an_untrusted_key_is_refused_after_decrypting() -> None:
    rng, alice, bob = _pair(5)
    ps.process_prekey_bundle(alice, BOB, bob.bundle(), now_ms=NOW_MS, rng=rng)
    ps.message_decrypt(bob, ALICE, ps.message_encrypt(alice, BOB, b"hi", now_ms=NOW_MS, rng=rng), rng=rng)
    reply = ps.message_encrypt(bob, ALICE, b"yo", now_ms=NOW_MS, rng=rng)
    alice.save_identity(BOB, KeyPair.generate(rng).public)
    before = alice.sessions[BOB]
    with pytest.raises(UntrustedIdentityError):
        ps.message_decrypt(alice, BOB, reply, rng=rng)
    assert alice.sessions[BOB] is before


def test_message_decrypt_refuses_other_types_and_missing_sessions() -> None:
    rng, alice, _bob = _pair(6)
    with pytest.raises(DecodeError):
        ps.message_decrypt(alice, BOB, (CiphertextMessageType.SENDER_KEY, b"\x33"), rng=rng)
    with pytest.raises(SessionNotFoundError):
        ps.message_encrypt(alice, BOB, b"x", now_ms=NOW_MS, rng=rng)


def test_group_calls_through_the_store() -> None:
    rng, alice, bob = _pair(7)
    group = uuid.UUID(int=5)
    with pytest.raises(NoSenderKeyStateError):
        ps.group_encrypt(alice, group, b"early", rng=rng)
    skdm = ps.create_sender_key_distribution(alice, group, rng)
    message = ps.group_encrypt(alice, group, b"team", rng=rng)
    with pytest.raises(NoSenderKeyStateError):
        ps.group_decrypt(bob, ALICE, message)
    ps.process_sender_key_distribution(bob, ALICE, skdm.encode())
    assert ps.group_decrypt(bob, ALICE, message) == b"team"
    assert ps.create_sender_key_distribution(alice, group, rng).chain_id == skdm.chain_id
    assert (ALICE, group) in bob.sender_keys and (ALICE, group) in alice.sender_keys
