"""Settings of one relay process, with the defaults ``sotto server`` runs with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sotto.wire.api import DEFAULT_CADENCE_TICK_SECONDS, MAX_CADENCE_TICK_SECONDS
from sotto.wire.limits import DEFAULT_ENVELOPE_TTL_DAYS

MIB = 1024 * 1024

MAX_WORK_BITS = 40
"""A relay asks for at most this much work (about 10^12 hashes): more would lock everyone out."""

MAX_CHECKPOINT_INTERVAL_SECONDS = 4.0
"""Deleted means gone within 5 s: the log is truncated at least this often while written."""

SHARED_STATE_SCHEMES = ("redis://", "rediss://", "unix://")
"""What ``--shared-state`` accepts (one relay process needs none)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, then ``per_second`` on average."""

    burst: float
    per_second: float


@dataclass(frozen=True, slots=True)
class RateLimits:
    """In-memory limits (never persisted), keyed by what is asked for and by who asks.

    "Per source" means per client network (an IPv4 address, an IPv6 /64), read from the socket
    and held only as a keyed hash in memory (``ratelimit.source_key``): one source flooding an
    anonymous call uses up its own budget, never another's.
    """

    account_creation: RateLimit = RateLimit(burst=200, per_second=2)
    """Account creations per source."""
    mailbox_creation: RateLimit = RateLimit(burst=2_000, per_second=50)
    """Anonymous mailbox creations per source."""
    username_lookup: RateLimit = RateLimit(burst=100, per_second=1)
    """Username lookups per source: slows enumeration of the name space."""
    username_lookup_per_name: RateLimit = RateLimit(burst=10, per_second=1 / 60)
    """Lookups of one name by one source."""
    username_claim: RateLimit = RateLimit(burst=20, per_second=1 / 10)
    """Username claims (``PUT /v1/accounts/me/username``) per account and, apart, per source:
    a refused claim says the name is taken, so claims are probes like lookups."""
    bundle_fetch: RateLimit = RateLimit(burst=6, per_second=1 / 600)
    """Prekey bundle fetches per (target account, access token), as Signal-Server's PRE_KEYS;
    counted only for tokens the account holds, so strangers cannot fill the table."""
    bundle_fetch_per_account: RateLimit = RateLimit(burst=60, per_second=1 / 60)
    """All fetches of one account's bundle, whatever the token: bounds prekey depletion."""
    anonymous_failures: RateLimit = RateLimit(burst=200, per_second=20)
    """Refused anonymous credentials (a wrong access or delivery token, a wrong mailbox
    signature) per source; once used up, that source's anonymous calls get 429 before any
    storage lookup."""
    poll_per_mailbox: RateLimit = RateLimit(burst=60, per_second=5)
    """Cadence-mode polls of one mailbox (each may answer 512 KiB): a poll per tick is far below."""
    ws_frames: RateLimit = RateLimit(burst=4_000, per_second=2_000)
    """Frames per WebSocket connection; beyond it the connection is closed with 4429."""
    forwarded: RateLimit = RateLimit(burst=20_000, per_second=1_000)
    """Requests through the gateway (``POST /v1/gateway``) per forwarder, counted by the
    forwarder's own network before anything is opened; beyond it, 429 to the forwarder."""


