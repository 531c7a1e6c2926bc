"""What one protective check costs, in process and on Redis (``sotto.server.shared_state``).

    python bench/shared_state.py                      # Redis at redis://127.0.0.1:6379
    python bench/shared_state.py --redis redis://…    # another Redis
    python bench/shared_state.py --quick              # fewer rounds

Each check is awaited as the relay's request path awaits it: a token bucket taken
(``Limiter.aallow``), a single use claimed (``SingleUse.aclaim``, what a signed request and a
proof-of-work answer spend) and a decaying count read (``Meter.acount``). Printed: the median
and 99th percentile of one check, one after another (so each Redis number is one round trip),
then the checks per second when 32 run at once on one event loop (what the awaiting buys: the
loop keeps other requests going while a round trip is out). The in-process line is the default
backend (a coroutine that returns at once); its synchronous method is printed beside it. Keys
are written under a random deployment prefix and deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import redis

from sotto.server.config import RateLimit
from sotto.server.ratelimit import RateLimiter
from sotto.server.shared_state import LocalState, RedisState, SharedState

NOW = 1_800_000_000.0
LIMIT = RateLimit(burst=1e12, per_second=1e12)  # never refuses: every check does the full work


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _serial(check: Callable[[int], Awaitable[object]], rounds: int) -> list[float]:
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        await check(i)
        samples.append(time.perf_counter() - start)
    return samples


async def _concurrent(check: Callable[[int], Awaitable[object]], rounds: int, width: int = 32) -> float:
    counter = iter(range(rounds))

    async def worker() -> None:
        for i in counter:
            await check(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return rounds / (time.perf_counter() - start)


def _checks(state: SharedState) -> dict[str, Callable[[int], Awaitable[object]]]:
    limiter = state.limiter("bench", LIMIT)
    once = state.single_use("bench", capacity=10_000_000)
    meter = state.meter("bench", 300)
    keys = [os.urandom(16) for _ in range(64)]

    async def bucket(i: int) -> object:
        return await limiter.aallow(keys[i % len(keys)], NOW)

    async def claim(i: int) -> object:
        return await once.aclaim(os.urandom(32), NOW + 300, NOW)

    async def count(i: int) -> object:
        return await meter.acount(NOW)

    return {"bucket (aallow)": bucket, "single use (aclaim)": claim, "meter (acount)": count}


async def _measure(name: str, state: SharedState, rounds: int) -> None:
    for check_name, check in _checks(state).items():
        await _serial(check, min(rounds, 200))  # warm: connections, scripts loaded
        median, p99 = _percentiles(await _serial(check, rounds))
        per_second = await _concurrent(check, rounds)
        print(
            f"{name:<11} {check_name:<21} median {median * 1e6:8.1f} µs   p99 {p99 * 1e6:8.1f} µs   "
            f"32 at once: {per_second:9.0f} checks/s"
        )


def _sync_baseline(rounds: int) -> None:
    limiter = RateLimiter(LIMIT)
    key = os.urandom(16)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        limiter.allow(key, NOW)
        samples.append(time.perf_counter() - start)
    median, p99 = _percentiles(samples)
    print(
        f"{'in process':<11} {'bucket (allow, sync)':<21} "
        f"median {median * 1e6:8.1f} µs   p99 {p99 * 1e6:8.1f} µs"
    )


async def main(url: str, rounds: int) -> None:
    print(f"python {sys.version.split()[0]}, {rounds} checks each, one event loop")
    _sync_baseline(rounds)
    await _measure("in process", LocalState(), rounds)
    state = RedisState(url, os.urandom(32))
    try:
        if not await state.aping():
            print(f"no Redis answers at {url}: Redis lines skipped")
            return
        await _measure("Redis", state, rounds)
    finally:
        await state.aclose()
        admin = redis.Redis.from_url(url, socket_timeout=5)
        try:
            for name in admin.scan_iter(match=f"{state.prefix}*", count=1_000):
                admin.delete(name)
        finally:
            admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default=os.environ.get("SOTTO_TEST_REDIS", "redis://127.0.0.1:6379"))
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    asyncio.run(main(options.redis, 1_000 if options.quick else 5_000))
