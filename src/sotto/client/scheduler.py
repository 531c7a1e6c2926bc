"""When the engine talks to the relay: a scheduler for each mode, driving the same engine.

The engine (:class:`~sotto.client.runtime.Engine`) holds the steps: consume an envelope, send
one outbox item, run a chore (an account request, a deletion, or the housekeeping), queue
receipts. A scheduler decides when they run, waiting on
the engine's :class:`~sotto.client.clock.Clock`; the engine starts its loops and tells it what
happened (:class:`Scheduler`).

**Default mode** (:class:`InteractiveScheduler`): four loops.

* The **drain** loop keeps one WebSocket subscribed to all our mailboxes; each envelope is
  consumed (unsealed, decrypted and applied under its sender's lock in one transaction),
  reported, and only then acknowledged (a lost ack means a redelivery that the dedupe table
  drops); it reconnects with exponential backoff and jitter, and on each connection registers
  again the mailboxes the relay refuses.
* The **outbox** worker sends queued envelopes in queue order per mailbox, removing each only
  after the relay confirmed it, retrying with backoff; a send wakes it.
* The **chore** loop runs the engine's chores (:meth:`~sotto.client.runtime.Engine.chore`: one
  account request or mailbox deletion, or the housekeeping) at random instants, the waits
  exponential with mean :data:`~sotto.client.runtime.HOUSEKEEPING_MEAN_S`, tied to no connection,
  poll or send.
* The **receipt** timer sends the delivery receipts we owe, one message per contact, after a
  randomized delay (``receipt_delay`` × 0.5–1.5), so their timing says little about arrivals.

**Cadence mode** (:class:`CadenceScheduler`, relay-protocol §6): the engine sends and polls only
when this scheduler says. It follows the relay's ticks (``GET /v1/cadence``) and carries out
:func:`sotto.client.cadence.plan_tick`'s plan for each, from the next whole tick on: at its
offset, each of our mailboxes is polled over a fresh connection (acknowledging what its previous
poll brought and we committed), and each contact is sent one envelope over a fresh connection
(the oldest queued for them, or cover). Nothing goes out at other times: sends, receipts and
answers wait in the outbox for their contact's next slot, and typing is not sent. A failed
request is retried in a later tick: an envelope leaves the outbox only when the relay confirmed
it, a polled envelope is acknowledged only after its commit. The engine's chores run between
the steps at their own random instants (exponential waits, as in default mode).

The plan is pure (:mod:`sotto.client.cadence`); this module only waits for its instants, on the
engine's :class:`~sotto.client.clock.Clock`, and runs the engine's steps.

Through a forwarder (:func:`sotto.client.oblivious.oblivious_network`), cadence mode leaves its
next ticks' requests at the forwarder instead of sending each at its instant
(:class:`sotto.client.schedule.ScheduledCadence`), so they go on while the device is offline;
:data:`SCHEDULE_AT_FORWARDER` turns that off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Coroutine, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from sotto.client import cadence as cadence_plan
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import sending
from sotto.client.flows.mailboxes import registration_for
from sotto.client.oblivious import oblivious_transport_of
from sotto.client.schedule import ScheduledCadence
from sotto.client.transport import DrainConnection
from sotto.crypto.ed25519 import SigningKey
from sotto.errors import RelayError, RelayUnavailableError
from sotto.store.interfaces import Transaction
from sotto.store.model import ContactId, MailboxId, OutboxItem, ReceiptKind
from sotto.wire import frames

if TYPE_CHECKING:
    from sotto.client.runtime import Engine

log = logging.getLogger("sotto.client")

KEEPALIVE_S = 60.0
"""An empty ack this often keeps the drain connection from the relay's idle timeout."""
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 30.0
OUTBOX_RETRY_S = 0.5
"""How soon the outbox worker tries again after a pass failed as a whole (the store failing)."""
POLL_LIMIT = 32
"""Envelopes one poll takes; more wait for the mailbox's next tick (the relay says ``more``)."""
RETRY_MIN_S = 0.25
RETRY_MAX_S = 30.0
"""Back-off while the relay's tick cannot be read."""
SCHEDULE_AT_FORWARDER = True
"""Through a forwarder, keep the coming ticks' requests there (:mod:`sotto.client.schedule`)."""


