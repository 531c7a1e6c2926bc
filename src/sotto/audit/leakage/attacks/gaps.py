"""Gap signatures: a device that is off stops its polls and its sends in the same ticks.

In cadence mode every device polls each of its mailboxes and sends one envelope to each
contact in every tick, whatever its person does: the series of ticks in which a mailbox is
polled is its owner's device being on, and the series in which a mailbox receives a send is its
writer's device being on (per-contact mailboxes have one writer). When a device loses the
network or restarts, both stop for the same ticks. So a mailbox ``m`` whose polls miss the same
ticks as the sends to mailbox ``n`` is read by the device that writes to ``n``: ``m``'s owner is
a contact of ``n``'s owner.

Each series spans the ticks from its first request to its last; its *gaps* are the ticks in that
span without one. Two series are compared over the ticks both span, by the Jaccard index of
their gaps there (counted only when both have a gap there); a poll series is matched against
every send series and the reverse, and each ranks the other's mailbox by that score. Series
without gaps say nothing: with no outages the attack has no answer, as it should.

``tick_seconds`` is the relay's own setting, which its operator knows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sotto.audit.leakage.attacks.view import (
    READS,
    Kind,
    Ranking,
    View,
    pseudonym_of_mailbox,
    ranked,
    requests,
)


@dataclass(frozen=True, slots=True)
class Series:
    """The ticks in which one mailbox saw one kind of request."""

    mailbox: str
    ticks: frozenset[int]
    first: int
    last: int

    def gaps(self, first: int, last: int) -> set[int]:
        """The ticks in ``[first, last]`` (within this series' span) without a request."""
        lo, hi = max(first, self.first), min(last, self.last)
        return {t for t in range(lo, hi + 1) if t not in self.ticks}


def series(records: View, *, tick_seconds: float) -> tuple[list[Series], list[Series]]:
    """(polls, sends): each mailbox's series of ticks with a read, and with a send."""
    tick_us = tick_seconds * 1_000_000
    reads: dict[str, set[int]] = defaultdict(set)
    sends: dict[str, set[int]] = defaultdict(set)
    for r in requests(records):
        if r.mailbox is None:
            continue
        if r.kind in READS:
            reads[r.mailbox].add(int(r.t_us // tick_us))
        elif r.kind is Kind.SEND:
            sends[r.mailbox].add(int(r.t_us // tick_us))

    def made(table: dict[str, set[int]]) -> list[Series]:
        return [Series(m, frozenset(ts), min(ts), max(ts)) for m, ts in sorted(table.items())]

    return made(reads), made(sends)


def similarity(a: Series, b: Series) -> float:
    """The Jaccard index of the two series' gaps over the ticks both span (0 without gaps)."""
    return _jaccard(a, b, a.gaps(a.first, a.last), b.gaps(b.first, b.last))


def _jaccard(a: Series, b: Series, gaps_a: set[int], gaps_b: set[int]) -> float:
    first, last = max(a.first, b.first), min(a.last, b.last)
    if last - first < 2:
        return 0.0
    in_a = {t for t in gaps_a if first <= t <= last}
    in_b = {t for t in gaps_b if first <= t <= last}
    union = in_a | in_b
    return len(in_a & in_b) / len(union) if union else 0.0


BLOCK = 256
"""Poll series compared against every send series at once (bounds the memory: block × sends)."""


def attack(records: View, *, tick_seconds: float) -> Ranking:
    """Mailbox owners and their likeliest contacts: poll series against send series (module
    docstring); both sides are answered, each as ``mailbox:`` names. :func:`similarity` for
    every pair, computed as matrix products over the ticks."""
    polls, sends = series(records, tick_seconds=tick_seconds)
    polls = [p for p in polls if len(p.ticks) <= p.last - p.first]  # those with a gap
    sends = [s for s in sends if len(s.ticks) <= s.last - s.first]
    if not polls or not sends:
        return {}
    start = min(x.first for x in polls + sends)
    width = max(x.last for x in polls + sends) - start + 1
    gap_p, cum_p, first_p, last_p = _matrix(polls, start, width)
    gap_s, cum_s, first_s, last_s = _matrix(sends, start, width)
    send_names = np.array([pseudonym_of_mailbox(s.mailbox) for s in sends])
    send_rows = np.arange(len(sends))[None, :]
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for lo_row in range(0, len(polls), BLOCK):
        rows = slice(lo_row, lo_row + BLOCK)
        both = gap_p[rows] @ gap_s.T  # gaps in common (each inside both spans)
        lo = np.maximum(first_p[rows, None], first_s[None, :])
        hi = np.minimum(last_p[rows, None], last_s[None, :])
        valid = hi - lo >= 2
        lo, hi = np.clip(lo, 0, width), np.clip(hi + 1, 0, width)
        block_rows = np.arange(both.shape[0])[:, None]
        in_p = cum_p[rows][block_rows, hi] - cum_p[rows][block_rows, lo]
        in_s = cum_s[send_rows, hi] - cum_s[send_rows, lo]
        union = in_p + in_s - both
        score = np.where(valid & (union > 0), both / np.maximum(union, 1), 0.0)
        for i, j in zip(*np.nonzero(score > 0), strict=True):
            p = polls[lo_row + int(i)]
            mp, ms = pseudonym_of_mailbox(p.mailbox), str(send_names[j])
            if mp == ms:
                continue  # its owner does not write to it
            value = float(score[i, j])
            scores[mp][ms] = max(scores[mp].get(ms, 0.0), value)
            scores[ms][mp] = max(scores[ms].get(mp, 0.0), value)
    return ranked(scores)


def _matrix(
    found: list[Series], start: int, width: int
) -> tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.int64], NDArray[np.int64]]:
    """Per series: its gaps as a row of 0/1 over the ticks, their running count (one column
    more, so the gaps in ``[a, b]`` are ``cum[b + 1] − cum[a]``), and its span's ends."""
    gaps = np.zeros((len(found), width), dtype=np.float32)
    first = np.array([x.first - start for x in found], dtype=np.int64)
    last = np.array([x.last - start for x in found], dtype=np.int64)
    for row, x in enumerate(found):
        gaps[row, first[row] : last[row] + 1] = 1.0
        gaps[row, [t - start for t in x.ticks]] = 0.0
    cum = np.zeros((len(found), width + 1), dtype=np.int32)
    cum[:, 1:] = np.cumsum(gaps, axis=1, dtype=np.int32)
    return gaps, cum, first, last


__all__ = ["BLOCK", "Series", "attack", "series", "similarity"]
