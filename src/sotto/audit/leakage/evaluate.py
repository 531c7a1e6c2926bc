"""Run the attacks on one design's views and score them against the truth.

Each function takes the adversary's view (a :class:`Tap` or a :class:`Dump`) and produces an
answer *before* the truth is consulted; only the scoring lines read :class:`Truth` and the
population. Views are always scored separately.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from sotto.audit.leakage import metrics, sda
from sotto.audit.leakage.designs import DrainPath
from sotto.audit.leakage.driver import BASE_DAY, RunResult
from sotto.audit.leakage.linking import Linking, link
from sotto.audit.leakage.population import DAY, Population
from sotto.audit.leakage.sizes import Kind
from sotto.audit.leakage.views import Dump, Tap, Truth

BIN_S = 900.0
"""Presence is scored on 15-minute bins."""
TOP = 50


@dataclass(slots=True)
class EdgeMetrics:
    targets: int = 0
    top1: float = 0.0
    map: float = 0.0
    recall_at_degree: float = 0.0
    chance_top1: float = 0.0
    pseudonym_chance_top1: float = 0.0
    """The first guess of an attacker who names the owner of a pseudonym (a mailbox, or a cluster
    of them) drawn at random: it favours users holding many pseudonyms, who are contacts more often
    (well-connected people have many contacts and many mailboxes). The baseline for attacks whose
    ranking carries no information: scoring maps pseudonyms to owners, which tells it who holds
    how many."""
    direct_fraction: float = 0.0
    """Share of targets whose top candidate was read directly rather than inferred."""
    mti: list[int | None] = field(default_factory=list)
    """Messages to identify each target's strongest correspondent (None: not within budget)."""

    def summary(self, budget: int) -> dict[str, object]:
        found = sorted(k for k in self.mti if k is not None)
        n = len(self.mti)

        def pct(q: float) -> float | None:
            # Percentiles over all targets, counting the unidentified as "beyond the budget".
            if not n:
                return None
            rank = int(np.ceil(q / 100 * n)) - 1
            return float(found[rank]) if rank < len(found) else None

        return {
            "targets": self.targets,
            "top1": round(self.top1, 4),
            "chance_top1": round(self.chance_top1, 5),
            "top1_over_chance": round(self.top1 / self.chance_top1, 1) if self.chance_top1 else None,
            "pseudonym_chance_top1": round(self.pseudonym_chance_top1, 5),
            "map": round(self.map, 4),
            "recall_at_degree": round(self.recall_at_degree, 4),
            "direct_fraction": round(self.direct_fraction, 3),
            "mti_pairs": n,
            "mti_median": pct(50),
            "mti_p75": pct(75),
            "mti_p90": pct(90),
            "mti_within_budget": round(len(found) / n, 4) if n else None,
            "mti_budget": budget,
        }


@dataclass(frozen=True, slots=True)
class Targets:
    users: list[int]
    correspondent: dict[int, int]
    """Target → its strongest correspondent (most texts delivered to the target)."""


def choose_targets(population: Population, truth: Truth, count: int, seed: int) -> Targets:
    """Users with at least five texts from their strongest correspondent, sampled uniformly."""
    pushed = truth.push_kind == Kind.TEXT
    texts = truth.push_text[pushed]
    dst = population.text_dst[texts]
    src = population.text_src[texts]
    pairs = Counter(zip(dst.tolist(), src.tolist(), strict=True))
    best: dict[int, tuple[int, int]] = {}
    for (b, a), n in pairs.items():
        if n > best.get(b, (0, -1))[0]:
            best[b] = (n, a)
    eligible = sorted(b for b, (n, _) in best.items() if n >= 5)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.array(eligible, dtype=np.int64), min(count, len(eligible)), replace=False)
    users = sorted(int(u) for u in chosen)
    return Targets(users, {u: best[u][1] for u in users})


# ---------------------------------------------------------------------------- the tap
@dataclass(frozen=True, slots=True)
class TapAttack:
    linking: Linking
    events: sda.Events
    cluster_owner: NDArray[np.int64]
    user_cluster: dict[int, int]
    deposit_of_text: NDArray[np.int64]
    """Scoring only: the deposit that carried each text."""


