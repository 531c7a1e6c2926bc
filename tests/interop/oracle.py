"""The real libsignal, as a Python object: a client for ``oracle.mjs``.

Interop tests need an independent judge of every byte Sotto produces. :class:`Oracle` starts
``node oracle.mjs`` (which loads ``@signalapp/libsignal-client``) and exchanges one JSON line per
request with it. Byte strings travel as lowercase hex; :meth:`Oracle.call` hex-encodes any
``bytes`` argument for you, replies keep hex (decode with :func:`from_hex`).

A missing Node or npm package is an error, never a skip: a skipped interop test would hide a
missing feature. Every call has a timeout, so a hung Node process cannot hang the suite.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "oracle.mjs"
DEFAULT_NODE_MODULES = HERE / "node" / "node_modules"
PACKAGE = Path("@signalapp") / "libsignal-client"
EXPECTED_VERSION = "0.103.0"
DEFAULT_CALL_TIMEOUT = 60.0
_STDERR_LINES_KEPT = 40


class OracleError(RuntimeError):
    """A command failed; ``error`` keeps libsignal's own message, ``code`` its ErrorCode."""

    def __init__(self, message: str, *, reply: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply: dict[str, Any] = reply or {}
        self.error: str = str(self.reply.get("error", message))
        code = self.reply.get("code")
        self.code: int | None = code if isinstance(code, int) else None


class OracleUnavailableError(OracleError):
    """Node or the libsignal npm package is missing (run ``make node``)."""


class OracleTimeoutError(OracleError):
    """The oracle did not answer in time; the process has been killed."""


def to_hex(data: bytes) -> str:
    return data.hex()


def from_hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _encode(value: Any) -> Any:
    """Replace every ``bytes`` inside ``value`` by its hex form (JSON has no bytes)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def node_modules_dir() -> Path:
    """Where libsignal is loaded from: ``$LIBSIGNAL_NODE_MODULES`` or ``node/node_modules`` here."""
    env = os.environ.get("LIBSIGNAL_NODE_MODULES")
    return Path(env) if env else DEFAULT_NODE_MODULES


class Oracle:
    """A running libsignal oracle process. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        *,
        node: str | None = None,
        node_modules: Path | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        node_path = node or shutil.which("node")
        if node_path is None:
            raise OracleUnavailableError("`node` is not on PATH; install Node 20+ and run `make node`")
        modules = node_modules or node_modules_dir()
        if not (modules / PACKAGE / "package.json").is_file():
            raise OracleUnavailableError(
                f"@signalapp/libsignal-client is not installed under {modules}; run `make node`"
            )
        self.timeout = timeout
        self._next_id = 0
        self._lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
        self._lines: queue.Queue[str | None] = queue.Queue()
        env = dict(os.environ, LIBSIGNAL_NODE_MODULES=str(modules))
        self._proc = subprocess.Popen(
            [node_path, str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        threading.Thread(target=self._pump_stdout, name="oracle-stdout", daemon=True).start()
        threading.Thread(target=self._pump_stderr, name="oracle-stderr", daemon=True).start()

    # -- reader threads
    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    # -- requests
    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def try_call(self, cmd: str, /, **fields: Any) -> dict[str, Any]:
        """Send one command; return the raw reply (``ok`` true or false). Transport failures raise."""
        return self._exchange(cmd, fields, self.timeout)

    def call(self, cmd: str, /, **fields: Any) -> dict[str, Any]:
        """Send one command; return its reply fields (without ``ok``), or raise :class:`OracleError`."""
        return self._checked(cmd, self._exchange(cmd, fields, self.timeout))

    def call_within(self, timeout: float, cmd: str, /, **fields: Any) -> dict[str, Any]:
        """:meth:`call` with its own timeout in seconds (for a deliberately large batch)."""
        return self._checked(cmd, self._exchange(cmd, fields, timeout))

    def new_party(self, **fields: Any) -> dict[str, Any]:
        """A fresh libsignal party; the reply's ``party`` is its handle for later commands."""
        return self.call("new_party", **fields)

    @staticmethod
    def _checked(cmd: str, reply: dict[str, Any]) -> dict[str, Any]:
        if not reply.pop("ok", False):
            raise OracleError(f"oracle {cmd}: {reply.get('error')}", reply=reply)
        return reply

    def _exchange(self, cmd: str, fields: dict[str, Any], limit: float) -> dict[str, Any]:
        with self._lock:
            if not self.running or self._proc.stdin is None:
                raise OracleError(f"oracle is not running (cmd {cmd}); stderr:\n{self.stderr_tail()}")
            self._next_id += 1
            request_id = self._next_id
            line = json.dumps({**_encode(fields), "id": request_id, "cmd": cmd}, separators=(",", ":"))
            try:
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()
            except OSError as e:
                raise OracleError(
                    f"oracle pipe closed (cmd {cmd}): {e}; stderr:\n{self.stderr_tail()}"
                ) from e
            try:
                answer = self._lines.get(timeout=limit)
            except queue.Empty:
                self.terminate()
                raise OracleTimeoutError(
                    f"oracle gave no answer to {cmd} within {limit:g} s; killed"
                ) from None
            if answer is None:
                self._lines.put(None)  # later calls see the end too
                raise OracleError(f"oracle exited during {cmd}; stderr:\n{self.stderr_tail()}")
            try:
                reply: dict[str, Any] = json.loads(answer)
            except json.JSONDecodeError:
                self.terminate()
                raise OracleError(
                    f"oracle wrote a non-JSON line during {cmd}: {answer[:200]!r}; killed"
                ) from None
            if reply.pop("id", None) != request_id:
                self.terminate()
                raise OracleError(f"oracle answered out of order during {cmd}; killed")
            return reply

    # -- lifetime
    def close(self, timeout: float = 10.0) -> None:
        """Close stdin and wait for Node to exit; kill it if it does not within ``timeout``."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate()

    def terminate(self, timeout: float = 5.0) -> None:
        """Stop the process now (SIGTERM, then SIGKILL)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout)

    def __enter__(self) -> Oracle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Oracle(pid={self._proc.pid}, running={self.running})"
