"""The privacy / latency / bandwidth frontier: the leakage benchmark run once per setting the
product exposes, each point measured from a study of its own.

A :class:`Setting` is what a deployment chooses: the client's mode (default, or cadence with its
cover envelopes, one per contact per tick), the relay's cadence tick (``sotto server
--cadence-tick``) and whether devices reach the relay through a forwarder (``sotto init
--forwarder``; in cadence mode the forwarder then holds the device's schedule of coming ticks).
:func:`measure_point` runs :func:`sotto.audit.sim.study.run_study` for one setting (real clients
on the real relay, the operator's view recorded by the relay), scores it with
:func:`sotto.audit.leakage.run.measure` and keeps, as a :class:`Point`:

- **privacy**: the best contact top-1 over the attacks on the view (and the best without the
  source address), beside the better of the two chance levels; presence AUC against app use and
  against the device being on;
- **latency**: for every text, from the relay taking it to the relay handing it to the
  recipient's device (a push on the socket, or the answer to a poll, long polls included, when it
  left), its median and 99th percentile (:func:`text_latencies`);
- **bandwidth**: requests (HTTP requests and WebSocket frames from clients) and bytes (both ways)
  per person per day, at the relay;
- where it came from: the setting, people, days and seed, the study's wall and CPU seconds, and
  the view's own figures that show which setting ran (its tick, the source addresses it saw).

Every point of a sweep has the same people and seed, so the points differ only in the setting.
:func:`pareto` marks the points no other point beats on all three of leakage, latency and bytes;
:func:`markdown` renders the table and :mod:`.frontier_chart` the plot.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sotto.audit.leakage import designs
from sotto.audit.leakage.run import DesignResult, measure
from sotto.audit.sim.study import StudySettings, run_study
from sotto.audit.sim.truth import Truth
from sotto.client.schedule import horizon_ticks
from sotto.server.observer import HttpExchange, ViewRecord, WsFrame

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Setting:
    """One choice of the settings the product exposes."""

    cadence: bool
    tick_seconds: int = 300
    """The relay's cadence tick; it paces cadence mode only (default mode does not read it)."""
    forwarder: bool = False

    @property
    def name(self) -> str:
        mode = f"cadence {self.tick_seconds} s" if self.cadence else "default"
        return f"{mode}, {'forwarder' if self.forwarder else 'direct'}"

    @property
    def covers(self) -> str:
        """The cover traffic this setting sends (the product has no other cover knob)."""
        return f"1 per contact per {self.tick_seconds} s" if self.cadence else "none"

    @property
    def forwarder_hold(self) -> str:
        """What the forwarder holds back (the product has no mixing delay): in cadence mode the
        device's schedule of coming ticks, released at their instants; in default mode nothing."""
        if not self.forwarder:
            return "no forwarder"
        if not self.cadence:
            return "none (at once)"
        ticks = horizon_ticks(self.tick_seconds)
        return f"schedule, {ticks} ticks ({ticks * self.tick_seconds / 3600:g} h) ahead"


SETTINGS: tuple[Setting, ...] = (
    Setting(cadence=False),
    Setting(cadence=True, tick_seconds=120),
    Setting(cadence=True, tick_seconds=300),
    Setting(cadence=True, tick_seconds=900),
    Setting(cadence=True, tick_seconds=300, forwarder=True),
    Setting(cadence=True, tick_seconds=900, forwarder=True),
    Setting(cadence=False, forwarder=True),
)
"""The full sweep: mode, tick (and with it the cover rate) and forwarder on or off. Default mode
through forwarders comes last: its long polls, each sealed, make it the costliest to simulate
(about 24 s of CPU per person-day, against about 1 direct)."""
QUICK_SETTINGS: tuple[Setting, ...] = (
    Setting(cadence=False),
    Setting(cadence=True, tick_seconds=300),
    Setting(cadence=True, tick_seconds=300, forwarder=True),
)
"""``--quick``: one point of each kind."""