def attack_tap(run: RunResult) -> TapAttack:
    tap, truth = run.tap, run.truth
    window = max(2.0, run.design.drain_jitter_s) if run.design.drain_path is DrainPath.PER_MAILBOX else 2.0
    linking = link(tap, coopen_window_s=window)
    events = sda.events(tap, linking)
    # Scoring only: which user each pseudonym really is.
    owners = np.array([truth.mailbox_owner[m] for m in tap.mailbox_ids], dtype=np.int64)
    cluster_owner = cluster_owners(linking.mailbox_cluster, owners, linking.clusters)
    per_user: dict[int, Counter[int]] = {}
    for m, c in enumerate(linking.mailbox_cluster.tolist()):
        per_user.setdefault(int(owners[m]), Counter())[c] += 1
    user_cluster = {u: v.most_common(1)[0][0] for u, v in per_user.items()}
    return TapAttack(linking, events, cluster_owner, user_cluster, _deposit_index(truth))


def cluster_owners(
    mailbox_cluster: NDArray[np.int64], owners: NDArray[np.int64], clusters: int
) -> NDArray[np.int64]:
    """The user each cluster names: the owner of more than half its mailboxes, else nobody (-1).
    A cluster that chance co-occurrence built out of many people's mailboxes names none of them:
    crediting it to whichever owner holds two of its twenty would score a guess at the busiest
    pseudonym as a hit whenever that owner is well connected."""
    votes: dict[int, Counter[int]] = {}
    for c, owner in zip(mailbox_cluster.tolist(), owners.tolist(), strict=True):
        votes.setdefault(c, Counter())[owner] += 1
    out = np.full(clusters, -1, dtype=np.int64)
    for c, counted in votes.items():
        owner, held = counted.most_common(1)[0]
        if 2 * held > counted.total():
            out[c] = owner
    return out


def tap_edges(
    run: RunResult,
    attack: TapAttack,
    population: Population,
    targets: Targets,
    *,
    window: float | None,
    budget: int,
    with_mti: bool = True,
) -> EdgeMetrics:
    ev, lk = attack.events, attack.linking
    n = population.users
    members: dict[int, list[int]] = {}
    for m, c in enumerate(lk.mailbox_cluster.tolist()):
        members.setdefault(c, []).append(m)
    out = EdgeMetrics()
    scores = []
    direct_top = 0
    held = np.bincount(attack.cluster_owner[attack.cluster_owner >= 0], minlength=n)
    for b in targets.users:
        cluster = attack.user_cluster.get(b)
        neighbors = population.neighbors[b]
        if cluster is None:
            continue
        ranked = sda.rank(ev, cluster, members[cluster], window, TOP + 5)
        users: list[int] = []
        for c, _, _ in ranked:
            owner = int(attack.cluster_owner[c])
            if owner < 0:
                owner = -1 - c  # names nobody: a miss of its own
            if owner != b and owner not in users:
                users.append(owner)
        scores.append(metrics.ranking_scores(users[: max(TOP, 3 * len(neighbors))], neighbors))
        direct_top += int(bool(ranked) and ranked[0][2])
        out.chance_top1 += len(neighbors) / (n - 1)
        out.pseudonym_chance_top1 += _pseudonym_chance(held, b, neighbors)
        if with_mti:
            out.mti.append(
                _mti(run, attack, population, (b, targets.correspondent[b]), window=window, budget=budget)
            )
    if scores:
        arr = np.array(scores)
        out.targets = len(scores)
        out.top1, out.map, out.recall_at_degree = (float(x) for x in arr.mean(axis=0))
        out.chance_top1 /= len(scores)
        out.pseudonym_chance_top1 /= len(scores)
        out.direct_fraction = direct_top / len(scores)
    return out


def _pseudonym_chance(held: NDArray[np.int64], target: int, neighbors: frozenset[int]) -> float:
    """P(the owner of a random pseudonym not the target's own is a contact of the target)."""
    others = int(held.sum() - held[target])
    return float(held[list(neighbors)].sum()) / others if others and neighbors else 0.0


def _mti(
    run: RunResult,
    attack: TapAttack,
    population: Population,
    pair: tuple[int, int],
    *,
    window: float | None,
    budget: int,
) -> int | None:
    tap, truth = run.tap, run.truth
    b, a = pair
    cluster_b = attack.user_cluster.get(b)
    cluster_a = attack.user_cluster.get(a)
    if cluster_b is None or cluster_a is None:
        return None
    # The pushes of a's texts to b, in order, and the mailbox they land in (scoring input).
    sel = np.nonzero((truth.push_kind == Kind.TEXT) & (truth.push_sender == a))[0]
    sel = sel[population.text_dst[truth.push_text[sel]] == b]
    if not len(sel):
        return None
    mailboxes = tap.push_mailbox[sel]
    mailbox = int(np.bincount(mailboxes).argmax())
    sel = sel[mailboxes == mailbox]
    sel = sel[np.argsort(tap.push_t[sel], kind="stable")]
    push_times = tap.push_t[sel]
    texts = truth.push_text[sel]
    deposits = attack.deposit_of_text[texts]
    direct = attack.linking.deposit_cluster[deposits] == cluster_a
    return sda.messages_to_identify(
        attack.events,
        (cluster_b, mailbox, cluster_a),
        push_times,
        direct,
        window=window,
        budget=budget,
    )


