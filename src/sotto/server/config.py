"""Settings of one relay process, with the defaults ``sotto server`` runs with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sotto.wire.api import DEFAULT_CADENCE_TICK_SECONDS, MAX_CADENCE_TICK_SECONDS
from sotto.wire.limits import DEFAULT_ENVELOPE_TTL_DAYS


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, then ``per_second`` on average."""

    burst: float
    per_second: float


@dataclass(frozen=True, slots=True)
class RateLimits:
    """In-memory limits (never persisted), keyed by what is asked for, never by who asks.

    The relay does not read client addresses, so anonymous calls share one bucket per target.
    """

    account_creation: RateLimit = RateLimit(burst=200, per_second=10)
    """All account creations together."""
    mailbox_creation: RateLimit = RateLimit(burst=2_000, per_second=100)
    """All anonymous mailbox creations together."""
    username_lookup: RateLimit = RateLimit(burst=100, per_second=5)
    """All username lookups together: slows enumeration of the name space."""
    username_lookup_per_name: RateLimit = RateLimit(burst=10, per_second=1 / 60)
    """Lookups of one name."""
    bundle_fetch: RateLimit = RateLimit(burst=6, per_second=1 / 600)
    """Prekey bundle fetches per (target account, access token), as Signal-Server's PRE_KEYS."""
    bundle_fetch_per_account: RateLimit = RateLimit(burst=60, per_second=1 / 60)
    """All fetches of one account's bundle, whatever the token: bounds prekey depletion."""
    ws_frames: RateLimit = RateLimit(burst=4_000, per_second=2_000)
    """Frames per WebSocket connection; beyond it the connection is closed with 4429."""


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
    cadence_tick_seconds: int = DEFAULT_CADENCE_TICK_SECONDS
    """The tick of cadence mode (relay-protocol §6), announced at ``GET /v1/cadence``. ``sotto
    server`` accepts 10 to 3,600 seconds; shorter ticks (down to 1 s) are for tests."""

    def __post_init__(self) -> None:
        if not 1 <= self.cadence_tick_seconds <= MAX_CADENCE_TICK_SECONDS:
            raise ValueError(f"cadence_tick_seconds must be 1 to {MAX_CADENCE_TICK_SECONDS}")
