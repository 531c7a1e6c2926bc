"""Account requests that coincide with mailbox requests name the account behind the mailbox.

A client that makes an account-authenticated request (``Authorization``: device credentials,
which name the account) right after one of its mailbox requests ties the two together: in
cadence mode housekeeping (``key_counts`` and the retirement pass) runs hourly right after the
tick's last poll or send is answered; in default mode the same request comes just before each
drain subscribe; an invite puts the mailbox creation and the access-token update back to back.

For each account request the attack takes the mailbox requests (polls, subscribes, acks,
creations, deletions and sends) that ended within ``window_s`` before it (else those that began
within ``window_s`` after it), and every mailbox request on the same connection, and shares one
unit of evidence among the first kind (each of the second gets a whole one): a read, creation
or deletion of ``m`` says the account owns ``m``; a send to ``m`` says it writes to ``m``. Over
hours the true pairs add up and chance pairs do not. It reads no message content or count: it
needs no message at all.

The source address is not used (:mod:`.connections` reads that): this is what an operator
still sees behind a forwarder that hides addresses but not timing.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from sotto.audit.leakage.attacks.evidence import Evidence, contacts
from sotto.audit.leakage.attacks.view import MAILBOX, OWNS, Kind, Ranking, Request, View, requests

WINDOW_S = 0.5
"""How far apart (seconds) an account request and a mailbox request may be to count."""


def evidence(records: View, *, window_s: float = WINDOW_S) -> Evidence:
    """The ownership and writing evidence of every coinciding pair (module docstring)."""
    reqs = requests(records)
    mailbox_reqs = sorted((r for r in reqs if r.kind in MAILBOX and r.mailbox), key=lambda r: r.end_us)
    ends = [r.end_us for r in mailbox_reqs]
    starts = sorted(mailbox_reqs, key=lambda r: r.t_us)
    start_times = [r.t_us for r in starts]
    by_conn: dict[int, list[Request]] = defaultdict(list)
    for r in mailbox_reqs:
        by_conn[r.conn].append(r)
    window_us = round(window_s * 1_000_000)
    out = Evidence()
    for account_req in reqs:
        if account_req.kind is not Kind.ACCOUNT or account_req.account is None:
            continue
        group = _nearest_before(mailbox_reqs, ends, account_req.t_us, window_us)
        if not group:
            group = _nearest_after(starts, start_times, account_req.end_us, window_us)
        same_conn = [r for r in by_conn.get(account_req.conn, ()) if r not in group]
        for r, weight in [(r, 1.0 / len(group)) for r in group] + [(r, 1.0) for r in same_conn]:
            _add(out, account_req.account, r, weight)
    return out


def _nearest_before(reqs: list[Request], ends: list[int], t_us: int, window_us: int) -> list[Request]:
    """The mailbox requests that ended within the window before ``t_us``."""
    return reqs[bisect.bisect_left(ends, t_us - window_us) : bisect.bisect_right(ends, t_us)]


def _nearest_after(reqs: list[Request], starts: list[int], t_us: int, window_us: int) -> list[Request]:
    """The mailbox requests that began within the window after ``t_us``."""
    return reqs[bisect.bisect_left(starts, t_us) : bisect.bisect_right(starts, t_us + window_us)]


def _add(out: Evidence, account: str, r: Request, weight: float) -> None:
    assert r.mailbox is not None
    if r.kind in OWNS:
        out.add_owner(r.mailbox, account, weight)
    elif r.kind is Kind.SEND:
        out.add_write(account, r.mailbox, weight)


def attack(records: View, *, window_s: float = WINDOW_S) -> Ranking:
    """Each account's likeliest contacts from coincidences alone."""
    return contacts(evidence(records, window_s=window_s))


__all__ = ["WINDOW_S", "attack", "evidence"]
