"""``sotto server``: run the relay in the foreground (the same as ``python -m sotto.server``)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import typer
from rich.text import Text

from sotto.cli import render
from sotto.cli.failures import ExitCode, Where, fail, reported
from sotto.wire.api import (
    DEFAULT_CADENCE_TICK_SECONDS,
    MAX_CADENCE_TICK_SECONDS,
    MIN_CADENCE_TICK_SECONDS,
)


def server(
    *,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="Port to listen on.")] = 8787,
    data: Annotated[
        Path, typer.Option(file_okay=False, help="Data directory (SQLite database and server key).")
    ] = Path("./data"),
    store: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="A postgresql:// URL: keep the data in that PostgreSQL database, which several relays "
            "may share (each with the same server.key in --data). Default: SQLite in --data.",
        ),
    ] = None,
    bus: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="A nats:// or redis:// URL: tell the other relays sharing --store, over that message "
            "bus, when a mailbox has something new (docs/scaling.md). Default: this process only.",
        ),
    ] = None,
    cadence_tick: Annotated[
        int,
        typer.Option(
            min=MIN_CADENCE_TICK_SECONDS,
            max=MAX_CADENCE_TICK_SECONDS,
            help="Seconds per tick for clients in cadence mode (`--cadence`).",
        ),
    ] = DEFAULT_CADENCE_TICK_SECONDS,
    mailbox_quota: Annotated[
        int, typer.Option(min=1, help="Pending envelopes one mailbox may hold (then 507 mailbox_full).")
    ] = 10_000,
    mailbox_quota_mib: Annotated[int, typer.Option(min=1, help="Pending MiB one mailbox may hold.")] = 64,
    token_quota: Annotated[int, typer.Option(min=1, help="Access tokens one account may hold.")] = 1_000,
    prekey_quota: Annotated[
        int, typer.Option(min=1, help="One-time prekeys of each kind one device may hold.")
    ] = 1_000,
    min_free_disk_mib: Annotated[
        int, typer.Option(min=0, help="Below this free space, writes that grow the data are refused (507).")
    ] = 256,
    checkpoint_interval: Annotated[
        float,
        typer.Option(
            min=0.1, max=4.0, help="Seconds: a deleted envelope is in no file of the data directory after it."
        ),
    ] = 2.0,
    free_signups_per_minute: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Relay-wide account creations per minute that cost no proof of work; above it, "
            "creations must solve a challenge whose difficulty grows with the rate.",
        ),
    ] = 30.0,
    free_mailboxes_per_minute: Annotated[
        float,
        typer.Option(min=0.001, help="Relay-wide mailbox creations per minute that cost no proof of work."),
    ] = 600.0,
    max_work_bits: Annotated[
        int, typer.Option(min=1, max=40, help="The most proof of work asked for one creation, in bits.")
    ] = 22,
    gateway: Annotated[
        bool,
        typer.Option(
            "--gateway/--no-gateway",
            help="Serve the Oblivious HTTP gateway, so clients can come through a forwarder "
            "(`sotto forwarder`) without giving their address (docs/ohttp.md).",
        ),
    ] = True,
    forwarder_burst: Annotated[
        float, typer.Option(min=1, help="Requests each forwarder may send through the gateway at once.")
    ] = 20_000,
    forwarder_per_second: Annotated[
        float, typer.Option(min=0.001, help="Requests a second each forwarder may send, on average.")
    ] = 1_000,
    per_address: Annotated[
        int,
        typer.Option(
            min=0,
            help="Connections one client address may hold at once; the next is refused (503). 0: no "
            "limit, for a relay behind a reverse proxy, where every client comes from the proxy's address.",
        ),
    ] = 64,
    shared_state: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="A redis:// URL: keep rate limits, proof-of-work counts and single-use nonces in that "
            "Redis, shared by every relay on the same --store (docs/scaling.md). Default: this process.",
        ),
    ] = None,
    record_view: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Append every request and frame the relay sees, client addresses included, to this "
            "file (JSON lines, docs/operator-view.md): what any operator could log. Off by default.",
        ),
    ] = None,
) -> None:
    """Run a relay on SQLite (or PostgreSQL, --store) until Ctrl-C. It keeps no IP addresses, senders
    or plaintext."""
    if store is not None and not store.startswith(("postgresql://", "postgres://")):
        fail("--store must be a postgresql:// URL", hint="e.g. postgresql://relay@127.0.0.1/sotto")
    if bus is not None and not bus.startswith(("nats://", "tls://", "redis://", "rediss://")):
        fail("--bus must be a nats:// or redis:// URL", hint="e.g. nats://127.0.0.1:4222")
    if shared_state is not None and not shared_state.startswith(("redis://", "rediss://", "unix://")):
        fail("--shared-state must be a redis:// URL", hint="e.g. redis://127.0.0.1:6379")
    with reported(Where(data)):
        check_free(host, port)
        from sotto.server.config import storage_settings  # noqa: PLC0415
        from sotto.server.runner import run  # noqa: PLC0415 (uvicorn and FastAPI load for this command only)

        url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        render.err.print(
            Text.assemble(
                "Sotto relay on ",
                (url, "bold"),
                f" · data in {data}" if store is None else f" · data in PostgreSQL, server key in {data}",
                " · Ctrl-C to stop",
            )
        )
        if record_view is not None:
            render.warn(f"recording the operator's view, client addresses included, to {record_view}")
        if not is_loopback(host):
            render.warn("listening beyond this machine: put it behind TLS (a reverse proxy) before real use")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a foreground relay stops
            run(
                host=host,
                port=port,
                data_dir=data,
                cadence_tick_seconds=cadence_tick,
                settings=storage_settings(SimpleNamespace(**locals())),
                record_view=record_view,
                per_source=per_address or None,
            )
        render.err.print("relay stopped")


def check_free(host: str, port: int) -> None:
    """Fail with a clear message now rather than through uvicorn's log if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            fail(
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                hint="is another `sotto server` running? Choose another --port, or stop it",
                code=ExitCode.ERROR,
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
