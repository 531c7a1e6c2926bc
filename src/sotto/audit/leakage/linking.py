"""Identifier linking (AG2): which pseudonyms the relay can tie to one user.

From the tap only:

* mailboxes drained by an account-authenticated connection belong to that account;
* mailboxes subscribed on one connection belong to one user (``relay-protocol`` §4 says so);
* mailboxes each drained on their own connection are linked by *co-opening*: connections a device
  opens when its app starts arrive close together, again and again (an ego-centric disclosure
  attack on connection-open times, the same scoring as :mod:`sotto.audit.leakage.sda`);
* a send connection is tied to the drain connection of the same app session when their lifetimes
  nest and they close together (the app closes both at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sotto.audit.leakage.views import Tap

I64 = NDArray[np.int64]

MAX_COOPEN_CLUSTER = 64
"""Mailboxes linked by co-opening alone never form a cluster larger than this."""


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int, limit: int | None = None) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb and (limit is None or self.size[ra] + self.size[rb] <= limit):
            self.parent[rb] = ra
            self.size[ra] += self.size[rb]


@dataclass(frozen=True, slots=True)
class Linking:
    mailbox_cluster: I64
    """Tap mailbox index → pseudonymous user (cluster) id, 0..clusters-1."""
    clusters: int
    send_cluster: I64
    """Send connection index → cluster id, or -1 when the connection could not be tied to one."""
    deposit_cluster: I64
    """Per deposit, the sender's cluster when the tap can tell (authenticated or a tied send
    connection), else -1."""
    method: str


def link(tap: Tap, *, coopen_window_s: float = 2.0, close_tolerance_s: float = 0.5) -> Linking:
    """Cluster the tap's mailboxes into users and tie sends to them, as well as the tap allows."""
    n_mailboxes = len(tap.mailbox_ids)
    uf = _UnionFind(n_mailboxes)
    method = "connection"
    conn_mailboxes: dict[int, list[int]] = {}
    for conn, mailbox in zip(tap.sub_conn.tolist(), tap.sub_mailbox.tolist(), strict=True):
        conn_mailboxes.setdefault(conn, []).append(mailbox)
    authenticated = tap.drain_account >= 0
    if authenticated.any():
        method = "account"
        by_account: dict[int, int] = {}
        for conn, mailboxes in conn_mailboxes.items():
            account = int(tap.drain_account[conn])
            if account >= 0:
                first = by_account.setdefault(account, mailboxes[0])
                for m in mailboxes:
                    uf.union(first, m)
    for mailboxes in conn_mailboxes.values():
        for m in mailboxes[1:]:
            uf.union(mailboxes[0], m)
    single = [ms for ms in conn_mailboxes.values() if len(ms) == 1]
    if single and len(single) == len(conn_mailboxes) and not authenticated.any():
        method = "co-opening"
        # Strongest links first, and no cluster larger than a heavy user's mailbox count: chance
        # co-openings would otherwise chain thousands of mailboxes into one "user".
        for _, a, b in sorted(_coopen_pairs(tap, conn_mailboxes, coopen_window_s), reverse=True):
            uf.union(a, b, limit=MAX_COOPEN_CLUSTER)
    roots: dict[int, int] = {}
    cluster = np.empty(n_mailboxes, dtype=np.int64)
    for m in range(n_mailboxes):
        cluster[m] = roots.setdefault(uf.find(m), len(roots))
    conn_cluster = np.full(len(tap.drain_open), -1, dtype=np.int64)
    for conn, mailboxes in conn_mailboxes.items():
        conn_cluster[conn] = cluster[mailboxes[0]]
    send_cluster = _tie_sends(tap, conn_cluster, close_tolerance_s)
    deposit_cluster = np.full(len(tap.dep_t), -1, dtype=np.int64)
    known = tap.dep_conn >= 0
    deposit_cluster[known] = send_cluster[tap.dep_conn[known]]
    if (tap.dep_account >= 0).any():
        account_cluster = np.full(len(tap.account_ids), -1, dtype=np.int64)
        for conn, mailboxes in conn_mailboxes.items():
            account = int(tap.drain_account[conn])
            if account >= 0:
                account_cluster[account] = cluster[mailboxes[0]]
        named = tap.dep_account >= 0
        deposit_cluster[named] = account_cluster[tap.dep_account[named]]
        method = "account"
    return Linking(cluster, len(roots), send_cluster, deposit_cluster, method)


def _tie_sends(tap: Tap, conn_cluster: I64, tolerance: float) -> I64:
    """Send connection → cluster of the one drain connection that contains it and closes with it."""
    out = np.full(len(tap.send_open), -1, dtype=np.int64)
    if not len(tap.send_open) or not len(tap.drain_close):
        return out
    order = np.argsort(tap.drain_close)
    closes = tap.drain_close[order]
    lo = np.searchsorted(closes, tap.send_close - tolerance, side="left")
    hi = np.searchsorted(closes, tap.send_close + tolerance, side="right")
    for s in np.nonzero(hi > lo)[0].tolist():
        candidates = order[lo[s] : hi[s]]
        inside = candidates[tap.drain_open[candidates] <= tap.send_open[s]]
        clusters = {int(conn_cluster[c]) for c in inside.tolist() if conn_cluster[c] >= 0}
        if len(clusters) == 1:
            out[s] = clusters.pop()
    return out


def _coopen_pairs(
    tap: Tap, conn_mailboxes: dict[int, list[int]], window: float, min_z: float = 4.0
) -> list[tuple[float, int, int]]:
    """Mailbox pairs whose connections open within ``window`` of each other far more often than
    chance: each mailbox's best partners by disclosure score, kept when the choice is mutual."""
    conns = np.array(sorted(conn_mailboxes), dtype=np.int64)
    mailbox_of = np.array([conn_mailboxes[c][0] for c in conns.tolist()], dtype=np.int64)
    opens = tap.drain_open[conns]
    order = np.argsort(opens)
    t, mb = opens[order], mailbox_of[order]
    n = len(tap.mailbox_ids)
    rate = np.bincount(mb, minlength=n) / max(tap.duration_s, 1.0)
    by_mailbox: dict[int, list[float]] = {}
    for m, when in zip(mb.tolist(), t.tolist(), strict=True):
        by_mailbox.setdefault(m, []).append(when)
    best: dict[int, dict[int, float]] = {}
    for m, times in by_mailbox.items():
        if len(times) < 3:
            continue
        ts = np.asarray(times)
        lo = np.searchsorted(t, ts - window, side="left")
        hi = np.searchsorted(t, ts + window, side="right")
        near, counts = np.unique(mb[_ranges(lo, hi)], return_counts=True)
        keep = near != m
        near, counts = near[keep], counts[keep].astype(np.float64)
        expected = len(ts) * rate[near] * 2 * window
        z = (counts - expected) / np.sqrt(expected + 1.0)
        top = np.nonzero(z >= min_z)[0]
        if len(top):
            pick = top[np.argsort(-z[top])][:64]
            best[m] = dict(zip(near[pick].tolist(), z[pick].tolist(), strict=True))
    return [
        (min(score, best[b][a]), a, b)
        for a, partners in best.items()
        for b, score in partners.items()
        if a < b and a in best.get(b, {})
    ]


def _ranges(lo: I64, hi: I64) -> I64:
    """Concatenated ``arange(lo[i], hi[i])`` without a Python loop."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + starts


ranges = _ranges
