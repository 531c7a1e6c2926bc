"""The benchmark: for each design, a study on the real relay (or a model of one), the attacks on
what the operator saw, and the scores.

A measured design (:mod:`.designs`) runs :func:`sotto.audit.sim.study.run_study`: simulated
people, each on a real client in the design's mode, on the real relay app, its
:class:`~sotto.server.observer.Observer` recording the operator's view. :func:`measure` then
runs every attack of :mod:`.attacks.score` on that view and adds:

- **messages to identify** for the statistical disclosure attack (it needs deliveries): the view
  is cut at up to :data:`MESSAGE_CUTS` moments; a target counts as identified from the first
  cut from which its top-1 stays a contact, after the texts it sent and received up to then;
- **traffic**, from the view: requests (HTTP requests and WebSocket frames from clients) and
  bytes (both ways) per person per day, and for every text (the truth says which envelopes are
  texts) the time from the relay taking it to the relay handing it to the recipient's device;
- **the negative control** (:mod:`.attacks.shuffle`): the same attacks on the view with its ids
  dealt out again, which must score at chance.

Modelled designs (:mod:`.modelled`) are computed from the truth of the default-mode study.
Everything a design yields is a :class:`DesignResult`, plain data that :mod:`.report` renders.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from queue import Empty
from typing import Any, TypeVar

import numpy as np

from sotto.audit.leakage import modelled
from sotto.audit.leakage.attacks import backlog, disclosure, dump, remnants, score
from sotto.audit.leakage.attacks.presence import presence
from sotto.audit.leakage.attacks.shuffle import shuffled
from sotto.audit.leakage.attacks.view import Requests, requests
from sotto.audit.leakage.compact import CompactSink
from sotto.audit.leakage.designs import DEFAULT, Design
from sotto.audit.leakage.relaydb import InlineSqliteStorage
from sotto.audit.sim.study import RelayFiles, StudySettings, run_study
from sotto.audit.sim.truth import Truth
from sotto.server.observer import DataSnapshot, HttpExchange, ViewRecord, WsFrame

MEMORY_FS = "/dev/shm"  # noqa: S108 (a private directory is made in it, as in /tmp)
"""A file system in memory on Linux (tmpfs): where studies keep the relay's files (:func:`scratch_dir`)."""
MESSAGE_CUTS = 12
"""Messages to identify runs the disclosure attack on at most this many prefixes of the view."""

Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    """Sizes: ``people`` × ``days`` for default-mode studies, ``cadence_people`` ×
    ``cadence_days`` for cadence-mode ones (about ten times the CPU per person-day)."""

    designs: tuple[Design, ...]
    people: int = 1_000
    days: float = 1.0
    cadence_people: int = 100
    cadence_days: float = 2.0
    seed: int = 1
    tick_seconds: int = 300
    with_hours: bool = True
    shuffle: bool = True
    """Run the negative control on the cadence and default studies."""
    files: bool = True
    """Run the relay on SQLite (:mod:`.relaydb`) and attack snapshots of its files."""
    snapshot_hours: float = 6.0
    """Hours between the relay's snapshots of its data directory (and one at the end)."""


@dataclass
class AttackRow:
    attack: str
    top1: float
    chance_people: float
    chance_mailboxes: float
    answered: float
    needs_messages: bool
    hours_median: float | None = None
    identified: float | None = None
    """Share of targets identified within the run (by hours or by messages)."""
    messages_median: float | None = None
    files: bool = False
    """Read the relay's files (the dump), not the view."""


