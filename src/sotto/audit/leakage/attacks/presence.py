"""Presence: per 15-minute bin, how much a pseudonym's device (or its person) showed itself.

For each mailbox, the reads of it (polls, subscribes, acks) in each bin, and the time a
WebSocket that subscribed to it stayed open in that bin; for each account, its account
requests. In cadence mode a device polls each mailbox once a tick while it is on, so a bin
without polls is a bin the device was off (an outage shows as the gap :mod:`.gaps` matches); in
default mode the delivery connection is open while the app runs. The score per bin is the count
of reads plus the fraction of the bin a subscribed connection was open; scoring
(:mod:`.score`) ranks the bins by it against the device being on, and against the app in use.
"""

from __future__ import annotations

from collections import defaultdict

from sotto.audit.leakage.attacks.view import (
    READS,
    Kind,
    View,
    pseudonym_of_account,
    pseudonym_of_mailbox,
    requests,
)

BIN_S = 900.0
"""Presence is scored on 15-minute bins."""

Presence = dict[str, dict[int, float]]
"""Pseudonym (``mailbox:`` or ``account:``) → bin number (``t_us // bin``) → score; a bin left
out scores 0."""


def presence(records: View, *, bin_s: float = BIN_S) -> Presence:
    """Each pseudonym's score per bin (module docstring)."""
    bin_us = round(bin_s * 1_000_000)
    out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    opened: dict[int, int] = {}
    subscribed: dict[int, set[str]] = defaultdict(set)
    last_us = 0
    for r in requests(records):
        last_us = max(last_us, r.end_us)
        opened.setdefault(r.conn, r.t_us)
        if r.kind in READS and r.mailbox:
            out[pseudonym_of_mailbox(r.mailbox)][r.t_us // bin_us] += 1.0
            if r.kind is Kind.SUBSCRIBE:
                subscribed[r.conn].add(r.mailbox)
        elif r.kind is Kind.ACCOUNT and r.account:
            out[pseudonym_of_account(r.account)][r.t_us // bin_us] += 1.0
        elif r.kind is Kind.CLOSE and r.conn in subscribed:
            _cover(out, subscribed.pop(r.conn), opened[r.conn], r.t_us, bin_us)
    for conn, mailboxes in subscribed.items():  # still open when the view ends
        _cover(out, mailboxes, opened[conn], last_us, bin_us)
    return {k: dict(v) for k, v in out.items()}


def _cover(out: dict[str, dict[int, float]], mailboxes: set[str], start: int, end: int, bin_us: int) -> None:
    for b in range(start // bin_us, end // bin_us + 1):
        lo, hi = max(start, b * bin_us), min(end, (b + 1) * bin_us)
        if hi > lo:
            for m in mailboxes:
                out[pseudonym_of_mailbox(m)][b] += (hi - lo) / bin_us


def by_account(found: Presence, owners: dict[str, str]) -> Presence:
    """Presence per account: its own requests plus the reads of every mailbox ``owners``
    (mailbox → account, as an attack named them: :meth:`.evidence.Evidence.owners`) gives it.
    An account's device shows itself in every tick, not only in its hourly housekeeping."""
    out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for pseudonym, row in found.items():
        if pseudonym.startswith("account:"):
            key = pseudonym
        else:
            account = owners.get(pseudonym.removeprefix("mailbox:"))
            if account is None:
                continue
            key = pseudonym_of_account(account)
        for b, value in row.items():
            out[key][b] += value
    return {k: dict(v) for k, v in out.items()}


__all__ = ["BIN_S", "Presence", "by_account", "presence"]
