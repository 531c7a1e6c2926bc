"""Scoring functions against hand-computed and brute-force answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sotto.audit.leakage import metrics


def test_ranking_scores() -> None:
    assert metrics.ranking_scores([5, 1, 7, 2], {1, 2}) == (0.0, (1 / 2 + 2 / 4) / 2, 0.5)
    assert metrics.ranking_scores([1, 2], {1, 2}) == (1.0, 1.0, 1.0)
    assert metrics.ranking_scores([], {1}) == (0.0, 0.0, 0.0)
    assert metrics.ranking_scores([1], set()) == (0.0, 0.0, 0.0)


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_auc_matches_pairwise_counting(pairs: list[tuple[int, bool]]) -> None:
    scores = np.array([s for s, _ in pairs], dtype=np.float64)
    labels = np.array([y for _, y in pairs], dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        assert metrics.auc(scores, labels) == 0.5
        return
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    assert math.isclose(metrics.auc(scores, labels), wins / (len(pos) * len(neg)))


def test_mutual_information_of_independent_and_identical_variables() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, 200_000)
    y = rng.integers(0, 4, 200_000)
    assert metrics.mutual_information(x, y) < 0.001
    assert math.isclose(metrics.mutual_information(x, x), metrics.entropy_bits(x), rel_tol=1e-9)
    assert math.isclose(metrics.entropy_bits(x), 2.0, abs_tol=0.001)


def test_closed_forms() -> None:
    assert math.isclose(metrics.intersection_bound(1_000_000, 0.01), 3.0)
    # More friends or more cover traffic need more rounds.
    assert metrics.sda_bound(10_000, 100, 10) > metrics.sda_bound(10_000, 100, 5)
    assert metrics.sda_bound(10_000, 1_000, 5) > metrics.sda_bound(10_000, 100, 5)
