"""Adaptive proof of work for account and mailbox creation (relay-protocol §8): the gate's rules
on plain values, then over HTTP: a quiet relay asks for nothing; under a burst the difficulty
rises, and a missing, wrong, expired or replayed answer is refused with its own 428 code."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sotto.cli.app import app as cli_app
from sotto.crypto.random import system_rng
from sotto.server import ServerConfig, runner
from sotto.server.__main__ import add_storage_options
from sotto.server.challenge import WorkGate, WorkVerdict
from sotto.server.config import WorkPolicy, storage_settings
from sotto.server.ratelimit import RateMeter
from sotto.wire import api, b64, work
from tests.client.running_relay import free_port
from tests.server.conftest import Mailbox, Relay, ec_key, make_relay

ACCOUNT = work.Purpose.ACCOUNT
KEY = bytes(range(32))
T0 = 1_000_000.0
SMALL = WorkPolicy(free_per_minute=6, window_seconds=60, base_bits=4, max_bits=8, challenge_seconds=30)
"""Free up to a count of 6 (6 a minute over a 60 s window), then 4 bits, at most 8."""


def _gate(policy: WorkPolicy = SMALL, key: bytes = KEY, started: float = T0) -> WorkGate:
    return WorkGate(policy, key, started)


def _busy(gate: WorkGate, count: int, now: float = T0) -> WorkGate:
    for _ in range(count):
        gate.created(ACCOUNT, now)
    return gate


def _answer(challenge: bytes) -> str:
    difficulty = work.Challenge.from_bytes(challenge).difficulty
    return work.encode_header(challenge, work.solve(challenge, difficulty))


def _wrong_answer(challenge: bytes) -> str:
    difficulty = work.Challenge.from_bytes(challenge).difficulty
    for counter in range(1 << 20):
        nonce = counter.to_bytes(work.NONCE_LENGTH, "big")
        if not work.meets(challenge, nonce, difficulty):
            return work.encode_header(challenge, nonce)
    raise AssertionError("every nonce met the difficulty")


# ---------------------------------------------------------------------------- the rules
def test_the_meter_counts_a_burst_at_once_and_forgets_it_over_the_window() -> None:
    meter = RateMeter(60)
    for _ in range(10):
        meter.add(T0)
    assert meter.count(T0) == pytest.approx(10)
    assert meter.count(T0 + 60) == pytest.approx(10 / math.e)
    assert meter.count(T0 + 600) < 0.001
    steady = RateMeter(60)
    for second in range(3_600):
        steady.add(T0 + second)  # one a second settles near 60 (one a second × 60 s)
    assert 59 < steady.count(T0 + 3_600) < 61


def test_a_quiet_relay_asks_for_nothing_and_ignores_any_answer() -> None:
    gate = _busy(_gate(), 6)
    assert gate.difficulty(ACCOUNT, T0) == 0
    assert gate.admit(ACCOUNT, None, T0) is WorkVerdict.FREE
    assert gate.admit(ACCOUNT, "garbage", T0) is WorkVerdict.FREE
    assert len(gate) == 0


@pytest.mark.parametrize(
    ("count", "bits"), [(6, 0), (7, 4), (11, 4), (12, 5), (24, 6), (48, 7), (96, 8), (10_000, 8)]
)
def test_difficulty_is_base_plus_one_bit_per_doubling_above_the_free_count_capped(
    count: int, bits: int
) -> None:
    assert _busy(_gate(), count).difficulty(ACCOUNT, T0) == bits


def test_difficulty_falls_back_to_zero_as_the_burst_decays() -> None:
    gate = _busy(_gate(), 96)
    seen = [gate.difficulty(ACCOUNT, T0 + minutes * 60) for minutes in range(0, 6)]
    assert seen == sorted(seen, reverse=True)
    assert seen[0] == 8 and seen[-1] == 0


def test_a_solved_challenge_is_admitted_once() -> None:
    gate = _busy(_gate(), 20)
    challenge = gate.challenge(ACCOUNT, gate.difficulty(ACCOUNT, T0), T0, system_rng)
    answer = _answer(challenge)
    assert gate.admit(ACCOUNT, answer, T0 + 1) is WorkVerdict.SOLVED
    assert gate.admit(ACCOUNT, answer, T0 + 2) is WorkVerdict.REPLAYED
    assert len(gate) == 1


def test_refusals_each_have_their_verdict() -> None:
    gate = _busy(_gate(), 20)
    challenge = gate.challenge(ACCOUNT, 6, T0, system_rng)
    assert gate.admit(ACCOUNT, None, T0) is WorkVerdict.REQUIRED
    assert gate.admit(ACCOUNT, "not.base64!", T0) is WorkVerdict.INVALID
    assert gate.admit(ACCOUNT, b64.encode(challenge), T0) is WorkVerdict.INVALID  # no nonce
    assert gate.admit(ACCOUNT, _wrong_answer(challenge), T0) is WorkVerdict.INVALID
    # Another relay's challenge (another key), solved: its tag is not ours.
    foreign = _gate(key=bytes(32)).challenge(ACCOUNT, 6, T0, system_rng)
    assert gate.admit(ACCOUNT, _answer(foreign), T0) is WorkVerdict.INVALID
    # Our tag, but the difficulty byte lowered: the tag no longer matches.
    lowered = bytearray(challenge)
    lowered[2] = 0
    assert gate.admit(ACCOUNT, _answer(bytes(lowered)), T0) is WorkVerdict.INVALID
    # Another purpose's challenge opens nothing here.
    other = gate.challenge(99, 6, T0, system_rng)
    assert gate.admit(ACCOUNT, _answer(other), T0) is WorkVerdict.INVALID
    assert len(gate) == 0


def test_a_challenge_expires_and_one_from_before_the_start_is_refused() -> None:
    gate = _busy(_gate(), 2_000)  # still busy after the decay below
    challenge = gate.challenge(ACCOUNT, 4, T0, system_rng)
    answer = _answer(challenge)
    assert gate.admit(ACCOUNT, answer, T0 + SMALL.challenge_seconds) is WorkVerdict.EXPIRED
    earlier = gate.challenge(ACCOUNT, 4, T0 - 1, system_rng)  # as a previous process issued it
    assert gate.admit(ACCOUNT, _answer(earlier), T0) is WorkVerdict.EXPIRED
    later = gate.challenge(ACCOUNT, 4, T0 + 5, system_rng)  # "issued" after now: not ours to trust
    assert gate.admit(ACCOUNT, _answer(later), T0) is WorkVerdict.EXPIRED


def test_spent_challenges_are_bounded_and_forgotten_when_they_expire() -> None:
    gate = _busy(_gate(dataclasses.replace(SMALL, max_spent=2)), 2_000)
    answers = [_answer(gate.challenge(ACCOUNT, 4, T0, system_rng)) for _ in range(3)]
    assert [gate.admit(ACCOUNT, a, T0 + 1) for a in answers] == [
        WorkVerdict.SOLVED,
        WorkVerdict.SOLVED,
        WorkVerdict.BUSY,
    ]
    assert gate.retry_after(T0 + 1) == SMALL.challenge_seconds - 1
    later = T0 + SMALL.challenge_seconds
    fresh = _answer(gate.challenge(ACCOUNT, 4, later, system_rng))
    assert gate.admit(ACCOUNT, fresh, later) is WorkVerdict.SOLVED
    assert len(gate) == 1  # the two expired ones are gone


def test_the_policy_refuses_settings_that_make_no_sense() -> None:
    for bad in (
        {"free_per_minute": 0},
        {"base_bits": 0},
        {"base_bits": 9, "max_bits": 8},
        {"max_bits": 41},
        {"max_spent": 0},
    ):
        with pytest.raises(ValueError):
            WorkPolicy(**{**dataclasses.asdict(SMALL), **bad})


def test_the_gate_keeps_its_key_out_of_its_repr() -> None:
    assert KEY.hex() not in repr(_gate()) and "key" in repr(_gate())


# ---------------------------------------------------------------------------- over HTTP
@pytest.fixture
def busy_relay(tmp_path: Path) -> Iterator[Relay]:
    yield from make_relay(tmp_path, work=SMALL)


def _create(relay: Relay, answer: str | None = None) -> Any:
    body = {"identity_key": ec_key(), "registration_id": 7, "device_secret": b64.encode(os.urandom(32))}
    headers = {"Sotto-Work": answer} if answer is not None else {}
    return relay.client.post("/v1/accounts", json=body, headers=headers)


def _create_solving(relay: Relay) -> tuple[int, Any]:
    """Create one account, solving the challenge if asked: (bits solved, the final answer)."""
    first = _create(relay)
    if first.status_code != 428:
        return 0, first
    refused = api.WorkRequired.model_validate(first.json())
    assert refused.code == "work_required"
    return refused.difficulty, _create(relay, _answer(refused.challenge))


def test_a_quiet_relay_issues_no_challenge(busy_relay: Relay) -> None:
    answers = [_create(busy_relay) for _ in range(6)]
    assert [a.status_code for a in answers] == [201] * 6
    assert all("challenge" not in a.json() for a in answers)
    assert len(busy_relay.ctx.work_gate) == 0


def test_under_a_burst_the_difficulty_rises_and_solved_creations_go_through(busy_relay: Relay) -> None:
    solved = []
    for _ in range(60):
        bits, answer = _create_solving(busy_relay)
        assert answer.status_code == 201, answer.text
        solved.append(bits)
    assert solved[:7] == [0] * 7  # the free count of 6 is passed by the 7th creation
    assert solved[7] == SMALL.base_bits
    assert solved == sorted(solved)  # the clock stands still: the count only grows
    assert solved[-1] == 7  # 59 before the last is almost 10× the free 6: 4 + ⌊log2 9.8⌋ bits
    # Ten minutes of quiet later, creations are free again.
    busy_relay.clock.seconds += 600
    assert _create(busy_relay).status_code == 201


def test_missing_wrong_expired_and_replayed_answers_are_refused_with_their_code(busy_relay: Relay) -> None:
    for _ in range(400):  # busy enough to stay busy through the wait below
        busy_relay.ctx.work_gate.created(ACCOUNT, busy_relay.clock.now())
    required = _create(busy_relay)
    assert required.status_code == 428
    body = api.WorkRequired.model_validate(required.json())
    assert (body.code, body.difficulty) == ("work_required", 8)
    assert required.headers["content-type"] == "application/json"

    wrong = _create(busy_relay, _wrong_answer(body.challenge))
    assert (wrong.status_code, wrong.json()["code"]) == (428, "work_invalid")

    answer = _answer(body.challenge)
    assert _create(busy_relay, answer).status_code == 201
    replayed = _create(busy_relay, answer)
    assert (replayed.status_code, replayed.json()["code"]) == (428, "work_replayed")

    late = api.WorkRequired.model_validate(_create(busy_relay).json()).challenge
    busy_relay.clock.seconds += SMALL.challenge_seconds
    expired = _create(busy_relay, _answer(late))
    assert (expired.status_code, expired.json()["code"]) == (428, "work_expired")
    # Every refusal carries a fresh challenge that works.
    fresh = api.WorkRequired.model_validate(expired.json()).challenge
    assert _create(busy_relay, _answer(fresh)).status_code == 201


def test_a_malformed_answer_header_is_refused_busy_or_quiet(busy_relay: Relay) -> None:
    assert (_create(busy_relay, "nonsense").status_code, _create(busy_relay, "").status_code) == (422, 422)
    challenge = busy_relay.ctx.work_gate.challenge(ACCOUNT, 4, busy_relay.clock.now(), system_rng)
    assert _create(busy_relay, _wrong_answer(challenge)).status_code == 201  # well formed: not read
    for _ in range(10):
        busy_relay.ctx.work_gate.created(ACCOUNT, busy_relay.clock.now())
    assert _create(busy_relay, "nonsense").status_code == 422


@pytest.mark.parametrize("path", ["/v1/accounts", "/v1/mailboxes"])
def test_the_spec_documents_the_work_answer_and_header(busy_relay: Relay, path: str) -> None:
    spec = busy_relay.client.get("/openapi.json").json()
    operation = spec["paths"][path]["post"]
    assert "428" in operation["responses"]
    header = next(p for p in operation["parameters"] if p["name"] == "sotto-work")
    assert (header["in"], header["schema"]["type"]) == ("header", "string")


def test_mailbox_creations_are_counted_apart_with_their_own_free_rate(busy_relay: Relay) -> None:
    # SMALL: 6 accounts a minute are free, 600 mailboxes a minute (a count of 600, passed by the 601st).
    for _ in range(100):
        assert _create(busy_relay).status_code in (201, 428)
    assert _create(busy_relay).status_code == 428  # accounts are busy...
    assert [_new_mailbox(busy_relay).status_code for _ in range(601)] == [201] * 601  # ...mailboxes not
    refused = _new_mailbox(busy_relay)
    assert (refused.status_code, refused.json()["code"]) == (428, "work_required")
    challenge = api.WorkRequired.model_validate(refused.json()).challenge
    assert work.Challenge.from_bytes(challenge).purpose == work.Purpose.MAILBOX
    # An answer for one kind opens only that kind.
    assert _create(busy_relay, _answer(challenge)).json()["code"] == "work_invalid"
    body = Mailbox().create_body()
    assert _new_mailbox(busy_relay, _answer(challenge), body).status_code == 201
    assert _new_mailbox(busy_relay, None, body).status_code == 428  # the same body again needs work too


def _new_mailbox(relay: Relay, answer: str | None = None, body: dict[str, Any] | None = None) -> Any:
    headers = {"Sotto-Work": answer} if answer is not None else {}
    return relay.client.post("/v1/mailboxes", json=body or Mailbox().create_body(), headers=headers)


# ---------------------------------------------------------------------------- options
def test_server_options_set_the_free_rate_and_the_ceiling() -> None:
    parser = argparse.ArgumentParser()
    add_storage_options(parser)
    assert ServerConfig(**storage_settings(parser.parse_args([]))).work == WorkPolicy()
    argv = ["--free-signups-per-minute", "2.5", "--free-mailboxes-per-minute", "9", "--max-work-bits", "8"]
    work_policy = ServerConfig(**storage_settings(parser.parse_args(argv))).work
    assert (work_policy.free_per_minute, work_policy.mailbox_free_per_minute) == (2.5, 9)
    assert (work_policy.max_bits, work_policy.base_bits) == (8, 8)
    for bad in (["--free-signups-per-minute", "0"], ["--max-work-bits", "41"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_sotto_server_passes_its_work_options_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(runner, "run", lambda **kwargs: seen.update(kwargs))
    argv = ["server", "--port", str(free_port()), "--data", str(tmp_path), "--free-signups-per-minute", "4"]
    result = CliRunner().invoke(cli_app, [*argv, "--max-work-bits", "20", "--free-mailboxes-per-minute", "5"])
    assert result.exit_code == 0, result.output
    work_policy = ServerConfig(**seen["settings"]).work
    assert (work_policy.free_per_minute, work_policy.mailbox_free_per_minute, work_policy.max_bits) == (
        4,
        5,
        20,
    )
