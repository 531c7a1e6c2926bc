"""Doorbell benchmark: NATS and Redis pub/sub in the same run, as relay nodes use them.

    python bench/bus.py [--rings 20000] [--rate 2000] [--runs 3] [--nats URL] [--redis URL]

This process, pinned to one core (the bus servers run on the machine's others), holds two
doorbells on each bus: a sender node and a receiver node, each with its own connection. Figures,
per run, then the median of ``--runs`` runs:

* **rings/s**: ``--rings`` rings sent back to back (each ``ring`` awaited, as the relay would
  after a commit), divided by the time until the receiver has heard the last one;
* **latency**: rings sent open-loop at ``--rate`` per second; from the *scheduled* send time to
  the receiver's callback, p50 and p99 (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Callable

from sotto.server.bus import Doorbell, NatsDoorbell, RedisDoorbell, Ring


async def rings_per_second(sender: Doorbell, heard: list[float], count: int) -> float:
    heard.clear()
    box = secrets.token_bytes(16)
    start = time.perf_counter()
    for seq in range(count):
        await sender.ring(box, seq)
    while len(heard) < count:
        await asyncio.sleep(0.001)
    return count / (heard[-1] - start)


async def latency(sender: Doorbell, heard: list[float], count: int, rate: float) -> tuple[float, float]:
    heard.clear()
    box = secrets.token_bytes(16)
    start = time.perf_counter() + 0.05
    scheduled = [start + i / rate for i in range(count)]
    for seq, at in enumerate(scheduled):
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await sender.ring(box, seq)
    while len(heard) < count:
        await asyncio.sleep(0.001)
    waits = sorted((got - at) * 1000 for got, at in zip(heard, scheduled, strict=True))
    return waits[len(waits) // 2], waits[int(len(waits) * 0.99)]


async def one_run(make: Callable[[], Doorbell], rings: int, rate: float) -> tuple[float, float, float]:
    sender, receiver = make(), make()
    await sender.start()
    await receiver.start()
    heard: list[float] = []

    def on_ring(_ring: Ring) -> None:
        heard.append(time.perf_counter())

    await receiver.subscribe(on_ring)
    await rings_per_second(sender, heard, 500)  # warm-up
    throughput = await rings_per_second(sender, heard, rings)
    p50, p99 = await latency(sender, heard, min(rings, int(rate * 3)), rate)
    await sender.close()
    await receiver.close()
    return throughput, p50, p99


async def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--rings", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[-1]})
    prefix = f"sotto-bench-{secrets.token_hex(4)}"
    buses: dict[str, Callable[[], Doorbell]] = {
        "nats": lambda: NatsDoorbell(args.nats, prefix=prefix),
        "redis": lambda: RedisDoorbell(args.redis, prefix=prefix),
    }
    print(f"load generator on core {cores[-1]}; {args.rings} rings, latency at {args.rate:.0f}/s")
    for name, make in buses.items():
        runs = [await one_run(make, args.rings, args.rate) for _ in range(args.runs)]
        for i, (tp, p50, p99) in enumerate(runs):
            print(f"  {name} run {i + 1}: {tp:,.0f} rings/s, p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        tp = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        print(f"{name:5s} median of {args.runs}: {tp:,.0f} rings/s, p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
