"""Chain-only SPQR: framing, both directions, the 25,000 jump and the 2,000 history limits."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sotto.crypto.kdf import hkdf_sha256
from sotto.errors import DecodeError, DecryptionError
from sotto.protocol.limits import SPQR_MAX_JUMP, SPQR_MAX_OOO_KEYS
from sotto.protocol.protobuf import encode_varint
from sotto.protocol.ratchet import spqr
from sotto.protocol.ratchet.spqr import SpqrChain, SpqrMessage, SpqrMessageType

PQR_KEY = bytes(range(32))


def _pair() -> tuple[SpqrChain, SpqrChain]:
    return SpqrChain.start(PQR_KEY, initiator=True), SpqrChain.start(PQR_KEY, initiator=False)


def test_chain_start_and_next_follow_the_labels() -> None:
    okm = hkdf_sha256(PQR_KEY, 96, b"Signal PQ Ratchet V1 Chain  Start", salt=bytes(32))
    step = hkdf_sha256(okm[32:64], 64, (1).to_bytes(4, "big") + b"Signal PQ Ratchet V1 Chain Next", bytes(32))
    alice, _bob = _pair()
    _alice, payload, key = alice.send()
    assert key == step[32:]
    assert payload == b"\x01\x01\x01\x00"


def test_keys_agree_in_both_directions() -> None:
    alice, bob = _pair()
    for _ in range(3):
        alice, payload, sent = alice.send()
        bob, received = bob.recv(payload)
        assert received == sent
        bob, payload, sent = bob.send()
        alice, received = alice.recv(payload)
        assert received == sent


def test_out_of_order_and_reuse() -> None:
    alice, bob = _pair()
    payloads = []
    for _ in range(5):
        alice, payload, key = alice.send()
        payloads.append((payload, key))
    bob, key4 = bob.recv(payloads[4][0])
    assert key4 == payloads[4][1]
    bob_after_two, key2 = bob.recv(payloads[2][0])
    assert key2 == payloads[2][1]
    with pytest.raises(DecryptionError):
        bob_after_two.recv(payloads[2][0])
    with pytest.raises(DecryptionError):
        bob.recv(payloads[4][0])


def _at(index: int, message_type: SpqrMessageType = SpqrMessageType.NONE, epoch: int = 1) -> bytes:
    chunk = (0, b"\x00" * 32) if message_type not in (SpqrMessageType.NONE, SpqrMessageType.CT1_ACK) else None
    return SpqrMessage(epoch, index, message_type, chunk).encode()


def test_jump_limit() -> None:
    _alice, bob = _pair()
    bob.recv(_at(SPQR_MAX_JUMP))
    with pytest.raises(DecryptionError):
        bob.recv(_at(SPQR_MAX_JUMP + 1))
    unlimited = SpqrChain.start(PQR_KEY, initiator=False, self_session=True)
    unlimited.recv(_at(SPQR_MAX_JUMP + 1))


def test_history_keeps_2000_behind() -> None:
    _alice, bob = _pair()
    bob, _ = bob.recv(_at(SPQR_MAX_OOO_KEYS + 2))
    bob.recv(_at(2))
    with pytest.raises(DecryptionError):
        bob.recv(_at(1))


def test_refused_payloads() -> None:
    _alice, bob = _pair()
    for payload in (
        b"",
        b"\x00",
        _at(1, epoch=2),
        b"\x01\x01\x01",
        b"\x01\x01\x01\x07",
        _at(1)[:-1] + b"\x01",
    ):
        with pytest.raises(DecryptionError):
            bob.recv(payload)


def test_peer_chunks_are_ignored_and_newer_versions_skipped() -> None:
    alice, bob = _pair()
    alice, _, key = alice.send()
    _, received = bob.recv(_at(1, SpqrMessageType.HDR) + b"trailing")
    assert received == key
    unchanged, salt = bob.recv(b"\x02anything")
    assert salt is None and unchanged is bob
    _, salt = bob.recv(_at(0))
    assert salt is None


_NEAR_CHAIN_ONLY = st.builds(
    lambda version, epoch, index, message_type, tail: (
        bytes((version,)) + encode_varint(epoch) + encode_varint(index) + bytes((message_type,)) + tail
    ),
    st.sampled_from([0, 1, 2]),
    st.sampled_from([0, 1, 2, 129]),
    st.integers(0, 2**33),
    st.integers(0, 8),
    st.binary(max_size=40),
)


@settings(max_examples=500)
@example(b"\x01\x01" + encode_varint(2**32) + b"\x00")
@example(b"\x01\x01" + encode_varint(2**32 - 1) + b"\x00trailing")
@example(b"\x01\x01\x80")
@given(
    _NEAR_CHAIN_ONLY | st.binary(max_size=12).map(lambda tail: b"\x01\x01" + tail) | st.binary(max_size=12)
)
def test_chain_only_fast_path_agrees_with_the_full_decoder(payload: bytes) -> None:
    try:
        message = SpqrMessage.decode(payload)
    except DecodeError:
        message = None
    index = spqr._chain_only_index(payload)
    if message is not None and message.epoch == 1 and message.type is SpqrMessageType.NONE:
        assert index == message.index
    else:
        assert index is None


@given(st.binary(max_size=64))
def test_decode_raises_only_decode_error(data: bytes) -> None:
    try:
        message = SpqrMessage.decode(data)
    except DecodeError:
        return
    assert message.epoch >= 1


def test_repr_hides_seeds() -> None:
    alice, _ = _pair()
    assert alice.send_seed.hex()[:8] not in repr(alice)
    assert alice.recv_seed.hex()[:8] not in repr(alice)
