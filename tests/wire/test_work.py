"""The proof-of-work bytes both sides share (sotto.wire.work): the challenge's layout, the hash a
nonce must meet, the solver, and the Sotto-Work header."""

from __future__ import annotations

import contextlib
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.errors import DecodeError
from sotto.wire import api, b64, work

CHALLENGE = work.Challenge(
    work.Purpose.ACCOUNT, 12, 1_700_000_000_123, bytes(range(16)), bytes(range(16, 32))
)


def test_challenge_layout_and_round_trip() -> None:
    data = CHALLENGE.to_bytes()
    assert len(data) == work.CHALLENGE_LENGTH == 43
    assert data[:3] == bytes([1, work.Purpose.ACCOUNT, 12])
    assert data[3:11] == (1_700_000_000_123).to_bytes(8, "big")
    assert data[11:27] == bytes(range(16)) and data[27:] == bytes(range(16, 32))
    assert CHALLENGE.signed_bytes() == data[:27]
    assert work.Challenge.from_bytes(data) == CHALLENGE


@pytest.mark.parametrize(
    "data",
    [
        b"",
        CHALLENGE.to_bytes()[:-1],
        CHALLENGE.to_bytes() + b"\x00",
        b"\x02" + CHALLENGE.to_bytes()[1:],  # another version
        CHALLENGE.to_bytes()[:2] + bytes([work.MAX_DIFFICULTY + 1]) + CHALLENGE.to_bytes()[3:],
    ],
)
def test_challenges_that_do_not_parse(data: bytes) -> None:
    with pytest.raises(DecodeError):
        work.Challenge.from_bytes(data)


def test_a_nonce_meets_a_difficulty_by_the_leading_zero_bits_of_one_sha256() -> None:
    challenge = CHALLENGE.to_bytes()
    nonce = work.solve(challenge, 12)
    digest = hashlib.sha256(b"sotto-work-v1\x00" + challenge + nonce).digest()
    zero_bits = 256 - int.from_bytes(digest, "big").bit_length()
    assert zero_bits >= 12
    assert work.meets(challenge, nonce, zero_bits)
    assert not work.meets(challenge, nonce, zero_bits + 1)
    assert work.meets(challenge, nonce, 0)
    assert not work.meets(challenge + b"x", nonce, 12) or zero_bits == 0  # bound to the challenge
    assert not work.meets(challenge, nonce[:-1], 0)  # a nonce is 8 bytes
    assert not work.meets(challenge, nonce, work.MAX_DIFFICULTY + 1)


def test_the_solver_searches_in_ranges_it_can_stop_between() -> None:
    challenge = CHALLENGE.to_bytes()
    nonce = work.solve(challenge, 10)
    first = int.from_bytes(nonce, "big")
    assert work.solve_range(challenge, 10, 0, first) is None  # nothing earlier meets it
    assert work.solve_range(challenge, 10, first, 1) == nonce
    assert work.solve_range(challenge, 0, 5, 1) == (5).to_bytes(8, "big")
    with pytest.raises(ValueError):
        work.solve(challenge, work.MAX_DIFFICULTY + 1)


def test_the_header_round_trips_and_matches_the_spec_pattern() -> None:
    challenge, nonce = CHALLENGE.to_bytes(), bytes(8)
    header = work.encode_header(challenge, nonce)
    assert header == f"{b64.encode(challenge)}.{b64.encode(nonce)}"
    assert work.decode_header(header) == (challenge, nonce)
    assert re.fullmatch(api.work_header_pattern(), header)


@pytest.mark.parametrize(
    "header",
    ["", "no-dot", ".", f"{b64.encode(bytes(43))}.", f"{b64.encode(bytes(42))}.{b64.encode(bytes(8))}"],
)
def test_headers_that_do_not_parse(header: str) -> None:
    with pytest.raises(DecodeError):
        work.decode_header(header)
    assert re.fullmatch(api.work_header_pattern(), header) is None


@given(st.text(max_size=120))
def test_decoding_a_header_raises_decode_error_and_nothing_else(text: str) -> None:
    try:
        challenge, nonce = work.decode_header(text)
    except DecodeError:
        return
    assert len(challenge) == work.CHALLENGE_LENGTH and len(nonce) == work.NONCE_LENGTH


@given(st.binary(max_size=64))
def test_parsing_a_challenge_raises_decode_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert work.Challenge.from_bytes(data).to_bytes() == data


def test_the_428_body_reads_the_challenge_strictly() -> None:
    body = {
        "code": "work_required",
        "message": "m",
        "challenge": b64.encode(CHALLENGE.to_bytes()),
        "difficulty": 12,
    }
    assert api.WorkRequired.model_validate(body).challenge == CHALLENGE.to_bytes()
    for bad in ({"difficulty": 0}, {"difficulty": "12"}, {"challenge": b64.encode(bytes(42))}):
        with pytest.raises(ValueError):
            api.WorkRequired.model_validate({**body, **bad})
