"""Soak: the real relay at half of its peak load for a long time, and whether it stays level.

    python bench/soak.py [--minutes 30] [--pairs 16] [--payload 512] [--check-deletion] [--json out.json]
    python bench/soak.py --peak paced     # half of the highest paced rate the relay keeps up with

One relay process (``python -m sotto.server`` on a fresh data directory, pinned to one core), the
load generator of ``bench/relay.py`` on another: K sender/receiver pairs over delivery
WebSockets, each envelope stored, pushed, acknowledged and deleted. The peak is measured first
(closed loop, ``--peak-seconds``), then the pairs send open-loop at half of it, minute after
minute. Each minute prints the rate, p50/p99 latency (from the scheduled send time), the relay's
RSS and open file descriptors, the largest write-ahead log seen (sampled every 0.25 s) and the
database size, with the machine's steal and other processes' CPU share. Every 10 minutes (and at
the end) a summary, then a verdict against the targets. Each minute also prints the relay
process's CPU time per message: at the same rate, a minute that costs more is the relay doing
more per message or the machine running slower, which the p99 alone does not tell apart.

"Peak" is the closed-loop maximum by default. ``--peak paced`` measures, after it, the highest
*paced* rate the relay keeps up with (p99 at most 20 ms, everything sent and delivered; steps of
a tenth of the closed-loop peak, ``--step-seconds`` each) and soaks at half of that: paced
messages arrive one at a time and each pays for its own wake-ups, reads and commits, which the
closed loop's bursts share, so half of the closed-loop peak can be most of what the relay does
with spread-out traffic. The verdict:

* RSS growth below 5 MB per 10 minutes (from the end of the first minute, scaled to 10 minutes);
* file descriptors flat (within ``FD_SLACK`` of the first minute);
* p99 of every later 10-minute block within +20% of the first minute's;
* the write-ahead log bounded (never above ``WAL_BOUND_MB``; it is truncated every 2 s).

``--check-deletion`` makes every payload and id carry a run tag and the message's number (48-byte
blocks), and a separate process reads every file the relay writes (its data directory and its
log) once a second. Ids and payloads are stored encrypted, each envelope under its own key, so
the check is on keys: the scanner reads the live keys from a private copy of the database, and
every key that has disappeared from it (its envelope acknowledged and deleted) is searched for,
as a key row, in every file, once ``--gone-after`` seconds (5) plus the 1-s scan period have
passed since it was last seen live: found is a failure. Any run tag found in clear is a failure
too. It prints the deleted keys checked, the longest a deleted key stayed (the real window) and
the failures (target 0). The scanner takes CPU on the load generator's core, so latency figures
of such a run are not the relay's alone.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay import Disturbance, Traffic, _check_fast_frames, create_mailboxes
from relayproc import RelayProcess, cores, percentile, process_cpu_seconds, raise_fd_limit, rss_kib

from sotto.wire import b64, frames

RSS_GROWTH_MB_PER_10_MIN = 5.0
P99_SLACK = 1.20
FD_SLACK = 2
WAL_BOUND_MB = 64.0
BLOCK = 48
"""Bytes of one marked block: run tag (8), message number (8), zeros (32); a multiple of 3, so
its base64url repeats whole inside the payload's."""


# ---------------------------------------------------------------------------- the relay's files
def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def file_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except FileNotFoundError:
        return 0.0


KEY_CELL = b"\x03\x00\x4c"
"""The record header of an ``envelope_keys`` row (rowid alias, 32-byte blob): a key follows it."""


@dataclass
class Scan:
    in_clear: list[int]
    """Numbers of the marked messages whose id or payload some file holds in clear."""
    live_keys: list[bytes]
    """Keys of pending envelopes, from a copy of the database (empty if the copy was torn)."""
    key_cells: set[bytes]
    """Every 32 bytes after a key-row header anywhere in the files: any copy of any key."""
    scanned: int
    read_at: float
    """Monotonic time (the machine's, the same in every process) the reading began."""