def _deposit_index(truth: Truth) -> NDArray[np.int64]:
    texts = truth.dep_text
    out = np.full(int(texts.max()) + 1 if len(texts) else 0, -1, dtype=np.int64)
    sel = np.nonzero(texts >= 0)[0]
    out[texts[sel]] = sel
    return out


def tap_linking(run: RunResult, attack: TapAttack) -> dict[str, object]:
    """How well the tap ties mailboxes to users and sends to senders (pairwise F1 over mailboxes)."""
    owners = np.array([run.truth.mailbox_owner[m] for m in run.tap.mailbox_ids], dtype=np.int64)
    precision, recall = _pairwise(attack.linking.mailbox_cluster, owners)
    send = attack.linking.send_cluster
    tied = send >= 0
    correct = 0
    if tied.any():
        send_users = run.truth.send_user[np.nonzero(tied)[0]]
        correct = int((attack.cluster_owner[send[tied]] == send_users).sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "method": attack.linking.method,
        "mailboxes": len(owners),
        "clusters": attack.linking.clusters,
        "pair_precision": round(precision, 4),
        "pair_recall": round(recall, 4),
        "pair_f1": round(f1, 4),
        "send_connections": len(send),
        "send_tied": round(float(tied.mean()), 4) if len(send) else None,
        "send_tied_correct": round(correct / int(tied.sum()), 4) if tied.any() else None,
    }