@dataclass(frozen=True, slots=True)
class WorkPolicy:
    """Proof of work for anonymous creations (relay-protocol §8), adaptive and counted apart for
    accounts and mailboxes: none while the relay-wide rate of one kind stays at or below its
    free rate, then ``base_bits`` and one bit more per doubling of the rate above it, up to
    ``max_bits``.

    The rate is an exponentially decaying count of the creations of about the last
    ``window_seconds`` (held in memory only), so a burst raises it at once and a quiet spell
    brings it back down."""

    free_per_minute: float = 30.0
    """Account creations per minute, relay-wide, that cost no work (also a burst of
    ``free_per_minute × window_seconds / 60`` at once)."""
    mailbox_free_per_minute: float = 600.0
    """Anonymous mailbox creations per minute, relay-wide, that cost no work: every contact,
    invite and rotation makes one, so far more of them than of accounts."""
    window_seconds: float = 300.0
    """The time constant of the rate's decay."""
    base_bits: int = 12
    """Difficulty just above the free rate: about 4,000 SHA-256 hashes, a few milliseconds."""
    max_bits: int = 22
    """Difficulty at most: about 4 million hashes, seconds in Python (``bench/pow.py``)."""
    challenge_seconds: float = 120.0
    """How long a challenge may be answered after it was issued."""
    max_spent: int = 100_000
    """Answered challenges remembered (each until its validity ends); when all are still
    valid, further answers get 429 until one expires."""

    def __post_init__(self) -> None:
        rates = (
            self.free_per_minute,
            self.mailbox_free_per_minute,
            self.window_seconds,
            self.challenge_seconds,
        )
        if not min(rates) > 0:
            raise ValueError("the free rates, the window and the challenge's life must be positive")
        if not 1 <= self.base_bits <= self.max_bits <= MAX_WORK_BITS:
            raise ValueError(f"work bits must satisfy 1 <= base <= max <= {MAX_WORK_BITS}")
        if self.max_spent < 1:
            raise ValueError("max_spent must be positive")


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one mailbox and one account may hold, and the free disk the relay keeps
    (relay-protocol §7). A refusal is a 507 (``send_failed`` on a WebSocket) with its own code,
    before anything is written."""

    mailbox_envelopes: int = 10_000
    """Pending envelopes in one mailbox; beyond it sends get ``mailbox_full`` until it drains."""
    mailbox_bytes: int = 64 * 1024 * 1024
    """Pending payload bytes in one mailbox (``mailbox_full`` too)."""
    account_access_tokens: int = 1_000
    """Access tokens held by one account (``quota_exceeded``)."""
    device_one_time_pre_keys: int = 1_000
    """One-time EC prekeys held for one device (``quota_exceeded``, the whole upload refused)."""
    device_kyber_pre_keys: int = 1_000
    """One-time Kyber prekeys held for one device (``quota_exceeded``)."""
    min_free_disk_bytes: int = 256 * 1024 * 1024
    """Below this much free space on the data directory's filesystem, sends, account and mailbox
    creations, key and token uploads are refused (``relay_full``); acknowledgements and deletes
    go on, and free space."""

    def __post_init__(self) -> None:
        counts = (
            self.mailbox_envelopes,
            self.mailbox_bytes,
            self.account_access_tokens,
            self.device_one_time_pre_keys,
            self.device_kyber_pre_keys,
        )
        if min(counts) < 1 or self.min_free_disk_bytes < 0:
            raise ValueError("quotas must be positive (the disk floor may be 0)")


STORE_SCHEMES = ("postgresql://", "postgres://")
"""What ``--store`` accepts (SQLite, the default, needs no URL)."""
BUS_SCHEMES = ("nats://", "tls://", "redis://", "rediss://")
"""What ``--bus`` accepts (a relay that is one process needs none)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8787
    max_body_bytes: int = 256 * 1024
    """HTTP bodies larger than this are refused (413) before any parsing."""
    envelope_ttl_days: int = DEFAULT_ENVELOPE_TTL_DAYS
    sweep_interval_seconds: float = 3_600.0
    """How often expired envelopes, mailboxes and access tokens are deleted."""
    stats_interval_seconds: float = 3_600.0
    """How often the counters are written to the log (counts only)."""
    ws_idle_seconds: float = 600.0
    """A connection that sends no frame for this long is closed with 4408."""
    ws_max_inflight_sends: int = 256
    """Sends on one connection awaiting their commit before the server stops reading more."""
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_connections: int | None = None
    """Open connections (HTTP and WebSocket together) beyond which a new one is closed at once.
    None: derived at start from the process's file descriptor limit, leaving room for the
    listen backlog and the relay's own files, so descriptors never run out."""
    header_timeout_seconds: float = 10.0
    """A connection must send a request's complete headers within this long of connecting (or
    of its previous answer), or it is closed: slow-header clients hold nothing for long."""
    body_timeout_seconds: float = 30.0
    """A request body must arrive whole within this long of its headers (408 otherwise)."""
    keep_alive_seconds: float = 10.0
    """An idle HTTP keep-alive connection is closed after this long."""
    write_stall_seconds: float = 30.0
    """A connection whose send buffer stays full this long (a client that does not read) is
    closed, so what it pinned is freed."""
    poll_reply_max_bytes: int = 512 * 1024
    """Payload bytes one cadence-mode poll answer holds at most (at least one envelope);
    ``more`` says the rest waits for the next poll."""
    max_held_polls: int = 10_000
    """Long polls (``wait_ms``) the relay holds at once, one per mailbox; beyond, a 503
    ``polls_busy`` with Retry-After. Each held poll is one open connection (from its client, or
    from the forwarder it came through)."""
    quotas: Quotas = field(default_factory=Quotas)
    work: WorkPolicy = field(default_factory=WorkPolicy)
    checkpoint_interval_seconds: float = 2.0
    """How often, at most, the write-ahead log is copied into the database and truncated while
    there are writes: a deleted envelope's bytes leave every file within this (plus the commit)."""
    store: str | None = None
    """A ``postgresql://`` URL: keep everything in that PostgreSQL database, which several relay
    nodes may share (``docs/data-held.md``, *On PostgreSQL*). None: SQLite in ``data_dir``. The
    server key stays in ``data_dir`` either way: nodes sharing a database need the same one."""
    bus: str | None = None
    """A ``nats://`` or ``redis://`` URL: ring the other relay nodes sharing ``store`` over that
    message bus after each commit (``docs/scaling.md``). None: live delivery within this process
    only, right for one node."""
    cadence_tick_seconds: int = DEFAULT_CADENCE_TICK_SECONDS
    """The tick of cadence mode (relay-protocol §6), announced at ``GET /v1/cadence``. ``sotto
    server`` accepts 10 to 3,600 seconds; shorter ticks (down to 1 s) are for tests."""

    forwarded_scale: float = 100.0
    """Requests through the gateway carry no client address, so every budget "per source" of
    ``rate_limits`` counts them by the forwarder they came through, with this many times the
    limit of one direct source: one forwarder's clients share that budget (the forwarder applies
    per-client limits of its own), and neither direct clients nor another forwarder share it."""
    gateway: bool = True
    """Serve the Oblivious HTTP gateway (``/v1/gateway``, docs/ohttp.md) beside the relay's own
    paths, so clients can reach it through a forwarder without giving it their address. It costs
    nothing while no forwarder uses it (its key is derived from ``server.key``)."""
    shared_state: str | None = None
    """A ``redis://`` URL: keep the rate limits, the proof-of-work counts and the single-use sets
    (signed requests' nonces, answered challenges, the gateway's replay window) in that Redis,
    which every relay node sharing ``store`` uses, so they hold across nodes
    (``sotto.server.shared_state``). None: in this process, right for one node."""

    def __post_init__(self) -> None:
        if self.store is not None and not self.store.startswith(STORE_SCHEMES):
            raise ValueError("store must be a postgresql:// URL")
        if self.bus is not None and not self.bus.startswith(BUS_SCHEMES):
            raise ValueError("bus must be a nats:// or redis:// URL")
        if not self.forwarded_scale >= 1:
            raise ValueError("forwarded_scale must be at least 1: a forwarder carries many clients")
        if not 1 <= self.cadence_tick_seconds <= MAX_CADENCE_TICK_SECONDS:
            raise ValueError(f"cadence_tick_seconds must be 1 to {MAX_CADENCE_TICK_SECONDS}")
        if not 0 < self.checkpoint_interval_seconds <= MAX_CHECKPOINT_INTERVAL_SECONDS:
            raise ValueError(
                f"checkpoint_interval_seconds must be above 0, at most {MAX_CHECKPOINT_INTERVAL_SECONDS}"
            )
        if self.shared_state is not None and not self.shared_state.startswith(SHARED_STATE_SCHEMES):
            raise ValueError("shared_state must be a redis:// URL")


