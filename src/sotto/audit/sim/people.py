"""What simulated people do: a seeded plan of who knows whom and when each one acts.

:func:`plan_population` turns :class:`Habits` (the defaults below, each a field) and a seed into a
:class:`Population`: every person's app sessions, device restarts and nights off, every
household's network outages, every contact's invite, every conversation's start, every
mailbox rotation. It is pure: the same habits and seed give the same plan, byte for byte, and
nothing here touches a client or the clock. :mod:`sotto.audit.sim.study` carries the plan out
with real clients; what it decides while running (replies, read receipts) draws from each
person's own seeded :func:`person_rng`, so a run is reproducible too.

Times are seconds from the start of the run; the run starts at a local time of day
(``start_of_day_s``, by default 08:00, the clock's epoch), one time zone for everybody.

Defaults (the fields of :class:`Habits`):

- **Households.** ``household_share`` = 0.2 of people live in twos and share one address (one
  home line: its outages take both devices off); everyone else has an address of their own.
- **Contacts.** A social graph of close contacts: each person wants 2 to 8 (``min_contacts``,
  ``max_contacts``), drawn with P(k) ∝ k^-1.5 (most have two or three, a few have many), paired
  at random (a configuration model without self-pairs or double edges); housemates are
  contacts of each other. No one has more contacts than that: acquaintances who never write
  are not modelled.
- **Contact formation.** Every edge is made during the run by a real invite: at a moment drawn
  uniformly in the first ``formation_share`` = 0.5 of the run, one of the two (at random) opens
  the app and creates an invite; the link reaches the other out of band after an exponential
  ``handoff_mean_s`` = 10 min, and they accept it in their first app session from then on.
- **App sessions.** While awake (each person wakes at 07:00 and goes to bed at 23:30, each
  ±1 h, normal) a person opens the app ``sessions_per_hour`` = 3 times an hour (Poisson), and
  0.1 times an hour asleep; a session lasts a log-normal time (median ``session_median_s`` =
  45 s, σ = 1, at most 20 min).
- **Messaging.** Each contact edge carries conversations at ``conversations_per_day`` = 1.0 a day
  times the edge's weight (log-normal, σ = 0.8, mean 1: close ties talk more), starting when one
  of the two (at random) opens the app. A turn is a burst of texts (geometric, mean
  ``burst_mean`` = 1.8); the other answers with a turn of their own when they see it: after
  ``reply_mean_s`` = 40 s (exponential) if the app is open, else in their next session; a
  conversation has a geometric number of turns (mean ``turns_mean`` = 4). App users (not CLI
  users) mark what they read as read when they see it (read receipts) and, in default mode,
  send typing before a reply.
- **Rotation.** The client rotates mailboxes only on ``sotto rotate`` (``rotate_mailboxes()``):
  ``rotate_share`` = 0.05 of people do it weekly, in a session, from a random day of the first
  week; everyone else never rotates.
- **Outages.** Each address loses its network ``outages_per_day`` = 3 times a day (Poisson,
  any hour), for an exponential ``outage_mean_s`` = 20 min (at least 30 s).
- **Restarts.** Each person's client process stops ``restarts_per_day`` = 2 times a day (the
  OS kills the app, a reboot) and a new one opens the same store after an exponential
  ``restart_mean_s`` = 90 s (at least 5 s).
- **The command line.** ``cli_share`` = 0.2 of people use ``sotto`` on a laptop: the device runs
  ``sotto listen`` (``--cadence`` in cadence mode) only while they are awake (the laptop sleeps
  at night), and since a profile is open in one process at a time, each ``sotto send``,
  ``invite``, ``accept`` and ``rotate`` stops ``listen`` for the command (the time to type it:
  exponential, ``command_mean_s`` = 20 s) and starts it again. ``invite``, ``accept`` and
  ``rotate`` open the profile in default mode even for a cadence user, as the CLI does.
- **The end.** ``settle_s`` = 0: nothing planned starts in the run's last ``settle_s`` seconds
  and every device is up for them (tests use it to let every message arrive).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

DAY_S = 86_400.0
HOUR_S = 3_600.0

Span = tuple[float, float]
"""``(start_s, end_s)`` from the start of the run, half-open."""


@dataclass(frozen=True)
class Habits:
    """The population's habits: the module docstring says what each means."""

    household_share: float = 0.2
    min_contacts: int = 2
    max_contacts: int = 8
    contacts_exponent: float = 1.5
    formation_share: float = 0.5
    handoff_mean_s: float = 600.0
    wake_s: float = 7 * HOUR_S
    bed_s: float = 23.5 * HOUR_S
    bedtime_sd_s: float = HOUR_S
    sessions_per_hour: float = 3.0
    sessions_per_hour_asleep: float = 0.1
    session_median_s: float = 45.0
    session_sigma: float = 1.0
    session_max_s: float = 1_200.0
    conversations_per_day: float = 1.0
    tie_sigma: float = 0.8
    burst_mean: float = 1.8
    reply_mean_s: float = 40.0
    turns_mean: float = 4.0
    rotate_share: float = 0.05
    rotate_every_s: float = 7 * DAY_S
    outages_per_day: float = 3.0
    outage_mean_s: float = 1_200.0
    outage_min_s: float = 30.0
    restarts_per_day: float = 2.0
    restart_mean_s: float = 90.0
    restart_min_s: float = 5.0
    cli_share: float = 0.2
    command_mean_s: float = 20.0
    settle_s: float = 0.0
    start_of_day_s: float = 8 * HOUR_S
    """The local time of day at which the run starts (the simulation clock's epoch is 08:00)."""


