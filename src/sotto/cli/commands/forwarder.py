"""``sotto forwarder``: run a forwarder in the foreground (the same as ``python -m sotto.forwarder``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.text import Text

from sotto.cli import render
from sotto.cli.commands.server import check_free, is_loopback
from sotto.cli.failures import ExitCode, Where, fail, reported

__all__ = ["forwarder"]


def forwarder(
    *,
    relay: Annotated[
        str,
        typer.Option(
            "--relay",
            "-r",
            help="The relay whose gateway gets every request (http(s)://host:port).",
            show_default=False,
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="Port to listen on.")] = 8788,
    burst: Annotated[float, typer.Option(min=1, help="Requests at once per client network.")] = 600,
    per_second: Annotated[
        float, typer.Option(min=0.001, help="Requests a second per client network, on average.")
    ] = 20,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Connections to the relay, shared by all.")
    ] = 16,
) -> None:
    """Carry clients' sealed requests to a relay, which then never sees their addresses (docs/ohttp.md)."""
    parts = urlsplit(relay)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(
            f"--relay {relay!r} is not an http(s) URL",
            hint="e.g. --relay http://127.0.0.1:8787",
            code=ExitCode.USAGE,
        )
    with reported(Where(Path.cwd(), relay)):
        check_free(host, port)
        from sotto.forwarder.__main__ import serve  # noqa: PLC0415 (uvicorn loads for this command only)
        from sotto.forwarder.app import ForwarderConfig  # noqa: PLC0415
        from sotto.server.config import RateLimit  # noqa: PLC0415

        config = ForwarderConfig(
            relay_url=relay.rstrip("/"),
            per_source=RateLimit(burst=burst, per_second=per_second),
            max_connections=max_connections,
        )
        url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        render.err.print(Text.assemble("Sotto forwarder on ", (url, "bold"), f" → {relay} · Ctrl-C to stop"))
        render.dim(f"  clients: sotto init --server {relay} --forwarder {url}")
        if not is_loopback(host):
            render.warn("listening beyond this machine: put it behind TLS (a reverse proxy) before real use")
        with contextlib.suppress(KeyboardInterrupt):
            serve(config, host, port)
        render.err.print("forwarder stopped")
