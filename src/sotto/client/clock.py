"""The client engine's clock: the time it stamps and plans with, and how it waits.

The engine reads no clock and sleeps on none of its own; it is handed a :class:`Clock`. In the
app that is :class:`LoopClock` over the wall clock (the default); a test or the simulation hands
it a clock it moves (:class:`LoopClock` over a virtual wall clock, on a virtual event loop), so
the same engine runs on real and on simulated time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


def wall_clock_ms() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


class Clock(Protocol):
    """What the engine knows of time."""

    def now_ms(self) -> int:
        """Unix time in milliseconds: what messages, prekeys and plans are stamped with."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (idle times, housekeeping intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (retry back-off, receipt delays, a cadence step's instant)."""
        ...


class LoopClock:
    """``now_ms`` from the given wall clock; waits and the monotonic clock are the running event
    loop's (on a virtual loop they are virtual too)."""

    def __init__(self, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def as_clock(clock: Clock | Callable[[], int]) -> Clock:
    """A :class:`Clock` from a clock, or from a wall clock in milliseconds (the SDK's ``clock=``)."""
    if isinstance(clock, LoopClock) or not callable(clock):
        return clock
    return LoopClock(clock)


__all__ = ["Clock", "LoopClock", "as_clock", "wall_clock_ms"]
