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

Two more setups, on NATS:

* ``throughput``: 1, 2 and 4 nodes (``--nodes``), node *n* pinned to core *n* mod the cores
  there are. Eight sender WebSockets spread round-robin over the nodes, each keeping
  ``--window`` sends unanswered; 64 mailboxes, drained by 16 receiver WebSockets of four
  mailboxes each, receiver *j* on node *j* mod N (so (N-1)/N of the envelopes cross nodes),
  acknowledging in batches every 20 ms. After a
  2 s warm-up it counts envelopes *delivered* (pushed to a receiver) for ``--tp-seconds``, and
  prints envelopes/s with the CPU each relay, all ``postgres`` processes, all ``nats-server``
  processes and this load generator used meanwhile (in cores: CPU seconds per second), the
  machine's steal and what every other process used (the rest of the machine's busy time).
* ``kill``: two nodes; senders on both at ``--kill-rate`` envelopes/s in all (open loop),
  receivers on both. A third of the way into ``--kill-seconds`` node A is killed (SIGKILL). Its
  sender sends every envelope not yet answered again, under the same id, through node B (the
  client's outbox does this), and goes on there; A's receivers subscribe on B. It prints the
  seconds the sends took (more than ``--kill-seconds`` when the nodes fall behind the rate), the
  envelopes acknowledged and not delivered once deliveries have stopped for 5 s, how many of
  those the database still holds (the rest are lost), the connections to B that ended (the two
  receivers' and the sender's: this benchmark does not reconnect them), those
  pushed again (the client drops an id
  it has seen, so they never reach the app), the seconds from the kill until each of A's
  receivers was subscribed on B (the slowest) and until the first envelope reached them there.

And ``storage``: straight into a ``PostgresStorage`` (no relay), envelopes of 256 and 4,096
payload bytes over 100 mailboxes; what the database grew by per envelope, and what the server's
write-ahead log grew by per envelope stored and per envelope deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import psycopg
from relayproc import cpu_times, free_port, percentile, process_cpu_seconds, steal_percent
from websockets.asyncio.client import ClientConnection, connect

from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.server.auth import token_hash
from sotto.server.storage import PostgresStorage
from sotto.server.storage.base import MailboxId, MailboxRecord, MessageId
from sotto.server.storage.sqlite import id_tag
from sotto.wire import auth, b64, frames

SETUPS = ("one", "nats", "redis", "fallback", "throughput", "kill", "storage")
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


class Node(NamedTuple):
    url: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def nodes(count: int, dsn: str, bus: str | None, work: Path) -> Iterator[list[Node]]:
    """``count`` relay processes on ``dsn`` (and ``bus``), each pinned to a core."""
    cores = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[Node] = []
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
            deadline = time.monotonic() + 180
            seen: object = None
            while True:
                try:
                    seen = httpx.get(url + "/v1/health", timeout=5).status_code
                    if seen == 200:
                        break
                except httpx.HTTPError as exc:
                    seen = type(exc).__name__
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {n} did not start (exit {procs[-1].poll()}, health {seen}): "
                        f"{(work / f'node{n}.log').read_text()[-1500:]}"
                    )
                time.sleep(0.05)
            urls.append(Node(url, procs[-1]))
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
    ws = await connect(
        url.replace("http", "ws", 1) + "/v1/ws", open_timeout=10, max_size=None, close_timeout=1
    )
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


# ---------------------------------------------------------------------------- throughput
SENDERS = 8
"""Sender WebSockets in a throughput run, spread round-robin over the nodes."""
TP_MAILBOXES = 64
RECEIVERS = 16
"""Receiver WebSockets, four mailboxes each: a connection reads the store for one mailbox at a
time, so one connection draining all 64 would measure that connection, not the nodes."""
WARMUP = 2.0


def pids_named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (all of them: the machine's own servers
    serve other work too, so their CPU is an upper bound on what this run cost them)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() == name:
                    found.append(int(entry))
    return found


