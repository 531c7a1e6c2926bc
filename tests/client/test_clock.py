"""The engine's clock: wall time from what the caller gives, waits from the running loop."""

from __future__ import annotations

import asyncio

from sotto.audit import sim
from sotto.client.clock import Clock, LoopClock, as_clock, wall_clock_ms


def test_a_wall_clock_in_milliseconds_becomes_a_loop_clock_and_a_clock_stays_itself() -> None:
    fixed = as_clock(lambda: 1_234)
    assert isinstance(fixed, LoopClock) and fixed.now_ms() == 1_234
    ours: Clock = LoopClock(lambda: 5)
    assert as_clock(ours) is ours
    assert abs(as_clock(wall_clock_ms).now_ms() - wall_clock_ms()) < 60_000


def test_waits_and_the_monotonic_clock_are_the_loops_own() -> None:
    async def main(virtual: sim.VirtualClock) -> tuple[float, int, int]:
        clock = LoopClock(virtual.now_ms)
        before, before_ms = clock.monotonic(), clock.now_ms()
        await clock.sleep(3_600)  # an hour of virtual time, at once
        assert asyncio.get_running_loop().time() == clock.monotonic()
        return clock.monotonic() - before, before_ms, clock.now_ms()

    elapsed, before_ms, after_ms = sim.run(main)
    assert elapsed == 3_600
    assert after_ms - before_ms == 3_600_000
