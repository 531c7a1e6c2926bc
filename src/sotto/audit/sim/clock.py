"""Virtual time for simulations: an asyncio event loop whose clock jumps instead of sleeping.

:class:`VirtualEventLoop` is a normal selector event loop except for its clock: ``loop.time()``
is virtual, and when nothing is ready to run the loop does not wait for the next timer, it
moves its clock to it (trio's ``MockClock(autojump_threshold=0)``). Work therefore takes no
virtual time; only sleeps, timeouts and timers do. A simulated day of idle devices passes in the
wall time their work costs.

Rules that keep the clock honest:

* Nothing may run in another thread. A future completed by a thread would let the clock jump
  while the thread works. The loop's default executor is :class:`InlineExecutor`, which runs the
  function at once, on the loop's thread, so every ``asyncio.to_thread`` / ``run_in_executor(None,
  …)`` on the simulated paths (the client's ``Client.create``/``attach`` store calls and
  ``offload_transactions``, the relay's big-subscription signature checks, its server key and
  SQLite opening at start-up) completes before the caller resumes. Starlette and FastAPI hand
  synchronous code (the relay's synchronous dependencies, such as its context lookup on every
  request) to ``anyio.to_thread.run_sync``: while :func:`run` runs, that function is replaced by
  one that calls inline (:func:`inline_anyio_threads`). The relay's SQLite storage keeps its own
  writer thread, so simulations use its in-memory storage.
* Every party reads the one :class:`VirtualClock`: the relay through its ``clock=`` (a
  :class:`~sotto.server.clock.Clock`), the client through ``clock=`` (milliseconds), and the
  client's transport signs with it too.
* Real file descriptors still work (the loop's own wake-up pipe is one): the loop looks at
  them, without waiting, before each jump and every :data:`REAL_POLL_EVERY` turns between.

Otherwise a turn of the loop is asyncio's own (``BaseEventLoop._run_once``: drop cancelled
timers, move due timers to the ready queue, run what was ready when the turn began), less the
system call that looks for I/O on each busy turn: a simulation spends most of its turns on
callbacks that wake each other at one virtual instant, and nothing real can be waiting for them.
Callbacks run in asyncio's order: when a turn ends with callbacks ready and no timer due, the
next turn would only run them, so the same turn does.

A loop with nothing ready, no timer and nothing to wait for would wait forever: it raises
:class:`~sotto.errors.SimulationDeadlockError` instead, after looking for a real event for
``deadlock_grace`` real seconds (a thread the simulation should not have started).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import heapq
import math
import selectors
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import anyio.to_thread

from sotto.errors import SimulationDeadlockError

T = TypeVar("T")

REAL_POLL_EVERY = 64
"""Turns with callbacks ready between two looks at the real file descriptors."""
_MAX_TIMEOUT_S = 24 * 3600.0
"""The longest wait asyncio asks of a selector (``MAXIMUM_SELECT_TIMEOUT``)."""
_MIN_SCHEDULED = 100
_MIN_CANCELLED_FRACTION = 0.5
"""When asyncio rebuilds its timer heap without the cancelled timers (its own thresholds)."""

DEFAULT_EPOCH_S = 1_800_000_000.0
"""Unix seconds at virtual time zero unless told otherwise (2027-01-15 08:00 UTC)."""


class VirtualSelector(selectors.BaseSelector):
    """A real selector whose ``select(timeout)`` never waits: it advances virtual time instead."""

    def __init__(self, *, deadlock_grace: float = 1.0, has_ready: Callable[[], bool] = lambda: False) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0
        """Virtual seconds, what ``loop.time()`` returns."""
        self.jumps = 0
        self._grace = deadlock_grace
        self._has_ready = has_ready

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout == 0:
            if not self._has_ready():
                # Woken by a timer due now. A timer re-armed for "the rest of" an interval can
                # land on the same float as now forever (now + 1e-13 rounds to now); real time
                # would move on, so virtual time moves by the smallest step it has.
                self.now = math.nextafter(self.now, math.inf)
            return ready
        if timeout is None:
            # Nothing ready, no timer: only a real event could wake us, and the simulation
            # makes none. Give a stray thread a moment, then say so rather than hang.
            ready = self._real.select(self._grace)
            if ready:
                return ready
            raise SimulationDeadlockError("every task waits and no timer is set: the simulation is stuck")
        self.now += timeout
        self.jumps += 1
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def poll_real(self) -> list[tuple[selectors.SelectorKey, int]]:
        """What the real file descriptors have ready now (no wait, no jump)."""
        return self._real.select(0)


class InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """An executor that runs each call at once, in the caller's thread (see the module docstring).

    A :class:`~concurrent.futures.ThreadPoolExecutor` only because asyncio accepts nothing else
    as a default executor; it never starts a thread."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:  # handed to the awaiting coroutine, as a thread would
            future.set_exception(e)
        else:
            future.set_result(result)
        return future


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring)."""

    def __init__(self, *, deadlock_grace: float = 1.0) -> None:
        self._virtual = VirtualSelector(deadlock_grace=deadlock_grace, has_ready=self._has_ready)
        super().__init__(self._virtual)
        self.set_default_executor(InlineExecutor(max_workers=1))

    def time(self) -> float:
        return self._virtual.now

    # The attributes below are asyncio's own (BaseEventLoop), which _run_once reads as it does.
    _ready: collections.deque[asyncio.Handle]
    _scheduled: list[asyncio.TimerHandle]
    _timer_cancelled_count: int
    _stopping: bool
    _clock_resolution: float
    _debug: bool
    _busy_turns = 0

    def _run_once(self) -> None:
        """One turn of the loop: asyncio's (see the module docstring)."""
        if self._debug:  # asyncio's own turn times slow callbacks
            super()._run_once()  # type: ignore[misc]
            return
        ready, virtual = self._ready, self._virtual
        scheduled = self._drop_cancelled()
        if ready or self._stopping:
            self._busy_turns += 1
            if self._busy_turns % REAL_POLL_EVERY == 0:
                self._process_events(virtual.poll_real())  # type: ignore[attr-defined]
        else:
            timeout = None
            if scheduled:
                due: float = scheduled[0]._when  # type: ignore[attr-defined]
                timeout = min(max(0.0, due - virtual.now), _MAX_TIMEOUT_S)
            events = virtual.select(timeout)
            if events:
                self._process_events(events)  # type: ignore[attr-defined]

        end_time = virtual.now + self._clock_resolution
        while scheduled:
            handle = scheduled[0]
            if handle._when >= end_time:  # type: ignore[attr-defined]
                break
            handle = heapq.heappop(scheduled)
            handle._scheduled = False  # type: ignore[attr-defined]
            ready.append(handle)

        while True:
            for _ in range(len(ready)):
                callback = ready.popleft()
                if not callback._cancelled:
                    callback._run()
            # The next turn would drop cancelled timers, find no I/O and no due timer, and run
            # what is ready now: do that in this one. Leave it to a turn of its own where it
            # would do more (a timer due, the loop stopping, the look at real descriptors).
            if not ready or self._stopping:
                return
            self._busy_turns += 1
            if self._busy_turns % REAL_POLL_EVERY == 0:
                return
            # Only then would it drop any (asyncio's count of cancelled timers can run high: a
            # cancelled timer that falls due leaves the heap without being counted off).
            if scheduled and (scheduled[0]._cancelled or len(scheduled) > _MIN_SCHEDULED):
                scheduled = self._drop_cancelled()
            if scheduled and scheduled[0]._when < end_time:  # type: ignore[attr-defined]
                return

    def _drop_cancelled(self) -> list[asyncio.TimerHandle]:
        """asyncio's first step of a turn: cancelled timers leave the heap (all of them when
        they are most of it, else those at its head); the heap."""
        scheduled = self._scheduled
        count = len(scheduled)
        if count > _MIN_SCHEDULED and self._timer_cancelled_count / count > _MIN_CANCELLED_FRACTION:
            kept = []
            for handle in scheduled:
                if handle._cancelled:
                    handle._scheduled = False  # type: ignore[attr-defined]
                else:
                    kept.append(handle)
            heapq.heapify(kept)
            self._scheduled = scheduled = kept
            self._timer_cancelled_count = 0
        else:
            while scheduled and scheduled[0]._cancelled:
                self._timer_cancelled_count -= 1
                handle = heapq.heappop(scheduled)
                handle._scheduled = False  # type: ignore[attr-defined]
        return scheduled

    def _has_ready(self) -> bool:
        """Whether callbacks wait to run this turn (asyncio keeps them in ``_ready``)."""
        return bool(getattr(self, "_ready", ()))

    @property
    def jumps(self) -> int:
        """How often the clock jumped to a timer (each time the loop had nothing ready)."""
        return self._virtual.jumps


