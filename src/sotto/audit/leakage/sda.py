"""Edge recovery from the tap: direct reading where the tap names senders, otherwise statistical
disclosure on timing (AG1, Martiny-style, ego-centric).

For a target pseudonym B (a cluster from :mod:`~sotto.audit.leakage.linking`) the attack takes
each envelope pushed to one of B's mailboxes and counts, per other cluster, the deposits into that
cluster's mailboxes within ``w`` seconds after it: a receipt or a reply from B lands in its
correspondent's mailbox soon after B received. Each candidate v is scored
``z = (count − n·λ_v·w) / √(n·λ_v·w + 1)`` with λ_v v's deposit rate outside B's windows, per mailbox of
B, and ranked by its best score over B's mailboxes (with per-contact mailboxes, each of B's
mailboxes hears from one contact only, which sharpens the attack).

*Direct evidence* comes first in the combined ranking: a deposit whose sender cluster the tap
knows (an authenticated send, or a send connection tied to a drain connection) into a mailbox of
another cluster is an edge read, not inferred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sotto.audit.leakage.linking import Linking, ranges
from sotto.audit.leakage.views import Tap

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Events:
    """The tap's events in the form the attack uses, built once per tap."""

    dep_t: F64
    """Deposit times, sorted."""
    dep_cluster: I64
    """Recipient cluster of each sorted deposit."""
    total: F64
    """Deposits into each cluster over the whole tap."""
    duration: float
    push_by_mailbox: dict[int, F64]
    """Tap mailbox → sorted push times."""
    clusters: int
    direct: dict[int, dict[int, int]]
    """Cluster → other cluster → deposits between them (either way) whose sender the tap can tell."""


def events(tap: Tap, linking: Linking) -> Events:
    order = np.argsort(tap.dep_t, kind="stable")
    dep_t = tap.dep_t[order]
    dep_cluster = linking.mailbox_cluster[tap.dep_mailbox[order]]
    total = np.bincount(dep_cluster, minlength=linking.clusters).astype(np.float64)
    push_by_mailbox: dict[int, F64] = {}
    if len(tap.push_t):
        porder = np.lexsort((tap.push_t, tap.push_mailbox))
        mailboxes, times = tap.push_mailbox[porder], tap.push_t[porder]
        cuts = np.nonzero(np.diff(mailboxes))[0] + 1
        for chunk_m, chunk_t in zip(np.split(mailboxes, cuts), np.split(times, cuts), strict=True):
            push_by_mailbox[int(chunk_m[0])] = chunk_t
    direct: dict[int, dict[int, int]] = {}
    senders = linking.deposit_cluster
    known = np.nonzero(senders >= 0)[0]
    recipients = linking.mailbox_cluster[tap.dep_mailbox[known]]
    for s, r in zip(senders[known].tolist(), recipients.tolist(), strict=True):
        if s != r:
            mine, theirs = direct.setdefault(s, {}), direct.setdefault(r, {})
            mine[r] = mine.get(r, 0) + 1
            theirs[s] = theirs.get(s, 0) + 1
    return Events(
        dep_t, dep_cluster, total, max(tap.duration_s, 1.0), push_by_mailbox, linking.clusters, direct
    )


def _deposits_in(ev: Events, starts: F64, ends: F64) -> F64:
    """Per cluster, the deposits in the intervals ``(starts[i], ends[i]]`` (counted once per
    interval that holds them)."""
    lo = np.searchsorted(ev.dep_t, starts, side="right")
    hi = np.searchsorted(ev.dep_t, ends, side="right")
    return np.bincount(ev.dep_cluster[ranges(lo, hi)], minlength=ev.clusters).astype(np.float64)


def window_counts(ev: Events, target_times: F64, window: float) -> F64:
    """Per cluster, the deposits within ``window`` seconds after each of ``target_times``."""
    return _deposits_in(ev, target_times, target_times + window)


MIN_OUTSIDE = 0.05
"""Below this fraction of the trace outside the target's windows, every candidate gets the same
background rate, the mean over all clusters: a rate from a few seconds is noise (from none, zero),
and a candidate's own rate over the whole trace would hide a correspondent who answers the target
every time. With one rate for all, the score counts co-occurrences: the intersection attack."""


