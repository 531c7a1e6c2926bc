"""A small study in each mode: what the truth says happened is what the relay's view shows.

Ten people for a few simulated hours (the last half hour quiet, so that what was sent arrives),
half of them on the command line, with three outages a day and restarts: every contact was made
by a real invite that the relay saw, every text arrived exactly once, outages are gaps in the
address's requests, and the mailboxes the truth lists are the ones the view shows drained.
"""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sotto.audit.sim import study
from sotto.audit.sim.network import device_network
from sotto.audit.sim.people import HOUR_S, Habits
from sotto.audit.sim.study import StudyResult, StudySettings, run_study
from sotto.audit.sim.truth import Truth
from sotto.client import transport
from sotto.server.challenge import WorkGate
from sotto.server.config import ServerConfig, WorkPolicy
from sotto.server.observer import HttpExchange, WsFrame, WsOpen, read_view
from sotto.wire import work
from tests.audit.sim.test_network import httpx_network

HABITS = Habits(
    settle_s=1_800.0,
    cli_share=0.4,
    household_share=0.4,
    rotate_share=0.3,
    rotate_every_s=HOUR_S,
    conversations_per_day=3.0,
)


@pytest.fixture(scope="module", params=[False, True], ids=["default", "cadence"])
def result(request: pytest.FixtureRequest) -> StudyResult:
    cadence = bool(request.param)
    hours = 4.0 if cadence else 6.0
    return run_study(StudySettings(10, hours / 24, cadence=cadence, seed=5, habits=HABITS))


def test_every_contact_was_made_by_an_invite_the_relay_saw(result: StudyResult) -> None:
    truth = result.truth
    assert len(truth.contacts) == len(result.population.edges) > 0
    assert {frozenset((a, b)) for a, b, _ in truth.contacts} == {
        frozenset((a, b)) for a, b, _ in result.population.edges
    }
    bundles = [r for r in result.view if isinstance(r, HttpExchange) and r.path.endswith("/bundle")]
    invite_boxes = {m.mailbox: m for m in truth.mailboxes}
    for inviter, invitee, formed_us in truth.contacts:
        account = truth.people[inviter].account
        fetched = [
            r
            for r in bundles
            if r.path == f"/v1/accounts/{account}/bundle"
            and r.addr == truth.people[invitee].address
            and r.status == 200
            and r.t_us <= formed_us
        ]
        assert fetched, (inviter, invitee)
        made = [
            m
            for m in invite_boxes.values()
            if m.owner == inviter and m.writer == invitee and m.created_us <= formed_us
        ]
        assert made, (inviter, invitee)  # the invite's mailbox, created by the inviter for them
        requests = [
            s
            for s in truth.sent
            if s.sender == invitee and s.receiver == inviter and s.kind == "contact_request"
        ]
        assert requests, (inviter, invitee)


def test_every_text_arrived_exactly_once(result: StudyResult) -> None:
    assert len(result.texts) >= 4
    expected = Counter({(message_id, receiver): 1 for message_id, (_, receiver, _) in result.texts.items()})
    assert result.received == expected
    kinds = Counter(s.kind for s in result.truth.sent)
    assert kinds["text"] == len(result.texts)
    assert kinds["receipt"] > 0
    assert ("cover" in kinds) == result.truth.settings["cadence"]


def test_outages_are_gaps_in_the_addresses_requests(result: StudyResult) -> None:
    truth = result.truth
    outages = 0
    for index, home in enumerate(result.population.households):
        address = truth.people[home.members[0]].address
        made = [
            r.t_us
            for r in result.view
            if r.addr == address
            and (isinstance(r, HttpExchange | WsOpen) or (isinstance(r, WsFrame) and r.direction == "in"))
        ]
        for start, end in home.outages:
            start_us, end_us = truth.start_us + int(start * 1e6), truth.start_us + int(end * 1e6)
            assert not [t for t in made if start_us < t < end_us], (index, start, end)
            outages += 1
        if home.outages:
            assert max(made) > truth.start_us + int(home.outages[-1][1] * 1e6)  # back online
        for name in home.members:
            on = truth.people[name].device_on
            for start, end in home.outages:
                inside = truth.start_us + int((start + end) / 2 * 1e6)
                assert not any(a <= inside < b for a, b in on)  # off the network is not "on"
    assert outages > 0


def test_the_truths_mailboxes_are_those_the_view_shows_drained_by_their_owners(result: StudyResult) -> None:
    truth = result.truth
    owner_address = {m.mailbox: truth.people[m.owner].address for m in truth.mailboxes}
    drained: dict[str, set[str | None]] = {}
    for r in result.view:
        if (isinstance(r, WsFrame) and r.type == "subscribe" and r.direction == "in") or (
            isinstance(r, HttpExchange) and r.method == "POST" and r.path.endswith("/poll")
        ):
            for mailbox in r.mailboxes:
                drained.setdefault(mailbox, set()).add(r.addr)
    assert set(drained) == set(owner_address)
    for mailbox, addresses in drained.items():
        assert addresses == {owner_address[mailbox]}
    assert all(m.writer in truth.people and m.writer != m.owner for m in truth.mailboxes)
    assert any(m.retired_us is not None for m in truth.mailboxes)  # invites' and rotated ones


def test_app_use_lies_within_device_on(result: StudyResult) -> None:
    for person in result.truth.people.values():
        assert person.device_on and person.app_use
        for start, end in person.app_use:
            assert any(a <= start and end <= b for a, b in person.device_on)
        assert person.account


