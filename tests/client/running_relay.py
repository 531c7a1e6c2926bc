"""The real relay in a thread: uvicorn on 127.0.0.1, SQLite in a directory, production settings."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from sotto.server.config import ServerConfig
from sotto.server.runner import uvicorn_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def running_relay(
    data_dir: Path, port: int, *, wrap: Callable[[Any], Any] | None = None, **settings: Any
) -> Iterator[str]:
    """The real relay (uvicorn, SQLite in ``data_dir``) in a thread, until the block ends.

    ``settings`` go to :class:`ServerConfig`; ``wrap`` wraps the ASGI app (to watch requests).
    """
    config = ServerConfig(data_dir=data_dir, host="127.0.0.1", port=port, **settings)
    uv_config = uvicorn_config(config)
    if wrap is not None:
        uv_config.app = wrap(uv_config.app)
    server = uvicorn.Server(uv_config)
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
