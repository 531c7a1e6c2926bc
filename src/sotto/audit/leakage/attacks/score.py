"""Scores of the attacks against the truth, and the table that reports them.

The attacks (:func:`attacks`, :func:`~.presence.presence`) read only the operator's view; this
module is the one place that joins their answers with a
:class:`~sotto.audit.sim.truth.Truth`.

- **Contact top-1.** Every person with a contact is a target. The attack is asked about the
  target through the pseudonyms it answered for that the target holds (their account, the
  mailboxes they read): for each, whether its first candidate belongs to a contact of the
  target; the target scores the mean over those pseudonyms, and 0 when the attack said nothing
  about them. Two chance levels: a
  random guess among all other people (``degree / (people − 1)``), and the owner of a random
  mailbox that is not the target's own (it favours people who hold many mailboxes, who are
  contacts more often).
- **Hours to identify** (for attacks that need no message): the attack is run on the view up to
  each whole hour of the run; a target counts as identified at the first of those hours from
  which its top-1 stays right to the end, and the time to identify is counted from when the
  target's first contact formed (before that there is nothing to find).
- **Mailboxes named** (for the attacks that name accounts): the share of the truth's mailboxes
  the attack names an owner for, and the share of those whose likeliest owner is right.
- **Presence AUC.** Every (pseudonym, 15-minute bin) pair while the pseudonym's owner holds it
  (a mailbox from its creation to its retirement, an account all run long), scored by
  :func:`~.presence.presence`, labelled by whether the owner's device was on (or their app in
  use) for at least half the bin; the area under the ROC curve (0.5: no better than a coin).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sotto.audit.leakage import metrics
from sotto.audit.leakage.attacks import (
    backlog,
    bursts,
    coincidence,
    combined,
    connections,
    disclosure,
    dump,
    gaps,
    padding,
    remnants,
)
from sotto.audit.leakage.attacks.evidence import Evidence
from sotto.audit.leakage.attacks.presence import BIN_S, Presence, by_account, presence
from sotto.audit.leakage.attacks.view import (
    Ranking,
    Requests,
    View,
    pseudonym_of_account,
    pseudonym_of_mailbox,
    requests,
)
from sotto.audit.sim.truth import Interval, Truth
from sotto.server.observer import DataSnapshot, ViewRecord

Attack = Callable[[View], Ranking]


@dataclass(frozen=True, slots=True)
class AttackSpec:
    """One attack as the report runs it."""

    name: str
    run: Attack
    needs_messages: bool
    """Whether it reads deliveries (then hours to identify is not reported)."""
    evidence: Callable[[View], Evidence] | None = None
    """For attacks that name mailboxes' accounts: that evidence (its owners are scored)."""


def attacks(*, tick_seconds: float) -> list[AttackSpec]:
    """Every contact attack, with the relay's cadence tick where one needs it."""
    by_connection, by_address = connections.Key.CONNECTION, connections.Key.ADDRESS
    return [
        AttackSpec("coincidence", coincidence.attack, False, coincidence.evidence),
        AttackSpec("bursts", bursts.attack, False, bursts.evidence),
        AttackSpec(
            "connection",
            partial(connections.attack, key=by_connection),
            False,
            partial(connections.evidence, key=by_connection),
        ),
        AttackSpec("timing combined", combined.attack, False, combined.evidence),
        AttackSpec(
            "address",
            partial(connections.attack, key=by_address),
            False,
            partial(connections.evidence, key=by_address),
        ),
        AttackSpec("gaps", partial(gaps.attack, tick_seconds=tick_seconds), False),
        AttackSpec("disclosure", disclosure.attack, True),
        AttackSpec("padding", padding.attack, True),
        AttackSpec("backlog", backlog.attack, True),
    ]


FILE_ATTACKS = ("dump", "dump: row order", "dump: columns", "remnants")
"""The attacks on the relay's files (:func:`file_rankings`), as the report names them."""


