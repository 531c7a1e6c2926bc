"""The protocol's limits at their edges, matching libsignal (rust/protocol/tests/session.rs)."""

from __future__ import annotations

import pytest

from sotto.errors import (
    DecryptionError,
    DuplicateMessageError,
    MessageTooFarAheadError,
    ReusedBaseKeyError,
)
from sotto.protocol.limits import MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_RECEIVER_CHAINS
from sotto.protocol.messages import CiphertextMessage
from sotto.protocol.ratchet.state import SenderChain
from tests.protocol.parties import Party, established_pair, make_pair


def _send(sender: Party, receiver: Party, count: int) -> list[CiphertextMessage]:
    return [sender.encrypt(receiver, f"m{i}".encode()) for i in range(count)]


@pytest.mark.parametrize(
    ("skipped", "first_survives"), [(MAX_MESSAGE_KEYS, True), (MAX_MESSAGE_KEYS + 1, False)]
)
def test_skipped_keys_limit(skipped: int, first_survives: bool) -> None:
    alice, bob = established_pair()
    messages = _send(alice, bob, skipped + 1)
    assert bob.decrypt(alice, messages[skipped]) == f"m{skipped}".encode()
    if first_survives:
        assert bob.decrypt(alice, messages[0]) == b"m0"
    else:
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(alice, messages[0])
    assert bob.decrypt(alice, messages[1]) == b"m1"


def test_message_key_limits_like_libsignal() -> None:
    """libsignal's test_message_key_limits: 2,300 sent; #1000, #2299, then #5 is a duplicate."""
    alice, bob = established_pair()
    messages = _send(alice, bob, 2300)
    assert bob.decrypt(alice, messages[1000]) == b"m1000"
    assert bob.decrypt(alice, messages[2299]) == b"m2299"
    with pytest.raises(DuplicateMessageError) as caught:
        bob.decrypt(alice, messages[5])
    assert (caught.value.chain_index, caught.value.counter) == (2300, 5)


def _message_at(sender: Party, receiver: Party, counter: int) -> CiphertextMessage:
    """The message ``sender`` would send at ``counter`` on its current chain (state advanced there)."""
    record = sender.sessions[receiver.address]
    state = record.current
    assert state is not None
    chain_key = state.sender_chain.chain_key
    while chain_key.index < counter:
        chain_key = chain_key.next()
    advanced = state._replace(sender_chain=SenderChain(state.sender_chain.ratchet_key, chain_key))
    sender.sessions[receiver.address] = record._replace(current=advanced)
    return sender.encrypt(receiver, b"far")


def _receiver_index(receiver: Party, sender: Party) -> int:
    """Where ``receiver``'s chain for ``sender``'s current ratchet key stands (0 if not seen yet)."""
    ours = receiver.sessions[sender.address].current
    theirs = sender.sessions[receiver.address].current
    assert ours is not None and theirs is not None
    position = ours.receiver_chain_index(theirs.sender_chain.ratchet_key.public)
    return 0 if position is None else ours.receiver_chains[position].chain_key.index


@pytest.mark.parametrize(("jump", "accepted"), [(MAX_FORWARD_JUMPS, True), (MAX_FORWARD_JUMPS + 1, False)])
def test_forward_jump_limit(jump: int, accepted: bool) -> None:
    alice, bob = established_pair()
    message = _message_at(alice, bob, _receiver_index(bob, alice) + jump)
    if accepted:
        assert bob.decrypt(alice, message) == b"far"
    else:
        with pytest.raises(MessageTooFarAheadError):
            bob.decrypt(alice, message)


def test_self_session_has_no_jump_limit() -> None:
    me, _ = make_pair(21)
    other_device = Party(me.name, 2, me.rng)
    other_device.identity = me.identity
    other_device.signed = me.signed
    other_device.kyber = me.kyber
    me.start_session(other_device)
    assert other_device.decrypt(me, me.encrypt(other_device, b"a")) == b"a"
    assert me.decrypt(other_device, other_device.encrypt(me, b"b")) == b"b"
    state = other_device.sessions[me.address].current
    assert state is not None and state.self_session
    jump = _receiver_index(other_device, me) + MAX_FORWARD_JUMPS + 1
    assert other_device.decrypt(me, _message_at(me, other_device, jump)) == b"far"


def _held_after_ratchet_steps(steps: int) -> tuple[Party, Party, CiphertextMessage]:
    """Bob sees ``steps`` of Alice's ratchet keys; returns a message held from the first one."""
    alice, bob = make_pair(31)
    alice.start_session(bob)
    held = None
    for step in range(steps):
        delivered, late = alice.encrypt(bob, f"d{step}".encode()), alice.encrypt(bob, b"late")
        held = held or late
        assert bob.decrypt(alice, delivered) == f"d{step}".encode()
        assert alice.decrypt(bob, bob.encrypt(alice, b"ack")) == b"ack"
    assert held is not None
    return alice, bob, held


def test_receiver_chains_limit() -> None:
    _alice, bob, held = _held_after_ratchet_steps(MAX_RECEIVER_CHAINS)
    assert bob.decrypt(_alice, held) == b"late"
    alice, bob, held = _held_after_ratchet_steps(MAX_RECEIVER_CHAINS + 1)
    assert len(bob.sessions[alice.address].current.receiver_chains) == MAX_RECEIVER_CHAINS  # type: ignore[union-attr]
    with pytest.raises(DecryptionError):
        bob.decrypt(alice, held)


def test_replayed_prekey_message_is_a_duplicate() -> None:
    alice, bob = make_pair(41)
    alice.start_session(bob)
    first = alice.encrypt(bob, b"first")
    assert bob.decrypt(alice, first) == b"first"
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(alice, first)
    # Even after Bob moved on to a newer session, the replay finds (and refuses) the old one.
    carol_like = Party(alice.name, alice.device_id, alice.rng)
    carol_like.identity = alice.identity
    carol_like.start_session(bob)
    assert bob.decrypt(carol_like, carol_like.encrypt(bob, b"new")) == b"new"
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(alice, first)


def test_reused_last_resort_triple_is_refused() -> None:
    alice, bob = make_pair(51)
    bundle = bob.bundle(one_time=False)
    alice.start_session(bob, bundle)
    first = alice.encrypt(bob, b"first")
    assert bob.decrypt(alice, first) == b"first"
    assert len(bob.used_last_resort) == 1
    bob.sessions.clear()  # the session is gone, the replay protection is not
    with pytest.raises(ReusedBaseKeyError):
        bob.decrypt(alice, first)