def scan(paths: list[str], tag: bytes, copy_dir: str) -> Scan:
    """Read every file once (in another process): marks in clear, key copies, and the live keys
    read from a private copy of the database (so no lock is taken on the relay's files)."""
    found: set[int] = set()
    cells: set[bytes] = set()
    scanned = 0
    copies: dict[str, bytes] = {}
    read_at = time.monotonic()
    # The log first, then the database: a checkpoint in between leaves the copy with the
    # database's newer pages (never older ones), so what the copy says is live was live.
    for path in sorted(paths, key=lambda p: not p.endswith("-wal")):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        scanned += len(data)
        copies[os.path.basename(path)] = data
        at = data.find(tag)
        while at >= 0:
            found.add(int.from_bytes(data[at + 8 : at + 16], "big"))
            at = data.find(tag, at + 1)
        at = data.find(KEY_CELL)
        while at >= 0:
            cells.add(data[at + 3 : at + 35])
            at = data.find(KEY_CELL, at + 1)
    live: list[bytes] = []
    shutil.rmtree(copy_dir, ignore_errors=True)
    os.makedirs(copy_dir)
    for name in ("relay.db", "relay.db-wal"):
        if name in copies:
            with open(os.path.join(copy_dir, name), "wb") as f:
                f.write(copies[name])
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(os.path.join(copy_dir, "relay.db"))
        try:
            zero = bytes(32)
            live = [r[0] for r in conn.execute("SELECT key FROM envelope_keys") if r[0] != zero]
        finally:
            conn.close()
    return Scan(sorted(found), live, cells, scanned, read_at)


# ---------------------------------------------------------------------------- traffic
class MarkedTraffic(Traffic):
    """Traffic whose ids and payloads carry the run tag and the message number, and which notes
    when each acknowledgement was sent."""

    def __init__(self, server: RelayProcess, mailboxes: list[Any], payload: int) -> None:
        super().__init__(server, mailboxes, payload)
        blocks = payload // BLOCK
        self.placeholder_block = bytes(range(100, 100 + BLOCK))
        body = self.placeholder_block * blocks + bytes(payload - blocks * BLOCK)
        self.marked = [
            frames.encode(frames.Send(m.mailbox_id, m.token, bytes(range(16)), body)) for m in mailboxes
        ]
        self.block_text = b64.encode(self.placeholder_block)
        self.id_text = b64.encode(bytes(range(16)))
        self.acked_at = array.array("d")
        """Message number -> monotonic time its ack was sent (0: not yet)."""

    def _next(self, pair: int) -> tuple[str, str]:
        self.counter += 1
        mark = self.prefix + self.counter.to_bytes(8, "big")
        message_id = b64.encode(mark)
        text = self.marked[pair].replace(self.id_text, message_id)
        text = text.replace(self.block_text, b64.encode(mark + bytes(BLOCK - 16)))
        while len(self.acked_at) <= self.counter:
            self.acked_at.frombytes(bytes(8 * 4096))
        return message_id, text

    def acked(self, message_id: str) -> None:
        number = int.from_bytes(b64.decode(message_id)[8:], "big")
        self.acked_at[number] = time.monotonic()


@dataclass
class Deletion:
    gone_after: float
    scans: int = 0
    torn: int = 0
    """Scans whose copy of the database could not be read (files copied mid-write): no live keys."""
    mb_scanned: float = 0.0
    in_clear: int = 0
    """Messages whose id or payload was found in clear in some file (any, pending or not)."""
    keys_seen: int = 0
    """Distinct envelope keys seen in any file."""
    keys_checked: int = 0
    """Keys of deleted envelopes followed until they left every file (or their deadline passed)."""
    failures: int = 0
    """Keys still somewhere in the files past their deadline."""
    oldest_found_s: float = 0.0
    """The longest a deleted envelope's key stayed in some file (to the scan that missed it first)."""
    control_missing: int = 0
    """Live keys the search did not find (should be 0: the search works)."""


