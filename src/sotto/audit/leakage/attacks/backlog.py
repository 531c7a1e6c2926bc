"""Poll backlogs: how many envelopes each read hands out, and whether a drain pairs contacts.

A device that was away (its network down, its process stopped, a laptop asleep) comes back
to a backlog: its first poll of each mailbox hands out everything that waited (the answer's
``handed`` count, its bytes, and ``more`` when the reply budget cut it short), or its delivery
socket pushes it all just after it subscribes. In the same moments its outbox, held while it was
away, goes out: sends to its contacts' mailboxes. So a **drain** (a read that hands out more than
one envelope) of mailbox ``m`` at ``t``, next to sends to other mailboxes, says that ``m``'s owner
writes to them.

Drains, from the view: each poll answer with ``handed`` ≥ 2 (weight ``handed − 1``, plus
:data:`MORE_WEIGHT` when ``more`` is set), and each delivery connection's envelope frames of one
mailbox within :data:`SOCKET_BURST_S` of its subscribe (weight their number − 1). Each drain
gives its weight to the mailboxes written to within :data:`WINDOW_S` of it, shared among the
sends there (1 / their number each). :func:`drains` lists them (sizes over time), for reading.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

from sotto.audit.leakage.attacks.view import Kind, Ranking, View, pseudonym_of_mailbox, ranked, requests

WINDOW_S = 30.0
"""Seconds either side of a drain within which a send counts as the same device's."""
SOCKET_BURST_S = 2.0
"""Envelope frames this soon after a subscribe are the backlog it drained."""
MORE_WEIGHT = 4.0
"""Extra weight of a poll answer that says more was waiting."""


@dataclass(frozen=True, slots=True)
class Drain:
    t_us: int
    mailbox: str
    handed: int
    """Envelopes handed out at once."""
    bytes: int
    """Bytes of the answer (poll), or of the frames (socket)."""
    more: bool


def drains(records: View) -> list[Drain]:
    """Every read that handed out more than one envelope, in order of time."""
    out: list[Drain] = []
    subscribed: dict[tuple[int, str], int] = {}  # (connection, mailbox) → when it subscribed
    burst: dict[tuple[int, str], list[int]] = {}  # → [first frame µs, frames, bytes]
    burst_us = round(SOCKET_BURST_S * 1e6)
    for r in requests(records):
        if r.kind is Kind.POLL and r.mailbox and (r.handed >= 2 or r.more):
            out.append(Drain(r.t_us, r.mailbox, r.handed, r.reply, bool(r.more)))
        elif r.kind is Kind.SUBSCRIBE and r.mailbox:
            subscribed[(r.conn, r.mailbox)] = r.t_us
        elif r.kind is Kind.PUSH and r.mailbox and (r.conn, r.mailbox) in subscribed:
            key = (r.conn, r.mailbox)
            if r.t_us - subscribed[key] <= burst_us:
                held = burst.setdefault(key, [r.t_us, 0, 0])
                held[1] += 1
                held[2] += r.size
            else:
                del subscribed[key]
    for (_, mailbox), (t_us, frames, size) in burst.items():
        if frames >= 2:
            out.append(Drain(t_us, mailbox, frames, size, False))
    out.sort(key=lambda d: d.t_us)
    return out


def attack(records: View) -> Ranking:
    """Each drained mailbox's likeliest contacts' mailboxes (module docstring)."""
    parsed = requests(records)
    sends = [(r.t_us, r.mailbox) for r in parsed if r.kind is Kind.SEND and r.mailbox]
    times = [t for t, _ in sends]
    window = round(WINDOW_S * 1e6)
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for d in drains(parsed):
        lo, hi = bisect.bisect_left(times, d.t_us - window), bisect.bisect_right(times, d.t_us + window)
        near = [m for _, m in sends[lo:hi] if m != d.mailbox]
        if not near:
            continue
        weight = (d.handed - 1 + (MORE_WEIGHT if d.more else 0.0)) / len(near)
        key = pseudonym_of_mailbox(d.mailbox)
        for m in near:
            scores[key][pseudonym_of_mailbox(m)] += weight
    return ranked({k: dict(v) for k, v in scores.items()})


__all__ = ["MORE_WEIGHT", "SOCKET_BURST_S", "WINDOW_S", "Drain", "attack", "drains"]
