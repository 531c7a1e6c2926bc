"""What every request handler needs, built once per app: storage, fan-out, clock, limits, the
proof-of-work gate, counters.

The limits, the proof-of-work gate and the replay guard keep their state where
``config.shared_state`` says (:mod:`sotto.server.shared_state`): in this process by default, or
in the Redis every relay node shares, so that they hold across nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from sotto.crypto.random import Rng, system_rng
from sotto.server.auth import REPLAY_GUARD_CAPACITY, ReplayGuard
from sotto.server.challenge import CHALLENGE_KEY_INFO, WorkGate
from sotto.server.clock import Clock, SystemClock, day_of
from sotto.server.config import RateLimit, RateLimits, ServerConfig
from sotto.server.fanout import Fanout
from sotto.server.logging import Stats
from sotto.server.ratelimit import share_source_key
from sotto.server.server_key import ServerKey
from sotto.server.shared_state import (
    SHARED_STATE_KEY_INFO,
    Limiter,
    LocalState,
    SharedState,
    open_shared_state,
)
from sotto.server.storage.base import Storage

SOURCE_KEY_INFO = b"sotto relay source key v1"
"""HKDF ``info`` of the key that hashes client networks when nodes share their limits."""


@dataclass(slots=True)
class Limiters:
    account_creation: Limiter
    mailbox_creation: Limiter
    username_lookup: Limiter
    username_lookup_per_name: Limiter
    bundle_fetch: Limiter
    bundle_fetch_per_account: Limiter
    username_claim: Limiter
    username_claim_per_source: Limiter
    anonymous_failures: Limiter
    poll_per_mailbox: Limiter

    @classmethod
    def from_config(
        cls, limits: RateLimits, forwarded_scale: float = 1.0, shared: SharedState | None = None
    ) -> Limiters:
        """Limiters with ``limits``; a budget per source grows by ``forwarded_scale`` for a
        source that is a forwarder (``ratelimit.ForwarderSource``). ``shared``: where the
        buckets live (this process unless given)."""
        state = shared or LocalState()

        def limiter(name: str, limit: RateLimit) -> Limiter:
            return state.limiter(name, limit, forwarded_scale=forwarded_scale)

        return cls(
            account_creation=limiter("account_creation", limits.account_creation),
            mailbox_creation=limiter("mailbox_creation", limits.mailbox_creation),
            username_lookup=limiter("username_lookup", limits.username_lookup),
            username_lookup_per_name=limiter("username_lookup_per_name", limits.username_lookup_per_name),
            bundle_fetch=limiter("bundle_fetch", limits.bundle_fetch),
            bundle_fetch_per_account=limiter("bundle_fetch_per_account", limits.bundle_fetch_per_account),
            username_claim=limiter("username_claim", limits.username_claim),
            username_claim_per_source=limiter("username_claim_per_source", limits.username_claim),
            anonymous_failures=limiter("anonymous_failures", limits.anonymous_failures),
            poll_per_mailbox=limiter("poll_per_mailbox", limits.poll_per_mailbox),
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
    shared: SharedState | None = None
    """Where the limits, the gate's counts and the single-use sets live; from
    ``config.shared_state`` unless given."""
    replay_guard: ReplayGuard = field(init=False)
    """Signed HTTP requests seen in the window; it refuses times before this process started."""
    work_gate: WorkGate = field(init=False)
    """The proof of work asked for anonymous creations, and the challenges answered lately."""

    _owns_shared: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.shared is None:
            self._owns_shared = True
            secret = self.server_key.derive(SHARED_STATE_KEY_INFO)
            self.shared = open_shared_state(self.config.shared_state, secret)
        if self.shared.shared:
            # Every node must hash a client's network alike, or each would count it apart.
            share_source_key(self.server_key.derive(SOURCE_KEY_INFO))
        if self.limiters is None:
            self.limiters = Limiters.from_config(
                self.config.rate_limits, self.config.forwarded_scale, self.shared
            )
        self.replay_guard = self.new_replay_guard()
        self.work_gate = self.new_work_gate()

    async def start(self) -> None:
        """Date the shared memory from this node's start (one round trip when it is Redis; best
        effort), before the first request is served."""
        await self.replay_guard.abegin()
        await self.work_gate.abegin()

    async def stop(self) -> None:
        """Let go of the shared state's connections, if this context opened it."""
        if self._owns_shared and self.shared is not None:
            await self.shared.aclose()

    def new_replay_guard(self) -> ReplayGuard:
        """A guard refusing times before now, remembering in :attr:`shared`."""
        assert self.shared is not None
        memory = self.shared.single_use("replay", capacity=REPLAY_GUARD_CAPACITY)
        return ReplayGuard(self.clock.now(), memory=memory)

    def new_work_gate(self) -> WorkGate:
        """A gate refusing challenges issued before now, counting and spending in
        :attr:`shared` (with nothing counted or spent when that is this process)."""
        return WorkGate(
            self.config.work, self.server_key.derive(CHALLENGE_KEY_INFO), self.clock.now(), shared=self.shared
        )

    @property
    def limits(self) -> Limiters:
        assert self.limiters is not None
        return self.limiters

    def now(self) -> float:
        return self.clock.now()

    def today(self) -> int:
        return day_of(self.clock.now())
