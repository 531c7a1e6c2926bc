"""Live delivery across relay nodes that share one store: the doorbell wired into the fan-out.

:class:`BusFanout` is the relay's :class:`~sotto.server.fanout.Fanout` when ``--bus`` names a
message bus. An envelope committed on this node goes to this node's listeners at once (as with
:class:`~sotto.server.fanout.LocalFanout`) and, after the commit, a ring ``(mailbox id, seq)``
goes on the bus (:mod:`sotto.server.bus`). Every node hears every ring; one that holds listeners
for that mailbox asks each of them to read the mailbox again from the store (a *recheck*), and
any other node drops the ring. Nothing else goes on the bus, and nothing records which node
holds which mailbox.

The store is the truth and a ring only a hint, so a ring lost costs latency, not a message:

* **The bus is down** (unreachable at start, or lost later): the store is checked for every
  mailbox with a listener here at once and then every ``fallback_interval`` seconds (one read per
  mailbox, ``has_pending``), and the listeners of each mailbox that holds something are asked to
  recheck it, until the bus is back; then once more at once and once a ``fallback_interval``
  later, since rings sent meanwhile are lost, not queued. Each
  change of state is one log line (``event bus down`` / ``event bus up``) and counted
  (``bus_down``, ``bus_up``); each round of checks counts ``bus_fallback_checks``, so the stats
  line says how many seconds the node spent on the fallback.
* **A ring cannot be sent** (this node's connection to the bus is down): the mailbox is
  remembered (at most ``max_unsent`` of them, in memory) and rung again when the bus is back,
  so nodes that stayed connected (and so are not checking the store) still hear of it, late.
  Rings that could not be sent are counted (``bus_rings_failed``), those sent again too
  (``bus_rings_resent``).

Rings to one mailbox waiting to be sent are merged (the highest ``seq`` is kept): a ring means
"read this mailbox", and one read covers them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sotto.server.bus import BusUnavailableError, Doorbell, Ring, doorbell_for
from sotto.server.fanout import Listener, LocalFanout, Recheck
from sotto.server.logging import Stats, logger
from sotto.server.storage.base import EnvelopeRecord, MailboxId

FALLBACK_INTERVAL = 1.0
"""Seconds between checks of the store for every subscribed mailbox while the bus is down."""
WATCH_INTERVAL = 0.1
"""Seconds between looks at the bus's health (a change is noticed within this)."""
RETRY_INTERVAL = 1.0
"""Seconds between attempts to reach a bus that was unreachable at start."""
RING_TIMEOUT = 2.0
"""Seconds one ring may take before it counts as failed (a bus that stopped answering)."""
RING_BATCH = 64
"""Rings sent at once (Redis answers each publish; these overlap)."""
MAX_UNSENT = 100_000
"""Mailboxes whose ring failed, remembered to ring again when the bus is back."""
CHECK_CONCURRENCY = 16
"""Store reads at once in one check of every subscribed mailbox."""

HasPending = Callable[[MailboxId], Awaitable[bool]]
"""Whether the store holds an envelope for the mailbox now."""


