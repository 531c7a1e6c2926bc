"""Chance levels: a random user, and the owner of a random pseudonym."""

from __future__ import annotations

import numpy as np

from sotto.audit.leakage.evaluate import _pseudonym_chance, cluster_owners
from sotto.audit.leakage.report import goal_check


def test_pseudonym_chance_weights_owners_by_what_they_hold() -> None:
    held = np.array([2, 10, 1, 1, 6], dtype=np.int64)  # user 1 is a hub
    # Target 0 knows the hub and user 2: 11 of the 18 pseudonyms that are not its own.
    assert _pseudonym_chance(held, 0, frozenset({1, 2})) == 11 / 18
    assert _pseudonym_chance(held, 0, frozenset()) == 0.0


def test_a_cluster_names_its_owner_only_with_a_majority_of_its_mailboxes() -> None:
    cluster = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2], dtype=np.int64)
    owner = np.array([5, 5, 6, 7, 7, 8, 9, 3, 4], dtype=np.int64)
    # Cluster 0: two of three are user 5's. Cluster 1: user 7 holds two of four, not more than
    # half. Cluster 2: one each. Cluster 3 has no mailboxes.
    assert cluster_owners(cluster, owner, 4).tolist() == [5, -1, -1, -1]


def _design(top1: float, chance: float, pseudonym: float | None) -> dict[str, object]:
    edges = {"top1": top1, "chance_top1": chance, "mti_median": None, "mti_budget": 1_000}
    if pseudonym is not None:
        edges["pseudonym_chance_top1"] = pseudonym
    return {"tap": {"edges": edges}}


def test_goal_takes_the_better_of_the_two_chance_levels() -> None:
    assert goal_check(_design(0.03, 0.01, 0.029), "tap")["met"]
    assert not goal_check(_design(0.03, 0.01, None), "tap")["met"]
    assert not goal_check(_design(0.07, 0.01, 0.029), "tap")["met"]
    assert goal_check(_design(0.03, 0.01, 0.029), "tap")["top1_over_chance"] == 3.0
