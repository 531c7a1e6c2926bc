"""The protocol's limits at their edges, matching libsignal (rust/protocol/tests/session.rs)."""

from __future__ import annotations

import pytest

from sotto.errors import (
    DecryptionError,
    DuplicateMessageError,
    MessageTooFarAheadError,
    ReusedBaseKeyError,
)
from sotto.protocol import session
from sotto.protocol.limits import MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_RECEIVER_CHAINS
from sotto.protocol.messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
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
    other_device = Party(me.name, 2, me.rng, identity_key_pair=me.identity)
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
    carol_like = Party(alice.name, alice.device_id, alice.rng, identity_key_pair=alice.identity)
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


def _with_tampered_mac(message: CiphertextMessage) -> CiphertextMessage:
    """The same PreKey message (same base key, same prekeys) whose inner MAC no longer verifies."""
    parsed = PreKeySignalMessage.decode(message.body)
    inner = parsed.message.serialized
    tampered = SignalMessage.decode(inner[:-1] + bytes((inner[-1] ^ 1,)))
    rebuilt = PreKeySignalMessage.create(
        registration_id=parsed.registration_id,
        pre_key_id=parsed.pre_key_id,
        signed_pre_key_id=parsed.signed_pre_key_id,
        kyber_pre_key_id=parsed.kyber_pre_key_id,
        kyber_ciphertext=parsed.kyber_ciphertext,
        base_key=parsed.base_key,
        identity_key=parsed.identity_key,
        message=tampered,
    )
    return CiphertextMessage(message.type, rebuilt.serialized)


def test_reused_last_resort_triple_is_checked_only_after_the_message_decrypts() -> None:
    """As libsignal consults its Kyber store after decrypting: a replay that fails anyway reports
    that failure, and the reuse error is kept for a replay that would otherwise be accepted."""
    alice, bob = make_pair(52)
    alice.start_session(bob, bob.bundle(one_time=False))
    first = alice.encrypt(bob, b"first")
    assert bob.decrypt(alice, first) == b"first"
    bob.sessions.clear()
    uses = set(bob.used_last_resort)
    with pytest.raises(DecryptionError):
        bob.decrypt(alice, _with_tampered_mac(first))
    with pytest.raises(ReusedBaseKeyError):
        bob.decrypt(alice, first)
    assert bob.used_last_resort == uses and bob.sessions == {}


def test_failed_last_resort_message_records_no_use() -> None:
    """Order the other way: a first message that fails leaves the triple unused, so the
    genuine message with the same base key is still accepted afterwards."""
    alice, bob = make_pair(53)
    alice.start_session(bob, bob.bundle(one_time=False))
    first = alice.encrypt(bob, b"first")
    with pytest.raises(DecryptionError):
        bob.decrypt(alice, _with_tampered_mac(first))
    assert bob.used_last_resort == set() and bob.sessions == {}
    assert bob.decrypt(alice, first) == b"first"
    assert len(bob.used_last_resort) == 1


def test_pure_decrypt_checks_the_used_set_after_decrypting() -> None:
    """The same order in sotto.protocol.session itself, without a store."""
    alice, bob = make_pair(54)
    alice.start_session(bob, bob.bundle(one_time=False))
    parsed = PreKeySignalMessage.decode(alice.encrypt(bob, b"first").body)
    use = (bob.kyber.id, bob.signed.id, parsed.base_key.to_bytes())
    common = {
        "our_identity": bob.identity,
        "our_registration_id": bob.registration_id,
        "our_address": bob.address,
        "their_address": alice.address,
        "signed_pre_key": bob.signed,
        "kyber_pre_key": bob.kyber,
        "one_time_pre_key": None,
        "used_last_resort": {use},
        "rng": bob.rng,
    }
    tampered = _with_tampered_mac(CiphertextMessage(CiphertextMessageType.PREKEY, parsed.serialized))
    with pytest.raises(DecryptionError):
        session.decrypt_prekey_message(None, tampered.body, **common)  # type: ignore[arg-type]
    with pytest.raises(ReusedBaseKeyError):
        session.decrypt_prekey_message(None, parsed, **common)  # type: ignore[arg-type]
