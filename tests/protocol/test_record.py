"""Session records: archiving (40 kept), promotion, persistence and the frozen v1 format.

Regenerate the fixture (only when deliberately adding a new format version, never for v1):
``python -m tests.protocol.test_record``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.crypto.random import seeded_rng
from sotto.errors import InvalidSessionStateError, MissingPreKeyError
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.limits import ARCHIVED_STATES_MAX_LENGTH
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType
from sotto.protocol.record import SessionRecord
from tests.protocol.parties import ALICE_NAME, BOB_NAME, Party, established_pair, make_pair

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FIXTURE = VECTORS / "session_record_v1.bin"
FIXTURE_MESSAGE = VECTORS / "session_record_v1_message.bin"
FIXTURE_PLAINTEXT = b"frozen format, version 1"


def _archived_states_after(sessions: int) -> tuple[Party, Party, CiphertextMessage]:
    """Alice starts ``sessions`` sessions with Bob; returns a message from the first one."""
    alice, bob = make_pair(61)
    alice.start_session(bob)
    first = alice.encrypt(bob, b"oldest")
    assert bob.decrypt(alice, alice.encrypt(bob, b"setup")) == b"setup"
    for _ in range(sessions - 1):
        alice.start_session(bob)
        assert bob.decrypt(alice, alice.encrypt(bob, b"newer")) == b"newer"
    return alice, bob, first


def test_forty_archived_states_kept() -> None:
    alice, bob, first = _archived_states_after(ARCHIVED_STATES_MAX_LENGTH + 1)
    record = bob.sessions[alice.address]
    assert len(record.previous) == ARCHIVED_STATES_MAX_LENGTH
    assert bob.decrypt(alice, first) == b"oldest"  # the oldest archived state decrypts and is promoted
    assert bob.sessions[alice.address].current is not None
    assert len(bob.sessions[alice.address].previous) == ARCHIVED_STATES_MAX_LENGTH


def test_forty_first_state_is_gone() -> None:
    alice, bob, first = _archived_states_after(ARCHIVED_STATES_MAX_LENGTH + 2)
    assert len(bob.sessions[alice.address].previous) == ARCHIVED_STATES_MAX_LENGTH
    # With its session dropped, the PreKey message needs its one-time prekey, deleted long ago.
    with pytest.raises(MissingPreKeyError):
        bob.decrypt(alice, first)


def test_whisper_message_on_archived_state_promotes_it() -> None:
    alice, bob = established_pair(62)
    old_message = alice.encrypt(bob, b"old session")
    bob.sessions[alice.address] = bob.sessions[alice.address].archive_current_state()
    assert bob.sessions[alice.address].current is None
    assert bob.decrypt(alice, old_message) == b"old session"
    assert bob.sessions[alice.address].current is not None
    assert len(bob.sessions[alice.address].previous) == 0


def test_round_trip_and_repr() -> None:
    alice, bob = established_pair(63)
    for _ in range(3):
        alice.encrypt(bob, b"skipped")
    bob.decrypt(alice, alice.encrypt(bob, b"x"))
    record = bob.sessions[alice.address].promote_state(alice.sessions[bob.address].current)  # type: ignore[arg-type]
    data = record.to_bytes()
    assert SessionRecord.from_bytes(data).to_bytes() == data
    text = repr(record)
    state = record.current
    assert state is not None
    for secret in (
        state.root_key.key,
        state.sender_chain.chain_key.key,
        state.sender_chain.ratchet_key.private.to_bytes(),
    ):
        assert secret.hex()[:8] not in text


@given(st.binary(max_size=200))
def test_junk_raises_invalid_session_state(data: bytes) -> None:
    for candidate in (data, b"SottoSR\x01" + data):
        with contextlib.suppress(InvalidSessionStateError):
            SessionRecord.from_bytes(candidate)


def test_truncations_raise_invalid_session_state() -> None:
    alice, bob = established_pair(64)
    data = bob.sessions[alice.address].to_bytes()
    for cut in range(len(data)):
        with contextlib.suppress(InvalidSessionStateError):
            SessionRecord.from_bytes(data[:cut])


def test_frozen_v1_fixture_still_loads_and_decrypts() -> None:
    data = FIXTURE.read_bytes()
    record = SessionRecord.from_bytes(data)
    assert record.to_bytes() == data
    _, plaintext = session.decrypt_signal_message(
        record,
        FIXTURE_MESSAGE.read_bytes(),
        our_address=ProtocolAddress(BOB_NAME, 2),
        their_address=ProtocolAddress(ALICE_NAME, 1),
        rng=seeded_rng(0),
    )
    assert plaintext == FIXTURE_PLAINTEXT


def write_fixture() -> None:
    """Bob's record (with skipped keys and an archived state) and a message it decrypts."""
    alice, bob = established_pair(65)
    alice.start_session(bob)
    bob.decrypt(alice, alice.encrypt(bob, b"second session"))
    alice.decrypt(bob, bob.encrypt(alice, b"ack"))
    for _ in range(2):
        alice.encrypt(bob, b"skipped")
    message = alice.encrypt(bob, FIXTURE_PLAINTEXT)
    assert message.type == CiphertextMessageType.WHISPER
    FIXTURE.write_bytes(bob.sessions[alice.address].to_bytes())
    FIXTURE_MESSAGE.write_bytes(message.body)


if __name__ == "__main__":
    write_fixture()