@dataclass
class DesignResult:
    """One design's scores (module docstring); ``measured`` False: modelled from a truth."""

    name: str
    summary: str
    measured: bool
    people: int
    days: float
    wall_s: float = 0.0
    cpu_s: float = 0.0
    view_records: int = 0
    rows: list[AttackRow] = field(default_factory=list)
    presence: dict[str, float | None] = field(default_factory=dict)
    """``app_use`` and ``device_on`` → the best AUC over the signals scored."""
    requests_per_person_day: float | None = None
    kbytes_per_person_day: float | None = None
    latency_median_s: float | None = None
    latency_p95_s: float | None = None
    texts: int = 0
    shuffled: dict[str, float] = field(default_factory=dict)
    """Negative control: attack → top-1 on the shuffled view (``presence`` → AUC)."""
    curve: dict[int, float] = field(default_factory=dict)
    """Share of targets identified within k messages, for the attack that needs them."""
    detail: str = ""
    """The full attack table (Markdown) of :func:`~.attacks.score.report`."""
    files: dict[str, Any] = field(default_factory=dict)
    """What the snapshots of the relay's files held (:class:`~.attacks.remnants.Holdings`)."""
    sizes: dict[str, Any] = field(default_factory=dict)
    """Whether sizes tell kinds (:class:`~.attacks.score.SizeKinds`)."""
    backlogs: dict[str, Any] = field(default_factory=dict)
    """Drains (:func:`~.attacks.backlog.drains`): how many, envelopes and ``more`` flags."""

    def best(self, *, needs_messages: bool | None = None) -> AttackRow | None:
        """The row with the highest contact top-1 (of those that need messages, or not)."""
        rows = [r for r in self.rows if needs_messages is None or r.needs_messages == needs_messages]
        return max(rows, key=lambda r: r.top1) if rows else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DesignResult:
        """Read back what :meth:`to_json` gave (through JSON: the curve's keys are strings)."""
        fields = dict(data)
        fields["rows"] = [AttackRow(**row) for row in data.get("rows", [])]
        fields["curve"] = {int(k): float(v) for k, v in data.get("curve", {}).items()}
        return cls(**fields)


def run(config: Config, progress: Progress | None = None, *, jobs: int = 1) -> list[DesignResult]:
    """Every design of ``config``, in order; modelled ones from the default study's truth.

    With ``jobs`` above 1 the measured designs run in up to that many processes of their own
    (:func:`_in_processes`), each holding one study; the results are the same as in one process,
    apart from wall and CPU times (and the attacks on the relay's files, which vary from run to
    run either way). Progress lines give the peak resident memory of the process that ran each
    study: with ``jobs`` above 1, that study's; in one process, the run's so far."""
    say = progress or (lambda _line: None)
    measured = [d for d in config.designs if d.measured]
    modelled_designs = tuple(d for d in config.designs if not d.measured)
    if modelled_designs and DEFAULT not in measured:
        measured.insert(0, DEFAULT)  # the baselines are computed from its truth
    tasks = [(design, modelled_designs if design == DEFAULT else ()) for design in measured]
    if jobs > 1 and len(tasks) > 1:
        results = _in_processes(config, tasks, min(jobs, len(tasks)), say)
    else:
        results = [r for design, models in tasks for r in _study_and_score(config, design, models, say)]
    order = {d.name: i for i, d in enumerate(config.designs)}
    return sorted(results, key=lambda r: order[r.name])


def _study_and_score(
    config: Config, design: Design, models: tuple[Design, ...], say: Progress
) -> list[DesignResult]:
    """One measured design's study and scores (if ``config`` asks for the design), and the
    ``models`` computed from its truth: all a process needs, so the truth stays where it was made."""
    people, days = _size(config, design)
    say(f"{design.name}: {people} people × {days:g} days on the real relay")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    settings = StudySettings(
        people,
        days,
        cadence=design.cadence,
        seed=config.seed,
        habits=design.habits_for(),
        tick_seconds=config.tick_seconds,
    )
    label = design.name
    with tempfile.TemporaryDirectory(prefix="sotto-leakage-", dir=scratch_dir()) as data_dir:
        relay = _relay_files(Path(data_dir), config) if config.files else None
        study = _quiet(
            lambda: run_study(
                settings,
                sink=CompactSink(),
                progress=lambda line: say(f"  {label}: {line}"),
                relay=relay,
            )
        )
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    say(
        f"{design.name}: study done in {wall:.0f} s wall, {cpu:.0f} s CPU; "
        f"{len(study.view)} records; peak RSS {peak_rss_mb():.0f} MB; attacks"
    )
    results: list[DesignResult] = []
    if design in config.designs:
        result = measure(
            design,
            study.view,
            study.truth,
            tick_seconds=config.tick_seconds,
            with_hours=config.with_hours,
            shuffle=config.shuffle and design.habits == {},
            snapshots=study.snapshots,
        )
        result.wall_s, result.cpu_s = wall, cpu
        say(
            f"{design.name}: scored in {time.perf_counter() - wall0 - wall:.0f} s; "
            f"peak RSS {peak_rss_mb():.0f} MB"
        )
        results.append(result)
    for other in models:
        say(f"{other.name}: modelled from the {design.name} study's truth")
        results.append(model(other, study.truth))
    return results


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_Task = tuple[Design, tuple[Design, ...]]
_DONE = "\0done"
"""The last line a worker puts on the progress queue: its lines are all there once this is."""
_lines: Queue[str] | None = None
"""In a worker process: where its progress lines go (set by :func:`_start_worker`)."""


