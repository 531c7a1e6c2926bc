"""The disclosure attack code against the closed forms of metadata-research §2.10 (C2, C5)."""

from __future__ import annotations

import numpy as np
import pytest

from sotto.audit.leakage import metrics, toy


@pytest.mark.parametrize("p", [0.001, 0.01, 0.05, 0.1])
def test_intersection_attack_meets_the_bound_within_two_epochs(p: float) -> None:
    users = 100_000
    runs = [toy.intersection_epochs(users, p, seed) for seed in range(8)]
    assert all(r is not None for r in runs)
    median = float(np.median([r for r in runs if r is not None]))
    bound = metrics.intersection_bound(users, p)
    assert int(bound) <= median <= bound + 2


def test_known_background_rates_never_slow_the_attack() -> None:
    users, p = 100_000, 0.05
    plain = [toy.intersection_epochs(users, p, s) for s in range(6)]
    informed = [toy.intersection_epochs(users, p, s, background=True) for s in range(6)]
    assert np.median([r or 99 for r in informed]) <= np.median([r or 99 for r in plain])


@pytest.mark.parametrize(("users", "batch", "friends"), [(10_000, 500, 10), (20_000, 400, 12)])
def test_statistical_disclosure_separates_friends_after_the_bound(
    users: int, batch: int, friends: int
) -> None:
    bound = metrics.sda_bound(users, batch, friends)
    runs = [
        toy.threshold_mix_rounds(users, batch, friends, seed=s, max_rounds=int(4 * bound)) for s in range(6)
    ]
    assert all(r is not None for r in runs)
    mean = float(np.mean([r for r in runs if r is not None]))
    assert 0.7 * bound <= mean <= 1.3 * bound
