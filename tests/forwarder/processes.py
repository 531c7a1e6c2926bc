"""Real processes on 127.0.0.1 for the forwarder's tests: the relay with its gateway, the
forwarder; each started with its output in a file, stopped (by its own pid) when done."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process ended with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def process(args: list[str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m args...`` with stdout and stderr in ``log``, until the block ends."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            wait_for_port(port, child)
            yield child
        finally:
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


@contextlib.contextmanager
def relay_with_gateway(data: Path, log: Path, view: Path | None = None) -> Iterator[str]:
    """The relay as ``python -m sotto.server`` runs it (the gateway is on by default), with a
    1-second tick; its URL."""
    port = free_port()
    args = ["sotto.server", "--port", str(port), "--data", str(data), "--cadence-tick", "1"]
    if view is not None:
        args += ["--record-view", str(view)]
    with process(args, log, port):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def forwarder_process(relay_url: str, log: Path, *extra: str) -> Iterator[str]:
    """``python -m sotto.forwarder --relay relay_url``; its URL."""
    port = free_port()
    args = ["sotto.forwarder", "--relay", relay_url, "--host", "127.0.0.1", "--port", str(port), *extra]
    with process(args, log, port):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def in_thread(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in a thread of this process; its URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, access_log=False, log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