class CpuMeter:
    """CPU seconds of the relays, PostgreSQL, NATS, this process and the whole machine between
    :meth:`start` and :meth:`stop`, as cores (CPU seconds per wall second)."""

    def __init__(self, relays: list[int]) -> None:
        self.relays = relays
        self.groups = {"postgres": "postgres", "nats": "nats-server"}

    def _sample(self) -> tuple[float, list[float], dict[str, dict[int, float]], float, list[int]]:
        relays = [process_cpu_seconds(pid) for pid in self.relays]
        groups = {
            name: {p: process_cpu_seconds(p) for p in pids_named(comm)} for name, comm in self.groups.items()
        }
        return time.monotonic(), relays, groups, process_cpu_seconds(os.getpid()), cpu_times()

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, object]:
        """Processes that started or ended meanwhile (PostgreSQL's backends) count from zero
        or not at all: a lower bound for their group."""
        after = self._sample()
        t0, relays0, groups0, own0, machine0 = self._before
        t1, relays1, groups1, own1, machine1 = after
        wall = t1 - t0
        relays = [(b - a) / wall for a, b in zip(relays0, relays1, strict=True)]
        groups = {
            name: sum(cpu - groups0[name].get(pid, 0.0) for pid, cpu in groups1[name].items()) / wall
            for name in groups0
        }
        own = (own1 - own0) / wall
        hz = os.sysconf("SC_CLK_TCK")
        delta = [b - a for a, b in zip(machine0, machine1, strict=True)]
        busy = (delta[0] + delta[1] + delta[2] + delta[5] + delta[6]) / hz / wall
        iowait = 100.0 * delta[4] / sum(delta) if sum(delta) else 0.0
        other = busy - sum(relays) - sum(groups.values()) - own
        return {
            "relays": relays,
            "postgres": groups["postgres"],
            "nats": groups["nats"],
            "generator": own,
            "other": max(other, 0.0),
            "busy": busy,
            "steal": steal_percent(machine0, machine1),
            "iowait": iowait,
        }


def cpu_line(cpu: dict[str, object]) -> str:
    relays = cpu["relays"]
    assert isinstance(relays, list)
    return (
        f"relays {'+'.join(f'{r:.2f}' for r in relays)}, postgres {cpu['postgres']:.2f}, "
        f"nats {cpu['nats']:.2f}, generator {cpu['generator']:.2f}, other {cpu['other']:.2f} "
        f"(machine busy {cpu['busy']:.2f} of {len(os.sched_getaffinity(0))}), steal {cpu['steal']:.1f}%, "
        f"iowait {cpu['iowait']:.1f}%"
    )