class VirtualClock:
    """Wall time on a virtual loop: ``epoch`` plus the loop's virtual time.

    A :class:`~sotto.server.clock.Clock` for the relay (:meth:`now`, seconds); the client's
    ``clock=`` is :meth:`now_ms`.
    """

    def __init__(self, loop: VirtualEventLoop, epoch: float = DEFAULT_EPOCH_S) -> None:
        self._loop = loop
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + self._loop.time()

    def now_ms(self) -> int:
        return int(self.now() * 1000)


@contextlib.contextmanager
def inline_anyio_threads() -> Iterator[None]:
    """While the block runs, ``anyio.to_thread.run_sync(f, *args)`` calls ``f(*args)`` on the
    calling thread (what Starlette's ``run_in_threadpool`` uses): no thread, so no time jump
    while one works. Process-wide: meant for a simulation that owns the process."""
    original = anyio.to_thread.run_sync

    async def run_sync(func: Callable[..., T], *args: Any, **_options: Any) -> T:
        return func(*args)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.to_thread.run_sync = original


def run(
    main: Callable[[VirtualClock], Coroutine[Any, Any, T]],
    *,
    epoch: float = DEFAULT_EPOCH_S,
    deadlock_grace: float = 1.0,
) -> T:
    """Run ``main(clock)`` to its end on a fresh :class:`VirtualEventLoop`; its result.

    Tasks still running when ``main`` returns are cancelled, as :func:`asyncio.run` does."""
    loop = VirtualEventLoop(deadlock_grace=deadlock_grace)
    clock = VirtualClock(loop, epoch)
    with inline_anyio_threads():
        return _run(loop, main(clock))


def _run(loop: VirtualEventLoop, main: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


__all__ = [
    "DEFAULT_EPOCH_S",
    "InlineExecutor",
    "VirtualClock",
    "VirtualEventLoop",
    "VirtualSelector",
    "inline_anyio_threads",
    "run",
]
