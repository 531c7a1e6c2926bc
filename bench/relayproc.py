"""What the relay benchmarks share: the relay process they measure, and how they read the machine.

    python bench/relayproc.py --port 8787 --data DIR [--protections full|no-per-source|none]

:class:`RelayProcess` starts one relay as a process of its own pinned to one core: Sotto's
(``python -m sotto.server`` on a fresh data directory, or this file as a script for a relay
with some of its connection protections left out, to price them) or the minimal relay
(``bench/minimal_relay.py``). The load generator pins itself to the other core (:func:`cores`
puts the relay on the one that other processes were using less).

Run as a script, this file serves Sotto's relay with ``--protections``:

* ``full``: as ``python -m sotto.server`` serves it;
* ``no-per-source``: no limit on connections per source address (the cap still holds);
* ``none``: uvicorn's own server and HTTP protocol: no admission at accept time, no per-source
  limit, no connection cap, no header, body or write-stall timeouts, no hold on unread answers
  (WebSockets keep the relay's smaller protocol and its write-stall drop, which costs nothing
  until a send buffer fills).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = [
    "PROTECTIONS",
    "RelayProcess",
    "busy_seconds",
    "core_busy_seconds",
    "cores",
    "cpu_times",
    "free_port",
    "percentile",
    "process_cpu_seconds",
    "raise_fd_limit",
    "rss_kib",
    "source_address",
    "steal_percent",
]

HERE = Path(__file__).resolve().parent
PROTECTIONS = ("full", "no-per-source", "none")


# ---------------------------------------------------------------------------- the machine
def cpu_times() -> list[int]:
    """The machine's ``cpu`` line of ``/proc/stat``: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def steal_percent(before: list[int], after: list[int]) -> float:
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    return 100.0 * delta[7] / total if total else 0.0


def busy_seconds(times: list[int]) -> float:
    """CPU time spent on anything but idling (steal excluded), in seconds."""
    user, nice, system, _idle, _iowait, irq, softirq, _steal = times[:8]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: int) -> float:
    """CPU seconds one core has spent busy since boot."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                return busy_seconds([int(v) for v in line.split()[1:9]])
    return 0.0


def process_cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def raise_fd_limit(wanted: int | None = None) -> int:
    """Raise this process's open-file limit (to ``wanted``, else to the hard limit); the limit now."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for limit in (wanted, hard):
        if limit is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


_AVAILABLE_CORES = sorted(os.sched_getaffinity(0))
"""Read at import, before the benchmark pins itself to one of them."""
_CHOSEN: tuple[int, int] | None = None


def cores(sample_seconds: float = 0.5) -> tuple[int, int]:
    """(relay core, load generator core): two different ones when there are two, the relay on
    the one other processes used less over ``sample_seconds`` (measured once, then kept)."""
    global _CHOSEN  # noqa: PLW0603 (one choice per benchmark process)
    if _CHOSEN is None:
        first, second = _AVAILABLE_CORES[0], _AVAILABLE_CORES[1 % len(_AVAILABLE_CORES)]
        if first != second:
            before = (core_busy_seconds(first), core_busy_seconds(second))
            time.sleep(sample_seconds)
            if core_busy_seconds(second) - before[1] < core_busy_seconds(first) - before[0]:
                first, second = second, first
        _CHOSEN = (first, second)
    return _CHOSEN


def source_address(n: int, per_address: int = 50) -> str:
    """A loopback address for the ``n``-th client connection, ``per_address`` to an address: the
    relay limits connections per source, and many clients are many people."""
    slot = n // per_address
    return f"127.1.{slot // 250}.{slot % 250 + 1}"


# ---------------------------------------------------------------------------- the relay process
class RelayProcess:
    """One relay process (``kind``: ``sotto`` or ``minimal``) pinned to ``core``, with ``fds``
    open files at most if given, and Sotto's with the given ``protections``."""

    def __init__(
        self, kind: str, core: int, workdir: Path, *, fds: int | None = None, protections: str = "full"
    ) -> None:
        if protections not in PROTECTIONS:
            raise ValueError(f"protections: one of {PROTECTIONS}")
        self.kind, self.core, self.fds, self.protections = kind, core, fds, protections
        self.port = free_port()
        self.data = workdir / f"{kind}-{self.port}"
        self.log = workdir / f"{kind}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        if self.kind == "minimal":
            return [sys.executable, str(HERE / "minimal_relay.py"), "--port", str(self.port)]
        where = ["--port", str(self.port), "--data", str(self.data)]
        if self.protections == "full":
            return [sys.executable, "-m", "sotto.server", *where]
        return [sys.executable, str(Path(__file__).resolve()), *where, "--protections", self.protections]

    def start(self) -> None:
        core, fds = self.core, self.fds

        def prepare() -> None:
            os.sched_setaffinity(0, {core})
            if fds is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

        with self.log.open("ab") as log:
            command = self.command()
            self.process = subprocess.Popen(command, stdout=log, stderr=log, preexec_fn=prepare)  # noqa: PLW1509
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} relay did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        if self.kind != "minimal":
            try:
                return httpx.get(self.url + "/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_bytes(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------- a relay with fewer protections
def serve(port: int, data: Path, protections: str) -> None:
    """Serve Sotto's relay on 127.0.0.1 with ``protections`` (see the module's note)."""
    import uvicorn  # noqa: PLC0415 (only the script needs the server)

    from sotto.server.config import ServerConfig  # noqa: PLC0415
    from sotto.server.runner import RelayServer, raise_fd_limit, uvicorn_config  # noqa: PLC0415

    raise_fd_limit()
    config = ServerConfig(data_dir=data, port=port)
    if protections == "full":
        RelayServer(uvicorn_config(config)).run()
    elif protections == "no-per-source":
        RelayServer(uvicorn_config(config, per_source=None)).run()
    else:
        uvicorn.Server(uvicorn_config(config, per_source=None, http="h11")).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--protections", choices=PROTECTIONS, default="full")
    args = parser.parse_args(argv)
    serve(args.port, args.data, args.protections)


if __name__ == "__main__":
    main()