def union(target_times: F64, window: float, duration: float) -> tuple[F64, F64]:
    """The windows ``(t, t + window]`` after ``target_times``, merged where they overlap and cut at
    the end of the trace: (starts, ends), sorted and disjoint."""
    if not len(target_times):
        return np.empty(0), np.empty(0)
    times = np.sort(target_times)
    first = np.nonzero(np.concatenate(([True], np.diff(times) > window)))[0]  # where each run starts
    last = np.append(first[1:] - 1, len(times) - 1)
    starts, ends = times[first], np.minimum(times[last] + window, duration)
    keep = ends > starts
    return starts[keep], ends[keep]


def background(ev: Events, target_times: F64, window: float) -> F64:
    """Each candidate's deposit rate *outside* every window of the target (a rate over the whole
    trace would count the very events the target caused, and hide a correspondent whose traffic
    the target dominates); the mean rate of all clusters when too little of the trace is outside
    (:data:`MIN_OUTSIDE`)."""
    starts, ends = union(target_times, window, ev.duration)
    outside = ev.duration - float((ends - starts).sum())
    if outside < MIN_OUTSIDE * ev.duration:
        return np.full(ev.clusters, ev.total.sum() / ev.clusters / ev.duration)
    return (ev.total - _deposits_in(ev, starts, ends)) / outside


def z_scores(counts: F64, n: int, rate: F64, window: float) -> F64:
    expected = n * window * rate
    return (counts - expected) / np.sqrt(expected + 1.0)


def sda_scores(ev: Events, target_times: F64, window: float, exclude: int) -> F64:
    """z-scores of every cluster after ``target_times`` (one mailbox's pushes)."""
    counts = window_counts(ev, target_times, window)
    z = z_scores(counts, len(target_times), background(ev, target_times, window), window)
    z[exclude] = -np.inf
    return z


def rank(
    ev: Events, target: int, target_mailboxes: list[int], window: float | None, top: int
) -> list[tuple[int, float, bool]]:
    """Candidate clusters for ``target``, best first: (cluster, score, read directly)."""
    direct = ev.direct.get(target, {})
    out = [(c, float(n), True) for c, n in sorted(direct.items(), key=lambda x: -x[1])][:top]
    if window is None or len(out) >= top:
        return out
    best = np.full(ev.clusters, -np.inf)
    for m in target_mailboxes:
        times = ev.push_by_mailbox.get(m)
        if times is not None and len(times):
            np.maximum(best, sda_scores(ev, times, window, target), out=best)
    best[target] = -np.inf
    for c in direct:
        best[c] = -np.inf
    want = top - len(out)
    finite = np.nonzero(np.isfinite(best))[0]
    if len(finite):
        pick = finite[np.argsort(-best[finite], kind="stable")[:want]]
        out += [(int(c), float(best[c]), False) for c in pick.tolist()]
    return out


def messages_to_identify(
    ev: Events,
    who: tuple[int, int, int],
    text_push_times: F64,
    text_direct: NDArray[np.bool_],
    *,
    window: float | None,
    budget: int,
) -> int | None:
    """How many of the correspondent's texts (delivered at ``text_push_times``, in order) the
    relay needs before it singles the correspondent out for ``target``: the first text it reads
    directly, or the first after which the correspondent's cluster is the unique top disclosure
    score on the mailbox those texts land in. ``who`` is (target cluster, that mailbox, the
    correspondent's cluster). None if not within ``budget`` texts."""
    target, mailbox, correspondent = who
    k_direct = int(np.argmax(text_direct)) + 1 if text_direct.any() else None
    limit = min(budget, len(text_push_times), (k_direct or budget + 1) - 1)
    times = ev.push_by_mailbox.get(mailbox)
    if window is None or times is None or limit <= 0:
        return k_direct if k_direct is not None and k_direct <= budget else None
    rate = background(ev, times, window)
    counts = np.zeros(ev.clusters)
    included = 0
    n_target = 0
    for k in range(1, limit + 1):
        until = text_push_times[k - 1]
        upto = int(np.searchsorted(times, until, side="right"))
        if upto > included:
            counts += window_counts(ev, times[included:upto], window)
            n_target += upto - included
            included = upto
        if n_target == 0:
            continue
        z = z_scores(counts, n_target, rate, window)
        z[target] = -np.inf
        zc = z[correspondent]
        if zc > 0 and zc >= z.max() and int((z >= zc).sum()) == 1:
            return k
    return k_direct if k_direct is not None and k_direct <= budget else None