def storage_settings(options: object) -> dict[str, Any]:
    """:class:`ServerConfig` fields from the command-line options of ``sotto server`` and
    ``python -m sotto.server`` (attributes ``mailbox_quota``, ``mailbox_quota_mib``,
    ``token_quota``, ``prekey_quota``, ``min_free_disk_mib``, ``checkpoint_interval``, and
    optionally ``store``, ``free_signups_per_minute``, ``free_mailboxes_per_minute``, ``max_work_bits``,
    ``gateway``, ``forwarder_burst``, ``forwarder_per_second``, ``bus`` and ``stats_interval``)."""

    def get(name: str) -> Any:
        return getattr(options, name)

    work = WorkPolicy()
    free = getattr(options, "free_signups_per_minute", None)
    free_mailboxes = getattr(options, "free_mailboxes_per_minute", None)
    top = getattr(options, "max_work_bits", None)
    if free is not None or free_mailboxes is not None or top is not None:
        top = work.max_bits if top is None else top
        work = WorkPolicy(
            free_per_minute=work.free_per_minute if free is None else free,
            mailbox_free_per_minute=work.mailbox_free_per_minute
            if free_mailboxes is None
            else free_mailboxes,
            base_bits=min(work.base_bits, top),
            max_bits=top,
        )
    settings: dict[str, Any] = {}
    if getattr(options, "store", None) is not None:
        settings["store"] = options.store  # type: ignore[attr-defined]
    if getattr(options, "bus", None) is not None:
        settings["bus"] = options.bus  # type: ignore[attr-defined]
    if getattr(options, "stats_interval", None) is not None:
        settings["stats_interval_seconds"] = float(options.stats_interval)  # type: ignore[attr-defined]
    if getattr(options, "gateway", None) is not None:
        settings["gateway"] = bool(options.gateway)  # type: ignore[attr-defined]
    burst = getattr(options, "forwarder_burst", None)
    rate = getattr(options, "forwarder_per_second", None)
    if burst is not None or rate is not None:
        default = RateLimits().forwarded
        forwarded = RateLimit(
            burst=default.burst if burst is None else burst,
            per_second=default.per_second if rate is None else rate,
        )
        settings["rate_limits"] = RateLimits(forwarded=forwarded)
    if getattr(options, "shared_state", None) is not None:
        settings["shared_state"] = options.shared_state  # type: ignore[attr-defined]
    return settings | {
        "work": work,
        "quotas": Quotas(
            mailbox_envelopes=get("mailbox_quota"),
            mailbox_bytes=get("mailbox_quota_mib") * MIB,
            account_access_tokens=get("token_quota"),
            device_one_time_pre_keys=get("prekey_quota"),
            device_kyber_pre_keys=get("prekey_quota"),
            min_free_disk_bytes=get("min_free_disk_mib") * MIB,
        ),
        "checkpoint_interval_seconds": get("checkpoint_interval"),
    }
