"""Receiving in default mode without a WebSocket: one long poll per mailbox (relay-protocol §6).

Through a forwarder (Oblivious HTTP) there is no delivery WebSocket, so the drain connection of
default mode is made of long polls instead: :class:`LongPollDrain` is a
:class:`~sotto.client.transport.DrainConnection` whose every mailbox has a loop of its own that
polls it with ``wait_ms``. The relay answers at once when envelopes are pending and otherwise
holds the poll until one arrives or the wait ends, so a message reaches an online device about
as soon as it is stored, and the scheduler drives this drain exactly as it drives a WebSocket.

What the relay could link: each poll is a request of its own (sealed separately, through the
forwarder: no address, no connection shared with anything else of ours), naming one mailbox.
So that the polls of one device do not move together, each mailbox's first poll goes at an
independent random moment within ``spread_s`` of subscribing, each held poll asks for a wait
drawn uniformly in ``wait_s``, and retries wait independently drawn times: the cycles of our
mailboxes drift apart instead of starting and ending in step.

A mailbox's loop polls again only once every envelope its last poll handed out was
acknowledged (:meth:`LongPollDrain.ack`, after the commit); that next poll carries those acks,
and the relay deletes them before it reads. A failure that is not the relay being busy (429 or
503: that loop waits and tries again) ends the drain: :meth:`receive` raises it, and the
scheduler reconnects as it does for a WebSocket. A mailbox the relay does not know at its first
poll is reported refused by :meth:`subscribe` (the scheduler registers it again); one that
disappears later (we deleted it) ends its own loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sotto.client.stopping import stop_tasks
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import Rng, system_rng
from sotto.errors import RelayError, RelayUnavailableError
from sotto.wire import api, frames

__all__ = [
    "BUSY_RETRY_S",
    "POLL_LIMIT",
    "SPREAD_S",
    "WAIT_S",
    "LongPollDrain",
    "PollCall",
]

log = logging.getLogger("sotto.client")

POLL_LIMIT: Final = 32
"""Envelopes one poll takes at most."""
SPREAD_S: Final = 3.0
"""Each mailbox's first poll goes at a uniform moment within this many seconds of subscribing."""
WAIT_S: Final = (15.0, 25.0)
"""Each held poll asks the relay to wait a uniform draw in this range (at most
:data:`~sotto.wire.api.MAX_POLL_WAIT_MS`)."""
BUSY_RETRY_S: Final = (1.0, 30.0)
"""A loop refused as busy (429, 503) waits the relay's Retry-After (at least the first, at most
the second of these), times a uniform 1–2."""

PollCall = Callable[[bytes, SigningKey, Sequence[bytes], int, int], Awaitable[api.PollResult]]
"""``(mailbox, key, ack ids, limit, wait ms)``: one poll
(:meth:`~sotto.client.transport.HttpRelay.long_poll`)."""

_CLOSED: Final = object()


@dataclass(slots=True)
class _Mailbox:
    key: SigningKey
    outstanding: set[bytes] = field(default_factory=set)
    """Handed out by the last poll, not acknowledged yet."""
    acks: list[bytes] = field(default_factory=list)
    """Acknowledged since the last poll: sent with the next one."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while nothing is outstanding."""