async def check_deletion(
    traffic: MarkedTraffic, server: RelayProcess, deletion: Deletion, stop: asyncio.Event
) -> None:
    """Once a second. Every key written passes through the write-ahead log, so the scan sees
    nearly every envelope's key at least once; a key found in a file but not live in the
    database belongs to a deleted envelope. Found again at a scan begun ``gone_after`` + 1 s (the
    scan period) or more after it was first seen so: a failure."""
    loop = asyncio.get_running_loop()
    dead_since: dict[bytes, float] = {}
    seen: set[bytes] = set()
    zero = bytes(32)
    copy_dir = str(server.data.parent / f"copy-{server.port}")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        while not stop.is_set():
            paths = [str(p) for p in sorted(server.data.iterdir())] + [str(server.log)]
            began = time.monotonic()
            result = await loop.run_in_executor(pool, scan, paths, traffic.prefix, copy_dir)
            at = result.read_at
            deletion.scans += 1
            deletion.mb_scanned += result.scanned / 1e6
            deletion.in_clear += len(result.in_clear)
            if not result.live_keys:
                deletion.torn += 1
            else:
                live = set(result.live_keys)
                deletion.control_missing += len(live - result.key_cells)  # the search finds live keys
                present = result.key_cells - {zero}
                seen |= present
                for key in live:  # seen dead in an earlier copy, but pending after all
                    dead_since.pop(key, None)
                for key in present - live:
                    dead_since.setdefault(key, at)
                for key, since in list(dead_since.items()):
                    if key not in present:
                        deletion.keys_checked += 1
                        deletion.oldest_found_s = max(deletion.oldest_found_s, at - since)
                        del dead_since[key]
                    elif at - since >= deletion.gone_after + 1.0:
                        deletion.keys_checked += 1
                        deletion.failures += 1
                        del dead_since[key]
                deletion.keys_seen = len(seen)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (time.monotonic() - began)))


# ---------------------------------------------------------------------------- minutes
@dataclass
class Minute:
    minute: int
    rate: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    fds: int
    wal_max_mb: float
    db_mb: float
    steal_percent: float
    other_load_percent: float
    lost: int
    relay_cpu_us_per_msg: float = 0.0
    """The relay process's CPU time (all threads) this minute, per message sent."""
    latencies_ms: list[float] = field(default_factory=list, repr=False)


async def sample_wal(path: Path, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], file_mb(path))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def block_summary(minutes: list[Minute], first: Minute) -> dict[str, Any]:
    latencies = [x for m in minutes for x in m.latencies_ms]
    return {
        "minutes": f"{minutes[0].minute}-{minutes[-1].minute}",
        "p99_ms": percentile(latencies, 99),
        "p99_vs_first_minute": percentile(latencies, 99) / first.p99_ms if first.p99_ms else float("nan"),
        "rss_mib": minutes[-1].rss_mib,
        "fds": [min(m.fds for m in minutes), max(m.fds for m in minutes)],
        "wal_max_mb": max(m.wal_max_mb for m in minutes),
        "rate": statistics.mean(m.rate for m in minutes),
        "steal_percent": statistics.mean(m.steal_percent for m in minutes),
        "other_load_percent": statistics.mean(m.other_load_percent for m in minutes),
    }


def print_block(block: dict[str, Any]) -> None:
    print(
        f"== minutes {block['minutes']}: p99 {block['p99_ms']:.2f} ms "
        f"({block['p99_vs_first_minute']:.2f}x the first minute), RSS {block['rss_mib']:.1f} MiB, "
        f"fds {block['fds'][0]}-{block['fds'][1]}, WAL max {block['wal_max_mb']:.2f} MB, "
        f"{block['rate']:,.0f} msg/s, steal {block['steal_percent']:.1f}%, "
        f"other processes {block['other_load_percent']:.1f}%",
        flush=True,
    )