def file_rankings(snapshots: Sequence[DataSnapshot], records: Sequence[ViewRecord]) -> dict[str, Ranking]:
    """Every attack on the data directory's snapshots (:mod:`.dump`, :mod:`.remnants`), by
    name (:data:`FILE_ATTACKS`); ``records``: the view's records, whose ids :mod:`.remnants`
    looks for."""
    return {
        "dump": dump.attack(snapshots),
        "dump: row order": dump.attack(snapshots, features=[dump.ROW_ORDER]),
        "dump: columns": dump.attack(snapshots, features=[dump.COLUMNS]),
        "remnants": remnants.attack(snapshots, records),
    }


def shuffle_ranking(ranking: Ranking, *, seed: int) -> Ranking:
    """The negative control for an answer that is not read from the view (the dump's): every
    pseudonym it names dealt out again among those of its kind (mailboxes among mailboxes,
    accounts among accounts), by one random permutation, in keys and candidates alike."""
    names: dict[str, set[str]] = {}
    for key, candidates in ranking.items():
        for name in (key, *(c for c, _ in candidates)):
            names.setdefault(name.partition(":")[0], set()).add(name)
    rng = random.Random(seed)
    mapping: dict[str, str] = {}
    for group in names.values():
        ordered = sorted(group)
        dealt = ordered[:]
        rng.shuffle(dealt)
        mapping.update(zip(ordered, dealt, strict=True))
    return {mapping[k]: [(mapping[c], w) for c, w in v] for k, v in ranking.items()}


@dataclass(frozen=True, slots=True)
class SizeKinds:
    """Whether an envelope's size class (:func:`.padding.size_class`) tells its kind."""

    envelopes: int
    """Sends of the view matched to the truth's messages."""
    accuracy: float
    """Share whose kind is the commonest kind of their size class (over all of them)."""
    majority: float
    """Share of the commonest kind overall: what a guess without sizes gets."""
    classes: dict[str, dict[int, int]] = field(default_factory=dict)
    """Kind → size class → sends."""


def size_kinds(records: View, truth: Truth) -> SizeKinds:
    """Each send of the view matched by its time to the truth's message, and how well its size
    class alone tells the kind (in-sample: an upper bound for a guesser that learnt the classes)."""
    kind_at: dict[int, str] = {}
    for sent in truth.sent:
        kind_at.setdefault(sent.t_us, sent.kind)
    table: dict[str, Counter[int]] = {}
    for send in padding.sends(records):
        kind = kind_at.get(send.t_us)
        if kind is not None:
            table.setdefault(kind, Counter())[padding.size_class(send.size)] += 1
    total = sum(c.total() for c in table.values())
    if not total:
        return SizeKinds(0, 0.0, 0.0)
    by_class: dict[int, Counter[str]] = {}
    for kind, counts in table.items():
        for c, n in counts.items():
            by_class.setdefault(c, Counter())[kind] += n
    right = sum(max(kinds.values()) for kinds in by_class.values())
    majority = max(c.total() for c in table.values())
    return SizeKinds(
        total, right / total, majority / total, {k: dict(sorted(v.items())) for k, v in sorted(table.items())}
    )


def owners(truth: Truth) -> dict[str, str]:
    """Pseudonym (as the attacks name them) → the person who holds it."""
    out = {pseudonym_of_account(p.account): name for name, p in truth.people.items()}
    for life in truth.mailboxes:
        out[pseudonym_of_mailbox(life.mailbox)] = life.owner
    return out


@dataclass(frozen=True, slots=True)
class ContactScore:
    targets: int
    top1: float
    """Mean over targets of the share of their pseudonyms whose first candidate is a contact."""
    answered: float
    """Share of targets the attack said something about."""
    mean_average_precision: float
    chance_people: float
    chance_mailboxes: float
    hits: dict[str, float] = field(default_factory=dict)
    """Per target person, their top-1 score."""