@dataclass(frozen=True)
class PersonPlan:
    """One person: who, where from, and the times they act (seconds from the start)."""

    name: str
    household: int
    """Index into :attr:`Population.households`."""
    cli: bool
    """Uses the command line (see the module docstring) rather than an app."""
    rotates: bool
    wake_s: float
    bed_s: float
    """Seconds after local midnight (``bed_s`` may pass 24 h)."""
    sessions: tuple[Span, ...]
    down: tuple[Span, ...]
    """When the client process is not running: restarts, and for CLI users the nights."""
    rotations: tuple[float, ...]


@dataclass(frozen=True)
class Household:
    """People sharing one address and one network line."""

    members: tuple[str, ...]
    outages: tuple[Span, ...]


@dataclass(frozen=True)
class Invitation:
    """``inviter`` creates an invite at ``invite_s``; ``invitee`` accepts it at ``accept_s``."""

    inviter: str
    invitee: str
    invite_s: float
    accept_s: float


@dataclass(frozen=True)
class Conversation:
    """``starter`` opens a conversation with ``other`` at ``start_s``; ``turns`` turns in all
    (the first included), each a burst of texts."""

    starter: str
    other: str
    start_s: float
    turns: int


@dataclass(frozen=True)
class Population:
    """A whole plan (module docstring)."""

    habits: Habits
    seed: int
    duration_s: float
    people: tuple[PersonPlan, ...]
    households: tuple[Household, ...]
    edges: tuple[tuple[str, str, float], ...]
    """``(a, b, weight)`` each close-contact pair once, ``a`` before ``b`` in name order."""
    invitations: tuple[Invitation, ...]
    conversations: tuple[Conversation, ...]
    dropped_edges: int = 0
    """Edges left out because the invitee had no session left to accept in."""
    by_name: dict[str, PersonPlan] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({p.name: p for p in self.people})


def person_name(index: int) -> str:
    return f"p{index:05d}"


def person_rng(seed: int, name: str, stream: str) -> random.Random:
    """The seeded randomness of one person for one purpose (independent of everything else)."""
    return random.Random(f"{seed}:{name}:{stream}")