Loop = Coroutine[Any, Any, None]


class Scheduler(Protocol):
    """What the engine asks of its scheduler."""

    @property
    def tick_seconds(self) -> int | None: ...

    def loops(self) -> list[tuple[str, Loop]]:
        """The background loops to run until the engine closes (name, coroutine)."""
        ...

    async def close(self) -> None:
        """The loops were cancelled: release what they held (a connection)."""
        ...

    async def after_send(self, *, started: bool) -> None:
        """Something was queued for sending (``started``: the loops run)."""
        ...

    def outbox_changed(self) -> None:
        """Receipts or answers joined the outbox."""
        ...

    def receipts_owed(self) -> None:
        """A message arrived: a delivery receipt is owed."""
        ...

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> None:
        """New mailboxes of ours to receive on."""
        ...

    async def settle(self, timeout: float, idle: float) -> None:
        """Until receiving and sending are quiet (``Client.sync``), or ``timeout``."""
        ...

    async def wait_for_tick(self, after_unix_s: float, timeout: float) -> None:
        """Until a tick that started at or after ``after_unix_s`` is done, or ``timeout``."""
        ...


class InteractiveScheduler:
    """Default mode: the drain, outbox and receipt loops (see the module docstring)."""

    def __init__(self, engine: Engine, *, receipt_delay: float) -> None:
        self._engine = engine
        self._clock = engine.clock
        self._receipt_delay = receipt_delay
        self._connection: DrainConnection | None = None
        self._outbox_wake = asyncio.Event()
        self._receipts_owed = asyncio.Event()
        self._last_envelope = 0.0

    @property
    def tick_seconds(self) -> int | None:
        return None

    def loops(self) -> list[tuple[str, Loop]]:
        return [
            ("sotto-drain", self._drain_loop()),
            ("sotto-outbox", self._outbox_loop()),
            ("sotto-receipts", self._receipt_loop()),
            ("sotto-chores", self._chore_loop()),
        ]

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def after_send(self, *, started: bool) -> None:
        if started:
            self._outbox_wake.set()
        else:
            await self._engine.flush_outbox()

    def outbox_changed(self) -> None:
        self._outbox_wake.set()

    def receipts_owed(self) -> None:
        self._receipts_owed.set()

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> None:
        connection = self._connection
        if connection is not None and mailboxes:
            with contextlib.suppress(RelayUnavailableError):
                await self._subscribe_on(connection, mailboxes)

    async def settle(self, timeout: float, idle: float) -> None:
        engine, clock = self._engine, self._clock
        started = clock.monotonic()
        deadline = started + timeout
        await engine.wait_connected(deadline - started)
        while clock.monotonic() < deadline:
            # Quiet means nothing for ``idle`` seconds during this call, not merely since the
            # last envelope: what is in flight when we are called gets its chance to arrive.
            quiet = clock.monotonic() - max(self._last_envelope, started) >= idle
            if quiet and engine.connected and await engine.outbox_settled():
                break
            await clock.sleep(min(0.05, idle / 4))

    async def wait_for_tick(self, after_unix_s: float, timeout: float) -> None:
        return None  # no ticks in default mode

    # ------------------------------------------------------------------ receiving
    async def _drain_loop(self) -> None:
        engine = self._engine
        delay = RECONNECT_MIN_S
        while not engine.closed:
            try:
                connection = await engine.relay().connect()
            except (RelayUnavailableError, RelayError) as e:
                log.info("delivery connection failed: %s", type(e).__name__)
            else:
                self._connection = connection
                try:
                    await self._serve(connection)
                except (RelayUnavailableError, RelayError) as e:
                    log.info("delivery connection ended: %s", type(e).__name__)
                except Exception as e:  # a store failure or a bug: reconnect rather than die
                    log.warning("receiving failed: %s", type(e).__name__)
                finally:
                    self._connection = None
                    was_connected = engine.connected
                    engine.mark_disconnected()
                    await connection.close()
                    if was_connected:
                        delay = RECONNECT_MIN_S
            await self._clock.sleep(delay * engine.uniform(0.5, 1.5))
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _serve(self, connection: DrainConnection) -> None:
        engine = self._engine
        keys = await engine.transaction(lambda tx: mailbox_flow.to_drain(tx, engine.now_ms()))
        await self._subscribe_on(connection, {m: SigningKey(s) for m, s in keys.items()})
        self._last_envelope = self._clock.monotonic()  # "idle" counts from here
        engine.mark_connected()
        self._outbox_wake.set()
        while not engine.closed:
            envelope = await connection.receive(timeout=KEEPALIVE_S)
            if envelope is None:
                await connection.ack([])  # keep-alive
                continue
            self._last_envelope = self._clock.monotonic()
            await self._process(connection, envelope)
            self._last_envelope = self._clock.monotonic()

    async def _subscribe_on(self, connection: DrainConnection, mailboxes: Mapping[bytes, SigningKey]) -> None:
        """Subscribe; a mailbox the relay refuses but we hold is registered again and retried once."""
        if not mailboxes:
            return
        engine = self._engine
        answer = await connection.subscribe(mailboxes)
        retry: dict[bytes, SigningKey] = {}
        for mailbox_id in answer.refused:
            command = await engine.transaction(
                partial(registration_for, mailbox_id=MailboxId(mailbox_id), now_ms=engine.now_ms())
            )
            if command is None:
                continue
            try:
                await engine.relay().create_mailbox(command.request())
            except RelayError:
                continue
            retry[mailbox_id] = mailboxes[mailbox_id]
        if retry:
            await connection.subscribe(retry)

    async def _process(self, connection: DrainConnection, envelope: frames.Envelope) -> None:
        """Consume one envelope; ack after the commit."""
        engine = self._engine
        outcome = await engine.consume(envelope)
        # The commit is what counts: report it and carry out its commands even if the ack is
        # lost with the connection (the relay then redelivers, and the copy is dropped as seen).
        engine.emit(outcome.events)
        try:
            await connection.ack([(envelope.mailbox, envelope.id)])
        finally:
            await engine.finish(outcome)

    # ------------------------------------------------------------------ sending
    async def _outbox_loop(self) -> None:
        engine = self._engine
        while not engine.closed:
            # Cleared before the pass, not after: a send queued while the pass runs sets it
            # again, so its wake-up cannot be lost.
            self._outbox_wake.clear()
            wait: float | None
            try:
                next_due = await engine.flush_outbox()
            except Exception as e:  # the worker must outlive a failed attempt
                log.warning("outbox failed: %s", type(e).__name__)
                wait = OUTBOX_RETRY_S
            else:
                wait = None if next_due is None else max(0.05, (next_due - engine.now_ms()) / 1000)
            await self._woken_or_waited(self._outbox_wake, wait)

    async def _woken_or_waited(self, wake: asyncio.Event, seconds: float | None) -> None:
        """Until ``wake`` is set or ``seconds`` pass on the engine's clock (None: no limit)."""
        if seconds is None:
            await wake.wait()
            return
        woken = asyncio.ensure_future(wake.wait())
        waited = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((woken, waited), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, waited):
                task.cancel()
            await asyncio.gather(woken, waited, return_exceptions=True)

    async def _chore_loop(self) -> None:
        """The engine's chores at random instants (exponential waits), none tied to a
        connection: the first comes a random while after the drain first connected."""
        engine = self._engine
        await engine.until_connected()
        while not engine.closed:
            await self._clock.sleep(engine.chore_delay())
            try:
                await engine.chore()
            except Exception as e:  # the next chore tries again
                log.info("chore failed: %s", type(e).__name__)

    async def _receipt_loop(self) -> None:
        engine = self._engine
        while not engine.closed:
            await self._receipts_owed.wait()
            await self._clock.sleep(self._receipt_delay * engine.uniform(0.5, 1.5))
            self._receipts_owed.clear()
            try:
                await engine.send_receipts(ReceiptKind.DELIVERED)
            except Exception as e:
                log.warning("receipts failed: %s", type(e).__name__)