class BusFanout:
    """A :class:`~sotto.server.fanout.Fanout` over a local one and a doorbell.

    ``make_doorbell`` makes a new doorbell (called again while the bus stays unreachable at start);
    ``stats`` receives the counters; ``has_pending`` says whether the store holds an envelope for
    a mailbox (without it, every listener is asked to recheck at each check of the store, and a
    held long poll is then answered even when nothing came). :meth:`start` and :meth:`close` run
    on the relay's loop."""

    def __init__(
        self,
        make_doorbell: Callable[[], Doorbell],
        stats: Stats,
        *,
        fallback_interval: float = FALLBACK_INTERVAL,
        watch_interval: float = WATCH_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        max_unsent: int | None = None,
        has_pending: HasPending | None = None,
    ) -> None:
        self.local = LocalFanout()
        self._make = make_doorbell
        self._stats = stats
        self.fallback_interval = fallback_interval
        self.watch_interval = watch_interval
        self.retry_interval = retry_interval
        self.max_unsent = MAX_UNSENT if max_unsent is None else max_unsent
        self._bell: Doorbell | None = None
        self._outbox: dict[MailboxId, int] = {}
        self._unsent: dict[MailboxId, int] = {}
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.on_bus = False
        """Whether rings flow now; False: the store is checked every ``fallback_interval``."""
        self._was_up = False
        self._reconnects = 0
        self._next_check = 0.0
        self._extra_check: float | None = None
        self._has_pending = has_pending
        self._round: asyncio.Task[None] | None = None
        self._round_again = False

    @classmethod
    def for_url(
        cls, url: str, stats: Stats, *, prefix: str = "sotto", has_pending: HasPending | None = None
    ) -> BusFanout:
        """The fan-out of a node on the bus at ``url`` (``nats://…`` or ``redis://…``)."""
        if not url.startswith(("nats://", "tls://", "redis://", "rediss://")):
            raise ValueError("bus URL must start with nats:// or redis://")
        return cls(lambda: doorbell_for(url, prefix=prefix), stats, has_pending=has_pending)

    # ------------------------------------------------------------------ the Fanout protocol
    def subscribe(self, mailbox_id: MailboxId, listener: Listener, recheck: Recheck | None = None) -> None:
        self.local.subscribe(mailbox_id, listener, recheck)

    def unsubscribe(self, mailbox_id: MailboxId, listener: Listener) -> None:
        self.local.unsubscribe(mailbox_id, listener)

    def publish(self, envelope: EnvelopeRecord) -> None:
        self.local.publish(envelope)
        mailbox_id = envelope.mailbox_id
        if envelope.seq > self._outbox.get(mailbox_id, -1):
            self._outbox[mailbox_id] = envelope.seq
        if self._wake is not None:
            self._wake.set()

    def ring(self, mailbox_id: MailboxId) -> None:
        self.local.recheck(mailbox_id)
        # No sequence is known here; a ring's number is not used to filter, so 0 says "look".
        self._outbox.setdefault(mailbox_id, 0)
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Try the bus once (the relay starts on the fallback if it is unreachable), then keep
        watching it, sending rings and, while it is down, checking the store."""
        self._wake = asyncio.Event()
        if await self._connect_once():
            self.on_bus = True
        else:
            self._went_down("unreachable at start")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._send())]
        if self._bell is None:
            self._tasks.append(loop.create_task(self._connect()))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        if self._round is not None:
            tasks.append(self._round)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        bell, self._bell = self._bell, None
        if bell is not None:
            with contextlib.suppress(Exception):
                await bell.close()

    @property
    def doorbell(self) -> Doorbell | None:
        """The connected doorbell, or None while the bus was never reached."""
        return self._bell

    # ------------------------------------------------------------------ hearing rings
    def _heard(self, ring: Ring) -> None:
        mailbox_id = MailboxId(ring.mailbox_id)
        if mailbox_id in self.local:
            try:
                self.local.recheck(mailbox_id)
            except Exception as exc:  # a bug: never let it stop the bus client's reader
                logger.error("error %s", type(exc).__name__)

    def recheck_all(self) -> None:
        """Check the store for every mailbox with a listener here, and ask the listeners of each
        one that holds an envelope to read it (of every one, without ``has_pending``). A check
        asked for while one runs is made again after it."""
        if self._has_pending is None:
            for mailbox_id in self.local.mailboxes():
                self.local.recheck(mailbox_id)
            return
        if self._round is not None and not self._round.done():
            self._round_again = True
            return
        self._round = asyncio.get_running_loop().create_task(self._check_round(self._has_pending))

    async def _check_round(self, has_pending: HasPending) -> None:
        limit = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def check(mailbox_id: MailboxId) -> None:
            async with limit:
                try:
                    pending = await has_pending(mailbox_id)
                except Exception:  # the store failed: let the listeners find out by reading it
                    pending = True
            if pending and mailbox_id in self.local:
                try:
                    self.local.recheck(mailbox_id)
                except Exception as exc:  # a bug: logged by type, and the round goes on
                    logger.error("error %s", type(exc).__name__)

        again = True
        while again:
            self._round_again = False
            await asyncio.gather(*(check(m) for m in self.local.mailboxes()))
            again = self._round_again

    # ------------------------------------------------------------------ the bus's state
    async def _connect_once(self) -> bool:
        bell = self._make()
        try:
            await bell.start()
            await bell.subscribe(self._heard)
        except BusUnavailableError:
            with contextlib.suppress(Exception):
                await bell.close()
            return False
        self._bell = bell
        return True

    async def _connect(self) -> None:
        """Reach a bus that was unreachable at start; once reached, its client reconnects alone."""
        while self._bell is None:
            await asyncio.sleep(self.retry_interval)
            await self._connect_once()

    def _went_down(self, why: str) -> None:
        self.on_bus = False
        self._stats.count("bus_down")
        logger.warning(
            "event bus down (%s): checking the store for subscribed mailboxes every %g s",
            why,
            self.fallback_interval,
        )

    def _came_up(self) -> None:
        self.on_bus = True
        self._stats.count("bus_up")
        logger.warning("event bus up: live delivery across nodes by rings again")

    async def _watch(self) -> None:
        """Follow the bus's health: on the fallback, check the store every ``fallback_interval``;
        on a change, log it, count it and check the store at once."""
        loop = asyncio.get_running_loop()
        bell = self._bell
        self._was_up = self.on_bus  # as :meth:`start` found it: a change since then is one to act on
        self._reconnects = bell.health.reconnects if bell is not None else 0
        self._next_check = loop.time() + self.fallback_interval
        self._extra_check = None
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                self._look(loop.time())
            except Exception as exc:  # a bug: logged by type, and the watch goes on
                logger.error("error %s", type(exc).__name__)

    def _look(self, now: float) -> None:
        """One look at the bus's health at time ``now`` (see :meth:`_watch`)."""
        bell = self._bell
        up = bell is not None and bell.healthy
        was_up, self._was_up = self._was_up, up
        moved = bell is not None and bell.health.reconnects != self._reconnects
        if bell is not None:
            self._reconnects = bell.health.reconnects
        if up and (not was_up or moved):
            if was_up:  # down and up again between two looks
                self._stats.count("bus_down")
            self._came_up()
            self._extra_check = now + self.fallback_interval  # in case a ring raced the subscription
            self._resend()
            self.recheck_all()  # rings sent while it was away are lost
        elif was_up and not up:
            self._went_down("connection lost")
            self._next_check = now + self.fallback_interval
            self.recheck_all()
        elif not up and now >= self._next_check:
            self._stats.count("bus_fallback_checks")
            self._next_check = now + self.fallback_interval
            self.recheck_all()
        elif up and self._extra_check is not None and now >= self._extra_check:
            self._extra_check = None
            self.recheck_all()

    # ------------------------------------------------------------------ sending rings
    def _resend(self) -> None:
        if not self._unsent:
            return
        unsent, self._unsent = self._unsent, {}
        self._stats.count("bus_rings_resent", len(unsent))
        for mailbox_id, seq in unsent.items():
            if seq > self._outbox.get(mailbox_id, -1):
                self._outbox[mailbox_id] = seq
        if self._wake is not None:
            self._wake.set()

    def _failed(self, rings: list[tuple[MailboxId, int]]) -> None:
        self._stats.count("bus_rings_failed", len(rings))
        unsent = self._unsent
        for mailbox_id, seq in rings:
            if mailbox_id in unsent or len(unsent) < self.max_unsent:
                unsent[mailbox_id] = max(seq, unsent.get(mailbox_id, -1))

    async def _send(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._outbox:
                batch: list[tuple[MailboxId, int]] = []
                outbox = self._outbox
                for mailbox_id in outbox:
                    batch.append((mailbox_id, outbox[mailbox_id]))
                    if len(batch) >= RING_BATCH:
                        break
                for mailbox_id, _ in batch:
                    del outbox[mailbox_id]
                bell = self._bell
                if bell is None:
                    self._failed(batch)
                    continue
                # Tried even while the bus counts as down: a NATS ring then fails at once, and a
                # Redis ring that succeeds is what tells its doorbell the bus is back.
                results = await asyncio.gather(
                    *(asyncio.wait_for(bell.ring(m, s), RING_TIMEOUT) for m, s in batch),
                    return_exceptions=True,
                )
                failed = [ring for ring, result in zip(batch, results, strict=True) if result is not None]
                if failed:
                    self._failed(failed)
                    for result in results:
                        if result is not None and not isinstance(result, (BusUnavailableError, TimeoutError)):
                            logger.error("error %s", type(result).__name__)


__all__ = ["BusFanout"]
