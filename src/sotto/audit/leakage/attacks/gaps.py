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
from collections.abc import Sequence
from dataclasses import dataclass

from sotto.audit.leakage.attacks.view import READS, Kind, Ranking, pseudonym_of_mailbox, ranked, requests
from sotto.server.observer import ViewRecord


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


def series(records: Sequence[ViewRecord], *, tick_seconds: float) -> tuple[list[Series], list[Series]]:
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


def attack(records: Sequence[ViewRecord], *, tick_seconds: float) -> Ranking:
    """Mailbox owners and their likeliest contacts: poll series against send series (module
    docstring); both sides are answered, each as ``mailbox:`` names."""
    polls, sends = series(records, tick_seconds=tick_seconds)
    poll_gaps = {p.mailbox: p.gaps(p.first, p.last) for p in polls}
    send_gaps = {s.mailbox: s.gaps(s.first, s.last) for s in sends}
    # Only series that miss a tick in common can match: find them through the missed ticks.
    missed_by: dict[int, list[Series]] = defaultdict(list)
    for s in sends:
        for t in send_gaps[s.mailbox]:
            missed_by[t].append(s)
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for p in polls:
        candidates = {s.mailbox: s for t in poll_gaps[p.mailbox] for s in missed_by.get(t, ())}
        for s in candidates.values():
            if p.mailbox == s.mailbox:
                continue  # its owner does not write to it
            score = _jaccard(p, s, poll_gaps[p.mailbox], send_gaps[s.mailbox])
            if score > 0:
                mp, ms = pseudonym_of_mailbox(p.mailbox), pseudonym_of_mailbox(s.mailbox)
                scores[mp][ms] = max(scores[mp].get(ms, 0.0), score)
                scores[ms][mp] = max(scores[ms].get(mp, 0.0), score)
    return ranked(scores)


__all__ = ["Series", "attack", "series", "similarity"]
