"""Cross-node delivery latency: relay nodes on one PostgreSQL database and a message bus.

    python bench/cluster.py [--rate 100] [--seconds 10] [--runs 3] [--mailboxes 10]
                            [--postgres URL] [--nats URL] [--redis URL] [--setups one,nats,redis,fallback]

Each setup starts its relay processes (``python -m sotto.server --store postgresql://… [--bus
URL]``, each pinned with ``taskset`` to a core of its own when there are two) on a new database,
dropped afterwards. This process, unpinned, holds a sender WebSocket on node A and a receiver
WebSocket on the last node, subscribed to ``--mailboxes`` mailboxes; it sends envelopes of 256
bytes open-loop at ``--rate`` per second for ``--seconds``, round-robin over the mailboxes, and
acknowledges each envelope as it arrives. Latency runs from the *scheduled* send to the arrival
at the receiver (one clock: both sockets are in this process). Setups:

* ``one``: one node, no bus (sender and receiver on it: today's single-process delivery, on
  PostgreSQL);
* ``nats`` / ``redis``: two nodes on that bus, sender on A, receiver on B;
* ``fallback``: two nodes whose bus is unreachable (a port nothing listens on): B finds the
  envelopes by checking the store once a second.

Per setup it prints each run's p50 and p99 (milliseconds) and envelopes lost (sent, never
received within 5 s of the last send), then the median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from relayproc import free_port, percentile
from websockets.asyncio.client import ClientConnection, connect

from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.wire import auth, b64, frames

SETUPS = ("one", "nats", "redis", "fallback")
GRACE = 5.0
"""Seconds after the last send that the receiver keeps waiting for the rest."""


class Box:
    """A mailbox this benchmark creates: its id, signing key and delivery token."""

    def __init__(self) -> None:
        self.id = os.urandom(16)
        self.key = SigningKey.generate(system_rng)
        self.token = os.urandom(32)

    def body(self) -> dict[str, object]:
        return {
            "mailbox_id": b64.encode(self.id),
            "auth_key": b64.encode(self.key.public.raw),
            "delivery_token": b64.encode(self.token),
            "ttl_days": 30,
        }

    def proof(self, nonce: bytes) -> frames.MailboxProof:
        return frames.MailboxProof(self.id, self.key.sign(auth.drain_message(nonce, self.id)))


@contextlib.contextmanager
def database(server: str) -> Iterator[str]:
    name = f"sotto_bench_{secrets.token_hex(6)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield f"{server}/{name}?options={urllib.parse.quote('-c statement_timeout=20000')}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@contextlib.contextmanager
def nodes(count: int, dsn: str, bus: str | None, work: Path) -> Iterator[list[str]]:
    """``count`` relay processes on ``dsn`` (and ``bus``), each pinned to a core; their URLs."""
    cores = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for n in range(count):
            port = free_port()
            command = [sys.executable, "-m", "sotto.server", "--port", str(port), "--data", str(work)]
            command += ["--store", dsn, "--free-mailboxes-per-minute", "100000"]
            if bus is not None:
                command += ["--bus", bus]
            if taskset is not None:
                command = [taskset, "-c", str(cores[n % len(cores)]), *command]
            log = (work / f"node{n}.log").open("ab")
            procs.append(subprocess.Popen(command, stdout=log, stderr=log))
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                        break
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {n} did not start: {(work / f'node{n}.log').read_text()[-1500:]}"
                    )
                time.sleep(0.05)
            urls.append(url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def subscribe(url: str, boxes: list[Box]) -> ClientConnection:
    ws = await connect(url.replace("http", "ws", 1) + "/v1/ws", open_timeout=10, max_size=None)
    challenge = frames.decode_server_frame(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(challenge, frames.Challenge)
    await ws.send(frames.encode(frames.Subscribe(tuple(b.proof(challenge.nonce) for b in boxes))))
    answer = frames.decode_server_frame(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(answer, frames.Subscribed) and len(answer.mailboxes) == len(boxes), answer
    return ws


async def one_run(urls: list[str], rate: float, seconds: float, mailboxes: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, lost) of one run: sender on ``urls[0]``, receiver on ``urls[-1]``."""
    boxes = [Box() for _ in range(mailboxes)]
    async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
        for box in boxes:
            answer = await client.post("/v1/mailboxes", json=box.body())
            assert answer.status_code == 201, answer.text
    receiver = await subscribe(urls[-1], boxes)
    sender = await connect(urls[0].replace("http", "ws", 1) + "/v1/ws", open_timeout=10)
    await asyncio.wait_for(sender.recv(), 10)  # its challenge
    count = int(rate * seconds)
    scheduled: dict[bytes, float] = {}
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def receive() -> None:
        while len(latencies) < count:
            frame = frames.decode_server_frame(await receiver.recv())
            if isinstance(frame, frames.Envelope):
                at = scheduled.get(frame.id)
                if at is not None:
                    latencies.append(loop.time() - at)
                await receiver.send(frames.encode(frames.Ack((frames.EnvelopeRef(frame.mailbox, frame.id),))))

    async def drain_sender() -> None:
        while True:
            await sender.recv()  # sent / send_failed answers

    receiving = asyncio.create_task(receive())
    answers = asyncio.create_task(drain_sender())
    start = loop.time() + 0.1
    for n in range(count):
        at = start + n / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        box = boxes[n % len(boxes)]
        message_id = os.urandom(16)
        scheduled[message_id] = at
        await sender.send(frames.encode(frames.Send(box.id, box.token, message_id, os.urandom(256))))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiving, GRACE)
    answers.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await answers
    await sender.close()
    await receiver.close()
    ms = [value * 1000 for value in latencies]
    return percentile(ms, 50), percentile(ms, 99), count - len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="envelopes per second (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds sending per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per setup (default 3)")
    parser.add_argument(
        "--mailboxes", type=int, default=10, help="mailboxes the receiver drains (default 10)"
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("SOTTO_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    )
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    args = parser.parse_args()
    setups = [s for s in args.setups.split(",") if s]
    for setup in setups:
        if setup not in SETUPS:
            parser.error(f"unknown setup {setup!r}")
    buses = {
        "one": None,
        "nats": args.nats,
        "redis": args.redis,
        "fallback": f"nats://127.0.0.1:{free_port()}",
    }
    print(
        f"{args.rate:g} envelopes/s for {args.seconds:g} s, {args.mailboxes} mailboxes, {args.runs} runs each"
    )
    for setup in setups:
        results = []
        for run in range(args.runs):
            with (
                tempfile.TemporaryDirectory() as tmp,
                database(args.postgres) as dsn,
                nodes(1 if setup == "one" else 2, dsn, buses[setup], Path(tmp)) as urls,
            ):
                p50, p99, lost = asyncio.run(one_run(urls, args.rate, args.seconds, args.mailboxes))
            results.append((p50, p99, lost))
            print(
                f"  {setup:9s} run {run + 1}: p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  lost {lost}", flush=True
            )
        print(
            f"{setup:9s} median: p50 {statistics.median(r[0] for r in results):8.2f} ms  "
            f"p99 {statistics.median(r[1] for r in results):8.2f} ms  "
            f"lost {max(r[2] for r in results)} at most",
            flush=True,
        )


if __name__ == "__main__":
    main()