class LongPollDrain:
    """A drain connection made of long polls (see the module docstring)."""

    def __init__(
        self,
        poll: PollCall,
        *,
        rng: Rng = system_rng,
        spread_s: float = SPREAD_S,
        wait_s: tuple[float, float] = WAIT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < wait_s[0] <= wait_s[1] <= api.MAX_POLL_WAIT_MS / 1000:
            raise ValueError("wait_s must lie within (0, MAX_POLL_WAIT_MS]")
        self._poll = poll
        self._rng = rng
        self._spread_s = spread_s
        self._wait_s = wait_s
        self._sleep = sleep
        self._boxes: dict[bytes, _Mailbox] = {}
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._queue: asyncio.Queue[frames.Envelope | object] = asyncio.Queue()
        self._failure: BaseException | None = None
        self._closed = False

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * (int.from_bytes(self._rng(7)) >> 3) / (1 << 53)

    @property
    def mailboxes(self) -> frozenset[bytes]:
        """The mailboxes being polled."""
        return frozenset(self._tasks)

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> frames.Subscribed:
        """Start polling each mailbox not polled yet; answers once each one's first poll did
        (``refused``: those the relay does not know)."""
        if self._closed:
            raise RelayUnavailableError("the long-poll drain is closed")
        firsts: dict[bytes, asyncio.Future[bool]] = {}
        loop = asyncio.get_running_loop()
        for mailbox_id, key in mailboxes.items():
            if mailbox_id in self._tasks:
                continue
            first: asyncio.Future[bool] = loop.create_future()
            firsts[mailbox_id] = first
            self._boxes[mailbox_id] = box = _Mailbox(key)
            box.settled.set()
            self._tasks[mailbox_id] = asyncio.create_task(self._run(mailbox_id, box, first))
        answers = await asyncio.gather(*firsts.values(), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        known = tuple(m for m, answer in zip(firsts, answers, strict=True) if answer is True)
        refused = tuple(m for m, answer in zip(firsts, answers, strict=True) if answer is not True)
        for mailbox_id in refused:  # its loop ended: a later subscribe starts it anew
            self._tasks.pop(mailbox_id, None)
            self._boxes.pop(mailbox_id, None)
        return frames.Subscribed(known, refused)

    async def receive(self, timeout: float | None = None) -> frames.Envelope | None:
        """The next envelope; None if ``timeout`` passed first; the drain's failure once it
        failed (RelayUnavailableError when closed)."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # every later call fails too
            failure = self._failure
            if isinstance(failure, (RelayError, RelayUnavailableError)):
                raise failure
            raise RelayUnavailableError("the long-poll drain is closed")
        assert isinstance(item, frames.Envelope)
        return item

    async def ack(self, refs: Sequence[tuple[bytes, bytes]]) -> None:
        """Acknowledge committed envelopes: their mailbox's next poll deletes them."""
        for mailbox_id, message_id in refs:
            box = self._boxes.get(mailbox_id)
            if box is None or message_id not in box.outstanding:
                continue
            box.outstanding.discard(message_id)
            box.acks.append(message_id)
            if not box.outstanding:
                box.settled.set()

    async def close(self) -> None:
        """Stop every loop (what was acknowledged and not yet sent is handed out again later,
        and dropped then as seen)."""
        self._closed = True
        await stop_tasks(self._tasks.values())
        self._queue.put_nowait(_CLOSED)

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            self._queue.put_nowait(_CLOSED)

    async def _run(self, mailbox_id: bytes, box: _Mailbox, first: asyncio.Future[bool]) -> None:
        """One mailbox's loop: poll, hand out, wait for the acks, poll again with them."""
        try:
            await self._sleep(self._uniform(0.0, self._spread_s))
            wait_ms = 0  # the first poll answers at once: subscribe reports whether it is known
            while not self._closed:
                acks = box.acks
                try:
                    result = await self._poll(mailbox_id, box.key, acks, POLL_LIMIT, wait_ms)
                except RelayError as e:
                    if e.status == 404:
                        if not first.done():
                            first.set_result(False)
                        else:
                            log.info("a polled mailbox is gone")
                        return
                    if e.status not in (429, 503):
                        raise
                    retry = getattr(e, "retry_after", None) or BUSY_RETRY_S[0]
                    retry = min(max(float(retry), BUSY_RETRY_S[0]), BUSY_RETRY_S[1])
                    await self._sleep(retry * self._uniform(1.0, 2.0))
                    continue
                if not first.done():
                    first.set_result(True)
                del acks[:]  # sent and deleted: only later acks go with the next poll
                if result.envelopes:
                    box.settled.clear()
                    box.outstanding.update(e.id for e in result.envelopes)
                    for polled in result.envelopes:
                        envelope = frames.Envelope(mailbox_id, polled.id, polled.day, polled.payload)
                        self._queue.put_nowait(envelope)
                    await box.settled.wait()
                wait_ms = round(self._uniform(*self._wait_s) * 1000)
        except asyncio.CancelledError:
            if not first.done():
                first.set_exception(RelayUnavailableError("the long-poll drain is closed"))
            raise
        except BaseException as e:  # the relay unavailable, refused, or a bug: the drain ends
            if not first.done():
                first.set_exception(e if isinstance(e, Exception) else RelayUnavailableError("poll failed"))
            self._fail(e)