def _start_worker(lines: Queue[str]) -> None:
    global _lines  # noqa: PLW0603 (one per worker process, set once as it starts)
    _lines = lines


def _worker(config: Config, design: Design, models: tuple[Design, ...]) -> list[DesignResult]:
    lines = _lines
    assert lines is not None
    try:
        return _study_and_score(config, design, models, lines.put)
    finally:
        lines.put(_DONE)


def _cost(config: Config, design: Design) -> float:
    """A study's rough CPU, to start the longest first (cadence costs about ten times per person-day)."""
    people, days = _size(config, design)
    return people * days * (10 if design.cadence else 1)


def _in_processes(config: Config, tasks: list[_Task], jobs: int, say: Progress) -> list[DesignResult]:
    """Each task in a process of its own (spawned: a fork would copy this process's threads'
    locks), at most ``jobs`` at once, the costliest first; each worker holds one study and ends
    with it, so its peak memory is that study's. Workers' progress lines come back through a
    queue and are passed to ``say`` here, in this thread."""
    context = multiprocessing.get_context("spawn")
    lines: Queue[str] = context.Queue()
    say(f"{len(tasks)} studies in {jobs} processes")
    by_design: dict[str, list[DesignResult]] = {}
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(lines,), max_tasks_per_child=1
    ) as pool:
        futures = {
            pool.submit(_worker, config, design, models): design
            for design, models in sorted(tasks, key=lambda t: -_cost(config, t[0]))
        }
        pending: set[Future[list[DesignResult]]] = set(futures)
        finished = 0
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                finished += _drain(lines, say)
                for future in done:
                    by_design[futures[future].name] = future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        while finished < len(tasks):  # the lines a worker put before it returned
            finished += _drain(lines, say, block=True)
    return [r for design, _ in tasks for r in by_design[design.name]]


def _drain(lines: Queue[str], say: Progress, *, block: bool = False) -> int:
    """Pass on the lines waiting (with ``block``, at least one); how many workers ended."""
    ended = 0
    while True:
        try:
            line = lines.get(timeout=60) if block else lines.get_nowait()
        except Empty:
            if block:
                raise RuntimeError("a worker's progress lines did not arrive") from None
            return ended
        block = False
        if line == _DONE:
            ended += 1
        else:
            say(line)


def _relay_files(data_dir: Path, config: Config) -> RelayFiles:
    return RelayFiles(
        data_dir,
        lambda clock: InlineSqliteStorage.in_dir_inline(data_dir, now=clock.now),
        config.snapshot_hours * 3600,
    )


def scratch_dir() -> str | None:
    """Where a study's relay keeps its files: :data:`MEMORY_FS` when it is there and writable
    (a file system in memory: the same files, byte for byte, without waiting on a disk), else
    the system's temporary directory (None).

    On a disk the relay's log checkpoints, at most every two simulated seconds while it writes,
    wait on ``fsync``, and a study runs days of a relay's traffic in minutes: waiting on the disk
    took most of a study's wall time (16 cadence people for a day wrote 0.9 GB)."""
    memory = Path(MEMORY_FS)
    return MEMORY_FS if memory.is_dir() and os.access(memory, os.W_OK | os.X_OK) else None


def _size(config: Config, design: Design) -> tuple[int, float]:
    return (config.cadence_people, config.cadence_days) if design.cadence else (config.people, config.days)