def score_contacts(ranking: Ranking, truth: Truth) -> ContactScore:
    """Contact top-1 of one attack's answer (module docstring)."""
    owner = owners(truth)
    contacts = truth.contact_sets()
    held: dict[str, list[str]] = {}
    for pseudonym in ranking:
        if pseudonym in owner:
            held.setdefault(owner[pseudonym], []).append(pseudonym)
    held_mailboxes = Counter(life.owner for life in truth.mailboxes)
    all_mailboxes = held_mailboxes.total()
    targets = [name for name in sorted(truth.people) if contacts.get(name)]
    hits: dict[str, float] = {}
    aps, chance_people, chance_mailboxes = [], [], []
    n = len(truth.people)
    for name in targets:
        theirs = contacts[name]
        per = []
        for pseudonym in held.get(name, []):
            per.append(metrics.ranking_scores(_people(ranking[pseudonym], owner, name), set(theirs)))
        hits[name] = float(np.mean([p[0] for p in per])) if per else 0.0
        aps.append(float(np.mean([p[1] for p in per])) if per else 0.0)
        chance_people.append(len(theirs) / (n - 1) if n > 1 else 0.0)
        others = all_mailboxes - held_mailboxes[name]
        chance_mailboxes.append(sum(held_mailboxes[c] for c in theirs) / others if others else 0.0)
    if not targets:
        return ContactScore(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return ContactScore(
        targets=len(targets),
        top1=float(np.mean(list(hits.values()))),
        answered=sum(1 for t in targets if held.get(t)) / len(targets),
        mean_average_precision=float(np.mean(aps)),
        chance_people=float(np.mean(chance_people)),
        chance_mailboxes=float(np.mean(chance_mailboxes)),
        hits=hits,
    )


def _people(candidates: list[tuple[str, float]], owner: dict[str, str], target: str) -> list[str]:
    """The candidates as the people they belong to, each once, in order; a pseudonym nobody
    holds is a miss of its own, and a pseudonym of the target's own is a miss too."""
    out: list[str] = []
    for c, _ in candidates:
        person = owner.get(c)
        person = f"?{c}" if person is None or person == target else person
        if person not in out:
            out.append(person)
    return out


@dataclass(frozen=True, slots=True)
class OwnerScore:
    mailboxes: int
    """Mailboxes of the truth (every mailbox a person created)."""
    named: float
    """Share of them the evidence names an owner account for."""
    right: float
    """Share of those named whose likeliest owner is the account of the person who reads it."""


def score_owners(evidence: Evidence, truth: Truth) -> OwnerScore:
    """How well ``evidence`` names the account behind each mailbox (its likeliest owner)."""
    account = {p.account: name for name, p in truth.people.items()}
    guessed = evidence.owners()
    lives = [life for life in truth.mailboxes if life.owner in truth.people]
    named = [life for life in lives if life.mailbox in guessed]
    right = sum(account.get(guessed[life.mailbox]) == life.owner for life in named)
    return OwnerScore(
        mailboxes=len(lives),
        named=len(named) / len(lives) if lives else 0.0,
        right=right / len(named) if named else 0.0,
    )


@dataclass(frozen=True, slots=True)
class TimeToIdentify:
    hours: dict[str, float | None]
    """Per target person: hours from their first contact's formation to the first cut from which
    the top-1 stayed right (None: never)."""

    @property
    def identified(self) -> float:
        return sum(h is not None for h in self.hours.values()) / len(self.hours) if self.hours else 0.0

    @property
    def median_hours(self) -> float | None:
        """The median over all targets, the unidentified counted as beyond the run (None when
        fewer than half were identified)."""
        values = sorted(math.inf if h is None else h for h in self.hours.values())
        if not values:
            return None
        median = statistics.median_low(values)
        return None if math.isinf(median) else median


def hours_to_identify(attack: Attack, records: View, truth: Truth, *, step_hours: int = 1) -> TimeToIdentify:
    """Run ``attack`` on the view up to every ``step_hours`` whole hours of the run (module
    docstring); the hours found are from each target's first contact to one of those cuts."""
    step_us = step_hours * 3_600_000_000
    parsed = requests(records)
    times = np.asarray([r.t_us for r in parsed], dtype=np.int64)
    cuts = list(range(truth.start_us + step_us, truth.end_us + step_us, step_us))
    right: dict[str, list[bool]] = {}
    for cut in cuts:
        upto = int(np.searchsorted(times, cut, side="right"))
        hits = score_contacts(attack(Requests(parsed[:upto])), truth).hits
        for name, hit in hits.items():
            right.setdefault(name, []).append(hit >= 0.5)
    formed: dict[str, int] = {}
    for a, b, t in truth.contacts:
        for name in (a, b):
            formed[name] = min(formed.get(name, t), t)
    out: dict[str, float | None] = {}
    for name, flags in right.items():
        first = None
        for i in range(len(flags) - 1, -1, -1):
            if not flags[i]:
                break
            first = i
        since = formed.get(name, truth.start_us)
        out[name] = None if first is None else max(0.0, (cuts[first] - since) / 3.6e9)
    return TimeToIdentify(out)


def presence_auc(
    found: Presence,
    truth: Truth,
    *,
    which: str = "device_on",
    pseudonyms: str = "mailbox:",
    bin_s: float = BIN_S,
) -> float | None:
    """AUC of the presence scores against ``which`` (``device_on`` or ``app_use``) per bin
    (module docstring), over the pseudonyms whose names start with ``pseudonyms`` (mailboxes, by
    their reads; or ``account:``, by account requests); None when the labels hold one class only
    (nothing to tell apart)."""
    owner = owners(truth)
    bin_us = round(bin_s * 1_000_000)
    held: dict[str, Interval] = {
        pseudonym_of_account(p.account): (truth.start_us, truth.end_us) for p in truth.people.values()
    }
    for life in truth.mailboxes:
        held[pseudonym_of_mailbox(life.mailbox)] = (life.created_us, life.retired_us or truth.end_us)
    first_bin = truth.start_us // bin_us
    bins = truth.end_us // bin_us - first_bin + 1
    on: dict[str, NDArray[np.bool_]] = {}  # person → per bin of the run: on at least half of it
    scores: list[float] = []
    labels: list[NDArray[np.bool_]] = []
    for pseudonym, (start, end) in sorted(held.items()):
        person = truth.people.get(owner.get(pseudonym, ""))
        if person is None or not pseudonym.startswith(pseudonyms):
            continue
        if person.name not in on:
            intervals = person.device_on if which == "device_on" else person.app_use
            on[person.name] = _coverage(intervals, first_bin, bins, bin_us) >= 0.5
        row = found.get(pseudonym, {})
        whole = range(start // bin_us + 1, end // bin_us)  # whole bins only
        scores.extend(row.get(b, 0.0) for b in whole)
        labels.append(on[person.name][whole.start - first_bin : whole.stop - first_bin])
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=bool)
    if not len(y) or y.all() or not y.any():
        return None
    return metrics.auc(np.asarray(scores, dtype=np.float64), y)


def _coverage(intervals: Sequence[Interval], first_bin: int, bins: int, bin_us: int) -> NDArray[np.float64]:
    """The share of each bin (from ``first_bin``, ``bins`` of them) the intervals cover."""
    out = np.zeros(bins, dtype=np.float64)
    for start, end in intervals:
        for b in range(max(start // bin_us, first_bin), min(end // bin_us, first_bin + bins - 1) + 1):
            lo, hi = max(start, b * bin_us), min(end, (b + 1) * bin_us)
            if hi > lo:
                out[b - first_bin] += (hi - lo) / bin_us
    return out


# ---------------------------------------------------------------------------- the report
_NAMED = "accounts, with the mailboxes the coincidence names"
_SIGNALS = {"mailbox reads": "mailbox:", "account requests": "account:", _NAMED: "account:"}


@dataclass(frozen=True, slots=True)
class Row:
    attack: str
    contact: ContactScore
    hours: TimeToIdentify | None
    """None: not run (the attack needs messages, or the report was asked for without hours)."""
    owners: OwnerScore | None = None
    needs_messages: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    """Every attack's scores on one view (:func:`report`)."""

    people: int
    hours: float
    rows: list[Row]
    presence: dict[tuple[str, str], float | None]
    """(signal, ``device_on`` or ``app_use``) → AUC. Signals: ``mailbox reads`` (each mailbox
    on its own), ``account requests``, and accounts with the mailboxes the coincidence attack
    names for them (:func:`~.presence.by_account`)."""
    settings: dict[str, Any] = field(default_factory=dict)

    def row(self, attack: str) -> Row:
        return next(r for r in self.rows if r.attack == attack)

    def to_markdown(self) -> str:
        """The report as a Markdown table, one row per attack, then presence."""

        def num(x: float | None, digits: int = 2) -> str:
            return "–" if x is None else f"{x:.{digits}f}"

        lines = [
            f"{self.people} people, {self.hours:.1f} simulated hours.",
            "",
            "| attack | contact top-1 | chance (people) | chance (mailboxes) | answered | MAP "
            "| hours to identify (median, from first contact) | identified | mailboxes named | named right |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            c = r.contact
            median = None if r.hours is None else r.hours.median_hours
            hours = "needs messages" if r.needs_messages else num(median, 1)
            identified = "–" if r.hours is None else num(r.hours.identified)
            named = "–" if r.owners is None else num(r.owners.named)
            right = "–" if r.owners is None else num(r.owners.right)
            lines.append(
                f"| {r.attack} | {num(c.top1)} | {num(c.chance_people)} | {num(c.chance_mailboxes)} "
                f"| {num(c.answered)} | {num(c.mean_average_precision)} | {hours} | {identified} "
                f"| {named} | {right} |"
            )
        lines += [
            "",
            "| presence (15-minute bins), from | device on (AUC) | app in use (AUC) |",
            "|---|---|---|",
        ]
        for signal in _SIGNALS:
            on, used = self.presence.get((signal, "device_on")), self.presence.get((signal, "app_use"))
            lines.append(f"| {signal} | {num(on)} | {num(used)} |")
        return "\n".join(lines) + "\n"


MAX_CUTS = 24
"""Hours to identify runs each attack on at most this many prefixes of the view (a longer run
is cut every few hours): it costs about ``MAX_CUTS / 2`` runs of every attack on the whole view
(``with_hours=False`` skips it)."""


def report(records: View, truth: Truth, *, tick_seconds: float, with_hours: bool = True) -> Report:
    """Run every attack on the view (read once) and score it against ``truth``."""
    parsed = requests(records)
    hours_run = (truth.end_us - truth.start_us) / 3.6e9
    step = max(1, math.ceil(hours_run / MAX_CUTS))
    rows = []
    for spec in attacks(tick_seconds=tick_seconds):
        contact = score_contacts(spec.run(parsed), truth)
        hours = None
        if with_hours and not spec.needs_messages:
            hours = hours_to_identify(spec.run, parsed, truth, step_hours=step)
        named = None if spec.evidence is None else score_owners(spec.evidence(parsed), truth)
        rows.append(Row(spec.name, contact, hours, named, spec.needs_messages))
    found = presence(parsed)
    by_signal = {
        "mailbox reads": found,
        "account requests": found,
        _NAMED: by_account(found, coincidence.evidence(parsed).owners()),
    }
    auc = {
        (signal, which): presence_auc(by_signal[signal], truth, which=which, pseudonyms=prefix)
        for signal, prefix in _SIGNALS.items()
        for which in ("device_on", "app_use")
    }
    return Report(
        people=len(truth.people),
        hours=hours_run,
        rows=rows,
        presence=auc,
        settings=dict(truth.settings),
    )


__all__ = [
    "FILE_ATTACKS",
    "MAX_CUTS",
    "Attack",
    "AttackSpec",
    "ContactScore",
    "OwnerScore",
    "Report",
    "Row",
    "SizeKinds",
    "TimeToIdentify",
    "attacks",
    "file_rankings",
    "hours_to_identify",
    "owners",
    "presence_auc",
    "report",
    "score_contacts",
    "score_owners",
    "shuffle_ranking",
    "size_kinds",
]
