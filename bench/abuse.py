"""The relay under abuse: fairness for an honest client, and bounded resources under floods.

    python bench/abuse.py [--runs 3] [--json out.json]
    python bench/abuse.py --quick          # small and short: a smoke run of every figure

Each run starts the real relay (``python -m sotto.server`` on a fresh data directory) pinned to
one core, with the open-file limit a default machine gives it (``--relay-fds``, 20,000); the
load generator runs on another core, with its own open-file limit raised (the bench runs as
root) so that it is never what runs out. Attackers run in child processes at a lower priority
(nice 10) on the load core, so that the honest client is not starved by its own load
generator.

**A. Fairness.** Eight abusive sources (127.0.0.2 to 127.0.0.9, each client socket bound to
its address) flood every anonymous call at full speed, each over ``--abuse-connections`` keep-alive
connections and one WebSocket: account creation, mailbox creation, username lookups, bundle
fetches with random tokens, sends with wrong delivery tokens, polls with bad signatures, and
subscriptions with bad proofs. Meanwhile an honest client (127.0.0.1) goes through invitation
cycles with the SDK's relay transport (``sotto.client.transport.HttpRelay``, the calls the SDK
makes): *create account* (register and upload prekeys), *invite* (a mailbox and an access
token), *accept* (fetch the bundle, create a mailbox, send the first message), then ``--sends``
times *send* and *poll*. Figures: the share of honest operations that succeed and their p99
(targets ≥ 99%, ≤ 200 ms), with what the abusers got.

**B. Bounded resources.** ``--pairs`` honest sender/receiver pairs (SDK WebSockets, each pair
from a loopback address of its own, as different people are) exchange paced messages; their
end-to-end latency p99 is measured first on a quiet relay, then while ``--attempts`` connection
attempts (each held open until the relay closes it), ``--slow`` slow-header clients (a header
line every second, reconnecting when dropped) and ``--never-read`` clients (signed polls of a
mailbox holding 64 KiB envelopes, replies never read), all from 32 loopback addresses, run at
once. Figures: attack p99 against quiet p99 (target ≤ 2×), the relay's peak RSS (≤ 1 GiB), what
the relay wrote to its log during the attack (≤ 1 MB), messages lost, how the attack
connections ended, and the latency per second of the attack. The latency is measured by the
honest pairs, on the load core that the attackers share with them (at nice 10): it includes
the pairs' own scheduling delay, so the CPU time of the attackers, of the pairs and of the
whole load core is printed beside it, with the relay's own CPU and other processes' on its
core, quiet and under attack, and each relay thread's CPU time, time waiting for a CPU and
share of samples waiting on the disk during the attack.

CPU steal of the whole machine is read from ``/proc/stat`` around each part and printed.

The load generator's processes are not the product, and their garbage collections are kept out
of what they measure: the honest clients' process freezes what it set up and collects no
garbage while it measures (quiet and under attack alike), and the attackers collect none at all
(their full collections, over thousands of sockets, took up to half a second of the load core).
The relay collects as it always does. ``load generator GC`` in the output says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import socket
import statistics
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from relayproc import (
    RelayProcess,
    core_busy_seconds,
    cores,
    cpu_times,
    percentile,
    process_cpu_seconds,
    raise_fd_limit,
    rss_kib,
    steal_percent,
)
from websockets.asyncio.client import connect

from sotto.client.transport import DeviceCredentials, HttpRelay, mailbox_auth
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.wire import api, b64, frames
from sotto.wire.limits import MAX_FRAME_BYTES

HONEST = "127.0.0.1"
ABUSERS = [f"127.0.0.{n}" for n in range(2, 10)]
RAMP_SECONDS = 1.0
"""Seconds between starting the floods and measuring, for them to be under way."""
ATTEMPTS_PER_PROCESS = 15_000
ATTACK_SOURCES = [f"127.0.1.{n}" for n in range(1, 33)]
"""Connection floods come from many loopback addresses: each has its own ephemeral ports."""
PAIR_SOURCES = [f"127.0.2.{n}" for n in range(1, 255)]
"""Each honest pair is a person of its own, on an address of its own (its WebSockets; its few
HTTP calls before the measurement share 127.0.0.1)."""


def _socket_from(source: str) -> Callable[[str], Awaitable[Any]]:
    """Opens the delivery WebSocket from ``source``, as the SDK does from its own address."""

    async def open_socket(url: str) -> Any:
        return await connect(
            "ws" + url.removeprefix("http") + "/v1/ws",
            max_size=MAX_FRAME_BYTES,
            compression=None,
            local_addr=(source, 0),
            open_timeout=30,
        )

    return open_socket


@dataclass
class Settings:
    runs: int = 3
    relay_fds: int = 20_000
    # A: fairness
    cycles: int = 25
    sends: int = 4
    abuse_connections: int = 4
    # B: bounded resources
    pairs: int = 50
    interval: float = 0.1
    quiet_seconds: float = 10.0
    attack_seconds: float = 25.0
    attempts: int = 30_000
    slow: int = 1_000
    never_read: int = 100

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            runs=1,
            cycles=8,
            sends=2,
            pairs=10,
            quiet_seconds=4.0,
            attack_seconds=8.0,
            attempts=3_000,
            slow=100,
            never_read=10,
        )


# ---------------------------------------------------------------------------- the machine
class OtherLoad:
    """How busy the relay's core was with anything but the relay, in percent of the window."""

    def __init__(self, core: int, pid: int) -> None:
        self.core, self.pid = core, pid
        self.start = (time.monotonic(), core_busy_seconds(core), process_cpu_seconds(pid))

    def percent(self) -> tuple[float, float]:
        """(relay CPU %, others' CPU % on the relay's core)."""
        wall, busy, own = self.start
        wall = time.monotonic() - wall
        busy = core_busy_seconds(self.core) - busy
        own = process_cpu_seconds(self.pid) - own
        return 100 * own / wall, 100 * max(0.0, busy - own) / wall