def _quiet(work: Callable[[], T]) -> T:
    """Run ``work`` with the client's warnings off: in outages requests fail by the thousand."""
    client_log = logging.getLogger("sotto.client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        return work()
    finally:
        client_log.setLevel(level)


def measure(
    design: Design,
    records: list[ViewRecord],
    truth: Truth,
    *,
    tick_seconds: float,
    with_hours: bool = True,
    shuffle: bool = True,
    message_cuts: int = MESSAGE_CUTS,
    snapshots: Sequence[DataSnapshot] = (),
) -> DesignResult:
    """Score one measured design's view against its truth (module docstring), and with
    ``snapshots`` of the relay's files, the attacks on them (:data:`~.attacks.score.FILE_ATTACKS`)."""
    parsed = requests(records)
    found = score.report(parsed, truth, tick_seconds=tick_seconds, with_hours=with_hours)
    days = (truth.end_us - truth.start_us) / 86_400e6
    result = DesignResult(
        design.name, design.summary, True, len(truth.people), days, view_records=len(records)
    )
    for row in found.rows:
        result.rows.append(
            AttackRow(
                row.attack,
                row.contact.top1,
                row.contact.chance_people,
                row.contact.chance_mailboxes,
                row.contact.answered,
                row.needs_messages,
                hours_median=None if row.hours is None else row.hours.median_hours,
                identified=None if row.hours is None else row.hours.identified,
            )
        )
    disclosed = messages_to_identify(disclosure.attack, parsed, truth, cuts=message_cuts)
    for attack_row in result.rows:
        if attack_row.attack == "disclosure":
            attack_row.messages_median = _median(disclosed)
            attack_row.identified = _share(disclosed)
    result.curve = _curve(disclosed)
    for which in ("app_use", "device_on"):
        values = [v for (_, w), v in found.presence.items() if w == which and v is not None]
        result.presence[which] = max(values) if values else None
    _traffic(result, records, truth)
    result.detail = found.to_markdown()
    result.sizes = asdict(score.size_kinds(parsed, truth))
    drained = backlog.drains(parsed)
    result.backlogs = {
        "drains": len(drained),
        "envelopes": sum(d.handed for d in drained),
        "more": sum(d.more for d in drained),
        "largest": max((d.handed for d in drained), default=0),
    }
    file_rankings = score.file_rankings(snapshots, records) if snapshots else {}
    for name, ranking in file_rankings.items():
        contact = score.score_contacts(ranking, truth)
        result.rows.append(
            AttackRow(
                name,
                contact.top1,
                contact.chance_people,
                contact.chance_mailboxes,
                contact.answered,
                False,
                files=True,
            )
        )
    if snapshots:
        last = dump.read(snapshots[-1])
        held = remnants.holdings(snapshots, records, last.mailboxes if last else ())
        result.files = asdict(held) | {"moments_h": [(s.t_us - truth.start_us) / 3.6e9 for s in snapshots]}
        result.files["db_bytes"] = [len(s.files.get(dump.DB, b"")) for s in snapshots]
    if shuffle:
        # The requests of the view are let go first, and the shuffled records are read as they
        # are made: at its peak the control holds the view and its shuffled requests only.
        del parsed
        dealt_out = requests(shuffled(records, seed=1))
        for spec in score.attacks(tick_seconds=tick_seconds):
            result.shuffled[spec.name] = score.score_contacts(spec.run(dealt_out), truth).top1
        result.shuffled["presence (device on)"] = score.presence_auc(presence(dealt_out), truth) or 0.5
        for name, ranking in file_rankings.items():
            dealt = score.shuffle_ranking(ranking, seed=1)
            result.shuffled[name] = score.score_contacts(dealt, truth).top1
    return result


def model(design: Design, truth: Truth) -> DesignResult:
    """A modelled design (:mod:`.modelled`) from ``truth``."""
    found = modelled.whatsapp(truth) if design.model == "whatsapp" else modelled.signal(truth)
    contact = score.score_contacts(found.ranking, truth)
    days = (truth.end_us - truth.start_us) / 86_400e6
    result = DesignResult(design.name, design.summary, False, len(truth.people), days)
    attack = "server log" if design.model == "whatsapp" else "disclosure (Martiny et al.)"
    result.rows.append(
        AttackRow(
            attack,
            contact.top1,
            contact.chance_people,
            contact.chance_mailboxes,
            contact.answered,
            True,
            identified=_share(found.messages_to_identify),
            messages_median=_median(found.messages_to_identify),
        )
    )
    result.curve = _curve(found.messages_to_identify)
    for which in ("app_use", "device_on"):
        result.presence[which] = score.presence_auc(found.presence, truth, which=which, pseudonyms="account:")
    if found.latencies_s:
        result.latency_median_s = statistics.median(found.latencies_s)
        result.latency_p95_s = float(np.percentile(found.latencies_s, 95))
    result.texts = len(found.latencies_s)
    result.requests_per_person_day = found.messages / max(len(truth.people), 1) / max(days, 1e-9)
    return result


def messages_to_identify(
    attack: score.Attack, parsed: Requests, truth: Truth, *, cuts: int = MESSAGE_CUTS
) -> dict[str, int | None]:
    """Per target: the texts it sent and received up to the first cut of the view from which the
    attack's top-1 for it stays a contact (None: not by the end)."""
    span = truth.end_us - truth.start_us
    moments = [truth.start_us + span * (i + 1) // cuts for i in range(cuts)]
    times = np.asarray([r.t_us for r in parsed], dtype=np.int64)
    right: dict[str, list[bool]] = {}
    for cut in moments:
        upto = int(np.searchsorted(times, cut, side="right"))
        hits = score.score_contacts(attack(Requests(parsed[:upto])), truth).hits
        for name, hit in hits.items():
            right.setdefault(name, []).append(hit >= 0.5)
    texts: dict[str, list[int]] = {}
    for sent in truth.sent:
        if sent.kind == "text":
            texts.setdefault(sent.sender, []).append(sent.t_us)
            texts.setdefault(sent.receiver, []).append(sent.t_us)
    out: dict[str, int | None] = {}
    for name, flags in right.items():
        first = None
        for i in range(len(flags) - 1, -1, -1):
            if not flags[i]:
                break
            first = i
        out[name] = None if first is None else sum(t <= moments[first] for t in texts.get(name, []))
    return out


def _median(values: dict[str, int | None]) -> float | None:
    """Median over all targets, the unidentified counted as beyond (None if fewer than half)."""
    ordered = sorted(math.inf if v is None else v for v in values.values())
    if not ordered:
        return None
    median = statistics.median_low(ordered)
    return None if math.isinf(median) else float(median)


CURVE_POINTS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


def _curve(values: dict[str, int | None]) -> dict[int, float]:
    """Share of targets identified within k messages, for k in :data:`CURVE_POINTS`."""
    if not values:
        return {}
    return {k: sum(v is not None and v <= k for v in values.values()) / len(values) for k in CURVE_POINTS}


def _share(values: dict[str, int | None]) -> float | None:
    return sum(v is not None for v in values.values()) / len(values) if values else None


def _traffic(result: DesignResult, records: list[ViewRecord], truth: Truth) -> None:
    """Requests and bytes per person per day, and text latency, from the view (module docstring)."""
    count = size = 0
    sent: dict[int, list[str]] = {}  # t_us of a send the relay took → the envelope ids
    taken: dict[str, int] = {}
    delivered: dict[str, int] = {}
    for r in records:
        if isinstance(r, HttpExchange):
            count += 1
            size += r.request_bytes + r.response_bytes
            if r.method == "POST" and r.path.endswith("/messages") and r.status == 202:
                for m in r.messages[:1]:
                    sent.setdefault(r.t_us, []).append(m)
                    taken.setdefault(m, r.t_us)
            elif r.path.endswith("/poll"):
                for m in r.messages:
                    if m in taken:
                        delivered.setdefault(m, r.t_us)
        elif isinstance(r, WsFrame):
            count += r.direction == "in"
            size += r.size
            if r.direction == "in" and r.type == "send":
                for m in r.messages[:1]:
                    sent.setdefault(r.t_us, []).append(m)
                    taken.setdefault(m, r.t_us)
            elif r.direction == "out" and r.type == "envelope":
                for m in r.messages:
                    if m in taken:
                        delivered.setdefault(m, r.t_us)
    person_days = max(result.people * result.days, 1e-9)
    result.requests_per_person_day = count / person_days
    result.kbytes_per_person_day = size / 1000 / person_days
    latencies = []
    for s in truth.sent:
        if s.kind != "text":
            continue
        result.texts += 1
        for m in sent.get(s.t_us, []):
            if m in delivered:
                latencies.append((delivered[m] - taken[m]) / 1e6)
                break
    if latencies:
        result.latency_median_s = statistics.median(latencies)
        result.latency_p95_s = float(np.percentile(latencies, 95))


__all__ = [
    "MEMORY_FS",
    "MESSAGE_CUTS",
    "AttackRow",
    "Config",
    "DesignResult",
    "Progress",
    "measure",
    "messages_to_identify",
    "model",
    "peak_rss_mb",
    "run",
    "scratch_dir",
]
