"""What every request handler needs, built once per app: storage, fan-out, clock, limits, the
proof-of-work gate, counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from sotto.crypto.random import Rng, system_rng
from sotto.server.auth import ReplayGuard
from sotto.server.challenge import CHALLENGE_KEY_INFO, WorkGate
from sotto.server.clock import Clock, SystemClock, day_of
from sotto.server.config import RateLimit, RateLimits, ServerConfig
from sotto.server.fanout import Fanout
from sotto.server.logging import Stats
from sotto.server.ratelimit import RateLimiter
from sotto.server.server_key import ServerKey
from sotto.server.storage.base import Storage


@dataclass(slots=True)
class Limiters:
    account_creation: RateLimiter
    mailbox_creation: RateLimiter
    username_lookup: RateLimiter
    username_lookup_per_name: RateLimiter
    bundle_fetch: RateLimiter
    bundle_fetch_per_account: RateLimiter
    username_claim: RateLimiter
    username_claim_per_source: RateLimiter
    anonymous_failures: RateLimiter
    poll_per_mailbox: RateLimiter

    @classmethod
    def from_config(cls, limits: RateLimits, forwarded_scale: float = 1.0) -> Limiters:
        """Limiters with ``limits``; a budget per source grows by ``forwarded_scale`` for a
        source that is a forwarder (``ratelimit.ForwarderSource``)."""

        def limiter(limit: RateLimit) -> RateLimiter:
            return RateLimiter(limit, forwarded_scale=forwarded_scale)

        return cls(
            account_creation=limiter(limits.account_creation),
            mailbox_creation=limiter(limits.mailbox_creation),
            username_lookup=limiter(limits.username_lookup),
            username_lookup_per_name=limiter(limits.username_lookup_per_name),
            bundle_fetch=limiter(limits.bundle_fetch),
            bundle_fetch_per_account=limiter(limits.bundle_fetch_per_account),
            username_claim=limiter(limits.username_claim),
            username_claim_per_source=limiter(limits.username_claim),
            anonymous_failures=limiter(limits.anonymous_failures),
            poll_per_mailbox=limiter(limits.poll_per_mailbox),
        )


@dataclass(slots=True)
class RelayContext:
    config: ServerConfig
    storage: Storage
    fanout: Fanout
    server_key: ServerKey
    clock: Clock = field(default_factory=SystemClock)
    rng: Rng = system_rng
    stats: Stats = field(default_factory=Stats)
    limiters: Limiters | None = None
    replay_guard: ReplayGuard = field(init=False)
    """Signed HTTP requests seen in the window; it refuses times before this process started."""
    work_gate: WorkGate = field(init=False)
    """The proof of work asked for anonymous creations, and the challenges answered lately."""

    def __post_init__(self) -> None:
        if self.limiters is None:
            self.limiters = Limiters.from_config(self.config.rate_limits, self.config.forwarded_scale)
        self.replay_guard = ReplayGuard(self.clock.now())
        self.work_gate = self.new_work_gate()

    def new_work_gate(self) -> WorkGate:
        """A gate with nothing counted or spent, refusing challenges issued before now."""
        return WorkGate(self.config.work, self.server_key.derive(CHALLENGE_KEY_INFO), self.clock.now())

    @property
    def limits(self) -> Limiters:
        assert self.limiters is not None
        return self.limiters

    def now(self) -> float:
        return self.clock.now()

    def today(self) -> int:
        return day_of(self.clock.now())