def verdict(minutes: list[Minute]) -> dict[str, Any]:
    first = minutes[0]
    later = minutes[1:] or minutes
    span = max(1, later[-1].minute - first.minute)
    growth = (later[-1].rss_mib - first.rss_mib) * 1.048576 / span * 10
    blocks = [later[i : i + 10] for i in range(0, len(later), 10)]
    worst_p99 = max(percentile([x for m in b for x in m.latencies_ms], 99) for b in blocks)
    fds = [m.fds for m in minutes]
    wal = max(m.wal_max_mb for m in minutes)
    checks = {
        "rss_growth_mb_per_10_min": (growth, growth < RSS_GROWTH_MB_PER_10_MIN),
        "fds_spread": (max(fds) - min(fds), max(fds) - min(fds) <= FD_SLACK),
        "worst_block_p99_vs_first_minute": (
            worst_p99 / first.p99_ms,
            worst_p99 <= P99_SLACK * first.p99_ms,
        ),
        "wal_max_mb": (wal, wal <= WAL_BOUND_MB),
    }
    return {name: {"value": value, "ok": ok} for name, (value, ok) in checks.items()}


PACED_P99_MS = 20.0
"""A paced rate the relay keeps up with: p99 under this (``bench/relay.py``'s target at half
load) and at least :data:`PACED_KEPT` of the rate asked for actually sent and delivered."""
PACED_KEPT = 0.97


