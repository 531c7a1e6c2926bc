"""``python -m tests.forwarder.gateway_relay``: the relay as ``python -m sotto.server`` runs it
(:func:`sotto.server.runner.uvicorn_config`, :class:`~sotto.server.runner.RelayServer`), with the
Oblivious HTTP gateway mounted in front and a cadence tick short enough for a test."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

from starlette.types import ASGIApp

from sotto.server.config import ServerConfig
from sotto.server.gateway import load_gateway_key, with_gateway
from sotto.server.observer import FileSink, Observer
from sotto.server.runner import RelayServer, raise_fd_limit, uvicorn_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--record-view", type=Path, default=None)
    parser.add_argument("--tick", type=int, default=1)
    args = parser.parse_args()
    raise_fd_limit()
    config = ServerConfig(
        data_dir=args.data, host="127.0.0.1", port=args.port, cadence_tick_seconds=args.tick
    )
    observer = None
    if args.record_view is not None:
        observer = Observer(FileSink(args.record_view), keep_alive_seconds=config.keep_alive_seconds)
    settings = uvicorn_config(config, observer=observer)
    relay_app = cast(ASGIApp, settings.app)  # create_app's, as uvicorn_config made it
    settings.app = with_gateway(relay_app, load_gateway_key(config.data_dir), observer=observer)
    RelayServer(settings).run()


if __name__ == "__main__":
    main()
