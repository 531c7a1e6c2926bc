"""``python -m sotto.server --host 127.0.0.1 --port 8787 --data ./data``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sotto.server.config import MIB, Quotas, storage_settings
from sotto.server.runner import run


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """The quotas and the checkpoint interval, as ``sotto server`` offers them."""
    q = Quotas()
    parser.add_argument(
        "--mailbox-quota", type=int, default=q.mailbox_envelopes, help="envelopes per mailbox"
    )
    parser.add_argument(
        "--mailbox-quota-mib", type=int, default=q.mailbox_bytes // MIB, help="pending MiB per mailbox"
    )
    parser.add_argument(
        "--token-quota", type=int, default=q.account_access_tokens, help="access tokens per account"
    )
    parser.add_argument(
        "--prekey-quota",
        type=int,
        default=q.device_one_time_pre_keys,
        help="prekeys per kind",
    )
    parser.add_argument(
        "--min-free-disk-mib", type=int, default=q.min_free_disk_bytes // MIB, help="refuse writes below this"
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=2.0,
        help="seconds (max 4)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sotto.server", description="Run the Sotto relay.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    parser.add_argument("--data", type=Path, default=Path("./data"), help="data directory (default ./data)")
    add_storage_options(parser)
    parser.add_argument(
        "--record-view",
        type=Path,
        default=None,
        metavar="PATH",
        help="append every request and frame the relay sees, with client addresses, to PATH "
        "(JSON lines; docs/operator-view.md). Off by default.",
    )
    args = parser.parse_args(argv)
    run(
        host=args.host,
        port=args.port,
        data_dir=args.data,
        settings=storage_settings(args),
        record_view=args.record_view,
    )


if __name__ == "__main__":
    main()
