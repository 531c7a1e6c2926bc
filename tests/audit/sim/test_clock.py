"""The virtual-time event loop: sleeps jump, clocks agree, a stuck simulation says so."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio.to_thread
import pytest

from sotto.audit import sim
from sotto.audit.sim.clock import VirtualClock, VirtualEventLoop
from sotto.errors import SimulationDeadlockError

HOUR = 3600.0


def test_sleeps_of_hours_complete_at_once_and_in_order() -> None:
    woke: list[tuple[str, float, float]] = []

    async def main(clock: VirtualClock) -> float:
        loop = asyncio.get_running_loop()

        async def sleeper(name: str, hours: float) -> None:
            await asyncio.sleep(hours * HOUR)
            woke.append((name, loop.time(), clock.now()))

        await asyncio.gather(sleeper("three", 3), sleeper("one", 1), sleeper("two", 2), sleeper("day", 24))
        return loop.time()

    started = time.monotonic()
    ended = sim.run(main, epoch=1_000_000.0)
    assert time.monotonic() - started < 60  # a simulated day, in far less than a real one
    assert ended == 24 * HOUR
    assert [name for name, _, _ in woke] == ["one", "two", "three", "day"]
    assert [at for _, at, _ in woke] == [HOUR, 2 * HOUR, 3 * HOUR, 24 * HOUR]
    assert [wall for _, _, wall in woke] == [1_000_000.0 + at for _, at, _ in woke]


def test_loop_time_and_the_injected_wall_clocks_move_together() -> None:
    async def main(clock: VirtualClock) -> list[tuple[float, float, int]]:
        loop = asyncio.get_running_loop()
        seen = []
        for step in (0.25, 59.75, 3540.0, 82_800.0):
            await asyncio.sleep(step)
            seen.append((loop.time(), clock.now(), clock.now_ms()))
        return seen

    epoch = 1_800_000_000.0
    for loop_time, wall, wall_ms in sim.run(main, epoch=epoch):
        assert wall == epoch + loop_time
        assert wall_ms == int((epoch + loop_time) * 1000)


def test_time_does_not_move_while_work_runs() -> None:
    async def main(clock: VirtualClock) -> tuple[float, float]:
        before = clock.now()
        sum(range(200_000))  # real work: no virtual time
        await asyncio.sleep(0)
        return before, clock.now()

    before, after = sim.run(main)
    assert before == after


def test_a_stuck_simulation_raises_instead_of_hanging() -> None:
    async def main(clock: VirtualClock) -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever set it

    with pytest.raises(SimulationDeadlockError):
        sim.run(main, deadlock_grace=0.01)


def test_threads_are_not_used_for_to_thread_work() -> None:
    """``asyncio.to_thread`` and anyio's (Starlette's thread pool) run inline: no time passes."""
    loop_thread = threading.get_ident()

    def work() -> int:
        return threading.get_ident()

    async def main(clock: VirtualClock) -> tuple[int, int, float]:
        before = clock.now()
        ours = await asyncio.to_thread(work)
        theirs = await anyio.to_thread.run_sync(work)
        return ours, theirs, clock.now() - before

    ours, theirs, elapsed = sim.run(main)
    assert ours == theirs == loop_thread
    assert elapsed == 0.0
    assert anyio.to_thread.run_sync.__module__ == "anyio.to_thread"  # put back afterwards


def test_a_timer_that_keeps_landing_on_now_does_not_stall_the_clock() -> None:
    """A timer re-armed for "the rest" of an interval can round to the current time; the clock
    must still move on (a real one would), or the loop spins forever at one instant."""

    async def main(clock: VirtualClock) -> int:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1536.387733986125)
        start = loop.time()
        done: asyncio.Future[int] = loop.create_future()
        calls = 0

        def check() -> None:
            nonlocal calls
            calls += 1
            if calls > 1000:
                done.set_exception(AssertionError("the clock stalled"))
            elif loop.time() > start:
                done.set_result(calls)
            else:
                loop.call_later(1e-15, check)  # start + 1e-15 rounds to start

        loop.call_later(1e-15, check)
        return await done

    assert sim.run(main) <= 3


def test_the_loop_is_a_normal_event_loop_otherwise() -> None:
    loop = VirtualEventLoop()
    try:
        assert loop.time() == 0.0
        assert loop.run_until_complete(asyncio.sleep(10, result="done")) == "done"
        assert loop.time() == 10.0
        assert loop.jumps == 1
    finally:
        loop.close()


def callback_order(loop: asyncio.AbstractEventLoop, *, timers: bool) -> list[str]:
    """What runs when, for tasks that wake each other by ``sleep(0)``, by callbacks, by the
    loop's wake-up pipe and, with ``timers``, by timers (some due at one instant, some
    cancelled, some re-armed within a turn)."""
    log: list[str] = []

    async def worker(name: str, index: int, steps: int) -> None:
        for i in range(steps):
            log.append(f"{name}{i}")
            woken: asyncio.Future[None] = loop.create_future()
            kind = i % (5 if timers else 3)
            if kind == 0:
                await asyncio.sleep(0)
                continue
            if kind == 1:
                loop.call_soon(woken.set_result, None)
            elif kind == 2:
                loop.call_soon_threadsafe(woken.set_result, None)
            elif kind == 3:
                loop.call_later(0.5 * (index % 2), woken.set_result, None)  # ties
            else:
                loop.call_later(0.25, log.append, f"{name}{i} cancelled").cancel()
                loop.call_at(loop.time(), woken.set_result, None)
            await woken

    async def main() -> None:
        loop.call_soon(log.append, "soon")
        await asyncio.gather(*(worker(name, index, 11) for index, name in enumerate("abcd")))

    loop.run_until_complete(main())
    return log


class AsyncioTurns(VirtualEventLoop):
    """Virtual time with asyncio's own turn of the loop."""

    _run_once = asyncio.BaseEventLoop._run_once  # type: ignore[attr-defined]


def test_callbacks_run_in_the_order_asyncio_runs_them() -> None:
    plain, virtual = asyncio.new_event_loop(), VirtualEventLoop()
    try:
        expected, got = callback_order(plain, timers=False), callback_order(virtual, timers=False)
    finally:
        plain.close()
        virtual.close()
    assert len(got) == 1 + 4 * 11
    assert got == expected


def test_timers_fire_in_the_order_asyncio_fires_them_on_virtual_time() -> None:
    reference, virtual = AsyncioTurns(), VirtualEventLoop()
    try:
        expected, got = callback_order(reference, timers=True), callback_order(virtual, timers=True)
        assert virtual.time() == reference.time() > 0
    finally:
        reference.close()
        virtual.close()
    assert len(got) == 1 + 4 * 11
    assert got == expected
