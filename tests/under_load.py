"""Run ``make test`` several times in a row while a busy loop keeps one core at 100%.

``make test-under-load`` (``RUNS=10`` by default) is how the suite shows it does not flake on a
loaded machine: every run must pass. The busy loop is pinned to the last core (when the OS lets
us pin), so the suite shares the machine with it as it would with another job. Prints each run's
result and wall time, then a summary; exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _spin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--target", default="test", help="the make target to repeat (default: test)")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    busy = multiprocessing.Process(target=_spin, args=(cpus[-1] if cpus else None,), daemon=True)
    busy.start()
    results: list[tuple[int, float]] = []
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            code = subprocess.call(["make", args.target])
            elapsed = time.monotonic() - started
            results.append((code, elapsed))
            verdict = "passed" if code == 0 else f"FAILED (exit {code})"
            print(f"under load, run {run}/{args.runs}: {verdict} in {elapsed:.0f} s", flush=True)
    finally:
        busy.terminate()
        busy.join()
    passed = sum(1 for code, _ in results if code == 0)
    times = sorted(t for _, t in results)
    print(f"under load: {passed} of {len(results)} runs passed; median {times[len(times) // 2]:.0f} s a run")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
