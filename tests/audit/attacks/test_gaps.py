"""Gap signatures of outages."""

from __future__ import annotations

import random

import pytest

from sotto.audit.leakage.attacks import gaps
from sotto.server.observer import ViewRecord
from tests.audit.attacks.records import at, poll, send

TICK = 60


def _series(kind: str, mailbox: str, ticks: int, off: set[int]) -> list[ViewRecord]:
    make = poll if kind == "poll" else send
    return [make(t * TICK + 7, mailbox) for t in range(ticks) if t not in off]


def test_polls_and_sends_that_stop_in_the_same_ticks_come_from_one_device() -> None:
    # Alice reads M and writes to N; her outages are ticks 5-6 and 20. Carol writes to X and
    # was off at 12-13; Dave writes to Y and was never off.
    records = (
        _series("poll", "M", 30, {5, 6, 20})
        + _series("send", "N", 30, {5, 6, 20})
        + _series("send", "X", 30, {12, 13})
        + _series("send", "Y", 30, set())
    )
    records.sort(key=lambda r: r.t_us)
    ranking = gaps.attack(records, tick_seconds=TICK)
    assert ranking["mailbox:M"] == [("mailbox:N", 1.0)]
    assert ranking["mailbox:N"] == [("mailbox:M", 1.0)]
    assert "mailbox:Y" not in ranking  # no gap, no signature


def test_without_outages_there_is_no_answer() -> None:
    records = _series("poll", "M", 30, set()) + _series("send", "N", 30, set())
    assert gaps.attack(records, tick_seconds=TICK) == {}


def test_gaps_count_only_where_both_series_live() -> None:
    # N was created at tick 10: M's gap at tick 3 is outside N's life and does not count.
    n_sends = [r for r in _series("send", "N", 30, {15}) if r.t_us >= at(10 * TICK)]
    polls, sends = gaps.series(_series("poll", "M", 30, {3, 15}) + n_sends, tick_seconds=TICK)
    assert gaps.similarity(polls[0], sends[0]) == 1.0
    polls, sends = gaps.series(
        _series("poll", "M", 30, {3, 15}) + _series("send", "N", 30, {15}), tick_seconds=TICK
    )
    assert gaps.similarity(polls[0], sends[0]) == 0.5


def test_the_attack_scores_every_pair_as_similarity_does() -> None:
    rng = random.Random(4)
    records: list[ViewRecord] = []
    for i in range(6):
        kind = "poll" if i % 2 else "send"
        begin, end = rng.randrange(0, 10), rng.randrange(25, 40)
        off = {t for t in range(begin, end) if rng.random() < 0.2}
        records += [r for r in _series(kind, f"X{i}", end, off) if r.t_us >= at(begin * TICK)]
    records.sort(key=lambda r: r.t_us)
    ranking = gaps.attack(records, tick_seconds=TICK)
    polls, sends = gaps.series(records, tick_seconds=TICK)
    for p in polls:
        for s in sends:
            expected = gaps.similarity(p, s)
            found = dict(ranking.get(f"mailbox:{p.mailbox}", [])).get(f"mailbox:{s.mailbox}", 0.0)
            assert found == pytest.approx(expected), (p.mailbox, s.mailbox)
    assert ranking  # the draw has gaps in common somewhere