def plan_population(
    people: int, duration_s: float, *, seed: int = 0, habits: Habits | None = None
) -> Population:
    """The plan of ``people`` people over ``duration_s`` seconds (module docstring)."""
    if people < 2:
        raise ValueError("a population needs two people")
    h = habits or Habits()
    cutoff = max(0.0, duration_s - h.settle_s)
    names = [person_name(i) for i in range(people)]
    rng = random.Random(f"{seed}:population")

    households = _households(names, h, rng)
    household_of = {name: i for i, members in enumerate(households) for name in members}
    plans = []
    for name in names:
        own = person_rng(seed, name, "plan")
        cli = own.random() < h.cli_share
        rotates = own.random() < h.rotate_share
        wake = h.wake_s + own.gauss(0, h.bedtime_sd_s)
        bed = max(wake + 8 * HOUR_S, h.bed_s + own.gauss(0, h.bedtime_sd_s))
        sessions = _sessions(own, h, wake, bed, cutoff)
        down = _poisson_spans(own, h.restarts_per_day / DAY_S, h.restart_mean_s, h.restart_min_s, cutoff)
        if cli:
            nights = _nights(h, wake, bed, cutoff)
            down = _merge([*down, *nights])
            sessions = _subtract(sessions, nights)
        rotations: tuple[float, ...] = ()
        if rotates:
            first = own.uniform(0, h.rotate_every_s)
            times = []
            t = first
            while t < cutoff:
                at = _next_session(sessions, t)
                if at is None:
                    break
                times.append(at)
                t += h.rotate_every_s
            rotations = tuple(times)
        plans.append(PersonPlan(name, household_of[name], cli, rotates, wake, bed, sessions, down, rotations))
    by_name = {p.name: p for p in plans}

    homes = tuple(
        Household(
            members,
            _poisson_spans(
                random.Random(f"{seed}:household:{i}"),
                h.outages_per_day / DAY_S,
                h.outage_mean_s,
                h.outage_min_s,
                cutoff,
            ),
        )
        for i, members in enumerate(households)
    )

    edges = _edges(names, households, h, rng)
    invitations = []
    kept_edges = []
    dropped = 0
    for a, b, weight in edges:
        inviter, invitee = (a, b) if rng.random() < 0.5 else (b, a)
        wanted = rng.uniform(0, h.formation_share * cutoff)
        invite_s = _next_session(by_name[inviter].sessions, wanted)
        handoff = rng.expovariate(1 / h.handoff_mean_s)
        accept_s = None if invite_s is None else _next_session(by_name[invitee].sessions, invite_s + handoff)
        if invite_s is None or accept_s is None:
            dropped += 1
            continue
        invitations.append(Invitation(inviter, invitee, invite_s, accept_s))
        kept_edges.append((a, b, weight))

    conversations = []
    for invitation, (a, b, weight) in zip(invitations, kept_edges, strict=True):
        rate = h.conversations_per_day * weight / DAY_S
        t = invitation.accept_s
        while True:
            t += rng.expovariate(rate)
            if t >= cutoff:
                break
            starter, other = (a, b) if rng.random() < 0.5 else (b, a)
            start = _next_session(by_name[starter].sessions, t)
            if start is None:
                continue
            turns = _geometric(rng, h.turns_mean)
            conversations.append(Conversation(starter, other, start, turns))
    conversations.sort(key=lambda c: (c.start_s, c.starter, c.other))
    invitations.sort(key=lambda i: (i.invite_s, i.inviter, i.invitee))
    return Population(
        habits=h,
        seed=seed,
        duration_s=duration_s,
        people=tuple(plans),
        households=homes,
        edges=tuple(kept_edges),
        invitations=tuple(invitations),
        conversations=tuple(conversations),
        dropped_edges=dropped,
    )


def burst_size(rng: random.Random, habits: Habits) -> int:
    """How many texts one turn of a conversation sends (geometric, at least 1)."""
    return _geometric(rng, habits.burst_mean)


def reply_delay(rng: random.Random, habits: Habits) -> float:
    """Seconds from seeing a turn to answering it with the app open."""
    return rng.expovariate(1 / habits.reply_mean_s)


def command_delay(rng: random.Random, habits: Habits) -> float:
    """Seconds a CLI user's ``listen`` is stopped around one command."""
    return rng.expovariate(1 / habits.command_mean_s)


def in_spans(spans: tuple[Span, ...], t: float) -> bool:
    """Whether ``t`` lies in one of the (sorted, disjoint) spans."""
    return any(start <= t < end for start, end in spans)


# --------------------------------------------------------------------------- pieces
def _households(names: list[str], h: Habits, rng: random.Random) -> list[tuple[str, ...]]:
    order = names[:]
    rng.shuffle(order)
    pairs = int(len(order) * h.household_share) // 2
    homes: list[tuple[str, ...]] = [(order[2 * i], order[2 * i + 1]) for i in range(pairs)]
    homes += [(name,) for name in order[2 * pairs :]]
    homes.sort()
    return [tuple(sorted(home)) for home in homes]


