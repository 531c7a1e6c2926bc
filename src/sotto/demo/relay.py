"""The real relay as a child process: ``python -m sotto.server`` on 127.0.0.1 and a free port.

It runs in its own session, so a Ctrl-C in the terminal reaches the demo (which then stops the
relay itself) rather than both at once; everything it prints goes to a log file, which the demo
searches afterwards like the database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class RelayStartError(RuntimeError):
    """The relay process exited or did not answer its health check in time."""


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class RelayProcess:
    """One relay process over ``data_dir``; :meth:`start` it, :meth:`stop` it (also on errors)."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        port: int | None = None,
        *,
        command: Sequence[str] = ("-m", "sotto.server"),
    ) -> None:
        """``command``: the interpreter's arguments before ``--host``/``--port``/``--data``
        (``("-m", "sotto.cli", "server")`` runs the same relay through ``sotto server``)."""
        self.data_dir = data_dir
        self._command = list(command)
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the process and wait until ``/v1/health`` answers; the relay's URL."""
        command = [sys.executable, *self._command, "--host", HOST, "--port", str(self.port)]
        command += ["--data", str(self.data_dir)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._healthy():
            if self._process.poll() is not None:
                raise RelayStartError(
                    f"the relay exited with code {self._process.returncode}: {self._tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RelayStartError(
                    f"the relay did not answer within {START_TIMEOUT_S:.0f} s: {self._tail()}"
                )
            time.sleep(0.05)
        return self.url

    def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200
        return False

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-800:].strip() or "(no output)"
        return "(no log)"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (the relay closes its database, checkpointing the WAL), SIGKILL if it hangs."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> RelayProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
