"""``python -m sotto.forwarder --relay URL --host 127.0.0.1 --port 8788``.

uvicorn serves it with the relay's own precautions: no access log, proxy headers not trusted
(``X-Forwarded-For`` would let a client name someone else's address), no ``server`` header,
every log line without traceback and with addresses scrubbed (:mod:`sotto.server.logging`).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from sotto.forwarder.app import LOGGER_NAME, ForwarderConfig, create_forwarder_app
from sotto.server.config import RateLimit
from sotto.server.logging import uvicorn_log_config

__all__ = ["log_config", "main", "serve"]


def log_config() -> dict[str, Any]:
    """The relay's logging settings, with the forwarder's own logger added."""
    config = uvicorn_log_config()
    config["loggers"][LOGGER_NAME] = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
    return config


def serve(config: ForwarderConfig, host: str, port: int) -> None:
    """Serve ``config`` on ``host``:``port`` until interrupted."""
    uvicorn.run(
        create_forwarder_app(config),
        host=host,
        port=port,
        access_log=False,
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        log_config=log_config(),
        ws="none",
        lifespan="on",
        h11_max_incomplete_event_size=16 * 1024,
    )


def main(argv: list[str] | None = None) -> None:
    defaults = ForwarderConfig(relay_url="")
    parser = argparse.ArgumentParser(
        prog="python -m sotto.forwarder",
        description="Carry sealed requests (Oblivious HTTP) from clients to one Sotto relay.",
    )
    parser.add_argument("--relay", required=True, metavar="URL", help="the relay (http(s)://host:port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8788, help="port (default 8788)")
    parser.add_argument(
        "--max-connections", type=int, default=defaults.max_connections, help="connections to the relay"
    )
    parser.add_argument(
        "--burst", type=float, default=defaults.per_source.burst, help="requests at once per client network"
    )
    parser.add_argument(
        "--per-second",
        type=float,
        default=defaults.per_source.per_second,
        help="requests a second per client network, on average",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=defaults.max_in_flight, help="requests held at once, in all"
    )
    parser.add_argument(
        "--max-held",
        type=int,
        default=defaults.max_held,
        help="long polls carried at once, each a connection to the relay (which must admit that "
        "many from this address besides --max-connections: sotto server --per-address)",
    )
    args = parser.parse_args(argv)
    config = ForwarderConfig(
        relay_url=args.relay,
        per_source=RateLimit(burst=args.burst, per_second=args.per_second),
        max_connections=args.max_connections,
        max_in_flight=args.max_in_flight,
        max_held=args.max_held,
        max_held_per_source=min(defaults.max_held_per_source, args.max_held),
    )
    serve(config, args.host, args.port)


if __name__ == "__main__":
    main()
