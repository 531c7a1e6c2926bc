"""What a simulated person costs: CPU per person-day and memory per device, real clients on the
real relay in one process (:mod:`sotto.audit.sim`).

    python bench/sim.py [--people 20,100,300] [--modes cadence,default] [--repeat 3]
                        [--cadence-days 0.25] [--default-days 1] [--memory 1000]
                        [--study cadence:300:0.5,default:1000:0.25] [--baseline OTHER/src]

Each run is :func:`sotto.audit.sim.scenario.chat_ring` (everyone registers, invites the next
person, and sends two texts to each contact in the first half of the run) in a fresh process,
timed by its CPU (user and system) from the scenario's start to its end. Per mode and size the
table gives the median of ``--repeat`` runs: CPU and wall seconds, CPU per person-day with
everything in ("all in"), and CPU per person-day once the cost of setting people up is taken
off ("running"): setup is the CPU of the same scenario run for one simulated minute (everyone
registers and exchanges invites; the median of as many runs), also given per person.

``--baseline DIR`` runs every measurement a second time, interleaved, with ``DIR`` (another
checkout's ``src``) first on the Python path, and prints its row beside ours: a before/after on
the same machine under the same load.

``--memory N`` registers N devices in default mode (each with its client, in-memory store,
network and open delivery WebSocket, the relay holding their accounts and mailboxes), lets them
idle for a simulated hour and reports the process's resident memory per device, the slope
between N/10 and N devices.

``--study MODE:PEOPLE:DAYS,…`` runs the leakage benchmark's study (:func:`sotto.audit.sim.study.run_study`,
its default habits, seed 0, the view kept in memory) once per size, each in a fresh process, and
reports its CPU and wall seconds, CPU per person-day, view records per person-day and peak
resident memory per person: what a benchmark-sized run will cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from sotto.audit import sim
from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import Host
from sotto.audit.sim.scenario import address_of, chat_ring
from sotto.audit.sim.study import StudySettings, run_study
from sotto.audit.sim.world import RELAY_URL, close_device, new_device, relay_app
from sotto.server.config import ServerConfig

DAY_S = 86_400.0


def _rss_bytes() -> int:
    """The process's resident memory now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_chat(people: int, cadence: bool, seconds: float) -> dict[str, Any]:
    """One chat ring in this process: its CPU and wall seconds and what came of it."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = sim.run(lambda clock: chat_ring(clock, people, cadence=cadence, seconds=seconds))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    lost = sum((result.sent - result.received).values())
    return {"cpu_s": cpu, "wall_s": wall, "lost": lost, "jumps": result.loop_jumps, "rss": _rss_bytes()}


def run_study_once(people: int, cadence: bool, days: float) -> dict[str, Any]:
    """One study in this process: its CPU and wall seconds, view records and peak memory."""
    logging.getLogger("sotto.client").setLevel(logging.ERROR)  # outages make clients complain
    before = _rss_bytes()
    result = run_study(StudySettings(people, days, cadence=cadence, seed=0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "cpu_s": result.cpu_s,
        "wall_s": result.wall_s,
        "records": len(result.view),
        "peak_rss": peak,
        "rss_before": before,
    }


def run_memory(devices: int) -> dict[str, Any]:
    """``devices`` idle default-mode devices on one relay: resident memory before and after."""

    async def main(clock: VirtualClock) -> dict[str, Any]:
        rng = random.Random(1)
        before = _rss_bytes()
        async with relay_app(clock, config=ServerConfig(), rng=rng.randbytes) as app:
            devices_ = []
            listeners = []
            for i in range(devices):
                host = Host(address_of(i), rng.randbytes)
                device = await new_device({RELAY_URL: app}, clock, f"p{i}", host=host, rng=rng.randbytes)
                devices_.append(device)
                listeners.append(asyncio.create_task(_drain(device.client.listen())))
            await asyncio.sleep(3600)
            after = _rss_bytes()
            for device in devices_:
                await close_device(device)
            await asyncio.gather(*listeners, return_exceptions=True)
        return {"devices": devices, "rss_before": before, "rss_after": after}

    return sim.run(main)


async def _drain(events: Any) -> None:
    async for _ in events:
        pass


def in_child(*args: str, src: str | None = None) -> dict[str, Any]:
    """Run this script with ``args`` in a fresh interpreter (``src`` first on its path); the
    JSON it prints."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    command = [sys.executable, __file__, *args]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", default="20,100,300")
    parser.add_argument("--modes", default="cadence,default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cadence-days", type=float, default=0.25)
    parser.add_argument("--default-days", type=float, default=1.0)
    parser.add_argument("--memory", type=int, default=0, help="devices for the memory run (0: none)")
    parser.add_argument("--study", default="", help="studies to run, MODE:PEOPLE:DAYS,… (none by default)")
    parser.add_argument("--baseline", help="another checkout's src, measured beside this one")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "N", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, n, arg = args.child
        if kind == "memory":
            print(json.dumps(run_memory(int(n))))
        elif kind.startswith("study-"):
            print(json.dumps(run_study_once(int(n), kind == "study-cadence", float(arg))))
        else:
            print(json.dumps(run_chat(int(n), kind == "cadence", float(arg))))
        return 0

    people = [int(p) for p in args.people.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    trees: dict[str, str | None] = {"this": None}
    if args.baseline:
        trees = {"baseline": args.baseline, "this": None}
    if people and modes:
        print(f"chat ring, median of {args.repeat} runs, each in a fresh process; CPU per person-day")
        print(
            f"{'tree':8} {'mode':8} {'people':>6} {'days':>5} {'CPU s':>7} {'wall s':>7} "
            f"{'all in':>7} {'running':>7} {'setup/person':>12} {'RSS MB':>7}"
        )
    for mode in modes:
        days = args.cadence_days if mode == "cadence" else args.default_days
        for n in people:
            setups: dict[str, list[dict[str, Any]]] = {t: [] for t in trees}
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in trees}
            for _ in range(args.repeat):
                for tree, src in trees.items():
                    setups[tree].append(in_child("--child", mode, str(n), "60", src=src))
                    runs[tree].append(in_child("--child", mode, str(n), str(days * DAY_S), src=src))
            for tree in trees:
                if any(r["lost"] for r in runs[tree]):
                    print(f"{tree} {mode}: texts were lost at {n} people", file=sys.stderr)
                    return 1
                cpu = statistics.median(r["cpu_s"] for r in runs[tree])
                wall = statistics.median(r["wall_s"] for r in runs[tree])
                rss = max(r["rss"] for r in runs[tree]) / 2**20
                all_in = cpu / (n * days)
                setup = statistics.median(r["cpu_s"] for r in setups[tree])
                running = (cpu - setup) / (n * (days - 60 / DAY_S))
                per_setup = setup / n
                print(
                    f"{tree:8} {mode:8} {n:>6} {days:>5g} {cpu:>7.1f} {wall:>7.1f} "
                    f"{all_in:>7.3f} {running:>7.3f} {per_setup:>12.3f} {rss:>7.0f}",
                    flush=True,
                )
    for spec in [s for s in args.study.split(",") if s]:
        mode, n, d = spec.split(":")
        if mode not in ("cadence", "default"):
            parser.error(f"--study: mode must be cadence or default, not {mode!r}")
        for tree, src in trees.items():
            run = in_child("--child", f"study-{mode}", n, d, src=src)
            person_days = int(n) * float(d)
            print(
                f"{tree}: study: {mode} {n} people × {d} days: {run['cpu_s']:.1f} s CPU, "
                f"{run['wall_s']:.1f} s wall, {run['cpu_s'] / person_days:.2f} s CPU and "
                f"{run['records'] / person_days:.0f} view records per person-day; peak "
                f"{run['peak_rss'] / 2**20:.0f} MB resident, "
                f"{(run['peak_rss'] - run['rss_before']) / int(n) / 2**10:.0f} KiB per person above "
                "the process before the study (the view in memory included)",
                flush=True,
            )
    if args.memory:
        for tree, src in trees.items():
            small = in_child("--child", "memory", str(max(1, args.memory // 10)), "0", src=src)
            large = in_child("--child", "memory", str(args.memory), "0", src=src)
            per = (large["rss_after"] - small["rss_after"]) / (large["devices"] - small["devices"])
            at_10k = small["rss_after"] + per * (10_000 - small["devices"])
            print(
                f"{tree}: memory: {large['devices']} idle default-mode devices: "
                f"{large['rss_after'] / 2**20:.0f} MB resident, {per / 2**10:.0f} KiB per device "
                f"(slope from {small['devices']}); 10,000 devices ≈ {at_10k / 2**30:.2f} GiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
