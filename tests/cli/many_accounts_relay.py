"""``python -m tests.cli.many_accounts_relay --host H --port P --data DIR``: the real relay, as
``python -m sotto.server`` runs it, except that one source may create many accounts (the kill
tests register one per run, all from 127.0.0.1, beyond the default burst of 30)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import uvicorn

from sotto.server.config import RateLimit, RateLimits, ServerConfig
from sotto.server.runner import raise_fd_limit, uvicorn_config

MANY = RateLimit(burst=10_000, per_second=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    limits = dataclasses.replace(RateLimits(), account_creation=MANY)
    config = ServerConfig(data_dir=args.data, host=args.host, port=args.port, rate_limits=limits)
    uvicorn.Server(uvicorn_config(config)).run()


if __name__ == "__main__":
    main()