class LoadCpu:
    """Where the load core's time went during the attack: the attackers, this process (the
    honest pairs), anything else."""

    def __init__(self, core: int, attackers: list[int]) -> None:
        self.core, self.attackers = core, attackers
        self.start = (time.monotonic(), core_busy_seconds(core), self._attack(), self._own())

    def _attack(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.attackers)

    @staticmethod
    def _own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def percent(self) -> dict[str, float]:
        wall, busy, attack, own = self.start
        wall = time.monotonic() - wall
        busy = core_busy_seconds(self.core) - busy
        attack, own = self._attack() - attack, self._own() - own
        return {
            "attack_cpu_percent": 100 * attack / wall,
            "pairs_cpu_percent": 100 * own / wall,
            "load_core_busy_percent": 100 * busy / wall,
        }


class RelayThreads:
    """Where the relay's threads spent the attack, read from ``/proc`` every sample: CPU time,
    time spent runnable but waiting for a CPU (other threads and processes on its core), and
    the share of samples in which a thread waited on the disk (``D``). A stall that the relay's
    event loop did not cause shows here: its main thread waiting for the core, or the storage
    thread waiting for the disk while sends wait for their commits. Threads are named ``main``
    (the event loop) or by their kernel name and id (the busiest other one is storage's)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self._read()
        self.disk: Counter[str] = Counter()
        self.samples = 0

    def _read(self) -> dict[str, tuple[float, float, str]]:
        threads: dict[str, tuple[float, float, str]] = {}
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with contextlib.suppress(OSError, ValueError):
                    base = f"/proc/{self.pid}/task/{tid}"
                    with open(f"{base}/schedstat") as f:
                        run, wait, _ = (int(v) for v in f.read().split())
                    with open(f"{base}/stat") as f:
                        name, _, rest = f.read().partition("(")[2].rpartition(")")
                    key = "main" if tid == str(self.pid) else f"{name} {tid}"
                    threads[key] = (run / 1e9, wait / 1e9, rest.split()[0])
        return threads

    def sample(self) -> None:
        self.samples += 1
        for name, (_, _, state) in self._read().items():
            if state == "D":
                self.disk[name] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        end = self._read()
        return {
            name: {
                "cpu_s": round(run - self.start.get(name, (0.0, 0.0, ""))[0], 2),
                "waited_for_cpu_s": round(wait - self.start.get(name, (0.0, 0.0, ""))[1], 2),
                "disk_wait_percent": round(100 * self.disk[name] / max(1, self.samples), 1),
            }
            for name, (run, wait, _) in end.items()
            if run - self.start.get(name, (0.0, 0.0, ""))[0] >= 0.05
        }


# ---------------------------------------------------------------------------- request material
def ec_key() -> bytes:
    return b"\x05" + system_rng(32)


def kem_key() -> bytes:
    return b"\x08" + system_rng(1568)


def account_body() -> api.CreateAccount:
    return api.CreateAccount(identity_key=ec_key(), registration_id=1234, device_secret=system_rng(32))


def keys_body(count: int = 5) -> api.UploadKeys:
    return api.UploadKeys(
        signed_pre_key=api.SignedPreKey(id=1, public_key=ec_key(), signature=system_rng(64)),
        kyber_last_resort=api.KyberPreKey(id=900, public_key=kem_key(), signature=system_rng(64)),
        one_time_pre_keys=[api.PreKey(id=i + 1, public_key=ec_key()) for i in range(count)],
        kyber_pre_keys=[
            api.KyberPreKey(id=i + 1, public_key=kem_key(), signature=system_rng(64)) for i in range(count)
        ],
    )


@dataclass(frozen=True, slots=True, repr=False)
class Mailbox:
    mailbox_id: bytes
    token: bytes
    key: SigningKey

    @classmethod
    def new(cls) -> Mailbox:
        return cls(system_rng(16), system_rng(32), SigningKey.generate(system_rng))

    def body(self) -> api.CreateMailbox:
        return api.CreateMailbox(
            mailbox_id=self.mailbox_id, auth_key=self.key.public.raw, delivery_token=self.token
        )


def _json_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: relay", f"content-length: {len(body)}"]
    if body:
        lines.append("content-type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _abusive_requests() -> list[Callable[[], bytes]]:
    """One builder per anonymous call, each a fresh request."""

    def accounts() -> bytes:
        return _json_request("POST", "/v1/accounts", account_body().model_dump_json().encode())

    def mailboxes() -> bytes:
        return _json_request("POST", "/v1/mailboxes", Mailbox.new().body().model_dump_json().encode())

    def lookup() -> bytes:
        return _json_request("GET", f"/v1/usernames/probe{system_rng(4).hex()}")

    def bundle() -> bytes:
        target = b64.encode(system_rng(16))
        return _json_request(
            "GET", f"/v1/accounts/{target}/bundle", headers={"sotto-access-token": b64.encode(system_rng(32))}
        )

    def send() -> bytes:
        body = api.SendMessage(message_id=system_rng(16), payload=system_rng(256)).model_dump_json().encode()
        path = f"/v1/mailboxes/{b64.encode(system_rng(16))}/messages"
        return _json_request("POST", path, body, {"sotto-delivery-token": b64.encode(system_rng(32))})

    def poll() -> bytes:
        path = f"/v1/mailboxes/{b64.encode(system_rng(16))}/poll"
        body = b'{"ack":[],"limit":32}'
        header = mailbox_auth(SigningKey.generate(system_rng), "POST", path, body)
        return _json_request("POST", path, body, {"sotto-mailbox-auth": header})

    return [accounts, mailboxes, lookup, bundle, send, poll]


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request, read its answer: (status, whether the connection stays open)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and "close" in value.lower():
            close = True
    if length:
        await reader.readexactly(length)
    return status, not close


# ---------------------------------------------------------------------------- A: abusers
async def _abuse(stop: Any, port: int, connections: int) -> dict[str, int]:
    counts: Counter[str] = Counter()
    # Requests are made ahead (200 of each kind, sent again and again), so that the load
    # generator spends its time sending, not signing and encoding.
    pools = [[build() for _ in range(200)] for build in _abusive_requests()]
    requests = [request for group in zip(*pools, strict=True) for request in group]
    subscriptions = [
        frames.encode(
            frames.Subscribe(tuple(frames.MailboxProof(system_rng(16), system_rng(64)) for _ in range(8)))
        )
        for _ in range(200)
    ]
    running = Running(stop)

    async def http_flood(source: str, offset: int) -> None:
        n = offset
        while running():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            except OSError:
                counts["connect_error"] += 1
                await asyncio.sleep(0.01)
                continue
            try:
                while running():
                    status, keep = await _exchange(reader, writer, requests[n % len(requests)])
                    n += 1
                    counts[str(status)] += 1
                    if not keep:
                        break
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                counts["dropped"] += 1
            finally:
                writer.close()

    async def ws_flood(source: str) -> None:
        while running():
            try:
                async with connect(
                    f"ws://127.0.0.1:{port}/v1/ws", local_addr=(source, 0), compression=None, open_timeout=10
                ) as ws:
                    await ws.recv()
                    while running():
                        await ws.send(subscriptions[counts["ws_subscribe"] % len(subscriptions)])
                        await ws.recv()
                        counts["ws_subscribe"] += 1
            except (OSError, websockets.WebSocketException, TimeoutError):
                counts["ws_closed"] += 1
                await asyncio.sleep(0.01)

    tasks = [http_flood(source, k) for source in ABUSERS for k in range(connections)]
    tasks += [ws_flood(source) for source in ABUSERS]
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(counts)


class Running:
    """Whether the parent still wants the attack, checked at most every 50 ms."""

    def __init__(self, stop: Any) -> None:
        self.stop, self.checked, self.value = stop, 0.0, True

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.value and now - self.checked > 0.05:
            self.checked, self.value = now, not self.stop.is_set()
        return self.value


def _child(
    target: Callable[..., Coroutine[Any, Any, dict[str, int]]], args: tuple[Any, ...], core: int, results: Any
) -> None:
    os.sched_setaffinity(0, {core})
    os.nice(10)
    gc.disable()  # an attacker lives seconds; its collections would only take the load core
    raise_fd_limit(200_000)
    results.put(asyncio.run(target(*args)))


class Child:
    """An attacker process: ``target(stop, *args)`` in its own event loop, until :meth:`finish`,
    which gives its counts."""

    def __init__(
        self, target: Callable[..., Coroutine[Any, Any, dict[str, int]]], args: tuple[Any, ...], core: int
    ) -> None:
        context = multiprocessing.get_context("fork")
        self.stop = context.Event()
        self.results: Any = context.Queue()
        self.process = context.Process(target=_child, args=(target, (self.stop, *args), core, self.results))
        self.process.start()

    def finish(self) -> dict[str, int]:
        self.stop.set()
        try:
            counts: dict[str, int] = self.results.get(timeout=120)
        except Exception:
            counts = {"no_report": 1}
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
        return counts


# ---------------------------------------------------------------------------- A: the honest client
@dataclass
class Operations:
    times: dict[str, list[float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)

    async def run(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        try:
            result = await call()
        except Exception as exc:
            self.failures[f"{name}: {getattr(exc, 'code', type(exc).__name__)}"] += 1
            return None
        self.times.setdefault(name, []).append(time.perf_counter() - started)
        return result if result is not None else True


async def honest_cycles(url: str, settings: Settings) -> Operations:
    ops = Operations()
    bound = httpx.AsyncHTTPTransport(local_address=HONEST)
    fresh = httpx.AsyncHTTPTransport(local_address=HONEST)
    async with (
        httpx.AsyncClient(timeout=10, transport=bound) as http,
        httpx.AsyncClient(timeout=10, transport=fresh) as alone,
    ):
        relay = HttpRelay(url, http, fresh=alone)

        async def create() -> DeviceCredentials:
            body = account_body()
            created = await relay.create_account(body)
            device = DeviceCredentials(created.account_id, created.device_id, body.device_secret)
            await relay.upload_keys(device, keys_body())
            return device

        inviter = await ops.run("create account", create)
        if inviter is None:
            raise RuntimeError(f"the honest client could not register: {dict(ops.failures)}")
        for _ in range(settings.cycles):
            newcomer = await ops.run("create account", create)
            inbox, token = Mailbox.new(), system_rng(32)

            async def invite(inbox: Mailbox = inbox, token: bytes = token) -> None:
                await relay.create_mailbox(inbox.body())
                await relay.add_access_token(inviter, token, int(time.time() // 86_400) + 7)

            if not await ops.run("invite", invite):
                continue
            theirs = Mailbox.new()

            async def accept(inbox: Mailbox = inbox, token: bytes = token, theirs: Mailbox = theirs) -> None:
                await relay.fetch_bundle(inviter.account_id, token)
                await relay.create_mailbox(theirs.body())
                await relay.send(inbox.mailbox_id, inbox.token, system_rng(16), system_rng(256))

            if newcomer is None or not await ops.run("accept", accept):
                continue
            acked: list[bytes] = []
            for _ in range(settings.sends):

                async def send(theirs: Mailbox = theirs) -> None:
                    await relay.send(theirs.mailbox_id, theirs.token, system_rng(16), system_rng(256))

                async def poll(theirs: Mailbox = theirs, acked: list[bytes] = acked) -> None:
                    result = await relay.poll(theirs.mailbox_id, theirs.key, acked, 32)
                    acked[:] = [e.id for e in result.envelopes]

                await ops.run("send", send)
                await ops.run("poll", poll)
        await relay.aclose()
    return ops


def fairness_run(settings: Settings, workdir: Path, relay_core: int, load_core: int) -> dict[str, Any]:
    relay = RelayProcess("sotto", relay_core, workdir, fds=settings.relay_fds)
    relay.start()
    try:
        before = cpu_times()
        asyncio.run(honest_cycles(relay.url, Settings(cycles=1, sends=1)))  # warm-up
        quiet = asyncio.run(honest_cycles(relay.url, Settings(cycles=3, sends=settings.sends)))
        abusers = Child(_abuse, (relay.port, settings.abuse_connections), load_core)
        time.sleep(2.0)  # the flood is under way
        started = time.monotonic()
        load = OtherLoad(relay_core, relay.pid)
        ops = asyncio.run(honest_cycles(relay.url, settings))
        relay_cpu, other_cpu = load.percent()
        honest_seconds = time.monotonic() - started
        abused = abusers.finish()
        steal = steal_percent(before, cpu_times())
    finally:
        relay.stop()
    every = [t for times in ops.times.values() for t in times]
    done, failed = len(every), sum(ops.failures.values())
    return {
        "success_percent": 100.0 * done / max(1, done + failed),
        "p99_ms": 1000 * percentile(every, 99),
        "p50_ms": 1000 * percentile(every, 50),
        "operations": done + failed,
        "per_operation": {
            name: {"count": len(times), "p99_ms": 1000 * percentile(times, 99)}
            for name, times in ops.times.items()
        },
        "failures": dict(ops.failures),
        "quiet_p99_ms": 1000 * percentile([t for ts in quiet.times.values() for t in ts], 99),
        "honest_seconds": honest_seconds,
        "abusers": abused,
        "relay_cpu_percent": relay_cpu,
        "other_cpu_on_relay_core_percent": other_cpu,
        "steal_percent": steal,
    }


# ---------------------------------------------------------------------------- B: the attack
async def _hold_until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await reader.read(4_096):
            data += chunk
    return data


async def _flood(stop: Any, port: int, sizes: tuple[int, int, int], mailbox: Mailbox) -> dict[str, int]:
    """``sizes``: connection attempts, slow-header clients, never-reading clients."""
    attempts, slow, never_read = sizes
    counts: Counter[str] = Counter()
    running = Running(stop)
    mailbox_id, key = mailbox.mailbox_id, mailbox.key

    async def attempt(n: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1", port, local_addr=(ATTACK_SOURCES[n % len(ATTACK_SOURCES)], 0)
                    ),
                    10,
                )
            except (OSError, TimeoutError):
                counts["attempt_connect_failed"] += 1
                return
        try:
            hold = asyncio.create_task(_hold_until_closed(reader))
            while running() and not hold.done():
                await asyncio.wait([hold], timeout=0.5)
            if hold.done():
                answer = hold.result()
                counts[
                    "attempt_refused_503" if answer.startswith(b"HTTP/1.1 503") else "attempt_closed_by_relay"
                ] += 1
            else:
                hold.cancel()
                counts["attempt_still_open"] += 1
        finally:
            writer.close()

    async def slow_client(n: int) -> None:
        while running():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(ATTACK_SOURCES[n % len(ATTACK_SOURCES)], 0)
                )
            except OSError:
                counts["slow_connect_failed"] += 1
                await asyncio.sleep(1)
                continue
            opened = time.monotonic()
            try:
                writer.write(b"GET /v1/health HTTP/1.1\r\n")
                while running() and not reader.at_eof():
                    await asyncio.sleep(1)
                    writer.write(b"x-slow: 1\r\n")
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(1), 0.01) == b"":
                            break
                counts["slow_dropped" if running() else "slow_still_open"] += 1
            except OSError:
                counts["slow_reset"] += 1
            finally:
                writer.close()
                lived = time.monotonic() - opened
                counts["slow_held_s_max"] = max(counts["slow_held_s_max"], round(lived))
                counts["slow_held_s_total"] += round(lived)

    async def never_reader(n: int) -> None:
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/poll"
        body = b'{"ack":[],"limit":256}'
        while running():
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
            sock.bind((ATTACK_SOURCES[n % len(ATTACK_SOURCES)], 0))
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
                _, writer = await asyncio.open_connection(sock=sock)
            except OSError:
                counts["never_read_connect_failed"] += 1
                sock.close()
                await asyncio.sleep(1)
                continue
            try:
                while running():  # a signed poll every second, answers never read
                    writer.write(
                        _json_request(
                            "POST", path, body, {"sotto-mailbox-auth": mailbox_auth(key, "POST", path, body)}
                        )
                    )
                    await asyncio.wait_for(writer.drain(), 5)
                    await asyncio.sleep(1)
                counts["never_read_still_open"] += 1
            except (OSError, TimeoutError):
                counts["never_read_dropped"] += 1
            finally:
                writer.close()

    gate = asyncio.Semaphore(4_000)
    tasks = [attempt(n, gate) for n in range(attempts)]
    tasks += [slow_client(n) for n in range(slow)] + [never_reader(n) for n in range(never_read)]
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(counts)


class Pairs:
    """Honest sender/receiver pairs over the SDK's WebSockets, sending paced, timestamped messages."""

    def __init__(self, url: str, count: int, interval: float) -> None:
        self.url, self.count, self.interval = url, count, interval
        self.latencies: list[float] = []
        self.when: list[float] = []
        self.sent = self.received = 0
        self.recording = False

    async def open(self) -> None:
        self._http = httpx.AsyncClient(timeout=30)
        self.relays = [
            HttpRelay(self.url, self._http, open_socket=_socket_from(PAIR_SOURCES[n % len(PAIR_SOURCES)]))
            for n in range(self.count)
        ]
        self.mailboxes = [Mailbox.new() for _ in range(self.count)]
        for relay, mailbox in zip(self.relays, self.mailboxes, strict=True):
            await relay.create_mailbox(mailbox.body())
        self.drains = [await relay.connect() for relay in self.relays]
        for drain, mailbox in zip(self.drains, self.mailboxes, strict=True):
            await drain.subscribe({mailbox.mailbox_id: mailbox.key})
        self._readers = [asyncio.create_task(self._read(d)) for d in self.drains]

    async def _read(self, drain: Any) -> None:
        while True:
            envelope = await drain.receive()
            if envelope is None:
                continue
            (scheduled,) = struct.unpack_from(">d", envelope.payload)
            if self.recording and scheduled > 0:
                self.latencies.append(time.monotonic() - scheduled)
                self.when.append(scheduled)
            self.received += 1
            await drain.ack([(envelope.mailbox, envelope.id)])

    async def paced(self, seconds: float) -> None:
        async def pair(n: int) -> None:
            relay, mailbox = self.relays[n], self.mailboxes[n]
            start = time.monotonic() + n * self.interval / self.count
            k = 0
            while (scheduled := start + k * self.interval) < start + seconds:
                await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
                payload = struct.pack(">d", scheduled) + system_rng(248)
                with contextlib.suppress(Exception):
                    await relay.send(mailbox.mailbox_id, mailbox.token, system_rng(16), payload)
                    self.sent += 1
                k += 1

        await asyncio.gather(*(pair(n) for n in range(self.count)))

    async def settle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.received < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        for drain in self.drains:
            with contextlib.suppress(Exception):
                await drain.close()
        for relay in self.relays:
            with contextlib.suppress(Exception):
                await relay.aclose()
        await self._http.aclose()


