"""Forwarder benchmark: what the Oblivious HTTP path (client → forwarder → gateway → relay) costs.

    python bench/forwarder.py [--requests 300] [--runs 3] [--concurrency 8]
    python bench/forwarder.py --quick       # small and short: a smoke run of every figure

Each run starts, as processes of their own, the relay with its gateway (this file as a script:
``python -m sotto.server``'s settings, which mount :func:`sotto.server.gateway.with_gateway`,
pinned to one core) and the forwarder (``python -m sotto.forwarder``, its rate limit lifted,
pinned to the other core, where this process, the load generator, runs too). Two requests, each
sent ``--requests`` times directly to the relay and through the forwarder, over kept-alive
connections:

* ``cadence``: ``GET /v1/cadence``, the smallest answer: the path's own cost;
* ``send``: ``POST /v1/mailboxes/{id}/messages`` with a 1,024-byte envelope (an SQLite commit).

Figures per run, then the median of ``--runs`` runs: latency p50 and p99, one request at a time
(sequential); the latency the forwarder path adds at p50; CPU per request of the relay (whose
gateway opens and seals each request), of the forwarder, and of this process (the client's
binary HTTP and HPKE); and with ``--concurrency`` requests in flight, the rate through the
forwarder and its CPU per request there (many clients' requests over its pooled connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from relayproc import cores, free_port, percentile, process_cpu_seconds

from sotto.client.oblivious import ObliviousTransport, fetch_key_config
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.wire import api, b64

PAYLOAD = 1024


@dataclass(frozen=True)
class Settings:
    requests: int = 300
    runs: int = 3
    concurrency: int = 8

    @classmethod
    def quick(cls) -> Settings:
        return cls(requests=40, runs=3, concurrency=4)


# ---------------------------------------------------------------------------- processes
def _pinned(core: int) -> Callable[[], None]:
    def prepare() -> None:
        os.sched_setaffinity(0, {core})

    return prepare


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def _start(command: list[str], core: int, log: Path, ready_url: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, preexec_fn=_pinned(core))  # noqa: PLW1509
    _wait(ready_url, process, log)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------- load
async def _timed(call: Callable[[int], Awaitable[httpx.Response]], n: int) -> list[float]:
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        response = await call(i)
        latencies.append(time.perf_counter() - start)
        if response.status_code >= 400:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return latencies


async def _concurrent(call: Callable[[int], Awaitable[httpx.Response]], n: int, width: int) -> float:
    """Seconds for ``n`` calls with ``width`` in flight."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            response = await call(i)
            if response.status_code >= 400:
                raise RuntimeError(f"HTTP {response.status_code}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return time.perf_counter() - start


def _calls(
    http: httpx.AsyncClient, relay: str, mailbox: bytes, token: bytes, tag: int
) -> dict[str, Callable[[int], Awaitable[httpx.Response]]]:
    headers = {"content-type": "application/json", "sotto-delivery-token": b64.encode(token)}
    path = f"{relay}/v1/mailboxes/{b64.encode(mailbox)}/messages"

    async def cadence(_: int) -> httpx.Response:
        return await http.get(relay + "/v1/cadence")

    async def send(i: int) -> httpx.Response:
        message_id = tag.to_bytes(4, "big") + i.to_bytes(12, "big")
        body = api.SendMessage(message_id=message_id, payload=os.urandom(PAYLOAD)).model_dump_json()
        return await http.post(path, content=body.encode(), headers=headers)

    return {"cadence": cadence, "send": send}


async def _mailbox(http: httpx.AsyncClient, relay: str) -> tuple[bytes, bytes]:
    mailbox, token = os.urandom(16), os.urandom(32)
    key = SigningKey.generate(system_rng)
    body = api.CreateMailbox(mailbox_id=mailbox, auth_key=key.public.raw, delivery_token=token, ttl_days=7)
    response = await http.post(
        relay + "/v1/mailboxes",
        content=body.model_dump_json().encode(),
        headers={"content-type": "application/json"},
    )
    response.raise_for_status()
    return mailbox, token


async def measure(
    relay: str, forwarder: str, relay_pid: int, forwarder_pid: int, settings: Settings
) -> dict[str, float]:
    figures: dict[str, float] = {}
    config = await fetch_key_config(forwarder + "/v1/ohttp/keys")
    direct = httpx.AsyncClient(timeout=30)
    oblivious = httpx.AsyncClient(
        timeout=30, transport=ObliviousTransport(forwarder, config, relay_url=relay)
    )
    n = settings.requests
    try:
        for path, http in (("direct", direct), ("forwarder", oblivious)):
            mailbox, token = await _mailbox(http, relay)
            calls = _calls(http, relay, mailbox, token, tag=1 if path == "direct" else 2)
            for kind, call in calls.items():
                await _timed(call, 5)  # warm the connections
                relay_cpu, fwd_cpu = process_cpu_seconds(relay_pid), process_cpu_seconds(forwarder_pid)
                own_cpu = time.process_time()
                latencies = await _timed(lambda i, c=call: c(i + 10), n)  # type: ignore[misc]
                figures[f"{kind}.{path}.p50_ms"] = statistics.median(latencies) * 1000
                figures[f"{kind}.{path}.p99_ms"] = percentile(latencies, 99) * 1000
                figures[f"{kind}.{path}.relay_cpu_us"] = (
                    (process_cpu_seconds(relay_pid) - relay_cpu) / n * 1e6
                )
                figures[f"{kind}.{path}.client_cpu_us"] = (time.process_time() - own_cpu) / n * 1e6
                if path == "forwarder":
                    figures[f"{kind}.forwarder_cpu_us"] = (
                        (process_cpu_seconds(forwarder_pid) - fwd_cpu) / n * 1e6
                    )
        for kind in ("cadence", "send"):
            figures[f"{kind}.added_p50_ms"] = (
                figures[f"{kind}.forwarder.p50_ms"] - figures[f"{kind}.direct.p50_ms"]
            )
        mailbox, token = await _mailbox(oblivious, relay)
        send = _calls(oblivious, relay, mailbox, token, tag=3)["send"]
        fwd_cpu = process_cpu_seconds(forwarder_pid)
        seconds = await _concurrent(send, n, settings.concurrency)
        figures["send.concurrent.per_s"] = n / seconds
        figures["send.concurrent.forwarder_cpu_us"] = (process_cpu_seconds(forwarder_pid) - fwd_cpu) / n * 1e6
    finally:
        await direct.aclose()
        await oblivious.aclose()
    return figures


def one_run(settings: Settings, workdir: Path) -> dict[str, float]:
    relay_core, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    relay_port, forwarder_port = free_port(), free_port()
    relay_url, forwarder_url = f"http://127.0.0.1:{relay_port}", f"http://127.0.0.1:{forwarder_port}"
    data = workdir / f"relay-{relay_port}"
    relay = _start(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-relay",
            str(relay_port),
            "--data",
            str(data),
        ],
        relay_core,
        workdir / "relay.log",
        relay_url + "/v1/health",
    )
    try:
        forwarder = _start(
            [
                sys.executable,
                "-m",
                "sotto.forwarder",
                "--relay",
                relay_url,
                "--port",
                str(forwarder_port),
                "--burst",
                "1e9",
                "--per-second",
                "1e9",
            ],
            load_core,
            workdir / "forwarder.log",
            forwarder_url + "/v1/ohttp/keys",
        )
        try:
            return asyncio.run(measure(relay_url, forwarder_url, relay.pid, forwarder.pid, settings))
        finally:
            _stop(forwarder)
    finally:
        _stop(relay)


