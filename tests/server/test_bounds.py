"""Bounded resources, on a real uvicorn server in this process: the connection cap refuses
cleanly, slow headers and bodies are cut off, a client that never reads is dropped, and a text
frame that is not UTF-8 gets an ``error`` frame and 4400 without a logged traceback.

Every wait here is for an event (a closed socket, a count reaching a value), with generous
bounds; no assertion depends on where wall-clock time lands.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from sotto.server import ServerConfig
from sotto.server.runner import ConnectionLimits, connection_cap, uvicorn_config
from tests.server.conftest import GENEROUS

WAIT = 30.0


class LiveRelay:
    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port

    def connect(self, **options: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for option, value in options.items():
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def open_connections(self) -> int:
        return len(self.server.server_state.connections)


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@contextlib.contextmanager
def live_relay(tmp_path: Path, **config: Any) -> Iterator[LiveRelay]:
    settings = ServerConfig(data_dir=tmp_path / "data", port=0, rate_limits=GENEROUS, **config)
    server = uvicorn.Server(uvicorn_config(settings, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started or not thread.is_alive())
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveRelay(server, port)
    finally:
        server.should_exit = True
        thread.join(WAIT)


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65_536):
            chunks.append(chunk)
    return b"".join(chunks)


def _answer(sock: socket.socket) -> bytes:
    """One health answer: read until its body is in."""
    data = b""
    while b'{"status":"ok"}' not in data:
        chunk = sock.recv(1_000)
        assert chunk, data
        data += chunk
    return data


def test_the_cap_is_derived_from_the_descriptor_limit() -> None:
    assert connection_cap(ServerConfig(), fd_limit=20_000, backlog=2_048) == 20_000 - 2_048 - 256
    assert connection_cap(ServerConfig(max_connections=500), fd_limit=20_000, backlog=2_048) == 500
    assert connection_cap(ServerConfig(max_connections=50_000), fd_limit=20_000, backlog=2_048) < 20_000
    config = uvicorn_config(ServerConfig(max_connections=123), log_config=None)
    assert config.sotto_limits == ConnectionLimits(123, 10.0, 30.0, 30.0)  # type: ignore[attr-defined]
    assert config.timeout_keep_alive == 10 and config.h11_max_incomplete_event_size == 16 * 1024


def test_connections_beyond_the_cap_get_503_and_are_closed(tmp_path: Path) -> None:
    with live_relay(tmp_path, max_connections=3, header_timeout_seconds=600.0) as relay:
        held = [relay.connect() for _ in range(3)]
        _until(lambda: relay.open_connections() == 3)
        refused = relay.connect()
        answer = _read_until_closed(refused)
        assert answer.startswith(b"HTTP/1.1 503 ") and b'"code":"unavailable"' in answer
        assert relay.open_connections() == 3
        held.pop().close()
        _until(lambda: relay.open_connections() == 2)
        sock = relay.connect()
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")
        for s in [*held, refused, sock]:
            s.close()


def test_slow_headers_and_slow_bodies_are_cut_off(tmp_path: Path) -> None:
    with live_relay(tmp_path, header_timeout_seconds=0.2, body_timeout_seconds=0.2) as relay:
        silent = relay.connect()
        slow = relay.connect()
        slow.sendall(b"GET /v1/health HTTP/1.1\r\n")
        partial_body = relay.connect()
        partial_body.sendall(
            b"POST /v1/mailboxes HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n{"
        )
        assert _read_until_closed(silent) == b""
        assert _read_until_closed(slow) == b""
        assert b" 201 " not in _read_until_closed(partial_body)
        _until(lambda: relay.open_connections() == 0)
        # A keep-alive connection that keeps asking is served past the header deadline.
        alive = relay.connect()
        for _ in range(3):
            alive.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
            assert _answer(alive).startswith(b"HTTP/1.1 200 ")
        for s in (silent, slow, partial_body, alive):
            s.close()


def test_a_client_that_never_reads_is_dropped(tmp_path: Path) -> None:
    with live_relay(tmp_path, write_stall_seconds=0.2) as relay:
        reader = relay.connect(SO_RCVBUF=4_096)
        # Pipelined requests whose answers (some 40 KB each) are never read: the kernel's
        # buffers fill, then the transport's, then the relay drops the connection.
        request = b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n"
        with contextlib.suppress(OSError):
            reader.sendall(request * 400)
        _until(lambda: relay.open_connections() == 0)
        reader.close()


def _ws_handshake(sock: socket.socket) -> None:
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /v1/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-key: " + key + b"\r\nsec-websocket-version: 13\r\n\r\n"
    )


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """Server frames (unmasked, short or 16-bit lengths) as (opcode, payload)."""
    out = []
    while len(data) >= 2:
        opcode, length, start = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        out.append((opcode, data[start : start + length]))
        data = data[start + length :]
    return out


def test_invalid_utf8_gets_an_error_frame_and_4400_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with live_relay(tmp_path) as relay, caplog.at_level(logging.DEBUG):
        sock = relay.connect()
        _ws_handshake(sock)
        opening = b""
        while b'"t":"challenge"' not in opening:  # the handshake's answer and the first frame
            opening += sock.recv(1_000)
        mask, payload = os.urandom(4), b"\xff\xfe{}"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        body = opening.split(b"\r\n\r\n", 1)[1]
        while not any(op == 0x8 for op, _ in _frames(body)):  # until the close frame
            chunk = sock.recv(1_000)
            assert chunk, body
            body += chunk
        frames = _frames(body)
        texts = [p for op, p in frames if op == 0x1]
        closes = [p for op, p in frames if op == 0x8]
        assert b'"t":"challenge"' in texts[0]
        assert b'"t":"error"' in texts[-1] and b'"code":"malformed"' in texts[-1]
        assert int.from_bytes(closes[0][:2], "big") == 4400
        sock.close()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
