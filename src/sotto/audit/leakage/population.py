"""A synthetic population: who knows whom, when they are awake, and what they say when.

Everything here is *ground truth*: the simulated clients read it, the adversary never does. The
numbers follow ``metadata-research`` §3.2 so results compare with the prototype there:

* a Holme–Kim contact graph (preferential attachment with triad closure: heavy-tailed degrees and
  triangles), ``m = edges_per_user`` new ties per arriving user, so about ``m·N`` edges;
* lognormal tie strengths (σ = 1.5): a few strong ties carry most of the traffic, which is what
  statistical disclosure exploits;
* four time zones, awake 07:00–23:00 local with a personal shift of up to ±1 h;
* bursty conversations with replies: Poisson per tie, started only by an awake initiator, burst
  length 1 + Geometric(mean 5), reply/think delay lognormal (median 30 s, σ = 1.2), the turn passes
  with p = 0.7; a recipient who is offline notices after a lognormal delay (median 2 min);
* presence: the app is open during conversations (plus a three-minute tail) and on background
  opens (Poisson, one per two awake hours, lognormal duration with median 2 min);
* typing indicators before half of the texts; text lengths lognormal (median 40 bytes, σ = 1).

Times are seconds since the start of the simulation, which starts at a UTC midnight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

DAY = 86_400.0
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PopulationConfig:
    users: int = 10_000
    days: float = 7.0
    seed: int = 1
    edges_per_user: int = 4
    triad_probability: float = 0.3
    tie_sigma: float = 1.5
    conversations_per_user_day: float = 8.0
    """Conversations a user takes part in per day, on average (each has two participants)."""
    burst_mean: float = 5.0
    reply_median_s: float = 30.0
    reply_sigma: float = 1.2
    turn_switch: float = 0.7
    notice_median_s: float = 120.0
    session_tail_s: float = 180.0
    background_opens_per_hour: float = 0.5
    background_median_s: float = 120.0
    typing_probability: float = 0.5
    text_median_bytes: float = 40.0
    text_sigma: float = 1.0
    text_cap_bytes: int = 4_096
    time_zones_h: tuple[int, ...] = (0, 1, 2, 8)


@dataclass(slots=True)
class Population:
    """Ground truth. Texts are sorted by send time."""

    config: PopulationConfig
    edges: I64
    """(M, 2) user pairs, each once."""
    strength: F64
    neighbors: list[frozenset[int]]
    tz_offset_s: I64
    sessions: list[list[tuple[float, float]]]
    """Per user, disjoint sorted (start, end) intervals when the app is open."""
    text_t: F64
    text_src: I64
    text_dst: I64
    text_bytes: I64
    """Length of the encoded text content (what padding has to hide)."""
    typing_t: F64
    """When a typing indicator for that text is sent; NaN if none."""
    conversation: I64
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def users(self) -> int:
        return self.config.users

    @property
    def duration_s(self) -> float:
        return self.config.days * DAY

    def degree(self) -> I64:
        return np.array([len(n) for n in self.neighbors], dtype=np.int64)

    def online_at(self, user: int, t: float) -> bool:
        return _inside(self.sessions[user], t)


def holme_kim(n: int, m: int, p: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Holme & Kim (2002): preferential attachment with triad formation (networkx's
    ``powerlaw_cluster_graph``, written out so the benchmark needs only numpy)."""
    if not 1 <= m < n:
        raise ValueError("need 1 <= m < n")
    adjacency: list[set[int]] = [set() for _ in range(n)]
    repeated: list[int] = list(range(m))
    edges: list[tuple[int, int]] = []

    def link(a: int, b: int) -> None:
        adjacency[a].add(b)
        adjacency[b].add(a)
        edges.append((min(a, b), max(a, b)))

    for source in range(m, n):
        targets: set[int] = set()
        while len(targets) < m:
            targets.add(repeated[int(rng.integers(len(repeated)))])
        pool = list(targets)
        target = pool.pop()
        link(source, target)
        repeated.append(target)
        count = 1
        while count < m:
            if rng.random() < p:
                closing = [x for x in adjacency[target] if x != source and x not in adjacency[source]]
                if closing:
                    friend = closing[int(rng.integers(len(closing)))]
                    link(source, friend)
                    repeated.append(friend)
                    count += 1
                    continue
            while pool and pool[-1] in adjacency[source]:
                pool.pop()
            if not pool:
                break
            target = pool.pop()
            link(source, target)
            repeated.append(target)
            count += 1
        repeated.extend([source] * m)
    return edges


def _inside(intervals: list[tuple[float, float]], t: float) -> bool:
    lo, hi = 0, len(intervals)
    while lo < hi:
        mid = (lo + hi) // 2
        if intervals[mid][0] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo > 0 and intervals[lo - 1][1] >= t


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _awake(local_hour: F64, shift: F64) -> NDArray[np.bool_]:
    h = (local_hour - shift) % 24
    return (h >= 7) & (h < 23)


