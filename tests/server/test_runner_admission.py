"""Admission on a real relay server in this process (:class:`RelayServer` on its
:class:`AdmissionSocket`): the per-source limit and the cap refuse at accept time and keep
serving others, counts are given back when connections end (WebSockets included), a slow-header
client is closed, and a client that does not read its answers gets no more of them until it does.

Every wait is for an event (a closed socket, a count reaching a value), with generous bounds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sotto.server import ServerConfig
from sotto.server.runner import (
    ACCEPT_BATCH,
    CLOSE_BATCH,
    HEADER_SPREAD,
    UNREAD_HOLD_BYTES,
    Admission,
    AdmissionSocket,
    ConnectionLimits,
    HttpProtocol,
    RelayServer,
    unread_bytes,
    uvicorn_config,
)
from tests.server.conftest import GENEROUS

WAIT = 30.0
HEALTH = b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n"


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class Live:
    def __init__(self, server: RelayServer, port: int) -> None:
        self.server, self.port = server, port

    @property
    def admission(self) -> Admission:
        admission: Admission = self.server.config.sotto_admission  # type: ignore[attr-defined]
        return admission

    def connect(self, source: str = "127.0.0.1", **options: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for option, value in options.items():
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
        sock.settimeout(WAIT)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        return sock

    def protocols(self) -> list[Any]:
        return list(self.server.server_state.connections)


@contextlib.contextmanager
def live(tmp_path: Path, per_source: int | None = 3, **config: Any) -> Iterator[Live]:
    settings = ServerConfig(data_dir=tmp_path / "data", port=0, rate_limits=GENEROUS, **config)
    server = RelayServer(uvicorn_config(settings, log_config=None, per_source=per_source))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started or not thread.is_alive())
    assert server.started
    assert isinstance(server.servers[0].sockets[0]._sock, AdmissionSocket)  # type: ignore[attr-defined]
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(server, port)
    finally:
        server.should_exit = True
        thread.join(WAIT)


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65_536):
            chunks.append(chunk)
    return b"".join(chunks)


def _healthy(sock: socket.socket) -> bool:
    sock.sendall(HEALTH)
    data = b""
    while b'{"status":"ok"}' not in data:
        chunk = sock.recv(1_000)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"HTTP/1.1 200 ")


def test_the_connection_past_the_per_source_limit_is_refused_and_others_are_served(tmp_path: Path) -> None:
    with live(tmp_path, per_source=3, header_timeout_seconds=600.0) as relay:
        held = [relay.connect("127.0.0.1") for _ in range(3)]
        _until(lambda: relay.admission.held_by("127.0.0.1") == 3)
        refused = relay.connect("127.0.0.1")
        answer = _read_until_closed(refused)
        assert answer.startswith(b"HTTP/1.1 503 ") and b'"code":"unavailable"' in answer
        assert relay.admission.refused == 1 and relay.admission.held_by("127.0.0.1") == 3
        # Another address is served, and the held connections still work.
        other = relay.connect("127.0.0.2")
        assert _healthy(other)
        assert all(_healthy(sock) for sock in held)
        # A connection that ends gives its place back.
        held.pop().close()
        _until(lambda: relay.admission.held_by("127.0.0.1") == 2)
        again = relay.connect("127.0.0.1")
        assert _healthy(again)
        for sock in [*held, other, again]:
            sock.close()
        _until(lambda: relay.admission.open == 0)


def test_a_websocket_keeps_its_place_until_it_ends(tmp_path: Path) -> None:
    with live(tmp_path, per_source=1) as relay:
        ws = relay.connect("127.0.0.3")
        key = base64.b64encode(os.urandom(16))
        ws.sendall(
            b"GET /v1/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-key: " + key + b"\r\nsec-websocket-version: 13\r\n\r\n"
        )
        assert ws.recv(1_000).startswith(b"HTTP/1.1 101 ")
        # Upgraded, it still counts: a second connection from its address is refused.
        assert _read_until_closed(relay.connect("127.0.0.3")).startswith(b"HTTP/1.1 503 ")
        ws.close()
        _until(lambda: relay.admission.held_by("127.0.0.3") == 0)
        assert _healthy(relay.connect("127.0.0.3"))


def test_connections_beyond_the_cap_are_refused_at_accept(tmp_path: Path) -> None:
    with live(tmp_path, per_source=None, max_connections=2, header_timeout_seconds=600.0) as relay:
        held = [relay.connect(f"127.0.0.{n}") for n in (4, 5)]
        _until(lambda: relay.admission.open == 2)
        assert _read_until_closed(relay.connect("127.0.0.6")).startswith(b"HTTP/1.1 503 ")
        # Refused before any protocol was built for it: the relay knows only the two.
        assert len(relay.protocols()) == 2
        held.pop().close()
        _until(lambda: relay.admission.open == 1)
        assert _healthy(relay.connect("127.0.0.6"))
        held[0].close()


def test_a_slow_header_client_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    with live(tmp_path, header_timeout_seconds=0.3) as relay:
        slow = relay.connect("127.0.0.7")
        slow.sendall(b"GET /v1/health HTTP/1.1\r\n")  # and never the rest
        assert _read_until_closed(slow) == b""
        _until(lambda: relay.admission.held_by("127.0.0.7") == 0)


def test_connections_opened_together_get_header_deadlines_spread_over_half_a_timeout(tmp_path: Path) -> None:
    """A crowd of slow-header clients opened at once is cut off over a span of time, not in one
    instant (and so does not all come back at once), and none before the header timeout."""
    timeout = 600.0
    with live(tmp_path, per_source=None, header_timeout_seconds=timeout) as relay:
        loop = relay.server.servers[0].get_loop()
        before = loop.time()
        socks = [relay.connect("127.0.0.13") for _ in range(20)]
        _until(lambda: len(relay.protocols()) == 20)
        after = loop.time()
        timers = [p._deadline for p in relay.protocols() if isinstance(p, HttpProtocol)]
        deadlines = [t.when() for t in timers if t is not None]
        assert len(deadlines) >= 15  # a connection the relay is still admitting has none yet
        assert all(before + timeout <= d <= after + timeout * (1 + HEADER_SPREAD) for d in deadlines)
        # 20 draws over a span of 300 s all within 60 s of each other: about 1 in 10^12
        assert max(deadlines) - min(deadlines) > 60.0 + (after - before)
        for sock in socks:
            sock.close()


def test_a_client_that_does_not_read_gets_no_more_answers_until_it_reads(tmp_path: Path) -> None:
    # The keep-alive timeout is long enough for the last check to reach the relay on a loaded
    # machine before it runs out, and short enough to run out several times while held.
    keep_alive = 1.0
    with live(tmp_path, write_stall_seconds=600.0, keep_alive_seconds=keep_alive) as relay:
        reader = relay.connect("127.0.0.8", SO_RCVBUF=4_096)
        # Pipelined requests whose answers (some 40 KB each) go unread.
        count = 40
        reader.sendall(b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n" * count)

        def holding() -> list[HttpProtocol]:
            return [p for p in relay.protocols() if isinstance(p, HttpProtocol) and p._held is not None]

        _until(lambda: len(holding()) == 1)
        answered = relay.server.server_state.total_requests
        assert answered < 5  # not the 40 that the kernel's buffers would otherwise take in
        # A request waits, so the connection is not idle: the keep-alive timeout leaves it be.
        time.sleep(3 * keep_alive)
        assert len(holding()) == 1
        # Once it reads, the rest are answered.
        data = b""
        while b"\r\n\r\n" not in data:
            data += reader.recv(65_536)
        head = data[: data.index(b"\r\n\r\n")].lower()
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        one = len(head) + 4 + length  # every answer is the same
        while len(data) < count * one:
            chunk = reader.recv(65_536)
            assert chunk
            data += chunk
        # counted once each answer is complete, just after its last bytes are written
        _until(lambda: relay.server.server_state.total_requests == count)
        _until(lambda: not holding())  # and it reads again
        assert _healthy(reader)
        reader.close()


def test_ended_connections_are_freed_without_the_garbage_collector(tmp_path: Path) -> None:
    """No reference cycle outlives a connection, however it ends (served and closed by the
    client, timed out, a WebSocket): a flood's connections would otherwise wait in the oldest
    generation for a full collection, whose pause every other client waits through."""
    gc.collect()
    gc.disable()
    try:
        with live(tmp_path, per_source=None, header_timeout_seconds=0.3) as relay:
            ends: list[tuple[socket.socket, bool]] = []
            served = relay.connect("127.0.0.10")
            assert _healthy(served)
            ends.append((served, True))
            ends.append((relay.connect("127.0.0.11"), False))  # sends nothing: timed out
            ws = relay.connect("127.0.0.12")
            key = base64.b64encode(os.urandom(16))
            ws.sendall(
                b"GET /v1/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                b"sec-websocket-key: " + key + b"\r\nsec-websocket-version: 13\r\n\r\n"
            )
            assert ws.recv(1_000).startswith(b"HTTP/1.1 101 ")
            ends.append((ws, True))
            _until(lambda: len(relay.protocols()) == 3)
            refs = [weakref.ref(p) for p in relay.protocols()]
            refs += [weakref.ref(p.transport) for p in relay.protocols()]
            for sock, close in ends:
                if close:
                    sock.close()
            _until(lambda: relay.admission.open == 0)
            _until(lambda: all(ref() is None for ref in refs))
            ends[1][0].close()
    finally:
        gc.enable()


def test_unread_bytes_are_what_the_peer_has_not_taken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
        peer, _ = server.accept()
        with client, peer:
            assert unread_bytes(peer) == 0
            peer.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                peer.send(b"x" * (4 * UNREAD_HOLD_BYTES))
            assert unread_bytes(peer) > UNREAD_HOLD_BYTES


def test_admission_counts_per_source_and_in_all() -> None:
    admission = Admission(ConnectionLimits(max_connections=3, per_source=2))
    assert admission.admit("a") and admission.admit("a") and not admission.admit("a")
    assert admission.admit("b") and not admission.admit("c")  # the cap
    admission.release("a")
    assert admission.admit("c") and admission.open == 3 and admission.refused == 2
    admission.release("zz")  # never admitted: nothing to give back
    assert admission.open == 3


def test_connections_that_time_out_together_are_closed_a_few_per_turn() -> None:
    class Transport:
        def __init__(self) -> None:
            self.closed = False

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

    async def scenario() -> list[int]:
        admission = Admission(ConnectionLimits())
        transports = [Transport() for _ in range(3 * CLOSE_BATCH)]
        for transport in transports:
            admission.close_soon(transport)  # type: ignore[arg-type]
        closed = []
        for _ in range(4):
            await asyncio.sleep(0)  # one turn of the loop
            closed.append(sum(t.closed for t in transports))
        return closed

    assert asyncio.run(scenario()) == [CLOSE_BATCH, 2 * CLOSE_BATCH, 3 * CLOSE_BATCH, 3 * CLOSE_BATCH]


def test_a_few_connections_are_admitted_per_turn_and_the_rest_wait_in_the_kernel() -> None:
    async def scenario() -> list[int]:
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        admission = Admission(ConnectionLimits(per_source=None))
        wrapped = AdmissionSocket.wrap(listener, admission)
        wrapped.setblocking(False)
        clients = [socket.create_connection(wrapped.getsockname()) for _ in range(2 * ACCEPT_BATCH + 1)]
        accepted: list[socket.socket] = []
        per_turn = []
        try:
            for _ in range(4):
                got = 0
                with contextlib.suppress(BlockingIOError):
                    while True:
                        accepted.append(wrapped.accept()[0])
                        got += 1
                per_turn.append(got)
                await asyncio.sleep(0)  # the next turn of the loop
        finally:
            for sock in [*clients, *accepted, wrapped]:
                sock.close()
        assert admission.open == 2 * ACCEPT_BATCH + 1
        return per_turn

    assert asyncio.run(scenario()) == [ACCEPT_BATCH, ACCEPT_BATCH, 1, 0]


def test_admitted_connections_send_small_writes_at_once() -> None:
    """TCP_NODELAY on every admitted socket: an answer written as head then body must not wait
    for the client's delayed ACK on a kept-alive connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    wrapped = AdmissionSocket.wrap(listener, Admission(ConnectionLimits(per_source=None)))
    client = socket.create_connection(wrapped.getsockname())
    try:
        accepted, _ = asyncio.run(_accept_one(wrapped))
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.close()
        wrapped.close()


async def _accept_one(wrapped: AdmissionSocket) -> tuple[socket.socket, Any]:
    wrapped.settimeout(WAIT)
    return wrapped.accept()