def test_the_command_line_writes_the_view_and_the_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert study.main(["--people", "3", "--days", "0.05", "--seed", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "simulated" in out and "per person-day" in out
    view = read_view(tmp_path / "view.jsonl")
    truth = Truth.load(tmp_path / "truth.json")
    assert len(truth.people) == 3 and view
    assert {r.addr for r in view if isinstance(r, HttpExchange)} == {p.address for p in truth.people.values()}


def test_the_same_seed_gives_the_same_truth_and_the_same_view() -> None:
    settings = StudySettings(6, 2 / 24, seed=3, habits=Habits(conversations_per_day=4.0))
    first, again = run_study(settings), run_study(settings)
    assert first.truth == again.truth
    assert len(first.truth.sent) > 0

    def shape(result: StudyResult) -> list[tuple[object, ...]]:
        # Sealed payloads hold the KEM's own randomness; when, where from and what was asked do not.
        return [(type(r).__name__, r.t_us, r.addr, r.port, getattr(r, "path", None)) for r in result.view]

    assert shape(first) == shape(again)


def _view_of(monkeypatch: pytest.MonkeyPatch, network: Callable[..., Any], *, cadence: bool) -> StudyResult:
    """A small study with its devices on ``network``, the signed calls' nonces seeded too (so
    that two runs handing the relay the same requests give equal records)."""
    monkeypatch.setattr(study, "device_network", network)
    monkeypatch.setattr(transport, "secrets", SimpleNamespace(token_bytes=random.Random(11).randbytes))
    habits = Habits(
        settle_s=1_200.0,
        cli_share=0.4,
        household_share=0.4,
        rotate_share=0.5,
        rotate_every_s=HOUR_S,
        conversations_per_day=8.0,
        outages_per_day=12.0,
        restarts_per_day=12.0,
    )
    return run_study(StudySettings(6, 2.5 / 24, cadence=cadence, seed=5, habits=habits))


@pytest.mark.parametrize("cadence", [False, True], ids=["default", "cadence"])
def test_the_relay_sees_a_study_as_it_would_through_httpx(
    monkeypatch: pytest.MonkeyPatch, cadence: bool
) -> None:
    """The study's devices on the direct in-process path hand the relay exactly the requests,
    from the same addresses and ports at the same instants, that the product's network over
    httpx does: every record of the operator's view, field for field, and the same truth."""
    built: list[object] = []

    def reference(*args: Any, **kwargs: Any) -> object:
        built.append(httpx_network(*args, **kwargs))
        return built[-1]

    through_httpx = _view_of(monkeypatch, reference, cadence=cadence)
    direct = _view_of(monkeypatch, device_network, cadence=cadence)
    assert built  # the reference really ran on httpx
    assert through_httpx.counts["texts"] > 0 and through_httpx.counts["outages"] > 0
    http = [r for r in through_httpx.view if isinstance(r, HttpExchange)]
    if cadence:
        assert any(r.path.endswith("/poll") for r in http)
    else:
        assert any(isinstance(r, WsFrame) for r in through_httpx.view)
    assert len(direct.view) == len(through_httpx.view) > 0
    for ours, theirs in zip(direct.view, through_httpx.view, strict=True):
        assert ours == theirs
    assert direct.truth == through_httpx.truth


@pytest.mark.parametrize("people", [10, 1_000, 10_000])
def test_registering_the_whole_population_at_once_costs_no_work(people: int) -> None:
    """Every person registers at time 0; the study's relay asks no proof of work of any of
    them (with the defaults it would from the 151st on, more the more were made), and keeps
    the default free rate for mailboxes and the defaults for everything else."""
    config = study.relay_config(StudySettings(people, 1.0, tick_seconds=60))
    gate = WorkGate(config.work, bytes(32), 0.0)
    for _ in range(people):
        assert gate.difficulty(work.Purpose.ACCOUNT, 0.0) == 0
        gate.created(work.Purpose.ACCOUNT, 0.0)
    assert config.work.mailbox_free_per_minute == WorkPolicy().mailbox_free_per_minute
    assert config.cadence_tick_seconds == 60
    assert (
        replace(config, work=WorkPolicy(), cadence_tick_seconds=ServerConfig().cadence_tick_seconds)
        == ServerConfig()
    )
    default = WorkGate(WorkPolicy(), bytes(32), 0.0)
    for _ in range(people):
        default.created(work.Purpose.ACCOUNT, 0.0)
    assert (default.difficulty(work.Purpose.ACCOUNT, 0.0) > 0) == (people > 150)


def test_a_study_freezes_what_registration_made_and_leaves_the_collector_as_it_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once everyone has registered, what exists is frozen and collections run less often;
    when the run ends, nothing stays frozen and the thresholds are the process's own again."""
    seen: list[tuple[int, tuple[int, int, int]]] = []
    schedule = study._schedule

    def watched(running: Any) -> Any:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))
        return schedule(running)

    monkeypatch.setattr(study, "_schedule", watched)
    before = gc.get_threshold()
    result = run_study(StudySettings(3, 0.5 / 24, seed=2))
    assert result.counts["registered"] == 3
    assert len(seen) == 1
    frozen, thresholds = seen[0]
    assert frozen > 0 and thresholds == study.GC_THRESHOLDS != before
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
