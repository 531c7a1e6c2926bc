"""Cadence mode's scheduler: the engine's requests, at the instants the tick plans name.

In cadence mode (relay-protocol §6) the engine sends and polls only when this scheduler says.
It follows the relay's ticks (``GET /v1/cadence``) and carries out
:func:`sotto.client.cadence.plan_tick`'s plan for each, from the next whole tick on: at its
offset, each of our mailboxes is polled over a fresh connection (acknowledging what its previous
poll brought and we committed), and each contact is sent one envelope over a fresh connection
(the oldest queued for them, or cover). Nothing goes out at other times: sends, receipts and
answers wait in the outbox for their contact's next slot, and typing is not sent. A failed
request is retried in a later tick: an envelope leaves the outbox only when the relay confirmed
it, a polled envelope is acknowledged only after its commit. Prekeys and old mailboxes are seen
to every :data:`HOUSEKEEPING_S`.

The plan is pure (:mod:`sotto.client.cadence`); this module only waits for its instants, on the
engine's :class:`~sotto.client.clock.Clock`, and runs the engine's steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING

from sotto.client import cadence as cadence_plan
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import sending
from sotto.crypto.ed25519 import SigningKey
from sotto.errors import RelayError, RelayUnavailableError
from sotto.store.interfaces import Transaction
from sotto.store.model import ContactId, MailboxId, OutboxItem, ReceiptKind
from sotto.wire import frames

if TYPE_CHECKING:
    from sotto.client.runtime import Engine

log = logging.getLogger("sotto.client")

POLL_LIMIT = 32
"""Envelopes one poll takes; more wait for the mailbox's next tick (the relay says ``more``)."""
HOUSEKEEPING_S = 3_600.0
"""Prekeys and old mailboxes are seen to this often (there are no connections to do it on)."""
RETRY_MIN_S = 0.25
RETRY_MAX_S = 30.0
"""Back-off while the relay's tick cannot be read."""


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

    @property
    def tick_seconds(self) -> int | None:
        """The relay's tick once it was read (None before)."""
        return self._tick_seconds

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
        housekept = -HOUSEKEEPING_S
        tick = cadence_plan.tick_of(engine.now_ms() / 1000, tick_seconds) + 1
        while True:
            now = self._clock.monotonic()
            if now - housekept >= HOUSEKEEPING_S:
                housekept = now
                try:
                    await engine.housekeeping()
                except Exception as e:  # retried in an hour; the ticks must go on
                    log.info("housekeeping failed: %s", type(e).__name__)
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

    async def wait_for_tick(self, after_unix_s: float, timeout: float) -> None:
        """Until a tick that started at or after ``after_unix_s`` is done (or ``timeout``)."""
        async with self._ticks_done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._ticks_done.wait_for(lambda: self._last_tick_start >= after_unix_s), timeout
                )

    async def _sleep_until(self, unix_seconds: float) -> None:
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


__all__ = ["HOUSEKEEPING_S", "POLL_LIMIT", "CadenceScheduler", "oldest"]
