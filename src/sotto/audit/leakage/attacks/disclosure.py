"""The statistical disclosure attack (:mod:`sotto.audit.leakage.sda`) run on the operator's view.

Each mailbox is its own pseudonym (no linking): the deposits are the view's sends, each to its
mailbox, and the pushes are the envelopes the relay hands out (``envelope`` frames, and the
envelope ids a poll answers with for the first time). For a target mailbox ``m`` the attack
counts, per other mailbox, the sends into it within ``window_s`` after each envelope handed out
of ``m``: a receipt or a reply from ``m``'s owner lands in the mailbox of whoever wrote to
``m``. The candidate with the highest score is taken for a contact of ``m``'s owner.

In cadence mode every contact gets one send per tick whether or not anything was received, so
this attack should be near chance there; in default mode receipts follow deliveries.
"""

from __future__ import annotations

import numpy as np

from sotto.audit.leakage import sda
from sotto.audit.leakage.attacks.view import Kind, Ranking, Request, View, pseudonym_of_mailbox, requests
from sotto.audit.leakage.linking import Linking
from sotto.audit.leakage.views import F64, I64, Tap

WINDOW_S = 600.0
"""Seconds after a delivery in which a receipt or reply is looked for (a cadence tick or two)."""
TOP = 10


def tap_of(records: View) -> Tap:
    """The view's sends and deliveries in the form :mod:`sotto.audit.leakage.sda` reads (times
    in seconds from the view's first request; no connections or accounts)."""
    reqs = [r for r in requests(records) if r.mailbox and r.kind in (Kind.SEND, Kind.PUSH)]
    ids: dict[str, int] = {}
    for r in reqs:
        assert r.mailbox is not None
        ids.setdefault(r.mailbox, len(ids))
    t0 = reqs[0].t_us if reqs else 0
    sends = [r for r in reqs if r.kind is Kind.SEND]
    pushes = [r for r in reqs if r.kind is Kind.PUSH]

    def times(rs: list[Request]) -> F64:
        return np.array([(r.t_us - t0) / 1e6 for r in rs], dtype=np.float64)

    def index(rs: list[Request]) -> I64:
        return np.array([ids[r.mailbox or ""] for r in rs], dtype=np.int64)

    none_f, none_i = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    return Tap(
        duration_s=max(1.0, (reqs[-1].t_us - t0) / 1e6) if reqs else 1.0,
        mailbox_ids=[m.encode() for m in ids],
        account_ids=[],
        dep_t=times(sends),
        dep_mailbox=index(sends),
        dep_size=np.array([r.size for r in sends], dtype=np.int64),
        dep_conn=np.full(len(sends), -1, dtype=np.int64),
        dep_account=np.full(len(sends), -1, dtype=np.int64),
        push_t=times(pushes),
        push_mailbox=index(pushes),
        push_conn=np.full(len(pushes), -1, dtype=np.int64),
        push_size=np.zeros(len(pushes), dtype=np.int64),
        drain_open=none_f,
        drain_close=none_f,
        drain_account=none_i,
        sub_conn=none_i,
        sub_mailbox=none_i,
        sub_t=none_f,
        send_open=none_f,
        send_close=none_f,
    )


def attack(records: View, *, window_s: float = WINDOW_S, top: int = TOP) -> Ranking:
    """Each mailbox that had deliveries, and the mailboxes whose owners it takes for its
    owner's contacts, best first (``mailbox:`` names)."""
    tap = tap_of(records)
    n = len(tap.mailbox_ids)
    if not n or not len(tap.push_t) or not len(tap.dep_t):
        return {}
    alone = Linking(
        mailbox_cluster=np.arange(n, dtype=np.int64),
        clusters=n,
        send_cluster=np.zeros(0, dtype=np.int64),
        deposit_cluster=np.full(len(tap.dep_t), -1, dtype=np.int64),
        method="none",
    )
    events = sda.events(tap, alone)
    names = [pseudonym_of_mailbox(m.decode()) for m in tap.mailbox_ids]
    out: Ranking = {}
    for m in sorted(events.push_by_mailbox):
        found = [(names[c], score) for c, score, _ in sda.rank(events, m, [m], window_s, top) if score > 0]
        if found:
            out[names[m]] = found
    return out


__all__ = ["TOP", "WINDOW_S", "attack", "tap_of"]