async def paced_capacity(traffic: Traffic, pid: int, closed_peak: float, step_seconds: float) -> float:
    """The highest paced rate the relay keeps up with: steps of a tenth of the closed-loop peak,
    from a fifth of it up, each ``step_seconds`` (1 s of warm-up) until one fails; the last that
    held (or the first step's rate if none did). Paced messages arrive one at a time, so each
    pays for its own wake-ups, reads and commits, which the closed loop's bursts share: this is
    the relay's capacity for traffic that is spread out, as people's is."""
    step = closed_peak / 10
    held = None
    rate = 2 * step
    while rate <= closed_peak:
        before = process_cpu_seconds(pid)
        load = await traffic.paced(rate, 1.0, step_seconds)
        cpu_us = 1e6 * (process_cpu_seconds(pid) - before) / max(1, int(rate * (1.0 + step_seconds)))
        p99 = percentile(load.latencies_ms, 99)
        kept = load.rate >= PACED_KEPT * rate and load.lost == 0 and p99 <= PACED_P99_MS
        print(
            f"  paced {rate:,.0f} msg/s: sent {load.rate:,.0f}/s, p99 {p99:.1f} ms, lost {load.lost}, "
            f"relay CPU {cpu_us:.0f} us/msg: {'kept up' if kept else 'fell behind'}",
            flush=True,
        )
        if not kept:
            break
        held = rate
        rate += step
    return held if held is not None else 2 * step


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = RelayProcess("sotto", cores()[0], workdir)
    server.start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        mailboxes = await create_mailboxes(server, args.pairs)
        traffic: Traffic = (
            MarkedTraffic(server, mailboxes, args.payload)
            if args.check_deletion
            else Traffic(server, mailboxes, args.payload)
        )
        await traffic.open()
        peak = await traffic.closed_loop(args.window, 1.0, args.peak_seconds)
        print(f"closed-loop peak {peak.rate:,.0f} msg/s", flush=True)
        paced_peak = None
        if args.peak == "paced":
            paced_peak = await paced_capacity(traffic, server.pid, peak.rate, args.step_seconds)
        base = peak.rate if paced_peak is None else paced_peak
        rate = args.rate or base / 2
        print(
            f"peak ({args.peak}) {base:,.0f} msg/s; soaking at {rate:,.0f} msg/s for {args.minutes} min",
            flush=True,
        )
        deletion = Deletion(args.gone_after) if args.check_deletion else None
        if deletion is not None:
            assert isinstance(traffic, MarkedTraffic)
            tasks.append(asyncio.create_task(check_deletion(traffic, server, deletion, stop)))
        minutes: list[Minute] = []
        for number in range(1, args.minutes + 1):
            wal_peak = [0.0]
            minute_stop = asyncio.Event()
            sampler = asyncio.create_task(sample_wal(server.data / "relay.db-wal", wal_peak, minute_stop))
            disturbance = Disturbance()
            cpu_before = process_cpu_seconds(server.pid)
            warmup = 5.0 if number == 1 else 0.0
            load = await traffic.paced(rate, warmup, 60.0)
            cpu_after = process_cpu_seconds(server.pid)
            sent = int(rate * (warmup + 60.0))  # what paced() sends, warm-up included
            minute_stop.set()
            await sampler
            steal, others = disturbance.measure()
            m = Minute(
                number,
                load.rate,
                percentile(load.latencies_ms, 50),
                percentile(load.latencies_ms, 99),
                rss_kib(server.pid) / 1024,
                open_fds(server.pid),
                wal_peak[0],
                file_mb(server.data / "relay.db"),
                steal,
                others,
                load.lost,
                1e6 * (cpu_after - cpu_before) / max(1, sent),
                load.latencies_ms,
            )
            minutes.append(m)
            line = (
                f"minute {number}: {m.rate:,.0f} msg/s, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms, "
                f"RSS {m.rss_mib:.1f} MiB, fds {m.fds}, WAL max {m.wal_max_mb:.2f} MB, "
                f"db {m.db_mb:.2f} MB, lost {m.lost}, relay CPU {m.relay_cpu_us_per_msg:.0f} us/msg, "
                f"steal {steal:.1f}%, other processes {others:.1f}%"
            )
            if deletion is not None:
                line += (
                    f" | deletion: {deletion.scans} scans, {deletion.keys_checked:,} deleted keys checked, "
                    f"longest kept {deletion.oldest_found_s:.2f} s, in clear {deletion.in_clear}, "
                    f"failures {deletion.failures}"
                )
            print(line, flush=True)
            if number % 10 == 0:
                print_block(block_summary(minutes[-10:], minutes[0]))
        stop.set()
        for task in tasks:
            await task
        await traffic.close()
        if len(minutes) % 10:
            print_block(block_summary(minutes[-(len(minutes) % 10) :], minutes[0]))
        result: dict[str, Any] = {
            "peak_rate": peak.rate,
            "paced_peak_rate": paced_peak,
            "soak_rate": rate,
            "minutes": [{k: v for k, v in asdict(m).items() if k != "latencies_ms"} for m in minutes],
            "verdict": verdict(minutes),
            "errors": dict(traffic.errors),
        }
        if deletion is not None:
            result["deletion"] = asdict(deletion)
        return result
    finally:
        stop.set()
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Relay soak (see the module docstring).")
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--payload", type=int, default=512, help="a padding bucket")
    parser.add_argument("--peak-seconds", type=float, default=10.0)
    parser.add_argument("--check-deletion", action="store_true")
    parser.add_argument("--rate", type=float, help="messages per second instead of half the measured peak")
    parser.add_argument(
        "--peak",
        choices=["closed", "paced"],
        default="closed",
        help="what 'peak' is: the closed-loop maximum, or the highest paced rate the relay keeps up with",
    )
    parser.add_argument("--step-seconds", type=float, default=10.0, help="seconds per step of --peak paced")
    parser.add_argument("--gone-after", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    _check_fast_frames()
    raise_fd_limit()
    _, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    workdir = Path(tempfile.mkdtemp(prefix="sotto-soak-"))
    try:
        result = asyncio.run(soak(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("verdict:")
    passed = True
    for name, check in result["verdict"].items():
        passed &= check["ok"]
        print(f"  {name}: {check['value']:.2f} {'ok' if check['ok'] else 'FAILED'}")
    if "deletion" in result:
        d = result["deletion"]
        passed &= d["failures"] == 0 and d["in_clear"] == 0 and d["keys_checked"] > 0
        print(
            f"  deletion: {d['scans']} scans ({d['mb_scanned']:,.0f} MB read, {d['torn']} torn copies), "
            f"{d['keys_seen']:,} envelope keys seen in files, {d['keys_checked']:,} keys of deleted "
            f"envelopes followed until gone or {d['gone_after']:.0f}-{d['gone_after'] + 1:.0f} s; longest "
            f"a deleted key stayed {d['oldest_found_s']:.2f} s; live keys the search missed "
            f"{d['control_missing']}; ids or payloads in clear {d['in_clear']}; "
            f"failures {d['failures']} " + ("ok" if d["failures"] == d["in_clear"] == 0 else "FAILED")
        )
    if result["errors"]:
        print(f"  errors: {result['errors']}")
    print("PASS" if passed else "FAIL")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
