"""The schedulers drive the engine on the clock it was handed, and only on that clock.

A :class:`SteppedClock` is a clock the test owns: a wait moves it forward at once, so no real
time and no event-loop time passes. The engine is handed it through ``Client(clock=...)``, and
everything timed (cadence ticks and their step offsets, reconnect back-off) follows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sotto.client.scheduler import RECONNECT_MAX_S, RECONNECT_MIN_S
from sotto.client.sdk import Client
from sotto.crypto.random import Rng
from sotto.store.memory import MemoryStore
from tests.client.fake_relay import FakeNetwork

URL = "http://relay.test"
START_MS = 1_800_000_000_000
T = TypeVar("T")


class SteppedClock:
    """Unix time that moves only when the engine waits (by exactly what it waits)."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.seconds = start_ms / 1000
        self.waits: list[float] = []

    def now_ms(self) -> int:
        return round(self.seconds * 1000)

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.seconds += max(seconds, 0.0)
        await asyncio.sleep(0)  # let the others run, as a real wait would


def seeded(seed: int) -> Rng:
    state = seed

    def rng(n: int) -> bytes:
        nonlocal state
        out = bytearray()
        while len(out) < n:
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            out += state.to_bytes(8, "big")
        return bytes(out[:n])

    return rng


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 60))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


def test_cadence_ticks_follow_the_clock_the_engine_was_handed() -> None:
    clock = SteppedClock()

    async def main() -> tuple[int, list[tuple[str, bytes]]]:
        network = FakeNetwork()
        relay = network.relay(URL)
        relay.tick_seconds = 60
        client = await Client.register(
            MemoryStore(), URL, "Alice", network=network, clock=clock, cadence=True
        )
        async with client:
            assert client.cadence
            await client.create_invite()  # a mailbox of ours: one poll per tick
            started = clock.seconds
            await client.start()
            await until(lambda: len(relay.requests) >= 5)
            assert client.tick_seconds == 60 and client.connected
            return int(clock.seconds - started), list(relay.requests)

    elapsed, requests = run(main)
    # Five ticks of the handed clock: at least four whole ticks passed on it (the first poll
    # falls somewhere in the first whole tick), at most six; only polls, one mailbox.
    assert 4 * 60 <= elapsed <= 6 * 60
    assert [kind for kind, _ in requests] == ["poll"] * len(requests)
    assert len({mailbox for _, mailbox in requests}) == 1


def test_the_same_seed_and_clock_give_the_same_cadence_offsets() -> None:
    def offsets(seed: int) -> list[float]:
        clock = SteppedClock()

        async def main() -> list[float]:
            network = FakeNetwork()
            network.relay(URL).tick_seconds = 60
            client = await Client.register(
                MemoryStore(), URL, "Alice", network=network, clock=clock, rng=seeded(seed), cadence=True
            )
            async with client:
                await client.create_invite()
                await client.start()
                await until(lambda: len(network.relay(URL).requests) >= 3)
            return [round(wait, 6) for wait in clock.waits]

        return run(main)

    assert offsets(1) == offsets(1)
    assert offsets(1) != offsets(2)


def test_reconnects_back_off_on_the_handed_clock() -> None:
    clock = SteppedClock()

    async def main() -> list[float]:
        network = FakeNetwork()
        client = await Client.register(MemoryStore(), URL, "Alice", network=network, clock=clock)
        relay = network.relay(URL)
        async with client:
            assert not client.cadence
            relay.online = False
            await client.start()
            await until(lambda: sum(clock.waits) > 120)
            return list(clock.waits)

    waits = run(main)
    # Exponential back-off from a quarter second, capped at 30 s, each wait jittered by 0.5-1.5.
    for attempt, wait in enumerate(waits):
        delay = min(RECONNECT_MIN_S * 2**attempt, RECONNECT_MAX_S)
        assert 0.5 * delay <= wait <= 1.5 * delay, (attempt, wait)
    assert len(waits) >= 8


def test_the_outbox_retries_on_the_handed_clock() -> None:
    clock = SteppedClock()
    attempts = 8

    async def main() -> float:
        network = FakeNetwork()
        relay = network.relay(URL)
        alice = await Client.register(MemoryStore(), URL, "Alice", network=network, clock=clock)
        bob = await Client.register(MemoryStore(), URL, "Bob", network=network, clock=clock)
        async with alice, bob:
            await bob.accept_invite((await alice.create_invite()).link, "Alice")
            while not (bob.is_ready("Alice") and alice.contacts() and alice.is_ready("Bob")):
                await alice.sync(timeout=1, idle=0.02)
                await bob.sync(timeout=1, idle=0.02)
            relay.online = False
            before, started = relay.send_attempts, clock.seconds
            await alice.send_text("Bob", "while the relay is down")
            # Eight attempts are two minutes of back-off (0.5 s doubling): on the handed clock
            # they pass at once; on the event loop's they would outlast this test's deadline.
            await until(lambda: relay.send_attempts - before >= attempts)
            return clock.seconds - started

    elapsed = run(main)
    assert elapsed >= 0.75 * 0.5 * (2 ** (attempts - 1) - 1)
