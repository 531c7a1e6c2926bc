"""``--per-address`` of ``python -m sotto.server`` and ``sotto server``: the connections one
client address may hold, 0 for none (a relay behind a reverse proxy)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.demo.relay import RelayProcess

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: relay\r\n\r\n"


@contextlib.contextmanager
def relay(tmp_path: Path, command: tuple[str, ...]) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path / "data", tmp_path / "relay.log", command=command)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def answer(sock: socket.socket) -> bytes:
    sock.sendall(HEALTH)
    return sock.recv(200)


def held_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections the relay answered on. The start-up probe's connection may still
    be counted for a moment after it closed (the relay has not yet seen it go): a connection
    refused then is tried again."""
    held: list[socket.socket] = []
    deadline = time.monotonic() + 10
    while len(held) < count:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if answer(sock).startswith(b"HTTP/1.1 200 "):
            held.append(sock)
            continue
        sock.close()
        assert time.monotonic() < deadline, "the relay kept refusing"
        time.sleep(0.05)
    return held


@pytest.mark.parametrize(
    "command",
    [("-m", "sotto.server", "--per-address", "2"), ("-m", "sotto.cli", "server", "--per-address", "2")],
    ids=["python -m sotto.server", "sotto server"],
)
def test_the_connection_past_the_per_address_limit_is_refused(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    with relay(tmp_path, command) as process:
        held = held_connections(process.port, 2)
        try:
            with socket.create_connection(("127.0.0.1", process.port), timeout=10) as third:
                assert third.recv(200).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in held:
                sock.close()


def test_zero_means_no_limit_per_address(tmp_path: Path) -> None:
    with relay(tmp_path, ("-m", "sotto.server", "--per-address", "0")) as process:
        held = [socket.create_connection(("127.0.0.1", process.port), timeout=10) for _ in range(80)]
        try:
            assert all(answer(sock).startswith(b"HTTP/1.1 200 ") for sock in held)
        finally:
            for sock in held:
                sock.close()
