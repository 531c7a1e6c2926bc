"""Long polls (relay-protocol §6): a signed poll with ``wait_ms`` whose mailbox is empty is held
until an envelope is committed to it on this relay, or the wait ends.

This is how a client behind a forwarder receives promptly, since the delivery WebSocket does
not go through Oblivious HTTP: each of its mailboxes has one poll held at a time, each its own
sealed request, so the relay sees held polls from the forwarder's address and cannot tell which
of them one device holds, except by their timing (the client draws their waits at random).

A held poll listens on the relay's fan-out, the same one the WebSocket's subscriptions use (an
envelope committed on this node, or a recheck rung by another node over the bus), and is
registered *before* the mailbox is read, so an envelope committed between the read and the
wait still wakes it. Bounds: one held poll per mailbox (a newer poll of the mailbox answers the
older one at once: a client whose connection broke and that polls again is not kept waiting for
its own stale poll), and :attr:`~sotto.server.config.ServerConfig.max_held_polls` in all, beyond
which a poll asking to wait is refused with 503 ``polls_busy`` and a Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable

from sotto.server.context import RelayContext
from sotto.server.ratelimit import RateLimitedError
from sotto.server.storage.base import EnvelopeRecord, MailboxId

__all__ = ["POLLS_BUSY_RETRY_S", "HeldPolls", "Hold", "PollsBusyError", "held_polls", "stop_holding"]

POLLS_BUSY_RETRY_S = 2
"""The Retry-After of a ``polls_busy`` refusal, in seconds."""


class PollsBusyError(RateLimitedError):
    """503 ``polls_busy``: the relay holds its cap of long polls; poll again after
    ``retry_after`` seconds (or without ``wait_ms``)."""

    def __init__(self, retry_after: int = POLLS_BUSY_RETRY_S) -> None:
        super().__init__(retry_after)
        self.status = 503
        self.code = "polls_busy"
        self.message = f"the relay holds as many long polls as it can; retry in {retry_after} s"
        self.args = (self.message,)


class Hold:
    """One held poll of one mailbox: woken by an envelope committed to it, by a newer poll of
    the same mailbox, or by the relay; :meth:`release` it when the answer is ready."""

    __slots__ = ("_held", "_woken", "mailbox_id", "superseded")

    def __init__(self, held: HeldPolls, mailbox_id: MailboxId) -> None:
        self._held = held
        self.mailbox_id = mailbox_id
        self._woken = asyncio.Event()
        self.superseded = False

    def _on_envelope(self, envelope: EnvelopeRecord) -> None:
        self._woken.set()

    def _on_recheck(self, mailbox_id: MailboxId) -> None:
        self._woken.set()

    def wake(self) -> None:
        self._woken.set()

    async def wait(self, seconds: float, gone: Awaitable[object] | None = None) -> bool:
        """Until woken (True) or ``seconds`` pass, or ``gone`` completes (the client left)."""
        waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(self._woken.wait())}
        if gone is not None:
            waiters.add(asyncio.ensure_future(gone))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
        return self._woken.is_set()

    def release(self) -> None:
        self._held._release(self)


class HeldPolls:
    """The long polls one relay process holds (see the module docstring)."""

    def __init__(self, ctx: RelayContext) -> None:
        self.ctx = ctx
        self._holds: dict[MailboxId, Hold] = {}
        self.stopping = False
        """Set when the relay stops: every poll is answered at once from then on."""
        _REGISTRIES.add(self)

    def __len__(self) -> int:
        return len(self._holds)

    def hold(self, mailbox_id: MailboxId) -> Hold:
        """Register a held poll of ``mailbox_id``, answering the one held before it (if any);
        :class:`PollsBusyError` when the relay holds its cap already."""
        ctx = self.ctx
        earlier = self._holds.get(mailbox_id)
        if earlier is not None:
            earlier.superseded = True
            self._release(earlier)
            earlier.wake()
            ctx.stats.count("polls_superseded")
        elif len(self._holds) >= ctx.config.max_held_polls:
            ctx.stats.count("polls_busy")
            raise PollsBusyError()
        hold = Hold(self, mailbox_id)
        if self.stopping:
            hold.wake()
        self._holds[mailbox_id] = hold
        # rechecks: an envelope committed on another relay node (docs/scaling.md) wakes it too
        ctx.fanout.subscribe(mailbox_id, hold._on_envelope, hold._on_recheck)
        ctx.stats.count("polls_held")
        return hold

    def _release(self, hold: Hold) -> None:
        if self._holds.get(hold.mailbox_id) is hold:
            del self._holds[hold.mailbox_id]
            self.ctx.fanout.unsubscribe(hold.mailbox_id, hold._on_envelope)

    def stop(self) -> None:
        """The relay is stopping: answer every held poll now, and hold none from now on."""
        self.stopping = True
        for hold in tuple(self._holds.values()):
            hold.wake()


_REGISTRIES: weakref.WeakSet[HeldPolls] = weakref.WeakSet()


def stop_holding() -> int:
    """Answer every poll held in this process now and hold no more (the server is stopping, so
    that it does not wait for the holds to run out); how many were held."""
    held = 0
    for registry in tuple(_REGISTRIES):
        held += len(registry)
        registry.stop()
    return held


def held_polls(state: object, ctx: RelayContext) -> HeldPolls:
    """The app's registry (on ``app.state``), one per relay context: a restarted app has a new one."""
    held: HeldPolls | None = getattr(state, "held_polls", None)
    if held is None or held.ctx is not ctx:
        held = HeldPolls(ctx)
        state.held_polls = held  # type: ignore[attr-defined]
    return held
