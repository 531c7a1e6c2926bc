"""``python -m sotto.server --host 127.0.0.1 --port 8787 --data ./data``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sotto.server.config import (
    BUS_SCHEMES,
    MAX_WORK_BITS,
    MIB,
    SHARED_STATE_SCHEMES,
    STORE_SCHEMES,
    Quotas,
    RateLimits,
    WorkPolicy,
    storage_settings,
)
from sotto.server.runner import run
from sotto.wire.api import DEFAULT_CADENCE_TICK_SECONDS, MAX_CADENCE_TICK_SECONDS


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
    add_work_options(parser)


def add_work_options(parser: argparse.ArgumentParser) -> None:
    """The proof of work asked for account and mailbox creations (relay-protocol §8)."""
    w = WorkPolicy()
    parser.add_argument(
        "--free-signups-per-minute",
        type=_positive,
        default=w.free_per_minute,
        help="relay-wide account creations per minute that cost no proof of work",
    )
    parser.add_argument(
        "--free-mailboxes-per-minute",
        type=_positive,
        default=w.mailbox_free_per_minute,
        help="relay-wide mailbox creations per minute that cost no proof of work",
    )
    parser.add_argument(
        "--max-work-bits",
        type=int,
        choices=range(1, MAX_WORK_BITS + 1),
        metavar=f"1..{MAX_WORK_BITS}",
        default=w.max_bits,
        help="the most proof of work asked for one creation, in bits",
    )


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    """The Oblivious HTTP gateway (docs/ohttp.md): on unless turned off, with its own budget per
    forwarder."""
    limits = RateLimits()
    parser.add_argument(
        "--no-gateway",
        dest="gateway",
        action="store_false",
        help="do not serve /v1/gateway (requests through a forwarder are then refused)",
    )
    parser.add_argument(
        "--forwarder-burst",
        type=_positive,
        default=limits.forwarded.burst,
        help="requests each forwarder may send through the gateway at once (its sustained rate: "
        "--forwarder-per-second)",
    )
    parser.add_argument(
        "--forwarder-per-second",
        type=_positive,
        default=limits.forwarded.per_second,
        help="the sustained rate of requests allowed from each forwarder",
    )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sotto.server", description="Run the Sotto relay.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    parser.add_argument("--data", type=Path, default=Path("./data"), help="data directory (default ./data)")
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="a postgresql:// URL: keep the data in that database, which several relays may share "
        "(each with the same server.key in --data); default: SQLite in --data",
    )
    parser.add_argument(
        "--bus",
        default=None,
        metavar="URL",
        help="a nats:// or redis:// URL: tell the other relays sharing --store, over that message bus, "
        "when a mailbox has something new (docs/scaling.md); default: this process only",
    )
    parser.add_argument(
        "--stats-interval",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="how often the counters are written to the log (default 3600)",
    )
    add_storage_options(parser)
    parser.add_argument(
        "--record-view",
        type=Path,
        default=None,
        metavar="PATH",
        help="append every request and frame the relay sees, with client addresses, to PATH "
        "(JSON lines; docs/operator-view.md). Off by default.",
    )
    parser.add_argument(
        "--cadence-tick",
        type=int,
        default=DEFAULT_CADENCE_TICK_SECONDS,
        metavar="SECONDS",
        help=f"the tick of cadence mode, 1 to {MAX_CADENCE_TICK_SECONDS} (default "
        f"{DEFAULT_CADENCE_TICK_SECONDS}; `sotto server` allows 10 and up, shorter is for tests)",
    )
    parser.add_argument(
        "--per-address",
        type=int,
        default=64,
        metavar="N",
        help="connections one client address may hold at once, the next refused with 503 (default 64; "
        "0: no limit, for a relay behind a reverse proxy, where every client has the proxy's address)",
    )
    add_gateway_options(parser)
    parser.add_argument(
        "--shared-state",
        default=None,
        metavar="URL",
        help="a redis:// URL: keep rate limits, proof-of-work counts and single-use nonces in that Redis, "
        "shared by every relay on the same --store (docs/scaling.md); default: in this process",
    )
    args = parser.parse_args(argv)
    if args.per_address < 0:
        parser.error("--per-address must be 0 or more")
    if args.store is not None and not args.store.startswith(STORE_SCHEMES):
        parser.error("--store must be a postgresql:// URL")
    if args.bus is not None and not args.bus.startswith(BUS_SCHEMES):
        parser.error("--bus must be a nats:// or redis:// URL")
    if not 1 <= args.cadence_tick <= MAX_CADENCE_TICK_SECONDS:
        parser.error(f"--cadence-tick must be 1 to {MAX_CADENCE_TICK_SECONDS}")
    if args.shared_state is not None and not args.shared_state.startswith(SHARED_STATE_SCHEMES):
        parser.error("--shared-state must be a redis:// URL")
    run(
        host=args.host,
        port=args.port,
        data_dir=args.data,
        cadence_tick_seconds=args.cadence_tick,
        settings=storage_settings(args),
        record_view=args.record_view,
        per_source=args.per_address or None,
    )


if __name__ == "__main__":
    main()