def _pairwise(cluster: NDArray[np.int64], owner: NDArray[np.int64]) -> tuple[float, float]:
    def pairs(counts: NDArray[np.int64]) -> float:
        return float((counts * (counts - 1) // 2).sum())

    both = Counter(zip(cluster.tolist(), owner.tolist(), strict=True))
    same_both = pairs(np.array(list(both.values()), dtype=np.int64))
    same_cluster = pairs(np.bincount(cluster))
    same_owner = pairs(np.bincount(owner))
    precision = same_both / same_cluster if same_cluster else 1.0
    recall = same_both / same_owner if same_owner else 1.0
    return precision, recall


def tap_presence(
    run: RunResult, attack: TapAttack, population: Population, users: list[int]
) -> dict[str, float]:
    tap = run.tap
    lk = attack.linking
    conn_cluster: dict[int, set[int]] = {}
    for conn, m in zip(tap.sub_conn.tolist(), tap.sub_mailbox.tolist(), strict=True):
        conn_cluster.setdefault(int(lk.mailbox_cluster[m]), set()).add(conn)
    inferred = []
    for u in users:
        c = attack.user_cluster.get(u)
        conns = sorted(conn_cluster.get(c, set())) if c is not None else []
        inferred.append([(float(tap.drain_open[i]), float(tap.drain_close[i])) for i in conns])
    return _presence_scores(population, users, inferred)


def _coverage(intervals: list[tuple[float, float]], bins: int) -> NDArray[np.float64]:
    cover = np.zeros(bins)
    for start, stop in intervals:
        end = min(stop, bins * BIN_S)
        if end <= start:
            continue
        first, last = int(start // BIN_S), min(bins - 1, int(end // BIN_S))
        for b in range(first, last + 1):
            lo, hi = max(start, b * BIN_S), min(end, (b + 1) * BIN_S)
            if hi > lo:
                cover[b] += (hi - lo) / BIN_S
    return cover


def _presence_scores(
    population: Population, users: list[int], inferred: list[list[tuple[float, float]]]
) -> dict[str, float]:
    bins = int(population.duration_s // BIN_S)
    scores, labels = [], []
    for u, guess in zip(users, inferred, strict=True):
        scores.append(_coverage(guess, bins))
        labels.append(_coverage(population.sessions[u], bins) > 0)
    s = np.concatenate(scores) if scores else np.zeros(0)
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=bool)
    return {
        "auc": round(metrics.auc(s, y), 4),
        "bits_per_bin": round(metrics.mutual_information((s > 0).astype(int), y.astype(int)), 4),
        "truth_bits_per_bin": round(metrics.entropy_bits(y.astype(int)), 4),
    }


def sizes_view(observed: NDArray[np.int64], kinds: NDArray[np.int64]) -> dict[str, float | int | None]:
    """What envelope sizes say about their content kind."""
    if len(observed) == 0:
        return {
            "envelopes": 0,
            "mi_bits": None,
            "kind_entropy_bits": None,
            "accuracy": None,
            "majority": None,
            "receipt_auc": None,
            "distinct_sizes": 0,
        }
    by_size: dict[int, Counter[int]] = {}
    for s, k in zip(observed.tolist(), kinds.tolist(), strict=True):
        by_size.setdefault(s, Counter())[k] += 1
    correct = sum(c.most_common(1)[0][1] for c in by_size.values())
    majority = Counter(kinds.tolist()).most_common(1)[0][1]
    p_receipt = {s: c[int(Kind.RECEIPT)] / sum(c.values()) for s, c in by_size.items()}
    score = np.array([p_receipt[s] for s in observed.tolist()])
    return {
        "envelopes": len(observed),
        "distinct_sizes": len(by_size),
        "mi_bits": round(metrics.mutual_information(kinds, observed), 4),
        "kind_entropy_bits": round(metrics.entropy_bits(kinds), 4),
        "accuracy": round(correct / len(observed), 4),
        "majority": round(majority / len(observed), 4),
        "receipt_auc": round(metrics.auc(score, kinds == Kind.RECEIPT), 4),
    }


# ---------------------------------------------------------------------------- the dump
@dataclass(frozen=True, slots=True)
class DumpAttack:
    edges: dict[tuple[bytes, bytes], int]
    """Edges read directly from any table with a sender and a recipient column."""
    unit_days: dict[bytes, set[int]]
    """Per mailbox id: days it was drained or received an envelope, as the snapshots show."""
    unit_ttl: dict[bytes, int]
    pending: list[tuple[bytes, int, bytes]]
    """(mailbox id, payload length, message id) of each envelope some snapshot holds."""


def attack_dump(dump: Dump) -> DumpAttack:
    edges: Counter[tuple[bytes, bytes]] = Counter()
    unit_days: dict[bytes, set[int]] = {}
    unit_ttl: dict[bytes, int] = {}
    pending: dict[bytes, tuple[bytes, int, bytes]] = {}
    last = dump.snapshots[-1] if dump.snapshots else None
    for snap in dump.snapshots:
        for row in snap.tables.get("mailboxes", []):
            mid, ttl, expires = row["mailbox_id"], row["ttl_days"], row["expires_day"]
            assert isinstance(mid, bytes) and isinstance(ttl, int) and isinstance(expires, int)
            unit_ttl[mid] = ttl
            unit_days.setdefault(mid, set()).add(expires - ttl)
        for row in snap.tables.get("envelopes", []):
            # SQLite keeps the id as a tag and the payload sealed with the id (16 bytes more).
            mid, day = row["mailbox_id"], row["received_day"]
            payload, message = (
                (row["payload"], row["message_id"]) if "payload" in row else (row["sealed"], row["id_tag"])
            )
            assert isinstance(mid, bytes) and isinstance(day, int) and isinstance(payload, bytes)
            assert isinstance(message, bytes)
            unit_days.setdefault(mid, set()).add(day)
            size = len(payload) - (16 if "sealed" in row else 0)
            pending[message] = (mid, size, message)
    if last is not None:
        for name, rows in last.tables.items():
            if rows and "sender" in rows[0] and "recipient" in rows[0]:
                for row in rows:
                    s, r = row["sender"], row["recipient"]
                    assert isinstance(s, bytes) and isinstance(r, bytes)
                    edges[(s, r)] += 1
                del name
    return DumpAttack(dict(edges), unit_days, unit_ttl, list(pending.values()))


def dump_edges(run: RunResult, attack: DumpAttack, population: Population, targets: Targets) -> EdgeMetrics:
    truth = run.truth
    n = population.users
    out = EdgeMetrics()
    unit_owner = {m: truth.mailbox_owner.get(m, truth.account_user.get(m, -1)) for m in attack.unit_days}
    owned: dict[int, list[bytes]] = {}
    for m, u in unit_owner.items():
        owned.setdefault(u, []).append(m)
    direct: dict[int, Counter[int]] = {}
    for (s, r), count in attack.edges.items():
        su, ru = truth.account_user.get(s, -1), truth.account_user.get(r, -1)
        direct.setdefault(ru, Counter())[su] += count
        direct.setdefault(su, Counter())[ru] += count
    # Day-level co-activity: which units were active on the target's active days.
    units = list(attack.unit_days)
    index = {m: i for i, m in enumerate(units)}
    days = sorted({d for ds in attack.unit_days.values() for d in ds})
    day_index = {d: i for i, d in enumerate(days)}
    active = np.zeros((len(units), max(1, len(days))), dtype=np.float64)
    for m, ds in attack.unit_days.items():
        for d in ds:
            active[index[m], day_index[d]] = 1.0
    activity = active.sum(axis=1)
    owners = np.array([unit_owner[m] for m in units], dtype=np.int64)
    scores = []
    rng = np.random.default_rng(0)
    held = np.bincount(owners[owners >= 0], minlength=n)
    for b in targets.users:
        neighbors = population.neighbors[b]
        ranked: list[int] = [u for u, _ in direct.get(b, Counter()).most_common() if u != b]
        if len(ranked) < TOP and units:
            mine = [index[m] for m in owned.get(b, [])]
            target_days = active[mine].max(axis=0) if mine else np.zeros(active.shape[1])
            co = active @ target_days
            expected = target_days.sum() * activity / max(1, len(days))
            # Ties broken at random: a day-level dump rarely separates anyone.
            score = co - expected + rng.random(len(units)) * 1e-6
            for i in np.argsort(-score).tolist():
                u = int(owners[i])
                if u != b and u not in ranked:
                    ranked.append(u)
                if len(ranked) >= TOP:
                    break
        scores.append(metrics.ranking_scores(ranked[: max(TOP, 3 * len(neighbors))], neighbors))
        out.chance_top1 += len(neighbors) / (n - 1)
        out.pseudonym_chance_top1 += _pseudonym_chance(held, b, neighbors)
        first = direct.get(b, Counter())
        out.mti.append(1 if first.get(targets.correspondent[b], 0) else None)
    if scores:
        arr = np.array(scores)
        out.targets = len(scores)
        out.top1, out.map, out.recall_at_degree = (float(x) for x in arr.mean(axis=0))
        out.chance_top1 /= len(scores)
        out.pseudonym_chance_top1 /= len(scores)
        out.direct_fraction = sum(1 for b in targets.users if direct.get(b)) / len(scores)
    return out


def dump_presence(
    run: RunResult, attack: DumpAttack, population: Population, users: list[int]
) -> dict[str, float]:
    """Presence from the dump: the days a user's mailboxes show activity (generously, every one)."""
    truth = run.truth
    owned: dict[int, list[bytes]] = {}
    for m in attack.unit_days:
        owned.setdefault(truth.mailbox_owner.get(m, -1), []).append(m)
    inferred = []
    for u in users:
        days: set[int] = set()
        for m in owned.get(u, []):
            days |= attack.unit_days[m]
        inferred.append([((d - BASE_DAY) * DAY, (d - BASE_DAY + 1) * DAY) for d in sorted(days)])
    return _presence_scores(population, users, inferred)


def dump_sizes(run: RunResult, attack: DumpAttack) -> dict[str, float | int | None]:
    kinds = run.truth.snapshot_kinds
    rows = [(size, kinds[m]) for _, size, m in attack.pending if m in kinds]
    return sizes_view(
        np.array([s for s, _ in rows], dtype=np.int64), np.array([k for _, k in rows], dtype=np.int64)
    )


def tap_sizes(run: RunResult) -> dict[str, float | int | None]:
    return sizes_view(run.tap.dep_size, run.truth.dep_kind)


def costs(run: RunResult, population: Population) -> dict[str, float | None]:
    truth = run.truth
    delivered = ~np.isnan(truth.text_push) & ~np.isnan(truth.text_sent)
    latency = (truth.text_push - truth.text_sent)[delivered]
    user_days = population.users * population.config.days
    unpadded = int(truth.dep_unpadded.sum())
    return {
        "text_latency_median_s": round(float(np.median(latency)), 2) if len(latency) else None,
        "text_latency_p95_s": round(float(np.percentile(latency, 95)), 1) if len(latency) else None,
        "envelopes_per_user_day": round(run.costs.envelopes / user_days, 2),
        "kib_per_user_day": round(run.costs.bytes / 1024 / user_days, 1),
        "padding_overhead": round(run.costs.bytes / unpadded, 2) if unpadded else None,
        "drain_connections_per_user_day": round(run.costs.drain_connections / user_days, 2),
        "send_connections_per_user_day": round(run.costs.send_connections / user_days, 2),
        "undelivered_at_end": run.costs.undelivered,
        "refused": run.costs.refused,
    }


def tap_of(run: RunResult) -> Tap:
    return run.tap
