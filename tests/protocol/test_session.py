"""End-to-end 1:1 sessions through the public API (sotto.protocol.session)."""

from __future__ import annotations

import random

import pytest

from sotto.errors import DecryptionError, DuplicateMessageError, SessionNotFoundError
from sotto.protocol.limits import MAX_UNACKNOWLEDGED_SESSION_AGE_MS
from sotto.protocol.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage
from tests.protocol.parties import NOW_MS, established_pair, make_pair


def test_first_messages_are_prekey_until_reply_then_whisper() -> None:
    alice, bob = make_pair()
    alice.start_session(bob)
    first = alice.encrypt(bob, b"one")
    second = alice.encrypt(bob, b"two")
    assert first.type == second.type == CiphertextMessageType.PREKEY
    assert bob.decrypt(alice, second) == b"two"
    assert bob.decrypt(alice, first) == b"one"
    reply = bob.encrypt(alice, b"reply")
    assert reply.type == CiphertextMessageType.WHISPER
    assert alice.decrypt(bob, reply) == b"reply"
    third = alice.encrypt(bob, b"three")
    assert third.type == CiphertextMessageType.WHISPER
    assert bob.decrypt(alice, third) == b"three"


def test_one_time_prekey_is_reported_for_deletion_once() -> None:
    alice, bob = make_pair()
    alice.start_session(bob)
    assert len(bob.one_time) == 1
    bob.decrypt(alice, alice.encrypt(bob, b"a"))
    assert bob.one_time == {}
    # The second PreKey message names the same session: no prekey needed any more.
    assert bob.decrypt(alice, alice.encrypt(bob, b"b")) == b"b"


def test_conversation_both_ways_with_reordering() -> None:
    alice, bob = established_pair()
    rnd = random.Random(5)
    for _round in range(20):
        sender, receiver = (alice, bob) if rnd.random() < 0.5 else (bob, alice)
        batch = [
            (sender.encrypt(receiver, f"m{i}".encode()), f"m{i}".encode()) for i in range(rnd.randrange(1, 6))
        ]
        rnd.shuffle(batch)
        for message, plaintext in batch:
            assert receiver.decrypt(sender, message) == plaintext


def test_duplicate_whisper_message() -> None:
    alice, bob = established_pair()
    message = alice.encrypt(bob, b"once")
    assert bob.decrypt(alice, message) == b"once"
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(alice, message)


def test_tampered_mac_leaves_record_bytes_unchanged() -> None:
    alice, bob = established_pair()
    message = alice.encrypt(bob, b"secret")
    before = bob.sessions[alice.address].to_bytes()
    tampered = message.body[:-1] + bytes((message.body[-1] ^ 1,))
    with pytest.raises(DecryptionError):
        bob.decrypt(alice, type(message)(message.type, tampered))
    assert bob.sessions[alice.address].to_bytes() == before
    assert bob.decrypt(alice, message) == b"secret"


def test_no_session_and_stale_session() -> None:
    alice, bob = make_pair()
    with pytest.raises(SessionNotFoundError):
        alice.encrypt(bob, b"x")
    alice.start_session(bob)
    alice.encrypt(bob, b"fine", now_ms=NOW_MS + MAX_UNACKNOWLEDGED_SESSION_AGE_MS)
    with pytest.raises(SessionNotFoundError):
        alice.encrypt(bob, b"stale", now_ms=NOW_MS + MAX_UNACKNOWLEDGED_SESSION_AGE_MS + 1)


def test_addresses_field_only_in_prekey_messages() -> None:
    alice, bob = make_pair()
    alice.start_session(bob)
    prekey = PreKeySignalMessage.decode(alice.encrypt(bob, b"a").body)
    assert prekey.message.addresses is not None and len(prekey.message.addresses) == 36
    alice2, bob2 = established_pair()
    whisper = SignalMessage.decode(alice2.encrypt(bob2, b"b").body)
    assert whisper.addresses is None
