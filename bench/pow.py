"""What the relay's proof of work costs (relay-protocol §8): solving, per difficulty, and checking.

    python bench/pow.py            # 8 to 20 bits measured, 22 and 24 estimated; about a minute
    python bench/pow.py --quick    # fewer runs, up to 16 bits

Solving is the client's search (:func:`sotto.wire.work.solve`, SHA-256 from hashlib, one core);
the count of hashes it needs is geometric, so the median (ln 2 × 2^bits hashes) is printed with
the 90th percentile. Checking is the relay's whole decision on one answer
(:meth:`sotto.server.challenge.WorkGate.admit`: the tag, the window, one SHA-256, the spent set).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

from sotto.crypto.random import system_rng
from sotto.server.challenge import WorkGate
from sotto.server.config import WorkPolicy
from sotto.wire import work

T0 = 1_000_000.0


def _challenge(bits: int) -> bytes:
    return work.Challenge(work.Purpose.ACCOUNT, bits, 0, os.urandom(16), bytes(16)).to_bytes()


def hash_rate(seconds: float = 1.0) -> float:
    """SHA-256 hashes per second in the solver's loop (a search at 64 bits never ends early)."""
    tried, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert work.solve_range(_challenge(64), 64, tried, work.SLICE) is None
        tried += work.SLICE
    return tried / (time.perf_counter() - started)


def solve_times(bits: int, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        challenge = _challenge(bits)
        started = time.perf_counter()
        work.solve(challenge, bits)
        times.append(time.perf_counter() - started)
    return times


def check_time(runs: int = 20_000) -> float:
    """Median seconds for the relay to admit one solved answer (each a fresh challenge)."""
    policy = WorkPolicy(free_per_minute=0.001, window_seconds=3_600, max_spent=runs + 1)
    gate = WorkGate(policy, os.urandom(32), T0)
    gate.created(work.Purpose.ACCOUNT, T0)
    answers = []
    for _ in range(runs):
        challenge = gate.challenge(work.Purpose.ACCOUNT, 8, T0, system_rng)
        answers.append(work.encode_header(challenge, work.solve(challenge, 8)))
    times = []
    for answer in answers:
        started = time.perf_counter()
        gate.admit(work.Purpose.ACCOUNT, answer, T0 + 1)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, up to 16 bits")
    args = parser.parse_args()
    top = 16 if args.quick else 20
    print(f"python {sys.version.split()[0]}, one core; the hash rate is measured again before each row")
    print(f"{'bits':>4}  {'runs':>4}  {'median':>10}  {'p90':>10}  {'expected median':>16}  {'Mhash/s':>8}")
    rates = []
    for bits in range(8, top + 1, 2):
        rate = hash_rate(0.3 if args.quick else 1.0)
        rates.append(rate)
        runs = max(9, min(201, (1 << (24 - bits)) // (8 if args.quick else 1)))
        times = sorted(solve_times(bits, runs))
        median, p90 = statistics.median(times), times[int(0.9 * (len(times) - 1))]
        expected = math.log(2) * 2**bits / rate
        cells = f"{_ms(median):>10}  {_ms(p90):>10}  {_ms(expected):>16}"
        print(f"{bits:>4}  {runs:>4}  {cells}  {rate / 1e6:>8.2f}")
    rate = statistics.median(rates)
    for bits in (22, 24):
        expected = math.log(2) * 2**bits / rate
        cells = f"{'-':>10}  {'-':>10}  {_ms(expected):>16}"
        print(f"{bits:>4}  {'-':>4}  {cells}  (estimated at the median rate)")
    print(f"relay's check of one answer: median {check_time(2_000 if args.quick else 20_000) * 1e6:.1f} µs")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