async def _fill_mailbox(url: str) -> Mailbox:
    """A mailbox holding 40 envelopes of 64 KiB, whose polls the never-readers ask for."""
    mailbox = Mailbox.new()
    async with httpx.AsyncClient(timeout=30) as http:
        relay = HttpRelay(url, http, websocket_sends=False)
        await relay.create_mailbox(mailbox.body())
        for _ in range(40):
            await relay.send(mailbox.mailbox_id, mailbox.token, system_rng(16), system_rng(65_536))
    return mailbox


def _timeline(latencies: list[float], when: list[float], origin: float) -> list[tuple[float, int, int, int]]:
    """Per second of the attack: (second, messages, p50 ms, max ms)."""
    buckets: dict[int, list[float]] = {}
    for latency, at in zip(latencies, when, strict=True):
        buckets.setdefault(int(at - origin), []).append(latency)
    return [
        (second, len(values), round(1000 * percentile(values, 50)), round(1000 * max(values)))
        for second, values in sorted(buckets.items())
    ]


async def _bounded(relay: RelayProcess, settings: Settings, load_core: int) -> dict[str, Any]:
    mailbox = await _fill_mailbox(relay.url)
    pairs = Pairs(relay.url, settings.pairs, settings.interval)
    await pairs.open()
    try:
        await pairs.paced(2.0)  # warm-up
        await pairs.settle()
        # What the pairs set up stays; their collections stay out of the figures (module note).
        gc.collect()
        gc.freeze()
        gc.disable()
        pairs.recording, pairs.latencies = True, []
        quiet_load = OtherLoad(relay.core, relay.pid)
        await pairs.paced(settings.quiet_seconds)
        await pairs.settle()
        quiet_relay_cpu, quiet_other_cpu = quiet_load.percent()
        quiet = list(pairs.latencies)
        rss_quiet = rss_kib(relay.pid)
        log_before = relay.log_bytes()
        # One process holds at most ATTEMPTS_PER_PROCESS sockets: the container caps open files.
        chunks = -(-settings.attempts // ATTEMPTS_PER_PROCESS)
        attackers = [
            Child(
                _flood,
                (
                    relay.port,
                    (settings.attempts // chunks, settings.slow * (k == 0), settings.never_read * (k == 0)),
                    mailbox,
                ),
                load_core,
            )
            for k in range(chunks)
        ]
        attack_started = time.monotonic()
        await asyncio.sleep(RAMP_SECONDS)  # the floods ramp up
        pairs.latencies, pairs.when = [], []
        peak = [rss_kib(relay.pid)]

        lags: list[tuple[float, float]] = []

        threads = RelayThreads(relay.pid)

        async def sample() -> None:
            """The relay's RSS and threads, and how late this process's own event loop wakes (if
            it is late, the load generator, not the relay, is what delays the pairs)."""
            while True:
                peak.append(rss_kib(relay.pid))
                threads.sample()
                asked = time.monotonic()
                await asyncio.sleep(0.05)
                lags.append((time.monotonic() - asked - 0.05, asked - attack_started))

        sampler = asyncio.create_task(sample())
        load = OtherLoad(relay.core, relay.pid)
        spent = LoadCpu(load_core, [a.process.pid for a in attackers if a.process.pid is not None])
        await pairs.paced(settings.attack_seconds)
        await pairs.settle()  # every message sent under attack is counted, the late ones too
        relay_cpu, other_cpu = load.percent()
        load_cpu = spent.percent()
        sampler.cancel()
        relay_threads = threads.summary()
        attacked = list(pairs.latencies)
        worst = sorted(zip(pairs.latencies, pairs.when, strict=True), reverse=True)[:8]
        counts: Counter[str] = Counter()
        for attacker in attackers:
            counts.update(await asyncio.to_thread(attacker.finish))
        alive = relay.alive()
        return {
            "quiet_p99_ms": 1000 * percentile(quiet, 99),
            "attack_p99_ms": 1000 * percentile(attacked, 99),
            "p99_ratio": percentile(attacked, 99) / percentile(quiet, 99),
            "attack_p50_ms": 1000 * percentile(attacked, 50),
            "messages_sent": pairs.sent,
            "messages_lost": pairs.sent - pairs.received,
            "rss_quiet_mib": rss_quiet / 1024,
            "rss_peak_mib": max(peak) / 1024,
            "log_bytes_during_attack": relay.log_bytes() - log_before,
            "relay_alive": alive,
            "relay_cpu_percent": relay_cpu,
            "other_cpu_on_relay_core_percent": other_cpu,
            "quiet_relay_cpu_percent": quiet_relay_cpu,
            "quiet_other_cpu_on_relay_core_percent": quiet_other_cpu,
            **load_cpu,
            "attack": dict(counts),
            "load_generator_worst_lag_ms_at_s": [
                (round(1000 * lag), round(at, 1)) for lag, at in sorted(lags)[-3:]
            ],
            "worst_ms_at_s": [(round(1000 * lat), round(at - attack_started, 1)) for lat, at in worst],
            "attack_started_monotonic": attack_started,
            "timeline": _timeline(pairs.latencies, pairs.when, attack_started),
            "relay_threads": relay_threads,
        }
    finally:
        gc.enable()
        gc.unfreeze()
        await pairs.close()


def bounded_run(settings: Settings, workdir: Path, relay_core: int, load_core: int) -> dict[str, Any]:
    relay = RelayProcess("sotto", relay_core, workdir, fds=settings.relay_fds)
    relay.start()
    try:
        before = cpu_times()
        result = asyncio.run(_bounded(relay, settings, load_core))
        result["steal_percent"] = steal_percent(before, cpu_times())
        return result
    finally:
        relay.stop()
        if os.environ.get("ABUSE_SHOW_LOG"):
            print(relay.log.read_text()[-3000:])


# ---------------------------------------------------------------------------- report
def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def report(settings: Settings, fair: list[dict[str, Any]], bounded: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [
        ("A honest operations that succeed, %", _median(fair, "success_percent"), "≥ 99"),
        ("A honest p99 under abuse, ms", _median(fair, "p99_ms"), "≤ 200"),
        ("A honest p50 under abuse, ms", _median(fair, "p50_ms"), ""),
        ("A honest p99 on a quiet relay, ms", _median(fair, "quiet_p99_ms"), ""),
        ("B pairs p99 quiet, ms", _median(bounded, "quiet_p99_ms"), ""),
        ("B pairs p99 under attack, ms", _median(bounded, "attack_p99_ms"), ""),
        ("B p99 attack / quiet", _median(bounded, "p99_ratio"), "≤ 2"),
        ("B relay peak RSS, MiB", _median(bounded, "rss_peak_mib"), "≤ 1024"),
        (
            "B log written during the attack, bytes",
            _median(bounded, "log_bytes_during_attack"),
            "≤ 1,000,000",
        ),
        ("B messages lost", _median(bounded, "messages_lost"), "0"),
    ]
    print(f"\n{'figure':<44} {'median':>12}  target   (runs: {len(fair)} + {len(bounded)})")
    for name, value, target in rows:
        print(f"{name:<44} {value:>12,.1f}  {target}")
    for n, run in enumerate(fair, 1):
        print(
            f"A run {n}: {run['operations']} operations, failures {run['failures']}, "
            f"steal {run['steal_percent']:.2f}%, relay CPU {run['relay_cpu_percent']:.0f}%, "
            f"others on the relay's core {run['other_cpu_on_relay_core_percent']:.0f}%"
        )
        print(f"  per operation: {run['per_operation']}")
        print(f"  abusers' answers: {run['abusers']}")
    for n, run in enumerate(bounded, 1):
        print(
            f"B run {n}: alive {run['relay_alive']}, sent {run['messages_sent']}, "
            f"steal {run['steal_percent']:.2f}%, relay CPU {run['quiet_relay_cpu_percent']:.0f}% quiet, "
            f"{run['relay_cpu_percent']:.0f}% under attack; others on the relay's core "
            f"{run['quiet_other_cpu_on_relay_core_percent']:.0f}% quiet, "
            f"{run['other_cpu_on_relay_core_percent']:.0f}% under attack"
        )
        print(
            f"  load core: busy {run['load_core_busy_percent']:.0f}%, attackers "
            f"{run['attack_cpu_percent']:.0f}% (nice 10), honest pairs {run['pairs_cpu_percent']:.0f}%"
        )
        print(f"  attack: {run['attack']}")
        print(f"  per second of the attack (s, messages, p50 ms, max ms): {run['timeline']}")
        print(f"  worst latencies (ms, s after the attack began): {run['worst_ms_at_s']}")
        print(
            f"  load generator's own worst event-loop lag (ms, s): {run['load_generator_worst_lag_ms_at_s']}"
        )
        print(
            "  relay threads under attack (CPU s, waited for a CPU s, % of samples in disk wait): "
            f"{run['relay_threads']}"
        )
    return {
        "settings": asdict(settings),
        "fairness": fair,
        "bounded": bounded,
        "figures": {n: v for n, v, _ in rows},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--relay-fds", type=int)
    parser.add_argument("--cycles", type=int)
    parser.add_argument("--attempts", type=int)
    parser.add_argument("--slow", type=int)
    parser.add_argument("--never-read", type=int)
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--only", choices=["fairness", "bounded"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    for name in ("runs", "relay_fds", "cycles", "attempts", "slow", "never_read", "pairs"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    limit = raise_fd_limit(200_000)
    relay_core, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    print(f"relay on core {relay_core}, load on core {load_core}; load generator open-file limit {limit:,}")
    print("load generator GC: attackers none, honest pairs none while measuring (the relay: its own)")
    fair: list[dict[str, Any]] = []
    bounded: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sotto-abuse-") as tmp:
        for n in range(settings.runs):
            if args.only != "bounded":
                fair.append(fairness_run(settings, Path(tmp), relay_core, load_core))
                print(
                    f"A run {n + 1}: {fair[-1]['success_percent']:.2f}% ok, p99 {fair[-1]['p99_ms']:.1f} ms",
                    flush=True,
                )
            if args.only != "fairness":
                bounded.append(bounded_run(settings, Path(tmp), relay_core, load_core))
                b = bounded[-1]
                print(
                    f"B run {n + 1}: p99 {b['quiet_p99_ms']:.1f} → {b['attack_p99_ms']:.1f} ms, "
                    f"RSS {b['rss_peak_mib']:.0f} MiB, log {b['log_bytes_during_attack']} B",
                    flush=True,
                )
    result = report(settings, fair or [{}], bounded or [{}]) if fair and bounded else None
    if result is None:
        runs = fair or bounded
        print(json.dumps(runs, indent=1, default=str))
        result = {"runs": runs}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