def generate(config: PopulationConfig) -> Population:
    """The population of one seed (deterministic in ``config``)."""
    rng = np.random.default_rng(config.seed)
    n, horizon = config.users, config.days * DAY
    edges = np.array(holme_kim(n, config.edges_per_user, config.triad_probability, rng), dtype=np.int64)
    m = len(edges)
    strength = rng.lognormal(0.0, config.tie_sigma, m)
    neighbors_sets: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges:
        neighbors_sets[a].add(int(b))
        neighbors_sets[b].add(int(a))
    tz = rng.choice(np.array(config.time_zones_h, dtype=np.int64), n) * 3600
    shift = rng.uniform(-1.0, 1.0, n)

    # Conversations per tie: rate proportional to strength, scaled to the configured mean.
    per_edge = strength / strength.sum() * (config.conversations_per_user_day * n / 2.0)
    counts = rng.poisson(per_edge * config.days)
    ce = np.repeat(np.arange(m), counts)
    start = rng.uniform(0.0, horizon, len(ce))
    flip = rng.random(len(ce)) < 0.5
    init = np.where(flip, edges[ce, 1], edges[ce, 0])
    other = np.where(flip, edges[ce, 0], edges[ce, 1])
    local_h = ((start + tz[init]) % DAY) / 3600.0
    keep = _awake(local_h, shift[init])
    start, init, other, ce = start[keep], init[keep], other[keep], ce[keep]
    order = np.argsort(start)
    start, init, other, ce = start[order], init[order], other[order], ce[order]

    # Background app opens while awake.
    sessions: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    opens_total = rng.poisson(config.background_opens_per_hour * 24 * config.days * n)
    bu = rng.integers(0, n, opens_total)
    bt = rng.uniform(0.0, horizon, opens_total)
    bkeep = _awake(((bt + tz[bu]) % DAY) / 3600.0, shift[bu])
    bu, bt = bu[bkeep], bt[bkeep]
    bd = rng.lognormal(math.log(config.background_median_s), 0.8, len(bt))
    for u, t, d in zip(bu.tolist(), bt.tolist(), bd.tolist(), strict=True):
        sessions[u].append((t, min(horizon, t + d)))
    background = [_merge(s) for s in sessions]

    # Bursts, in time order so "is the recipient online" sees earlier conversations.
    burst_len = 1 + rng.geometric(1.0 / config.burst_mean, len(start))
    total = int(burst_len.sum())
    delays = rng.lognormal(math.log(config.reply_median_s), config.reply_sigma, total).tolist()
    switches = (rng.random(total) < config.turn_switch).tolist()
    notices = rng.lognormal(math.log(config.notice_median_s), 1.0, len(start)).tolist()
    sizes = np.minimum(
        config.text_cap_bytes,
        np.ceil(rng.lognormal(math.log(config.text_median_bytes), config.text_sigma, total)),
    ).astype(np.int64)
    typing_lead = rng.lognormal(math.log(6.0), 0.6, total)
    typing_on = rng.random(total) < config.typing_probability
    conv_sessions: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    t_out = np.empty(total)
    src_out = np.empty(total, dtype=np.int64)
    dst_out = np.empty(total, dtype=np.int64)
    conv_out = np.empty(total, dtype=np.int64)
    k = 0
    tail = config.session_tail_s
    for c, (t0, a, b, length) in enumerate(
        zip(start.tolist(), init.tolist(), other.tolist(), burst_len.tolist(), strict=True)
    ):
        online = _inside(background[b], t0) or _inside(conv_sessions[b], t0)
        joined = t0 if online else t0 + notices[c]
        s, d, t = a, b, t0
        for i in range(length):
            if i:
                if switches[k]:
                    s, d = d, s
                base = joined if (s == b and t < joined) else t
                t = base + 0.5 + delays[k]
            if t >= horizon:
                break
            t_out[k], src_out[k], dst_out[k], conv_out[k] = t, s, d, c
            k += 1
        last = t_out[k - 1] if k and conv_out[k - 1] == c else t0
        conv_sessions[a].append((t0 - 5.0, min(horizon, last + tail)))
        if joined < horizon:
            conv_sessions[b].append((joined, min(horizon, max(joined, last) + tail)))
        # keep conv_sessions roughly sorted for the online test: merge now and then
        if len(conv_sessions[a]) > 1 and conv_sessions[a][-1][0] < conv_sessions[a][-2][0]:
            conv_sessions[a] = _merge(conv_sessions[a])
        if len(conv_sessions[b]) > 1 and conv_sessions[b][-1][0] < conv_sessions[b][-2][0]:
            conv_sessions[b] = _merge(conv_sessions[b])
    t_arr, src, dst, conv = t_out[:k], src_out[:k], dst_out[:k], conv_out[:k]
    sizes, typing_lead, typing_on = sizes[:k], typing_lead[:k], typing_on[:k]
    # A typing indicator goes out a few seconds before its text (never before the burst began).
    burst_start = start[conv]
    typing_t = np.where(typing_on, np.maximum(t_arr - typing_lead, burst_start), np.nan)
    order = np.argsort(t_arr, kind="stable")
    merged = [_merge(background[u] + conv_sessions[u]) for u in range(n)]
    return Population(
        config=config,
        edges=edges,
        strength=strength,
        neighbors=[frozenset(s) for s in neighbors_sets],
        tz_offset_s=tz,
        sessions=merged,
        text_t=t_arr[order],
        text_src=src[order],
        text_dst=dst[order],
        text_bytes=sizes[order],
        typing_t=typing_t[order],
        conversation=conv[order],
    )
