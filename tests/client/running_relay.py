"""The real relay in a thread: uvicorn on 127.0.0.1, SQLite in a directory, production settings."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from sotto.server.config import ServerConfig
from sotto.server.runner import uvicorn_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def running_relay(data_dir: Path, port: int) -> Iterator[str]:
    """The real relay (uvicorn, SQLite in ``data_dir``) in a thread, until the block ends."""
    config = ServerConfig(data_dir=data_dir, host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn_config(config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the relay did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
