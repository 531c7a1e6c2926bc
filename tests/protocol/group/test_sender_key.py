"""Sender chain derivation, sender-key records (stored form, state bookkeeping) and reprs."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, InvalidSessionStateError, SottoError
from sotto.protocol.group import (
    SenderChainKey,
    SenderKeyRecord,
    SenderKeyState,
    group_decrypt,
    process_distribution,
)
from sotto.protocol.group.chain import MAX_ITERATION
from sotto.protocol.limits import MAX_SENDER_KEY_STATES
from tests.protocol.group.helpers import make_group


def stdlib_hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def test_chain_derivation_matches_an_independent_computation() -> None:
    chain_key = bytes(range(32))
    chain = SenderChainKey(0, chain_key)
    for iteration in range(3):
        seed = hmac.new(chain_key, b"\x01", hashlib.sha256).digest()
        okm = stdlib_hkdf(seed, b"WhisperGroup", 48)
        message_key = chain.message_key()
        assert message_key.iteration == iteration
        assert message_key.seed == seed
        assert message_key.iv_and_cipher_key() == (okm[:16], okm[16:])
        chain_key = hmac.new(chain_key, b"\x02", hashlib.sha256).digest()
        chain = chain.next()
        assert chain == SenderChainKey(iteration + 1, chain_key)


def test_chain_seeds_do_not_repeat() -> None:
    chain = SenderChainKey(0, b"\x01\x02\x03\x04")
    seen = {chain.chain_key}
    for _ in range(50):
        chain = chain.next()
        assert chain.chain_key not in seen
        seen.add(chain.chain_key)


def test_chain_cannot_pass_the_uint32_limit() -> None:
    with pytest.raises(InvalidSessionStateError):
        SenderChainKey(MAX_ITERATION, bytes(32)).next()


def public(seed: int) -> PublicKey:
    return KeyPair.generate(seeded_rng(seed)).public


def bare_state(chain_id: int, key_seed: int, chain_key: bytes) -> SenderKeyState:
    return SenderKeyState(
        chain_id=chain_id, chain_key=SenderChainKey(1, chain_key), signing_key=public(key_seed)
    )


EMPTY = SenderKeyRecord(uuid.UUID(int=7), ())


def test_record_keeps_newest_first_and_evicts_the_oldest() -> None:
    record = EMPTY
    for i in range(1, MAX_SENDER_KEY_STATES + 2):
        record = record.with_new_state(bare_state(i, i, bytes([i]) * 32))
    assert [s.chain_id for s in record.states] == [6, 5, 4, 3, 2]


def test_same_chain_and_key_keeps_the_first_data_and_moves_to_the_front() -> None:
    record = EMPTY.with_new_state(bare_state(1, 1, b"\x01" * 32)).with_new_state(
        bare_state(2, 2, b"\x02" * 32)
    )
    record = record.with_new_state(bare_state(1, 1, b"\x03" * 32))
    assert [s.chain_id for s in record.states] == [1, 2]
    assert record.states[0].chain_key.chain_key == b"\x01" * 32


def test_same_chain_with_another_key_is_replaced() -> None:
    record = EMPTY.with_new_state(bare_state(1, 1, b"\x01" * 32)).with_new_state(
        bare_state(1, 2, b"\x02" * 32)
    )
    assert len(record.states) == 1
    assert record.states[0].signing_key == public(2)
    assert record.states[0].chain_key.chain_key == b"\x02" * 32


def busy_records() -> tuple[SenderKeyRecord, SenderKeyRecord]:
    """A sender record (with a private key) and a member record with skipped keys and two chains."""
    group = make_group()
    messages = group.send_many(12)
    for i in (11, 3, 5):
        group.member, _ = group_decrypt(group.member, messages[i])
    other = make_group(seed=8)
    member = process_distribution(group.member, replace(other.skdm, distribution_id=group.distribution_id))
    return group.sender, member


def test_record_round_trips_through_bytes() -> None:
    for record in busy_records():
        again = SenderKeyRecord.from_bytes(record.to_bytes())
        assert again == record
        assert again.to_bytes() == record.to_bytes()
    _, member = busy_records()
    assert list(member.states[1].skipped) == [0, 1, 2, 4, 6, 7, 8, 9, 10]


def test_restored_record_keeps_decrypting() -> None:
    group = make_group()
    messages = group.send_many(5)
    group.member, _ = group_decrypt(group.member, messages[4])
    restored = SenderKeyRecord.from_bytes(group.member.to_bytes())
    for i in range(4):
        restored, plaintext = group_decrypt(restored, messages[i])
        assert plaintext == b"message %d" % i


def test_record_stored_form_refuses_junk() -> None:
    sender, member = busy_records()
    good = member.to_bytes()
    for bad in (
        b"",
        b"\x02" + good[1:],  # unknown format version
        good[:-1],  # truncated
        good + b"\x00",  # trailing bytes
        good[:17] + bytes([MAX_SENDER_KEY_STATES + 1]) + good[18:],  # too many states
    ):
        with pytest.raises(DecodeError):
            SenderKeyRecord.from_bytes(bad)
    stored = bytearray(sender.to_bytes())
    stored[18 + 1 + 4 + 4 + 32 + 33 + 1 + 5] ^= 0x40  # a bit of the private key: no longer matches
    with pytest.raises(DecodeError, match="match"):
        SenderKeyRecord.from_bytes(bytes(stored))


def test_reprs_hide_secrets() -> None:
    sender, member = busy_records()
    state = sender.states[0]
    assert state.signing_private is not None
    secrets = [
        state.chain_key.chain_key.hex(),
        state.signing_private.to_bytes().hex(),
        *(seed.hex() for seed in member.states[1].skipped.values()),
    ]
    for value in (sender, member, state, member.states[1], state.chain_key, state.chain_key.message_key()):
        text = repr(value)
        for secret in secrets:
            assert secret[:16] not in text
            assert secret[-16:] not in text


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=400))
def test_from_bytes_on_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    for candidate in (data, b"\x01" + data):
        with contextlib.suppress(DecodeError):
            SenderKeyRecord.from_bytes(candidate)


SENDER_BYTES, MEMBER_BYTES = (r.to_bytes() for r in busy_records())


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([SENDER_BYTES, MEMBER_BYTES]),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.integers(0, 255)), min_size=1, max_size=3
    ),
    st.integers(min_value=0, max_value=50),
)
def test_from_bytes_on_mutated_records(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    for candidate in (bytes(data), bytes(data[: len(data) - cut])):
        try:
            record = SenderKeyRecord.from_bytes(candidate)
        except DecodeError:
            continue
        assert SenderKeyRecord.from_bytes(record.to_bytes()) == record


GROUP = make_group(seed=11)
MESSAGES = GROUP.send_many(4)
MEMBER_AFTER_ONE, _ = group_decrypt(GROUP.member, MESSAGES[2])


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(MESSAGES),
    st.lists(st.tuples(st.integers(min_value=0, max_value=200), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_decrypting_mutated_messages_fails_cleanly_and_changes_nothing(
    base: bytes, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    if bytes(data) == base:
        return
    before = MEMBER_AFTER_ONE.to_bytes()
    with pytest.raises(SottoError):
        group_decrypt(MEMBER_AFTER_ONE, bytes(data))
    assert MEMBER_AFTER_ONE.to_bytes() == before