def serve_relay(port: int, data: Path) -> None:
    """The relay as ``python -m sotto.server`` serves it (the gateway is mounted by default)."""
    from sotto.server.config import ServerConfig  # noqa: PLC0415 (only the script needs these)
    from sotto.server.runner import RelayServer, raise_fd_limit, uvicorn_config  # noqa: PLC0415

    raise_fd_limit()
    RelayServer(uvicorn_config(ServerConfig(data_dir=data, port=port))).run()


ROWS = [
    ("cadence.direct.p50_ms", "GET /v1/cadence direct, p50", "ms"),
    ("cadence.forwarder.p50_ms", "GET /v1/cadence via forwarder, p50", "ms"),
    ("cadence.added_p50_ms", "  added by the forwarder path, p50", "ms"),
    ("cadence.direct.p99_ms", "GET /v1/cadence direct, p99", "ms"),
    ("cadence.forwarder.p99_ms", "GET /v1/cadence via forwarder, p99", "ms"),
    ("send.direct.p50_ms", "send 1 KiB direct, p50", "ms"),
    ("send.forwarder.p50_ms", "send 1 KiB via forwarder, p50", "ms"),
    ("send.added_p50_ms", "  added by the forwarder path, p50", "ms"),
    ("send.direct.p99_ms", "send 1 KiB direct, p99", "ms"),
    ("send.forwarder.p99_ms", "send 1 KiB via forwarder, p99", "ms"),
    ("cadence.forwarder_cpu_us", "forwarder CPU per request (cadence)", "µs"),
    ("send.forwarder_cpu_us", "forwarder CPU per request (send)", "µs"),
    ("send.concurrent.forwarder_cpu_us", "forwarder CPU per request (send, concurrent)", "µs"),
    ("send.concurrent.per_s", "sends per second via forwarder, concurrent", "/s"),
    ("cadence.direct.relay_cpu_us", "relay CPU per request direct (cadence)", "µs"),
    ("cadence.forwarder.relay_cpu_us", "relay CPU per request via gateway (cadence)", "µs"),
    ("send.direct.relay_cpu_us", "relay CPU per request direct (send)", "µs"),
    ("send.forwarder.relay_cpu_us", "relay CPU per request via gateway (send)", "µs"),
    ("cadence.direct.client_cpu_us", "client CPU per request direct (cadence)", "µs"),
    ("cadence.forwarder.client_cpu_us", "client CPU per request sealed (cadence)", "µs"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Forwarder benchmark (see the module docstring).")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--serve-relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_relay is not None:
        serve_relay(args.serve_relay, args.data)
        return
    base = Settings.quick() if args.quick else Settings()
    settings = Settings(
        requests=args.requests or base.requests,
        runs=args.runs or base.runs,
        concurrency=args.concurrency or base.concurrency,
    )
    workdir = Path(tempfile.mkdtemp(prefix="sotto-forwarder-bench-"))
    try:
        runs = [one_run(settings, workdir) for _ in range(settings.runs)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    relay_core, load_core = cores()
    print(
        f"{len(runs)} run(s) of {settings.requests} requests each, median shown; relay on core {relay_core}, "
        f"forwarder and load generator on core {load_core}"
    )
    width = max(len(label) for _, label, _ in ROWS) + 2
    print(
        f"{'figure':<{width}}"
        + "".join(f"{'run ' + str(i + 1):>10}" for i in range(len(runs)))
        + f"{'median':>10}"
    )
    for key, label, unit in ROWS:
        values = [run[key] for run in runs]
        cells = "".join(f"{v:>10.2f}" if unit == "ms" else f"{v:>10.0f}" for v in values)
        median = statistics.median(values)
        print(f"{label:<{width}}{cells}{(f'{median:.2f}' if unit == 'ms' else f'{median:.0f}'):>10} {unit}")


if __name__ == "__main__":
    main()
