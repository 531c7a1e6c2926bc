"""The disclosure score's background rate, where a target's windows cover (almost) the whole trace."""

from __future__ import annotations

import numpy as np

from sotto.audit.leakage import sda

DURATION = 10_000.0


def _events(deposits: dict[int, np.ndarray], clusters: int) -> sda.Events:
    times = np.concatenate(list(deposits.values()))
    owner = np.concatenate([np.full(len(t), c, dtype=np.int64) for c, t in deposits.items()])
    order = np.argsort(times, kind="stable")
    total = np.bincount(owner, minlength=clusters).astype(np.float64)
    return sda.Events(times[order], owner[order], total, DURATION, {}, clusters, {})


def test_union_merges_overlapping_windows_and_stops_at_the_end_of_the_trace() -> None:
    starts, ends = sda.union(np.array([9_990.0, 10.0, 50.0, 500.0]), 60.0, DURATION)
    assert starts.tolist() == [10.0, 500.0, 9_990.0]
    assert ends.tolist() == [110.0, 560.0, DURATION]


def test_background_counts_each_deposit_outside_the_windows_once() -> None:
    # Two overlapping windows (0, 100] and (50, 150]: the deposit at 75 is inside both.
    ev = _events({1: np.array([75.0, 500.0, 600.0])}, clusters=2)
    rate = sda.background(ev, np.array([0.0, 50.0]), 100.0)
    assert rate[1] == 2 / (DURATION - 150.0)


def test_overlapping_windows_leave_the_background_to_timing_not_volume() -> None:
    """Polled every ~30 s with a 60 s window, the target leaves about 14% of the trace outside its
    windows, and each deposit falls in about two windows. Subtracting window counts from the total
    (counting each deposit once per window) leaves a busy pseudonym almost no background, which
    puts it first whatever the timing says; the union of the windows keeps the score on timing."""
    rng = np.random.default_rng(7)
    pushes = np.sort(rng.uniform(0.0, DURATION, 333))
    busy = np.sort(rng.uniform(0.0, DURATION, 2_000))  # independent of the target, 0.2 per second
    replies = pushes[::3] + 5.0  # the correspondent answers a third of the target's pushes
    ev = _events({0: pushes, 1: busy, 2: replies}, clusters=3)
    starts, ends = sda.union(pushes, 60.0, DURATION)
    assert 0.8 * DURATION < (ends - starts).sum() < (1 - sda.MIN_OUTSIDE) * DURATION
    z = sda.sda_scores(ev, pushes, 60.0, exclude=0)
    assert int(np.argmax(z)) == 2
    assert z[2] > 4.0
    assert abs(z[1]) < 3.0


def test_windows_covering_the_trace_give_every_candidate_one_rate() -> None:
    ev = _events({1: np.array([1.0, 2.0, 3.0]), 2: np.array([4.0])}, clusters=3)
    rate = sda.background(ev, np.arange(0.0, DURATION, 50.0), 60.0)
    assert rate.tolist() == [4 / 3 / DURATION] * 3
