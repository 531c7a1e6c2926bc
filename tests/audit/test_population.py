"""The synthetic population: its graph, its timing, and that it is deterministic per seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sotto.audit.leakage.population import Population, PopulationConfig, generate, holme_kim


def test_holme_kim_has_the_requested_size_heavy_tail_and_triangles() -> None:
    n, m = 2_000, 4
    edges = holme_kim(n, m, 0.3, np.random.default_rng(5))
    assert len(edges) == len(set(edges))
    assert all(a < b for a, b in edges)
    assert m * (n - m) * 0.95 <= len(edges) <= m * (n - m)
    degree = np.bincount(np.array(edges).ravel(), minlength=n)
    assert degree.min() >= 1
    assert degree.max() > 10 * np.median(degree)  # preferential attachment: hubs
    adjacency: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    triangles = sum(len(adjacency[a] & adjacency[b]) for a, b in edges) / 3
    assert triangles > len(edges) * 0.1  # triad formation closes triangles


def test_holme_kim_refuses_impossible_sizes() -> None:
    with pytest.raises(ValueError):
        holme_kim(3, 3, 0.3, np.random.default_rng(1))


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(PopulationConfig(users=400, days=1.0, seed=3))


def test_population_is_deterministic_per_seed(population: Population) -> None:
    again = generate(PopulationConfig(users=400, days=1.0, seed=3))
    other = generate(PopulationConfig(users=400, days=1.0, seed=4))
    assert np.array_equal(population.text_t, again.text_t)
    assert np.array_equal(population.edges, again.edges)
    assert not np.array_equal(population.text_t[:50], other.text_t[:50])


def test_texts_flow_along_edges_in_time_order_inside_sessions(population: Population) -> None:
    p = population
    assert np.all(np.diff(p.text_t) >= 0)
    assert np.all((p.text_t >= 0) & (p.text_t < p.duration_s))
    for s, d in zip(p.text_src[:500].tolist(), p.text_dst[:500].tolist(), strict=True):
        assert d in p.neighbors[s]
    # The sender's app is open when it sends.
    inside = [p.online_at(int(s), float(t)) for s, t in zip(p.text_src, p.text_t, strict=True)]
    assert np.mean(inside) == 1.0
    typed = ~np.isnan(p.typing_t)
    assert 0.4 < typed.mean() < 0.6
    assert np.all(p.typing_t[typed] <= p.text_t[typed])


def test_sessions_are_disjoint_sorted_intervals(population: Population) -> None:
    for sessions in population.sessions:
        for (s0, e0), (s1, e1) in itertools.pairwise(sessions):
            assert s0 <= e0 < s1 <= e1


def test_traffic_is_concentrated_on_strong_ties(population: Population) -> None:
    p = population
    pairs = np.minimum(p.text_src, p.text_dst) * p.users + np.maximum(p.text_src, p.text_dst)
    _, counts = np.unique(pairs, return_counts=True)
    top = np.sort(counts)[::-1]
    assert top[: len(top) // 10].sum() > 0.3 * top.sum()