class CadenceScheduler:
    """Runs one engine in cadence mode (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._clock = engine.clock
        self._acks: dict[MailboxId, list[bytes]] = {}
        """Per mailbox: envelopes committed since its last poll, acknowledged on its next."""
        self._tick_seconds: int | None = None
        self._ticks_done = asyncio.Condition()
        self._last_tick_start = 0.0
        self._next_chore = math.inf
        """When the next chore is due (Unix seconds): at random instants between the steps."""
        self._scheduled: ScheduledCadence | None = None

    @property
    def tick_seconds(self) -> int | None:
        """The relay's tick once it was read (None before)."""
        return self._tick_seconds

    def loops(self) -> list[tuple[str, Loop]]:
        return [("sotto-cadence", self.run())]

    async def close(self) -> None:
        # Every request had a connection of its own; a schedule's slots stay at the forwarder.
        if self._scheduled is not None:
            await self._scheduled.aclose()

    async def after_send(self, *, started: bool) -> None:
        return None  # the next tick takes it

    def outbox_changed(self) -> None:
        return None

    def receipts_owed(self) -> None:
        return None  # queued after each poll, sent in the contacts' slots

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> None:
        return None  # the next tick's plan polls every mailbox we hold

    async def settle(self, timeout: float, idle: float) -> None:
        return None

    async def run(self) -> None:
        """Follow the relay's ticks: from the next whole tick on, each tick's plan, step by step at
        its offset. Never returns; the engine cancels it when it closes."""
        engine = self._engine
        delay = RETRY_MIN_S
        tick_seconds = 0
        while not tick_seconds:
            try:
                tick_seconds = (await engine.relay().cadence()).tick_seconds
            except (RelayUnavailableError, RelayError) as e:
                log.info("cadence unavailable: %s", type(e).__name__)
                await self._clock.sleep(delay * engine.uniform(0.5, 1.5))
                delay = min(delay * 2, RETRY_MAX_S)
        self._tick_seconds = tick_seconds
        engine.mark_connected()
        self._next_chore = engine.now_ms() / 1000 + engine.chore_delay()
        oblivious = oblivious_transport_of(engine.network)
        if oblivious is not None and SCHEDULE_AT_FORWARDER:
            self._scheduled = ScheduledCadence(
                engine, oblivious, plan=self._plan, sleep_until=self._sleep_until, tick_done=self._tick_done
            )
            await self._scheduled.run(tick_seconds)  # returns if the forwarder keeps no schedule
            await self._scheduled.aclose()
            self._scheduled = None
        tick = cadence_plan.tick_of(engine.now_ms() / 1000, tick_seconds) + 1
        while True:
            # Wait for the tick to begin, then plan it with the state at its start.
            await self._sleep_until(cadence_plan.tick_start(tick, tick_seconds))
            try:
                plan = await engine.transaction(partial(self._plan, tick=tick, tick_seconds=tick_seconds))
            except Exception as e:  # the store failed: this tick is lost, not the loop
                log.warning("cadence plan failed: %s", type(e).__name__)
                tick += 1
                continue
            for step in plan.steps:
                await self._sleep_until(step.at)
                try:
                    if isinstance(step, cadence_plan.Poll):
                        await self._poll(step.mailbox_id)
                    else:
                        await self._send(step)
                except Exception as e:  # a step that failed is retried in a later tick
                    log.warning("cadence step failed: %s", type(e).__name__)
            async with self._ticks_done:
                self._last_tick_start = plan.start
                self._ticks_done.notify_all()
            # After an overrun (a slow relay), the next tick runs late; ticks missed whole are
            # skipped, not caught up.
            tick = max(tick + 1, cadence_plan.tick_of(engine.now_ms() / 1000, tick_seconds))

    async def _tick_done(self, start: float) -> None:
        async with self._ticks_done:
            self._last_tick_start = max(self._last_tick_start, start)
            self._ticks_done.notify_all()

    async def wait_for_tick(self, after_unix_s: float, timeout: float) -> None:
        """Until a tick that started at or after ``after_unix_s`` is done (or ``timeout``)."""
        async with self._ticks_done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._ticks_done.wait_for(lambda: self._last_tick_start >= after_unix_s), timeout
                )

    async def _sleep_until(self, unix_seconds: float) -> None:
        """Until ``unix_seconds``, doing the chores whose instants come first."""
        engine = self._engine
        while self._next_chore <= unix_seconds:
            await self._wait_until(self._next_chore)
            try:
                await engine.chore()
            except Exception as e:  # the next chore tries again; the ticks must go on
                log.info("chore failed: %s", type(e).__name__)
            self._next_chore = max(self._next_chore, engine.now_ms() / 1000) + engine.chore_delay()
        await self._wait_until(unix_seconds)

    async def _wait_until(self, unix_seconds: float) -> None:
        wait = unix_seconds - self._engine.now_ms() / 1000
        if wait > 0:
            await self._clock.sleep(wait)

    def _plan(self, tx: Transaction, *, tick: int, tick_seconds: int) -> cadence_plan.TickPlan:
        engine = self._engine
        ours = list(mailbox_flow.to_drain(tx, engine.now_ms()))
        contacts: dict[ContactId, MailboxId] = {}
        for contact in tx.contacts.all():
            theirs = tx.their_mailboxes.get(contact.contact_id)
            if theirs is not None:
                contacts[contact.contact_id] = theirs.mailbox_id
        queue = [(item.item_id, item.mailbox_id) for item in tx.outbox.all()]
        return cadence_plan.plan_tick(tick, tick_seconds, ours, contacts, queue=queue, rng=engine.rng)

    async def _poll(self, mailbox_id: MailboxId) -> None:
        """Poll one mailbox: acknowledge what its last poll brought, then consume what it brings."""
        engine = self._engine
        seeds = await engine.transaction(lambda tx: mailbox_flow.to_drain(tx, engine.now_ms()))
        seed = seeds.get(mailbox_id)
        if seed is None:
            return  # retired since the plan was made
        acks = self._acks.get(mailbox_id, [])
        try:
            result = await engine.relay().poll(mailbox_id, SigningKey(seed), acks, POLL_LIMIT)
        except RelayError as e:
            if e.status == 404:  # expired or never created: register it again for the next tick
                await engine.register_again(mailbox_id)
            raise
        self._acks[mailbox_id] = []
        committed = 0
        for polled in result.envelopes:
            envelope = frames.Envelope(mailbox_id, polled.id, polled.day, polled.payload)
            outcome = await engine.consume(envelope)
            self._acks.setdefault(mailbox_id, []).append(polled.id)
            engine.emit(outcome.events)
            await engine.finish(outcome)
            committed += 1
        if committed:
            # Owed delivery receipts join the outbox: they leave in the contacts' next slots.
            await engine.send_receipts(ReceiptKind.DELIVERED)

    async def _send(self, step: cadence_plan.Send) -> None:
        """Send the oldest envelope queued for the step's mailbox now, else cover to its contact."""
        engine = self._engine
        item: OutboxItem | None
        if step.contact_id is None:
            item = await engine.transaction(partial(oldest, mailbox_id=step.mailbox_id))
        else:
            contact_id = step.contact_id
            contact = engine.read(lambda tx: tx.contacts.get(contact_id))
            if contact is None:
                return
            async with engine.peers([contact.address.name]):
                item = await engine.transaction(partial(self._oldest_or_cover, contact_id=contact.contact_id))
        if item is None:
            return
        if await engine.send_item(item):
            await engine.confirm([item.item_id])

    def _oldest_or_cover(self, tx: Transaction, *, contact_id: ContactId) -> OutboxItem | None:
        theirs = tx.their_mailboxes.get(contact_id)
        contact = tx.contacts.get(contact_id)
        if theirs is None or contact is None:
            return None
        item = oldest(tx, mailbox_id=theirs.mailbox_id)
        if item is None and sending.send_cover(self._engine.context(tx), contact):
            item = oldest(tx, mailbox_id=theirs.mailbox_id)
        return item


def oldest(tx: Transaction, *, mailbox_id: MailboxId) -> OutboxItem | None:
    """The first envelope queued for ``mailbox_id``, if any."""
    return next((item for item in tx.outbox.all() if item.mailbox_id == mailbox_id), None)


__all__ = [
    "KEEPALIVE_S",
    "POLL_LIMIT",
    "RECONNECT_MAX_S",
    "RECONNECT_MIN_S",
    "CadenceScheduler",
    "InteractiveScheduler",
    "Scheduler",
    "oldest",
]