async def make_boxes(url: str, count: int) -> list[Box]:
    boxes = [Box() for _ in range(count)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for box in boxes:
            answer = await client.post("/v1/mailboxes", json=box.body())
            assert answer.status_code == 201, answer.text
    return boxes


class Drain:
    """A receiver WebSocket: records each envelope pushed and acknowledges them in batches."""

    def __init__(self, ws: ClientConnection, on_envelope: Callable[[frames.Envelope], None]) -> None:
        self.ws = ws
        self.on_envelope = on_envelope
        self.refs: list[frames.EnvelopeRef] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        flusher = asyncio.get_running_loop().create_task(self._flush())
        try:
            async for text in self.ws:
                frame = frames.decode_server_frame(text)
                if isinstance(frame, frames.Envelope):
                    self.on_envelope(frame)
                    self.refs.append(frames.EnvelopeRef(frame.mailbox, frame.id))
        finally:
            flusher.cancel()

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            refs, self.refs = self.refs, []
            for i in range(0, len(refs), 128):
                await self.ws.send(frames.encode(frames.Ack(tuple(refs[i : i + 128]))))

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.ws.close()


async def throughput_run(started: list[Node], window: int, seconds: float) -> tuple[float, dict[str, object]]:
    """(envelopes delivered per second, CPU) of one closed-loop run over ``started``; the CPU's
    ``answered`` is sends answered per second."""
    urls = [node.url for node in started]
    n = len(urls)
    boxes = await make_boxes(urls[0], TP_MAILBOXES)
    delivered = answered = 0

    def count(_: frames.Envelope) -> None:
        nonlocal delivered
        delivered += 1

    drains = []
    for j in range(RECEIVERS):  # receiver j on node j mod N, with mailboxes 4j..4j+3
        per = TP_MAILBOXES // RECEIVERS
        drains.append(Drain(await subscribe(urls[j % n], boxes[j * per : (j + 1) * per]), count))
    stop = asyncio.Event()

    async def sender(url: str, first: int) -> None:
        ws = await connect(url.replace("http", "ws", 1) + "/v1/ws", open_timeout=10)
        await asyncio.wait_for(ws.recv(), 10)  # its challenge
        slots = asyncio.Semaphore(window)
        i = first

        async def answers() -> None:
            nonlocal answered
            async for _ in ws:
                answered += 1
                slots.release()

        reading = asyncio.get_running_loop().create_task(answers())
        try:
            while not stop.is_set():
                await slots.acquire()
                box = boxes[i % len(boxes)]
                i += 1
                await ws.send(frames.encode(frames.Send(box.id, box.token, os.urandom(16), os.urandom(256))))
        finally:
            reading.cancel()
            await ws.close()

    senders = [asyncio.create_task(sender(urls[k % n], k * 7)) for k in range(SENDERS)]
    await asyncio.sleep(WARMUP)
    meter = CpuMeter([node.proc.pid for node in started])
    meter.start()
    at_start, answered_at_start = delivered, answered
    await asyncio.sleep(seconds)
    rate = (delivered - at_start) / seconds
    cpu = meter.stop()
    cpu["answered"] = (answered - answered_at_start) / seconds
    stop.set()
    for task in senders:
        task.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    for drain in drains:
        await drain.close()
    return rate, cpu


def throughput(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.nodes.split(",")]
    print(
        f"throughput on NATS: {SENDERS} senders x {args.window} unanswered sends, {TP_MAILBOXES} mailboxes, "
        f"{args.tp_seconds:g} s counted after {WARMUP:g} s, {args.runs} runs each; CPU in cores"
    )
    medians: dict[int, float] = {}
    for count in counts:
        rates = []
        for run in range(args.runs):
            with (
                tempfile.TemporaryDirectory() as tmp,
                database(args.postgres) as dsn,
                nodes(count, dsn, args.nats, Path(tmp)) as started,
            ):
                rate, cpu = asyncio.run(throughput_run(started, args.window, args.tp_seconds))
            rates.append(rate)
            print(
                f"  {count} node(s) run {run + 1}: {rate:6.0f} delivered/s ({cpu['answered']:.0f} sends "
                f"answered/s); {cpu_line(cpu)}",
                flush=True,
            )
        medians[count] = statistics.median(rates)
        print(f"{count} node(s) median: {medians[count]:8.0f} envelopes/s", flush=True)
    for a, b in itertools.pairwise(counts):
        print(f"{a} -> {b} nodes: {medians[b] / medians[a]:.2f}x")


# ---------------------------------------------------------------------------- SIGKILL of a node
def still_stored(dsn: str, refs: list[tuple[bytes, bytes]]) -> int:
    """How many of ``refs`` (mailbox id, message id) the database still holds."""
    if not refs:
        return 0
    tags = [id_tag(mailbox_id, message_id) for mailbox_id, message_id in refs]
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM envelopes WHERE id_tag = ANY(%s)", (tags,)).fetchone()
    return int(row[0]) if row is not None else 0


async def kill_run(started: list[Node], rate: float, seconds: float, dsn: str) -> dict[str, float]:
    a, b = started
    boxes = await make_boxes(b.url, 16)
    pushes: Counter[bytes] = Counter()
    first_after: list[float] = []
    loop = asyncio.get_running_loop()
    killed_at: float | None = None

    def seen(frame: frames.Envelope) -> None:
        pushes[frame.id] += 1

    def seen_moved(frame: frames.Envelope) -> None:
        seen(frame)
        if not first_after:
            first_after.append(loop.time())

    on_a = [box for i, box in enumerate(boxes) if i % 2 == 0]
    on_b = [box for i, box in enumerate(boxes) if i % 2 == 1]
    drain_a = Drain(await subscribe(a.url, on_a), seen)
    drain_b = Drain(await subscribe(b.url, on_b), seen)
    acked: set[bytes] = set()
    mailbox_of: dict[bytes, bytes] = {}
    resubscribed: list[float] = []

    class Sender:
        def __init__(self, url: str) -> None:
            self.url = url
            self.unanswered: dict[bytes, frames.Send] = {}

        async def open(self) -> None:
            self.ws = await connect(self.url.replace("http", "ws", 1) + "/v1/ws", open_timeout=10)
            await asyncio.wait_for(self.ws.recv(), 10)
            self.reading = loop.create_task(self._answers())

        async def _answers(self) -> None:
            with contextlib.suppress(Exception):
                async for text in self.ws:
                    frame = frames.decode_server_frame(text)
                    if isinstance(frame, frames.Sent):
                        acked.add(frame.id)
                        self.unanswered.pop(frame.id, None)

        async def send(self, send: frames.Send) -> bool:
            self.unanswered[send.id] = send
            try:
                await self.ws.send(frames.encode(send))
            except Exception:
                return False
            return True

    sender_a, sender_b = Sender(a.url), Sender(b.url)
    await sender_a.open()
    await sender_b.open()
    moved = False

    async def move() -> None:
        """A's receivers to B; A's unanswered sends again through B."""
        nonlocal drain_a, moved
        moved = True
        drain_a.task.cancel()  # its node is gone: no closing handshake to wait for
        while True:
            try:
                drain_a = Drain(await subscribe(b.url, on_a), seen_moved)
                break
            except Exception:
                await asyncio.sleep(0.05)
        resubscribed.append(loop.time())
        for send in list(sender_a.unanswered.values()):
            await sender_b.send(send)

    count = int(rate * seconds)
    kill_at = count // 3
    start = loop.time() + 0.1
    mover: asyncio.Task[None] | None = None
    for i in range(count):
        at = start + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if i == kill_at:
            os.kill(a.proc.pid, signal.SIGKILL)
            killed_at = loop.time()
        box = boxes[i % len(boxes)]
        send = frames.Send(box.id, box.token, os.urandom(16), os.urandom(256))
        mailbox_of[send.id] = box.id
        through = sender_b if (i % 2 or moved) else sender_a
        if not await through.send(send) and through is sender_a:
            if mover is None:
                mover = loop.create_task(move())
            await mover
            await sender_b.send(send)
        if killed_at is not None and mover is None and (drain_a.task.done() or sender_a.reading.done()):
            mover = loop.create_task(move())
    sending = loop.time() - start
    if mover is None:
        mover = loop.create_task(move())
    await mover
    # Wait while deliveries go on: at a rate above what the machine carries, a backlog drains
    # after the last send; only GRACE seconds without any delivery end the wait.
    quiet_since, last = loop.time(), sum(pushes.values())
    while not acked <= set(pushes) and loop.time() - quiet_since < GRACE:
        await asyncio.sleep(0.1)
        if sum(pushes.values()) != last:
            quiet_since, last = loop.time(), sum(pushes.values())
    await asyncio.sleep(2.0)  # anything pushed again arrives meanwhile
    undelivered = [(mailbox_of[m], m) for m in acked - set(pushes)]
    cut = sum(drain.task.done() for drain in (drain_a, drain_b)) + sender_b.reading.done()
    for drain in (drain_a, drain_b):
        await drain.close()
    for sender in (sender_a, sender_b):
        sender.reading.cancel()
        with contextlib.suppress(Exception):
            await sender.ws.close()
    assert killed_at is not None
    return {
        "sent": count,
        "sending s": sending,
        "acknowledged": len(acked),
        "undelivered": len(undelivered),
        "of which stored": await asyncio.to_thread(still_stored, dsn, undelivered),
        "connections cut": cut,
        "pushed again": sum(n - 1 for n in pushes.values()),
        "resubscribed s": resubscribed[0] - killed_at if resubscribed else float("nan"),
        "first delivery s": first_after[0] - killed_at if first_after else float("nan"),
    }


def kill(args: argparse.Namespace) -> None:
    print(
        f"SIGKILL of one of two nodes (NATS): {args.kill_rate:g} envelopes/s for {args.kill_seconds:g} s, "
        f"node A killed at a third, {args.runs} runs"
    )
    results = []
    for run in range(args.runs):
        with (
            tempfile.TemporaryDirectory() as tmp,
            database(args.postgres) as dsn,
            nodes(2, dsn, args.nats, Path(tmp)) as started,
        ):
            before = cpu_times()
            result = asyncio.run(kill_run(started, args.kill_rate, args.kill_seconds, dsn))
            steal = steal_percent(before, cpu_times())
        results.append(result)
        print(
            f"  run {run + 1}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in result.items())
            + f"; steal {steal:.1f}%",
            flush=True,
        )
    print(
        "median: " + ", ".join(f"{k} {statistics.median(r[k] for r in results):.4g}" for k in results[0]),
        flush=True,
    )


# ---------------------------------------------------------------------------- bytes per envelope
STORE_MAILBOXES = 100
STORE_SIZES = (256, 4096)
"""Payload bytes: a short envelope, and the 4,096-byte class every envelope has in cadence mode
(docs/metadata.md, *Padding*)."""


async def storage_run(dsn: str, size: int, count: int) -> dict[str, float]:
    """Bytes the database and its write-ahead log grew by per envelope stored (``count`` of
    ``size`` payload bytes, spread over mailboxes), then per envelope acknowledged (deleted)."""
    store = await asyncio.to_thread(PostgresStorage.open, dsn)
    day = int(time.time() // 86_400)
    try:
        boxes = [os.urandom(16) for _ in range(STORE_MAILBOXES)]
        token = os.urandom(32)
        for box in boxes:
            record = MailboxRecord(MailboxId(box), os.urandom(32), token_hash(token), 30, day + 30)
            await store.create_mailbox(record)

        def measure() -> tuple[int, int]:
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT pg_database_size(current_database()), pg_current_wal_lsn() - '0/0'"
                ).fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

        db0, wal0 = await asyncio.to_thread(measure)
        ids: list[tuple[MailboxId, MessageId]] = []
        for start in range(0, count, 256):
            puts = []
            for i in range(start, min(count, start + 256)):
                box, message_id = MailboxId(boxes[i % len(boxes)]), MessageId(os.urandom(16))
                ids.append((box, message_id))
                puts.append(store.put_envelope(box, token_hash(token), message_id, os.urandom(size), day))
            await asyncio.gather(*puts)
        db1, wal1 = await asyncio.to_thread(measure)
        for start in range(0, len(ids), 256):
            await store.delete_envelopes(ids[start : start + 256])
        _, wal2 = await asyncio.to_thread(measure)
    finally:
        await store.close()
    return {
        "database B/envelope": (db1 - db0) / count,
        "WAL B/envelope stored": (wal1 - wal0) / count,
        "WAL B/envelope deleted": (wal2 - wal1) / count,
    }


def storage(args: argparse.Namespace) -> None:
    print(
        f"bytes per envelope on PostgreSQL: {args.store_count} envelopes over {STORE_MAILBOXES} mailboxes "
        f"per run, {args.runs} runs; the WAL is the server's, so other databases' writes meanwhile count too"
    )
    for size in STORE_SIZES:
        results = []
        for run in range(args.runs):
            with database(args.postgres) as dsn:
                result = asyncio.run(storage_run(dsn, size, args.store_count))
            results.append(result)
            print(
                f"  {size} B run {run + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in result.items()),
                flush=True,
            )
        print(
            f"{size} B median: "
            + ", ".join(f"{k} {statistics.median(r[k] for r in results):,.0f}" for k in results[0]),
            flush=True,
        )


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
    parser.add_argument(
        "--nodes", default="1,2,4", help="node counts of the throughput setup (default 1,2,4)"
    )
    parser.add_argument("--window", type=int, default=32, help="unanswered sends per sender (default 32)")
    parser.add_argument("--tp-seconds", type=float, default=8.0, help="seconds counted per throughput run")
    parser.add_argument("--kill-rate", type=float, default=1000.0, help="envelopes/s in the kill setup")
    parser.add_argument("--kill-seconds", type=float, default=30.0, help="seconds sending per kill run")
    parser.add_argument("--store-count", type=int, default=5000, help="envelopes per storage run")
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
        if setup == "throughput":
            throughput(args)
            continue
        if setup == "kill":
            kill(args)
            continue
        if setup == "storage":
            storage(args)
            continue
        results = []
        for run in range(args.runs):
            with (
                tempfile.TemporaryDirectory() as tmp,
                database(args.postgres) as dsn,
                nodes(1 if setup == "one" else 2, dsn, buses[setup], Path(tmp)) as started,
            ):
                urls = [node.url for node in started]
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