def _edges(
    names: list[str], households: list[tuple[str, ...]], h: Habits, rng: random.Random
) -> list[tuple[str, str, float]]:
    sizes = list(range(h.min_contacts, h.max_contacts + 1))
    weights = [k**-h.contacts_exponent for k in sizes]
    edges: set[tuple[str, str]] = set()
    for home in households:
        for i, a in enumerate(home):
            for b in home[i + 1 :]:
                edges.add((a, b))
    wanted = {name: rng.choices(sizes, weights)[0] for name in names}
    for a, b in edges:
        wanted[a] -= 1
        wanted[b] -= 1
    stubs = [name for name in names for _ in range(max(0, wanted[name]))]
    rng.shuffle(stubs)
    for i in range(0, len(stubs) - 1, 2):
        a, b = sorted((stubs[i], stubs[i + 1]))
        if a != b:
            edges.add((a, b))
    # Whoever ended with fewer than the least (collisions, an odd stub) gets a random partner.
    degree = dict.fromkeys(names, 0)
    for a, b in edges:
        degree[a] += 1
        degree[b] += 1
    for name in names:
        while degree[name] < min(h.min_contacts, len(names) - 1):
            other = rng.choice(names)
            pair = (min(name, other), max(name, other))
            if other == name or pair in edges:
                continue
            edges.add(pair)
            degree[name] += 1
            degree[other] += 1
    mu = -(h.tie_sigma**2) / 2  # mean weight 1
    return [(a, b, rng.lognormvariate(mu, h.tie_sigma)) for a, b in sorted(edges)]


def _local(h: Habits, t: float) -> float:
    """Seconds after local midnight at run time ``t``."""
    return (h.start_of_day_s + t) % DAY_S


def _awake(h: Habits, wake: float, bed: float, t: float) -> bool:
    local = _local(h, t)
    return wake <= local < bed or wake <= local + DAY_S < bed


def _sessions(rng: random.Random, h: Habits, wake: float, bed: float, cutoff: float) -> tuple[Span, ...]:
    """Poisson session starts, thinned by the hour: ``sessions_per_hour`` awake, less asleep."""
    peak = h.sessions_per_hour / HOUR_S
    low = h.sessions_per_hour_asleep / HOUR_S
    spans = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= cutoff:
            break
        keep = 1.0 if _awake(h, wake, bed, t) else low / peak
        length = min(h.session_max_s, rng.lognormvariate(math.log(h.session_median_s), h.session_sigma))
        if rng.random() < keep:
            spans.append((t, min(t + length, cutoff)))
    return _merge(spans)


def _nights(h: Habits, wake: float, bed: float, cutoff: float) -> tuple[Span, ...]:
    """The spans a person sleeps (for CLI users, their laptop's down time)."""
    spans = []
    day = -1
    while True:
        midnight = day * DAY_S - h.start_of_day_s  # run time of a local midnight
        if midnight + bed >= cutoff:
            break
        spans.append((max(0.0, midnight + bed), min(cutoff, midnight + DAY_S + wake)))
        day += 1
    return tuple((a, b) for a, b in spans if a < b)


def _poisson_spans(
    rng: random.Random, rate: float, mean: float, least: float, cutoff: float
) -> tuple[Span, ...]:
    spans = []
    t = 0.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= cutoff:
            break
        length = max(least, rng.expovariate(1 / mean))
        spans.append((t, min(t + length, cutoff)))
    return _merge(spans)


def _merge(spans: list[Span] | tuple[Span, ...]) -> tuple[Span, ...]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def _subtract(spans: tuple[Span, ...], holes: tuple[Span, ...]) -> tuple[Span, ...]:
    out = []
    for start, end in spans:
        pieces = [(start, end)]
        for hole_start, hole_end in holes:
            cut = []
            for a, b in pieces:
                if hole_end <= a or b <= hole_start:
                    cut.append((a, b))
                    continue
                if a < hole_start:
                    cut.append((a, hole_start))
                if hole_end < b:
                    cut.append((hole_end, b))
            pieces = cut
        out.extend(pieces)
    return tuple(out)


def _next_session(sessions: tuple[Span, ...], t: float) -> float | None:
    """``t`` if it falls in a session, else the next session's start (None: no session left)."""
    for start, end in sessions:
        if end > t:
            return max(start, t)
    return None


def _geometric(rng: random.Random, mean: float) -> int:
    """1, 2, … with the given mean."""
    p = 1 / mean
    return 1 + int(math.log(1 - rng.random()) / math.log(1 - p)) if p < 1 else 1


__all__ = [
    "DAY_S",
    "HOUR_S",
    "Conversation",
    "Habits",
    "Household",
    "Invitation",
    "PersonPlan",
    "Population",
    "Span",
    "burst_size",
    "command_delay",
    "in_spans",
    "person_name",
    "person_rng",
    "plan_population",
    "reply_delay",
]
