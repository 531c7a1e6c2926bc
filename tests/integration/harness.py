"""The real relay as a separate process, real SDK clients, and the faults the tests inject.

:class:`RelayProcess` runs ``python -m sotto.server`` exactly as an operator would (its own
logging, uvicorn settings and SQLite file), appends everything the process prints to one log
file, and can be stopped politely (SIGTERM), killed (SIGKILL) and started again on the same port
and data directory. :class:`TcpProxy` sits between clients and the relay so a test can cut every
live connection at once, as a network drop would. :class:`CountingNetwork` wraps the SDK's real
network and counts what crosses it: envelopes that arrive more than once (redeliveries the
client must drop) and sends the relay reports as duplicates (retries of sends it had stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.client.transport import DrainConnection, HttpNetwork, Network, Relay
from sotto.crypto.passphrase import Argon2Params
from sotto.wire import frames

T = TypeVar("T")
PASSPHRASE = "integration passphrase"
STARTUP_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class RelayProcess:
    """``python -m sotto.server`` on 127.0.0.1, restartable on the same port and data directory."""

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "relay.db"

    def _spawn(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [
            sys.executable,
            "-m",
            "sotto.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data_dir),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        self.starts += 1

    def _check_alive(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the relay exited with {self.process.returncode}: {self.output()[-2000:]!r}")
        if time.monotonic() > deadline:
            raise RuntimeError("the relay did not become healthy")

    def start(self) -> None:
        """Start the process and return once ``/v1/health`` answers 200."""
        self._spawn()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(timeout=1.0) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.url + "/v1/health").status_code == 200:
                        return
                self._check_alive(deadline)
                time.sleep(0.02)

    async def astart(self) -> None:
        """:meth:`start` for callers on an event loop (which keeps running meanwhile)."""
        self._spawn()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/v1/health")).status_code == 200:
                        return
                self._check_alive(deadline)
                await asyncio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or checkpointed."""
        assert self.process is not None and self.process.poll() is None, "not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (the database is closed and checkpointed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> bytes:
        """Everything the process has printed (stdout and stderr) over all its runs."""
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def __enter__(self) -> RelayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.stop()


class TcpProxy:
    """A loopback TCP proxy in front of the relay; :meth:`cut` drops every live connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._proxy(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65_536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    @property
    def connections(self) -> int:
        return len(self._writers) // 2

    def cut(self) -> int:
        """Reset every proxied connection (both sides see it die); how many there were."""
        live = self.connections
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self.cuts += 1
        return live

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------------------- counting network
class Counts:
    """What crossed one client's network."""

    def __init__(self) -> None:
        self.envelopes: Counter[tuple[bytes, bytes]] = Counter()
        self.sends = 0
        self.send_duplicates = 0
        self.send_failures = 0
        self.sends_confirmed = 0
        self.connections = 0

    @property
    def redelivered(self) -> int:
        """Envelopes that arrived again after a first arrival (each dropped as seen)."""
        return sum(n - 1 for n in self.envelopes.values() if n > 1)

    def reset(self) -> None:
        self.envelopes.clear()
        self.sends = self.send_duplicates = self.send_failures = self.sends_confirmed = 0
        self.connections = 0


class CountingNetwork:
    """The SDK's own network (or ``inner``), counting envelopes received and sends answered."""

    def __init__(self, inner: Network | None = None) -> None:
        self.inner: Network = inner or HttpNetwork()
        self.counts = Counts()

    def relay(self, url: str) -> Relay:
        return cast(Relay, _CountingRelay(self.inner.relay(url), self.counts))

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CountingRelay:
    def __init__(self, inner: Relay, counts: Counts) -> None:
        self._inner = inner
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def connect(self) -> DrainConnection:
        connection = await self._inner.connect()
        self._counts.connections += 1
        return cast(DrainConnection, _CountingDrain(connection, self._counts))

    async def send(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        self._counts.sends += 1
        try:
            duplicate = await self._inner.send(mailbox_id, token, message_id, payload)
        except Exception:
            self._counts.send_failures += 1
            raise
        self._counts.send_duplicates += duplicate
        self._counts.sends_confirmed += 1
        return duplicate


class _CountingDrain:
    def __init__(self, inner: DrainConnection, counts: Counts) -> None:
        self._inner = inner
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def receive(self, timeout: float | None = None) -> frames.Envelope | None:
        envelope = await self._inner.receive(timeout)
        if envelope is not None:
            self._counts.envelopes[(envelope.mailbox, envelope.id)] += 1
        return envelope

    async def ack(self, refs: Sequence[tuple[bytes, bytes]]) -> None:
        await self._inner.ack(refs)


# ---------------------------------------------------------------------------- clients
def run(main: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
    return asyncio.run(asyncio.wait_for(main(), timeout))


async def new_client(
    url: str, directory: Path, name: str, *, network: Network | None = None, receipt_delay: float = 0.2
) -> Client:
    return await Client.create(
        directory / name,
        url,
        PASSPHRASE,
        name,
        kdf=Argon2Params.TESTING,
        network=network,
        receipt_delay=receipt_delay,
    )


async def reopen(directory: Path, name: str, *, network: Network | None = None) -> Client:
    return await Client.open(directory / name, PASSPHRASE, network=network, receipt_delay=0.2)


Seen = dict[Client, list[ev.Event]]


def _summary(seen: Seen) -> str:
    """Each client's events by kind (texts in full), for a failure message."""
    parts = []
    for client, events in seen.items():
        kinds = [
            f"text {e.text!r}" if isinstance(e, ev.MessageReceived) else type(e).__name__ for e in events
        ]
        parts.append(f"{client.display_name}: {kinds}")
    return "; ".join(parts)


async def collect(clients: Iterable[Client], until: Callable[[Seen], bool], timeout: float = 60.0) -> Seen:
    """Sync each client in turn until ``until`` holds for the events gathered so far.

    ``Client.sync`` returns at once when nothing has arrived for a while, so between rounds the
    clients' background tasks (outbox, drain) get time to move; the bound is wall-clock time.
    """
    everyone = list(clients)
    seen: Seen = {c: [] for c in everyone}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for client in everyone:
            seen[client].extend(await client.sync(timeout=3, idle=0.1))
        if until(seen):
            return seen
        if loop.time() > deadline:
            raise AssertionError(f"the expected events did not arrive; seen: {_summary(seen)}")
        await asyncio.sleep(0.05)


def texts(events: Iterable[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.MessageReceived | ev.GroupMessageReceived)]


def rejected(events: Iterable[ev.Event]) -> list[ev.EnvelopeRejected]:
    return [e for e in events if isinstance(e, ev.EnvelopeRejected)]


async def befriend(a: Client, b: Client) -> None:
    """``a`` invites ``b``; returns when both can write to each other."""
    invite = await a.create_invite()
    await b.accept_invite(invite.link, a.display_name)

    def ready(_: Seen) -> bool:
        known = any(c.name == b.display_name for c in a.contacts())
        return known and a.is_ready(b.display_name) and b.is_ready(a.display_name)

    await collect([a, b], ready)