@dataclass
class Point:
    """One setting's figures (module docstring); times in seconds, ``None`` where nothing was
    measured (no text delivered, no attack answered)."""

    setting: Setting
    people: int
    days: float
    seed: int
    top1: float = 0.0
    top1_attack: str = ""
    top1_no_address: float = 0.0
    top1_no_address_attack: str = ""
    chance: float = 0.0
    """The better of the two chance levels (a random other person; a random mailbox's owner)."""
    messages_to_identify: float | None = None
    """Median texts sent and received before the disclosure attack names a contact (None: fewer
    than half of the targets were named by the end)."""
    presence_app_use: float | None = None
    presence_device_on: float | None = None
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    texts: int = 0
    delivered: int = 0
    requests_per_person_day: float = 0.0
    kbytes_per_person_day: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """The study's wall and CPU seconds (the scoring's are in ``score_cpu_s``)."""
    score_cpu_s: float = 0.0
    view_records: int = 0
    view_tick_seconds: float | None = None
    """The tick the study's relay ran with, as its truth records it."""
    source_addresses: int = 0
    """Distinct client addresses in the view: one per household direct, none through forwarders
    (the relay's gateway hands it each request without the address it came from)."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def leak(self) -> float:
        """Best contact top-1 over chance: 1 is a guess, the number of times better otherwise."""
        return self.top1 / self.chance if self.chance else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Point:
        fields = dict(data)
        fields["setting"] = Setting(**data["setting"])
        return cls(**fields)


def text_latencies(records: Sequence[ViewRecord], truth: Truth) -> tuple[list[float], int]:
    """Seconds from the relay taking each text to the relay handing it to the recipient's device,
    for every text delivered, and how many texts the truth holds. A poll hands out envelopes when
    its answer leaves (``t_us + duration_us``: a long poll may wait for them); a push when its
    frame is sent. The first hand-out counts (a resend after a lost answer does not)."""
    taken: dict[str, int] = {}
    by_time: dict[int, list[str]] = {}
    delivered: dict[str, int] = {}
    for r in records:
        if isinstance(r, HttpExchange):
            if r.method == "POST" and r.path.endswith("/messages") and r.status == 202:
                for m in r.messages[:1]:
                    by_time.setdefault(r.t_us, []).append(m)
                    taken.setdefault(m, r.t_us + r.duration_us)
            elif r.path.endswith("/poll") and r.status == 200:
                for m in r.messages:
                    if m in taken:
                        delivered.setdefault(m, r.t_us + r.duration_us)
        elif isinstance(r, WsFrame):
            if r.direction == "in" and r.type == "send":
                for m in r.messages[:1]:
                    by_time.setdefault(r.t_us, []).append(m)
                    taken.setdefault(m, r.t_us)
            elif r.direction == "out" and r.type == "envelope":
                for m in r.messages:
                    if m in taken:
                        delivered.setdefault(m, r.t_us)
    texts = [s for s in truth.sent if s.kind == "text"]
    out = []
    for s in texts:
        for m in by_time.get(s.t_us, []):
            if m in delivered:
                out.append(max(0.0, (delivered[m] - taken[m]) / 1e6))
                break
    return out, len(texts)


def measure_point(
    setting: Setting,
    *,
    people: int,
    days: float,
    seed: int,
    progress: Progress | None = None,
) -> Point:
    """Run one setting's study and score it (module docstring)."""
    say = progress or (lambda _line: None)
    settings = StudySettings(
        people,
        days,
        cadence=setting.cadence,
        seed=seed,
        tick_seconds=setting.tick_seconds,
        forwarder=setting.forwarder,
    )
    client_log = logging.getLogger("sotto.client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)  # in outages requests fail by the thousand, as expected
    try:
        study = run_study(settings, progress=lambda line: say(f"  {setting.name}: {line}"))
    finally:
        client_log.setLevel(level)
    say(f"{setting.name}: study {study.wall_s:.0f} s wall, {study.cpu_s:.0f} s CPU; scoring")
    cpu0 = time.process_time()
    design = designs.CADENCE if setting.cadence else designs.DEFAULT
    result = measure(
        design,
        study.view,
        study.truth,
        tick_seconds=setting.tick_seconds,
        with_hours=False,
        shuffle=False,
    )
    point = point_of(setting, result, study.view, study.truth, seed=seed)
    point.wall_s, point.cpu_s = study.wall_s, study.cpu_s
    point.score_cpu_s = time.process_time() - cpu0
    point.counts = dict(study.counts)
    return point


def point_of(
    setting: Setting, result: DesignResult, records: Sequence[ViewRecord], truth: Truth, *, seed: int
) -> Point:
    """The frontier's figures from one design result and the view and truth it was scored on."""
    view_rows = [r for r in result.rows if not r.files]
    point = Point(setting, result.people, result.days, seed)
    if view_rows:
        best = max(view_rows, key=lambda r: r.top1)
        point.top1, point.top1_attack = best.top1, best.attack
        point.chance = max(max(r.chance_people, r.chance_mailboxes) for r in view_rows)
        without = [r for r in view_rows if r.attack != "address"]
        if without:
            other = max(without, key=lambda r: r.top1)
            point.top1_no_address, point.top1_no_address_attack = other.top1, other.attack
        disclosure = next((r for r in view_rows if r.attack == "disclosure"), None)
        point.messages_to_identify = None if disclosure is None else disclosure.messages_median
    point.presence_app_use = result.presence.get("app_use")
    point.presence_device_on = result.presence.get("device_on")
    latencies, texts = text_latencies(records, truth)
    point.texts, point.delivered = texts, len(latencies)
    if latencies:
        point.latency_p50_s = statistics.median(latencies)
        point.latency_p99_s = float(np.percentile(latencies, 99))
    point.requests_per_person_day = result.requests_per_person_day or 0.0
    point.kbytes_per_person_day = result.kbytes_per_person_day or 0.0
    point.view_records = len(records)
    point.view_tick_seconds = truth.settings.get("tick_seconds")
    point.source_addresses = len({a for r in records if (a := getattr(r, "addr", None)) is not None})
    return point


def sweep(
    settings: Sequence[Setting],
    *,
    people: int,
    days: float,
    seed: int,
    progress: Progress | None = None,
    done: Callable[[Point], None] | None = None,
) -> list[Point]:
    """Every setting's point, in order, the same people and seed for each; ``done`` is called
    with each point as it is measured (to keep it before the next starts)."""
    points = []
    for setting in settings:
        point = measure_point(setting, people=people, days=days, seed=seed, progress=progress)
        points.append(point)
        if done is not None:
            done(point)
    return points


def pareto(points: Sequence[Point]) -> list[bool]:
    """For each point: whether no other point is at least as good on leakage (top-1 over
    chance), latency p50 and bytes per person-day, and better on one. A point with no latency
    (nothing delivered) is on no frontier."""

    def key(p: Point) -> tuple[float, float, float] | None:
        if p.latency_p50_s is None:
            return None
        return (p.leak, p.latency_p50_s, p.kbytes_per_person_day)

    keys = [key(p) for p in points]
    out = []
    for a in keys:
        if a is None:
            out.append(False)
            continue
        dominated = any(
            b is not None and all(y <= x for x, y in zip(a, b, strict=True)) and b != a for b in keys
        )
        out.append(not dominated)
    return out


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if value < 10 else f"{value:,.0f} s"


def markdown(points: Sequence[Point]) -> str:
    """The frontier's table: one row per point, numbered as on the plot."""
    on_frontier = pareto(points)
    lines = [
        "| # | setting | covers | forwarder holds | people × days, seed | best contact top-1 (attack) "
        "| without address (attack) | chance | top-1 ÷ chance | messages to identify "
        "| presence AUC app use / device on | latency p50 / p99 | texts delivered "
        "| requests, kB per person-day | study wall / CPU | frontier |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, (p, front) in enumerate(zip(points, on_frontier, strict=True), 1):
        lines.append(
            f"| {n} | {p.setting.name} | {p.setting.covers} | {p.setting.forwarder_hold} "
            f"| {p.people} × {p.days:g}, seed {p.seed} | {p.top1:.2f} ({p.top1_attack}) "
            f"| {p.top1_no_address:.2f} ({p.top1_no_address_attack}) | {p.chance:.2f} | {p.leak:.1f}× "
            f"| {'not reached' if p.messages_to_identify is None else f'{p.messages_to_identify:g}'} "
            f"| {_f(p.presence_app_use)} / {_f(p.presence_device_on)} "
            f"| {_seconds(p.latency_p50_s)} / {_seconds(p.latency_p99_s)} | {p.delivered} of {p.texts} "
            f"| {p.requests_per_person_day:,.0f}, {p.kbytes_per_person_day:,.0f} kB "
            f"| {p.wall_s:,.0f} s / {p.cpu_s:,.0f} s | {'yes' if front else ''} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "QUICK_SETTINGS",
    "SETTINGS",
    "Point",
    "Progress",
    "Setting",
    "markdown",
    "measure_point",
    "pareto",
    "point_of",
    "sweep",
    "text_latencies",
]
