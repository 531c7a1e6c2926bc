"""A study: simulated people, each on a real client, on the real relay, with the operator watching.

:func:`run_study` plans a population (:mod:`sotto.audit.sim.people`) and carries the plan out on
one :class:`~sotto.audit.sim.clock.VirtualEventLoop`: the relay is :func:`~sotto.server.app.create_app`
with its in-memory storage and an :class:`~sotto.server.observer.Observer` recording the
operator's view; every person's device is a :class:`~sotto.client.sdk.Client` (cadence or
default mode, as the study says) over an in-memory store, on its own
:func:`~sotto.audit.sim.network.device_network` from its household's
:class:`~sotto.audit.sim.network.Host`. It returns the view and the :class:`~sotto.audit.sim.truth.Truth`
the attacks are scored against. Only the client's public API is used; every request in the view
is one the product made.

How the plan becomes client calls:

- **A device** is a client process over a store that outlives it. It starts with
  ``Client.register`` (at time 0, for everyone), then ``listen()`` runs while the process is up.
  The relay runs with the product's defaults (:func:`relay_config`) but one: account creations
  cost no proof of work up to the whole population at once. The people stand for accounts made
  over months; a relay that saw them all made in one instant would ask for work that grows with
  the count already made (``WorkPolicy``), a cost quadratic in the population that no real
  device pays.
  A restart closes the client and, after the planned down time, ``Client.attach`` opens a new
  one on the same store with a new network (a new process has no pooled connections).
- **An outage** takes the household's host off the network (:meth:`Host.go_offline`): the
  clients' requests fail and they retry as the product does.
- **App users** call the running client: ``create_invite``, ``accept_invite``, ``send_typing``
  (default mode, before a reply), ``send_text``, ``mark_read`` (when they see a text: at once
  in a session, else in their next one), ``rotate_mailboxes``.
- **CLI users** run one command at a time on the profile: each ``send``, ``invite``, ``accept``
  and ``rotate`` stops the ``listen`` process, opens a client for the command (``send`` in the
  device's mode, flushed at once in default mode as ``sotto send`` does; ``invite``, ``accept``
  and ``rotate`` in default mode, as the CLI opens them), closes it, and starts ``listen`` again.
  Their laptops sleep at night (the process is down).

What the :class:`Truth` holds and where it comes from:

- ``people``: each person's account (base64url), address, mode; ``device_on`` is when a client
  process of theirs was up and their host online; ``app_use`` their planned sessions within it.
- ``contacts``: ``(inviter, invitee, t)`` at the moment ``accept_invite`` returned.
- ``mailboxes``: every mailbox a device created on the relay, read from the view's
  ``POST /v1/mailboxes`` that the device made (the first time an id is created), its
  ``DELETE`` for ``retired_us``; the writer from the owner's store at creation (the contact the
  mailbox is for) or, for an invite's mailbox, the person who got the link.
- ``sent``: every envelope the relay took (``202``) from a device, once per envelope id, its
  receiver the owner of the mailbox, its ``kind`` what the sender's store says it queued:
  ``text``, ``receipt`` (delivery), ``read_receipt``, ``contact_request``, ``contact_accepted``,
  ``mailbox_rotated``, ``group_update``, ``group_text``, and for what the client keeps no copy
  of, ``cover`` in a cadence-mode study or ``typing`` in a default-mode one (no client queues the
  other kind in that mode).

``python -m sotto.audit.sim.study --people N --days D [--cadence] [--seed S] --out DIR`` writes
``DIR/view.jsonl`` (the observer's file format) and ``DIR/truth.json``, printing progress (the
simulated day, wall and CPU time) and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import contextvars
import gc
import heapq
import itertools
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.clock import run as run_virtual
from sotto.audit.sim.network import ASGIApp, Host, device_network
from sotto.audit.sim.people import (
    DAY_S,
    Habits,
    PersonPlan,
    Population,
    burst_size,
    command_delay,
    person_rng,
    plan_population,
    reply_delay,
)
from sotto.audit.sim.scenario import address_of
from sotto.audit.sim.truth import Interval, MailboxLife, Person, Sent, Truth
from sotto.audit.sim.world import RELAY_URL, device_forwarder, forwarded_network, gateway_key, relay_app
from sotto.client import content as c
from sotto.client import events as ev
from sotto.client.invite import derive_invite_keys, parse_link
from sotto.client.sdk import Client, Invite
from sotto.client.transport import Network
from sotto.errors import DecodeError, InviteError, RelayError, RelayUnavailableError
from sotto.forwarder.app import Forwarder
from sotto.server.config import ServerConfig, WorkPolicy
from sotto.server.observer import (
    DataSnapshot,
    FileSink,
    HttpExchange,
    MemorySink,
    Observer,
    ViewRecord,
    ViewSink,
    WsFrame,
    snapshot_data_dir,
)
from sotto.server.storage.base import Storage
from sotto.store.interfaces import Transaction
from sotto.store.memory import MemoryStore
from sotto.store.model import Contact, MailboxId
from sotto.wire import b64

log = logging.getLogger("sotto.audit.sim")

_DEVICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("sotto_sim_device", default=None)
"""The person whose device made the request the relay is serving (set by :func:`_tagged`)."""

_KINDS = {
    c.Text: "text",
    c.DeliveryReceipt: "receipt",
    c.ReadReceipt: "read_receipt",
    c.ContactRequest: "contact_request",
    c.ContactAccepted: "contact_accepted",
    c.MailboxRotated: "mailbox_rotated",
    c.GroupUpdate: "group_update",
    c.GroupText: "group_text",
    c.Typing: "typing",
    c.Cover: "cover",
}
BURST_GAP_MEAN_S = 8.0
"""Mean seconds between the texts of one burst (exponential)."""
CONVERSATION_ATTEMPTS = 4
"""Sessions in which a person tries to open a conversation with a contact their client does not
know yet (an inviter before the invitee's request arrived)."""
TYPING_S = 6.0
GC_THRESHOLDS = (50_000, 20, 10)
"""The garbage collector's thresholds while a study runs (:class:`_Collector`)."""
"""Seconds between ``send_typing`` and the first text of a reply, in default mode."""


@dataclass(frozen=True)
class StudySettings:
    """What to run: ``people`` for ``days`` simulated days, in cadence or default mode."""

    people: int
    days: float
    cadence: bool = False
    seed: int = 0
    habits: Habits = field(default_factory=Habits)
    tick_seconds: int = 300
    latency_s: float = 0.0
    forwarder: bool = False
    """Every device reaches the relay through a forwarder of its own (Oblivious HTTP; in cadence
    mode with its schedule there: :func:`sotto.audit.sim.world.forwarded_network`)."""


@dataclass
class StudyResult:
    """The operator's view (in memory, unless it went to a file), the truth, and bookkeeping."""

    view: list[ViewRecord]
    truth: Truth
    population: Population
    texts: dict[bytes, tuple[str, str, int]] = field(default_factory=dict)
    """Message id → (sender, receiver, sent µs) of every text ``send_text`` accepted."""
    received: Counter[tuple[bytes, str]] = field(default_factory=Counter)
    """(message id, receiver) → how often the receiver's client reported it."""
    counts: Counter[str] = field(default_factory=Counter)
    """What happened, by name (texts, invites, restarts, outages, failed operations, …)."""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    snapshots: list[DataSnapshot] = field(default_factory=list)
    """With a data directory: the observer's snapshots of it during the run, then one at its end
    (clients stopped, the relay still up)."""


class KeptStore:
    """A store that outlives its client, as a file outlives a process: :meth:`close` keeps it."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def transaction(self) -> contextlib.AbstractContextManager[Transaction]:
        return self.inner.transaction()

    def close(self) -> None:
        pass


def _tagged(app: ASGIApp, name: str) -> ASGIApp:
    """``app`` as one device reaches it: the relay's work for it runs with :data:`_DEVICE` set."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        token = _DEVICE.set(name)
        try:
            await app(scope, receive, send)
        finally:
            _DEVICE.reset(token)

    return call


# --------------------------------------------------------------------------- the study
class _Study:
    """Everything one run holds (the agents, the truth being written, the schedule)."""

    def __init__(self, settings: StudySettings, population: Population, clock: VirtualClock) -> None:
        self.settings = settings
        self.population = population
        self.clock = clock
        self.start_us = self._now_us()
        self.start_loop_s = asyncio.get_running_loop().time()
        self.agents: dict[str, _Agent] = {}
        self.hosts: list[Host] = []
        self.gateway_key = gateway_key(random.Random(f"{settings.seed}:gateway").randbytes)
        self.outages: dict[int, list[tuple[float, float]]] = {}
        """Household → its outages so far, seconds from the start."""
        self.offline_since: dict[int, float] = {}
        self.result = StudyResult([], Truth(self.start_us, self.start_us), population)
        self.created: dict[str, tuple[str, int, str | None]] = {}
        """Mailbox id → (owner, created µs, writer if the store knew it then)."""
        self.retired: dict[str, int] = {}
        self.invite_writer: dict[str, str] = {}
        """Invite mailbox id → the person who got the link."""
        self.sends: list[tuple[int, str, str, str]] = []
        """(µs, sender, mailbox, kind) of each envelope the relay took."""
        self.sent_ids: set[str] = set()
        self.sending: dict[tuple[int, str], tuple[int, tuple[str, ...], str]] = {}
        """WebSocket sends not yet answered: (connection, envelope id) → (µs, mailbox, kind)."""
        self.conversation: dict[frozenset[str], tuple[int, str]] = {}
        """Pair → (turns left, who speaks next)."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._owners: dict[bytes, str] = {}

    def person_of(self, account_id: bytes) -> str | None:
        """The person whose account this is."""
        if account_id not in self._owners:
            self._owners = {a.account_id: name for name, a in self.agents.items() if a.account_id}
        return self._owners.get(account_id)

    def _now_us(self) -> int:
        return round(self.clock.now() * 1_000_000)

    def now_s(self) -> float:
        """Seconds since the start of the run."""
        return asyncio.get_running_loop().time() - self.start_loop_s

    def spawn(self, work: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one person's failed step must not end the study
                self.result.counts[f"error {type(e).__name__}"] += 1
                log.warning("%s failed: %s: %s", name, type(e).__name__, e)

        task = asyncio.create_task(guarded(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ what the relay saw
    def observe(self, record: ViewRecord) -> None:
        """Called for every record of the view: note mailbox lives and envelopes by device."""
        name = _DEVICE.get()
        if name is None:
            return
        if isinstance(record, WsFrame):
            if record.type == "send" and record.direction == "in":
                kind = self.agents[name].kind_of(record.messages[0]) if record.messages else "other"
                for message in record.messages[:1]:
                    self.sending[(record.conn, message)] = (record.t_us, record.mailboxes[:1], kind)
            elif record.type == "sent" and record.direction == "out":
                for message in record.messages:
                    pending = self.sending.pop((record.conn, message), None)
                    if pending is not None:
                        self._took(name, message, *pending)
            return
        if not isinstance(record, HttpExchange):
            return
        path = record.path
        if record.method == "POST" and path == "/v1/mailboxes" and record.status in (200, 201):
            for mailbox in record.mailboxes:
                if mailbox not in self.created:
                    writer = self.agents[name].writer_of(mailbox)
                    self.created[mailbox] = (name, record.t_us, writer)
        elif record.method == "DELETE" and path.startswith("/v1/mailboxes/") and record.status in (204, 404):
            for mailbox in record.mailboxes:
                self.retired.setdefault(mailbox, record.t_us)
        elif record.method == "POST" and path.endswith("/messages") and record.status == 202:
            for message in record.messages[:1]:
                kind = self.agents[name].kind_of(message)
                self._took(name, message, record.t_us, record.mailboxes[:1], kind)

    def _took(self, sender: str, message: str, t_us: int, mailboxes: tuple[str, ...], kind: str) -> None:
        """The relay took an envelope (once per id: a resend after a lost answer is a duplicate)."""
        if message in self.sent_ids:
            return
        self.sent_ids.add(message)
        self.sends.extend((t_us, sender, mailbox, kind) for mailbox in mailboxes)

    # ------------------------------------------------------------------ conversations
    def start_conversation(self, starter: str, other: str, turns: int) -> None:
        self.conversation[frozenset((starter, other))] = (turns, starter)

    def turn_taken(self, speaker: str, listener: str) -> None:
        pair = frozenset((speaker, listener))
        left, _ = self.conversation.get(pair, (0, speaker))
        self.conversation[pair] = (left - 1, listener)

    def owes_reply(self, me: str, sender: str) -> bool:
        left, speaker = self.conversation.get(frozenset((me, sender)), (0, sender))
        return left > 0 and speaker == me

    # ------------------------------------------------------------------ the truth
    def finish(self) -> Truth:
        truth = self.result.truth
        truth.end_us = self._now_us()
        end_s = self.now_s()
        for name, agent in self.agents.items():
            host_index = agent.plan.household
            offline = self.outages.get(host_index, [])
            up = agent.up + ([] if agent.up_since is None else [(agent.up_since, end_s)])
            on = _minus(_union(up), _union(offline))
            use = _intersect(_union([s for s in agent.plan.sessions if s[0] < end_s]), on)
            truth.people[name] = Person(
                name=name,
                account=b64.encode(agent.account_id),
                address=agent.host.address,
                cadence=self.settings.cadence,
                device_on=[self._span_us(s) for s in on],
                app_use=[self._span_us(s) for s in use],
            )
        for mailbox, (owner, created_us, writer) in self.created.items():
            truth.mailboxes.append(
                MailboxLife(
                    mailbox=mailbox,
                    owner=owner,
                    writer=writer or self.invite_writer.get(mailbox, ""),
                    created_us=created_us,
                    retired_us=self.retired.get(mailbox),
                )
            )
        owners = {mailbox: owner for mailbox, (owner, _, _) in self.created.items()}
        for t_us, sender, mailbox, kind in self.sends:
            receiver = owners.get(mailbox)
            if receiver is None:
                self.result.counts["sent to an unknown mailbox"] += 1
                continue
            truth.sent.append(Sent(t_us, sender, receiver, kind))
        truth.contacts.sort(key=lambda edge: edge[2])
        truth.settings = {
            "people": self.settings.people,
            "days": self.settings.days,
            "cadence": self.settings.cadence,
            "seed": self.settings.seed,
            "tick_seconds": self.settings.tick_seconds,
            "latency_s": self.settings.latency_s,
            "habits": {
                k: getattr(self.population.habits, k) for k in self.population.habits.__dataclass_fields__
            },
            "households_shared": sum(len(h.members) > 1 for h in self.population.households),
            "cli_users": sum(p.cli for p in self.population.people),
            "rotating": sum(p.rotates for p in self.population.people),
            "planned_edges": len(self.population.edges),
            "counts": dict(self.result.counts),
        }
        return truth

    def _span_us(self, span: tuple[float, float]) -> Interval:
        return (self.start_us + round(span[0] * 1e6), self.start_us + round(span[1] * 1e6))


class _Agent:
    """One person and their device: the store, the running client process, what they owe."""

    def __init__(self, study: _Study, plan: PersonPlan, host: Host, relays: dict[str, ASGIApp]) -> None:
        self.study = study
        self.plan = plan
        self.name = plan.name
        self.host = host
        self.relays = relays
        self.cadence = study.settings.cadence
        self.store = KeptStore()
        self.client: Client | None = None
        self.network: Network | None = None
        self.listener: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.rng = person_rng(study.settings.seed, plan.name, "acts")
        self.client_rng = person_rng(study.settings.seed, plan.name, "client").randbytes
        self.forwarder: Forwarder | None = None
        self.account_id = b""
        self.up: list[tuple[float, float]] = []
        """When a client process of theirs ran (seconds from the start), the current one left out."""
        self.up_since: float | None = None
        self.processes = 0
        self.in_session = False
        self.unread: set[bytes] = set()
        """Account ids of contacts with texts not yet marked read."""
        self.replying: set[str] = set()
        self.session_starts = [s for s, _ in plan.sessions]

    # ------------------------------------------------------------------ processes
    def _process_up(self) -> None:
        self.processes += 1
        if self.processes == 1:
            self.up_since = self.study.now_s()

    def _process_down(self) -> None:
        self.processes -= 1
        if self.processes == 0:
            assert self.up_since is not None
            self.up.append((self.up_since, self.study.now_s()))
            self.up_since = None

    def _network(self, cadence: bool) -> Network:
        if self.study.settings.forwarder:
            key = self.study.gateway_key
            if self.forwarder is None:
                rng = person_rng(self.study.settings.seed, self.name, "forwarder").randbytes
                self.forwarder = device_forwarder(self.relays[RELAY_URL], self.study.clock, key, rng=rng)
            return forwarded_network(self.forwarder, self.host, self.study.clock, key, rng=self.client_rng)
        return device_network(
            self.relays,
            self.host,
            clock_ms=self.study.clock.now_ms,
            keep_alive=not cadence,
            latency_s=self.study.settings.latency_s,
        )

    async def register(self) -> None:
        network = self._network(self.cadence)
        self._process_up()
        client = await Client.register(
            self.store,
            RELAY_URL,
            self.name,
            network=network,
            rng=self.client_rng,
            clock=self.study.clock.now_ms,
            cadence=self.cadence,
        )
        self.account_id = client.account_id
        self.study.result.counts["registered"] += 1
        self._run(client, network)

    def _run(self, client: Client, network: Network) -> None:
        self.client, self.network = client, network
        self.listener = asyncio.create_task(self._listen(client), name=f"listen-{self.name}")

    async def start(self) -> None:
        """Start the long-running process (the app, or ``sotto listen``)."""
        if self.client is not None or self.study.stopping:
            return
        network = self._network(self.cadence)
        self._process_up()
        client = await Client.attach(
            self.store,
            network=network,
            rng=self.client_rng,
            clock=self.study.clock.now_ms,
            cadence=self.cadence,
        )
        self._run(client, network)

    async def stop(self) -> None:
        """Stop the long-running process (its client closes, its connections go)."""
        client, network, listener = self.client, self.network, self.listener
        if client is None or network is None:
            return
        self.client = self.network = self.listener = None
        await client.close()
        await network.aclose()
        if listener is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        self._process_down()

    @contextlib.asynccontextmanager
    async def command(self, *, cadence: bool) -> AsyncIterator[Client]:
        """A CLI command: ``listen`` stops, a client opens for the command, then ``listen`` again."""
        was_running = self.client is not None
        await self.stop()
        await asyncio.sleep(command_delay(self.rng, self.study.population.habits))
        network = self._network(cadence)
        self._process_up()
        client = await Client.attach(
            self.store, network=network, rng=self.client_rng, clock=self.study.clock.now_ms, cadence=cadence
        )
        try:
            yield client
        finally:
            await client.close()
            await network.aclose()
            self._process_down()
            if was_running:
                await self.start()

    @contextlib.asynccontextmanager
    async def using(self, *, cadence: bool | None = None) -> AsyncIterator[Client | None]:
        """The client to act with: the running one (app users), or a command's (CLI users);
        None when an app user's process is down. ``cadence`` None: the device's mode."""
        async with self.lock:
            if self.plan.cli:
                async with self.command(cadence=self.cadence if cadence is None else cadence) as client:
                    yield client
            else:
                yield self.client

    async def _listen(self, client: Client) -> None:
        async for event in client.listen():
            if isinstance(event, ev.MessageReceived):
                self.on_text(event)

    # ------------------------------------------------------------------ what the relay saw, by our store
    def writer_of(self, mailbox: str) -> str | None:
        """The person a mailbox of ours is for, if our store knows it (not yet for an invite's)."""
        mailbox_id = MailboxId(b64.decode(mailbox))
        with self.store.transaction() as tx:
            ours = tx.mailboxes.get(mailbox_id)
            contact = None if ours is None else tx.contacts.get(ours.contact_id)
        return None if contact is None else self.study.person_of(contact.account_id)

    def kind_of(self, message: str) -> str:
        """What our store says the envelope with this id carries (module docstring)."""
        envelope_id = b64.decode(message)
        with self.store.transaction() as tx:
            item = next((i for i in tx.outbox.all() if i.message_id == envelope_id), None)
            if item is not None and item.message_row is not None:
                return "text"
            for contact in tx.contacts.all():
                for entry in tx.send_log.for_contact(contact.contact_id):
                    if entry.envelope_id == envelope_id:
                        try:
                            return _KINDS.get(type(c.decode(entry.content)), "other")
                        except DecodeError:
                            return "other"
        if item is not None and b64.encode(item.mailbox_id) in self.study.invite_writer:
            return "contact_request"  # queued by the invite flow itself, with no copy kept
        # Without a copy: cover (queued only by the cadence loop) or typing (only by a default-mode
        # app). A cover the loop could not send may leave in a CLI command's default-mode flush.
        return "cover" if self.cadence else "typing"

    # ------------------------------------------------------------------ acting
    def contact_for(self, client: Client, person: str) -> Contact | None:
        account = self.study.agents[person].account_id
        return next((x for x in client.contacts() if x.account_id == account), None)

    def next_session(self) -> float | None:
        """Seconds from the start of the run to the next planned session (None: no more)."""
        i = bisect.bisect_right(self.session_starts, self.study.now_s())
        return self.session_starts[i] if i < len(self.session_starts) else None

    async def wait_for_session(self) -> bool:
        """Until the person has the app open; False if they never will again."""
        if self.in_session:
            return True
        at = self.next_session()
        if at is None:
            return False
        await asyncio.sleep(max(0.0, at - self.study.now_s()))
        return True

    def session_started(self) -> None:
        self.in_session = True
        if self.unread and not self.plan.cli:
            self.study.spawn(self.read_all(), f"read-{self.name}")

    def session_ended(self) -> None:
        self.in_session = False

    def on_text(self, event: ev.MessageReceived) -> None:
        sender = self.study.person_of(event.contact.account_id)
        self.study.result.received[(bytes(event.message_id), self.name)] += 1
        self.unread.add(event.contact.account_id)
        if self.in_session and not self.plan.cli:
            self.study.spawn(self.read_all(), f"read-{self.name}")
        if sender is not None and sender not in self.replying and self.study.owes_reply(self.name, sender):
            self.replying.add(sender)
            self.study.spawn(self.reply(sender), f"reply-{self.name}")

    async def read_all(self) -> None:
        await asyncio.sleep(reply_delay(self.rng, self.study.population.habits) / 4)
        async with self.lock:
            client = self.client
            if client is None:
                return
            accounts, self.unread = self.unread, set()
            for contact in client.contacts():
                if contact.account_id in accounts:
                    await client.mark_read(contact)

    async def reply(self, sender: str) -> None:
        try:
            if not await self.wait_for_session():
                return
            await asyncio.sleep(reply_delay(self.rng, self.study.population.habits))
            if self.study.owes_reply(self.name, sender):
                await self.send_turn(sender)
        finally:
            self.replying.discard(sender)

    async def send_turn(self, other: str) -> bool:
        """One turn of a conversation: a burst of texts (typing first, in default mode's app).
        False if nothing could be sent (the contact is not known on this side yet)."""
        habits = self.study.population.habits
        count = burst_size(self.rng, habits)
        for k in range(count):
            if k:
                await asyncio.sleep(self.rng.expovariate(1 / BURST_GAP_MEAN_S))
            async with self.using() as client:
                if client is None:
                    return k > 0
                contact = self.contact_for(client, other)
                if contact is None:
                    self.study.result.counts["text put off: contact not known yet"] += 1
                    return k > 0
                if k == 0:
                    self.study.turn_taken(self.name, other)
                    if not self.plan.cli and not self.cadence:
                        await client.send_typing(contact)
                        await asyncio.sleep(TYPING_S)
                text = f"{self.name} to {other} at {self.study.now_s():.0f}s #{k}"
                message_id = await client.send_text(contact, text)
                self.study.result.texts[bytes(message_id)] = (self.name, other, self.study._now_us())
                self.study.result.counts["texts"] += 1
                if self.plan.cli and not self.cadence and client.is_ready(contact):
                    await client.flush()  # as `sotto send` does
        return True

    async def invite(self, invitee: str, accept_s: float) -> None:
        habits = self.study.population.habits
        made: Invite | None = None
        while made is None and not self.study.stopping:
            async with self.using(cadence=False if self.plan.cli else None) as client:
                if client is not None:
                    try:
                        made = await client.create_invite()
                    except (RelayUnavailableError, RelayError) as e:
                        self.study.result.counts[f"invite retried: {type(e).__name__}"] += 1
            if made is None:
                await asyncio.sleep(60.0)
                if not await self.wait_for_session():
                    return
        if made is None:
            return
        mailbox = b64.encode(derive_invite_keys(parse_link(made.link).secret).mailbox_id)
        self.study.invite_writer[mailbox] = invitee
        self.study.result.counts["invites"] += 1
        invitee_agent = self.study.agents[invitee]
        handoff = self.rng.expovariate(1 / habits.handoff_mean_s)
        await asyncio.sleep(max(accept_s - self.study.now_s(), handoff))
        await invitee_agent.accept(self.name, made.link)

    async def accept(self, inviter: str, link: str) -> None:
        while not self.study.stopping:
            if not await self.wait_for_session():
                return
            async with self.using(cadence=False if self.plan.cli else None) as client:
                if client is not None:
                    try:
                        await client.accept_invite(link, inviter)
                    except InviteError:
                        self.study.result.counts["invite refused"] += 1
                        return
                    except (RelayUnavailableError, RelayError) as e:
                        self.study.result.counts[f"accept retried: {type(e).__name__}"] += 1
                    else:
                        self.study.result.truth.contacts.append((inviter, self.name, self.study._now_us()))
                        self.study.result.counts["contacts"] += 1
                        return
            await asyncio.sleep(60.0)

    async def converse(self, other: str, turns: int) -> None:
        """Open a conversation; if the contact is not known here yet (their request is on its
        way), try again in a later session, a few times."""
        self.study.start_conversation(self.name, other, turns)
        for _ in range(CONVERSATION_ATTEMPTS):
            if await self.send_turn(other):
                return
            await asyncio.sleep(self.study.population.habits.handoff_mean_s)
            if not await self.wait_for_session():
                return
        self.study.result.counts["conversation dropped: contact never known"] += 1

    async def rotate(self) -> None:
        async with self.using(cadence=False if self.plan.cli else None) as client:
            if client is not None:
                await client.rotate_mailboxes()
                self.study.result.counts["rotations"] += 1

    async def restart(self, down_s: float) -> None:
        async with self.lock:
            if self.client is None:
                return
            await self.stop()
            self.study.result.counts["process stops"] += 1
            await asyncio.sleep(down_s)
            await self.start()


# --------------------------------------------------------------------------- running it
class _TeeSink:
    """The view's sink, with the study reading each record as it is written."""

    def __init__(self, inner: ViewSink, study: Callable[[ViewRecord], None]) -> None:
        self.inner = inner
        self.study = study

    def write(self, record: ViewRecord) -> None:
        self.inner.write(record)
        self.study(record)

    def close(self) -> None:
        self.inner.close()


async def _main(
    clock: VirtualClock,
    settings: StudySettings,
    population: Population,
    sink: ViewSink,
    progress: Callable[[str], None] | None,
    *,
    relay: RelayFiles | None = None,
    collector: _Collector,
) -> StudyResult:
    study = _Study(settings, population, clock)
    observer = Observer(
        _TeeSink(sink, study.observe),
        clock=clock,
        data_dir=relay.data_dir if relay else None,
        snapshot_every_s=relay.snapshot_every_s if relay else None,
    )
    storage = relay.storage(clock) if relay else None
    config = relay_config(settings)
    relay_rng = random.Random(f"{settings.seed}:relay").randbytes
    duration = population.duration_s
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with relay_app(clock, config=config, rng=relay_rng, observer=observer, storage=storage) as app:
        for index, home in enumerate(population.households):
            host = Host(address_of(index), random.Random(f"{settings.seed}:host:{index}").randbytes)
            study.hosts.append(host)
            for name in home.members:
                plan = population.by_name[name]
                study.agents[name] = _Agent(study, plan, host, {RELAY_URL: _tagged(app, name)})
        for agent in study.agents.values():
            await agent.register()
        collector.settle()
        schedule = _schedule(study)
        dispatcher = asyncio.create_task(_dispatch(study, schedule), name="study-schedule")
        reporter = asyncio.create_task(_report(study, progress, wall0, cpu0), name="study-progress")
        try:
            await asyncio.sleep(max(0.0, duration - study.now_s()))
        finally:
            study.stopping = True
            dispatcher.cancel()
            reporter.cancel()
            for task in list(study.tasks):
                task.cancel()
            await asyncio.gather(dispatcher, reporter, *study.tasks, return_exceptions=True)
            for agent in study.agents.values():
                await agent.stop()
            for agent in study.agents.values():
                if agent.forwarder is not None:
                    await agent.forwarder.aclose()
            for index, host in enumerate(study.hosts):
                if not host.online:
                    host.go_online()
                    _outage(study, index, False)
            if relay is not None:
                study.result.snapshots = [
                    *observer.snapshots,
                    snapshot_data_dir(relay.data_dir, study._now_us()),
                ]
    if storage is not None:
        await storage.close()
    study.result.truth = study.finish()
    study.result.wall_s = time.perf_counter() - wall0
    study.result.cpu_s = time.process_time() - cpu0
    if isinstance(sink, MemorySink):
        study.result.view = sink.records
    return study.result


def relay_config(settings: StudySettings) -> ServerConfig:
    """The relay's configuration in a study: the defaults, with the study's cadence tick, and
    account creations free for a burst of ``settings.people`` (module docstring)."""
    work = WorkPolicy()
    free_per_minute = max(work.free_per_minute, settings.people * 60 / work.window_seconds)
    return ServerConfig(
        cadence_tick_seconds=settings.tick_seconds, work=replace(work, free_per_minute=free_per_minute)
    )


Step = tuple[float, int, Callable[[], None]]


def _schedule(study: _Study) -> list[Step]:
    """Every planned step, in time order (a heap)."""
    steps: list[Step] = []
    order = itertools.count()

    def at(t: float, fn: Callable[[], None]) -> None:
        steps.append((t, next(order), fn))

    population = study.population
    for index, home in enumerate(population.households):
        for start, end in home.outages:
            at(start, partial(_outage, study, index, True))
            at(end, partial(_outage, study, index, False))
    for agent in study.agents.values():
        plan = agent.plan
        for start, end in plan.sessions:
            at(start, agent.session_started)
            at(end, agent.session_ended)
        for start, end in plan.down:
            at(start, partial(_spawn, study, partial(agent.restart, end - start), f"restart-{agent.name}"))
        for t in plan.rotations:
            at(t, partial(_spawn, study, agent.rotate, f"rotate-{agent.name}"))
    for invitation in population.invitations:
        inviter = study.agents[invitation.inviter]
        invite = partial(inviter.invite, invitation.invitee, invitation.accept_s)
        at(invitation.invite_s, partial(_spawn, study, invite, f"invite-{inviter.name}"))
    for conversation in population.conversations:
        starter = study.agents[conversation.starter]
        talk = partial(starter.converse, conversation.other, conversation.turns)
        at(conversation.start_s, partial(_spawn, study, talk, f"talk-{starter.name}"))
    heapq.heapify(steps)
    return steps


def _spawn(study: _Study, work: Callable[[], Awaitable[None]], name: str) -> None:
    study.spawn(work(), name)


def _outage(study: _Study, household: int, down: bool) -> None:
    host = study.hosts[household]
    if down:
        host.go_offline()
        study.offline_since[household] = study.now_s()
        study.result.counts["outages"] += 1
    else:
        host.go_online()
        start = study.offline_since.pop(household)
        study.outages.setdefault(household, []).append((start, study.now_s()))


async def _dispatch(study: _Study, steps: list[Step]) -> None:
    while steps:
        due = steps[0][0]
        now = study.now_s()
        if due > now:
            await asyncio.sleep(due - now)
            continue
        heapq.heappop(steps)[2]()


async def _report(study: _Study, progress: Callable[[str], None] | None, wall0: float, cpu0: float) -> None:
    if progress is None:
        return
    step = DAY_S if study.population.duration_s >= 2 * DAY_S else study.population.duration_s / 8
    while True:
        await asyncio.sleep(step)
        progress(
            f"simulated {study.now_s() / DAY_S:6.2f} days  wall {time.perf_counter() - wall0:8.1f} s"
            f"  cpu {time.process_time() - cpu0:8.1f} s  texts {study.result.counts['texts']}"
            f"  contacts {study.result.counts['contacts']}"
        )


@dataclass(frozen=True)
class RelayFiles:
    """A relay on files rather than in memory: ``storage(clock)`` opens its storage in
    ``data_dir`` (one that runs on the simulation's loop, such as
    :class:`sotto.audit.leakage.relaydb.InlineSqliteStorage`), and the observer copies the
    directory every ``snapshot_every_s`` (None: only at the end) into
    :attr:`StudyResult.snapshots`."""

    data_dir: Path
    storage: Callable[[VirtualClock], Storage]
    snapshot_every_s: float | None = None


def run_study(
    settings: StudySettings,
    *,
    sink: ViewSink | None = None,
    progress: Callable[[str], None] | None = None,
    relay: RelayFiles | None = None,
) -> StudyResult:
    """Plan the population and run it (module docstring); the view (if ``sink`` is left to be a
    :class:`MemorySink`) and the truth; with ``relay``, on its storage, with snapshots."""
    population = plan_population(
        settings.people, settings.days * DAY_S, seed=settings.seed, habits=settings.habits
    )
    with _Collector.during_run() as collector:
        return run_virtual(
            lambda clock: _main(
                clock, settings, population, sink or MemorySink(), progress, relay=relay, collector=collector
            )
        )


class _Collector:
    """The garbage collector while a study runs. Once everyone has registered, what exists
    (every client's keys, store and tasks, the relay's tables) lives for the run: it is frozen
    (``gc.freeze``), so full collections no longer walk it, and collections run less often
    (:data:`GC_THRESHOLDS`). Objects are still freed by their counts; only cycles among the
    frozen ones wait for the run's end. Without this, collections took 24% of a 2,000-person
    study's CPU and 30% of a 4,000-person one's, each full collection walking every client.
    Both are undone when the run ends (nothing is frozen if something else froze first)."""

    def __init__(self) -> None:
        self.thresholds = gc.get_threshold()
        self.frozen = False

    @classmethod
    @contextlib.contextmanager
    def during_run(cls) -> Iterator[_Collector]:
        collector = cls()
        try:
            yield collector
        finally:
            if collector.frozen:
                gc.unfreeze()
            gc.set_threshold(*collector.thresholds)

    def settle(self) -> None:
        """Everyone has registered: freeze what exists and collect less often."""
        if gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
            self.frozen = True
        gc.set_threshold(*GC_THRESHOLDS)


# --------------------------------------------------------------------------- spans
def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _minus(spans: list[tuple[float, float]], holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for start, end in spans:
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                out.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for start, end in a:
        for other_start, other_end in b:
            low, high = max(start, other_start), min(end, other_end)
            if low < high:
                out.append((low, high))
    return _union(out)


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sotto.audit.sim.study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--people", type=int, required=True)
    parser.add_argument("--days", type=float, required=True)
    parser.add_argument("--cadence", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=int, default=300, help="the relay's cadence tick in seconds")
    parser.add_argument("--forwarder", action="store_true", help="every device through a forwarder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    view_path = args.out / "view.jsonl"
    view_path.unlink(missing_ok=True)
    settings = StudySettings(
        args.people,
        args.days,
        cadence=args.cadence,
        seed=args.seed,
        tick_seconds=args.tick,
        forwarder=args.forwarder,
    )
    sink = FileSink(view_path)
    mode = "cadence" if args.cadence else "default"
    print(f"{args.people} people, {args.days} days, {mode} mode, seed {args.seed}", flush=True)
    # The clients say when a request fails; in outages that is expected, thousands of times.
    client_log = logging.getLogger("sotto.client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        result = run_study(settings, sink=sink, progress=lambda line: print(line, flush=True))
    finally:
        sink.close()
        client_log.setLevel(level)
    result.truth.save(args.out / "truth.json")
    person_days = args.people * args.days
    truth = result.truth
    print(
        f"done: wall {result.wall_s:.1f} s, cpu {result.cpu_s:.1f} s "
        f"({result.wall_s / person_days:.2f} s wall, {result.cpu_s / person_days:.2f} s cpu per person-day)\n"
        f"contacts {len(truth.contacts)} of {len(result.population.edges)} planned, "
        f"mailboxes {len(truth.mailboxes)}, envelopes {len(truth.sent)} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(Counter(s.kind for s in truth.sent).items()))}), "
        f"texts sent {len(result.texts)}, received {sum(result.received.values())}\n"
        f"counts: {dict(sorted(result.counts.items()))}\n"
        f"wrote {view_path} and {args.out / 'truth.json'}",
        flush=True,
    )
    return 0


__all__ = ["KeptStore", "RelayFiles", "StudyResult", "StudySettings", "main", "relay_config", "run_study"]


if __name__ == "__main__":
    sys.exit(main())
