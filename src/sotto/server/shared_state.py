"""Protective state that must hold across relay nodes: rate-limit buckets, single-use sets and
decaying counts, behind one small interface (:class:`SharedState`).

Several relay nodes may share one PostgreSQL store; what protects the relay must then be shared
too, or an attacker spreads requests over the nodes (N budgets instead of one) or replays a
signed request to a node that has not seen it. Three kinds of state:

* **buckets** (:meth:`SharedState.limiter`): token buckets by key, the rate limits of
  ``config.RateLimits`` and the gateway's budget per forwarder;
* **single-use sets** (:meth:`SharedState.single_use`): signed requests' ``(mailbox, nonce)``,
  answered proof-of-work challenges, the gateway's digests of Encapsulated Requests, each
  remembered until it can no longer pass its time check;
* **meters** (:meth:`SharedState.meter`): the relay-wide decaying counts of creations that set
  the proof of work asked for.

:class:`LocalState` keeps them in this process (the default: one node, nothing leaves the
process). :class:`RedisState` keeps them in Redis (``--shared-state redis://…``), one atomic
round trip per check: a Lua script per token bucket and meter, ``SET NX PX`` inside a script for
a single use. Every key is ``sotto:{<deployment>}:<kind>:<name>:<hash>``, the hash a keyed
BLAKE2b (16 bytes) of what is counted, under a key derived from the relay's server key, so
Redis holds no address, nonce, id or salt, and each key lives only as long as it matters (a
bucket until it would be full again, a single use until its time check refuses it anyway).

**When Redis cannot be reached**, single uses fail closed: the check raises
:class:`SharedStateUnavailableError` (503 ``shared_state_unavailable``), since letting a replay
through on one node is what sharing is for. Buckets and meters fail open to this process's own
(a node then limits on its own, as with :class:`LocalState`), so an outage does not stop the
relay. Either way an ``error SharedStateUnavailableError`` line is logged (at most one a
minute), and Redis is not tried again for :data:`RETRY_SECONDS`, so an unreachable server costs
each request nothing but the fallback.

Every check is a coroutine. On Redis each is one round trip on a connection from redis-py's
asyncio pool, bounded by :data:`TIMEOUT_SECONDS`, awaited so that the node's event loop serves
other requests while it waits; in process a check returns at once (no task, no thread)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import heapq
import math
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Protocol, TypeVar

from sotto.errors import RelayError
from sotto.server.config import SHARED_STATE_SCHEMES, RateLimit
from sotto.server.logging import logger
from sotto.server.ratelimit import ForwarderSource, RateLimitedError, RateLimiter, RateMeter

__all__ = [
    "SHARED_STATE_KEY_INFO",
    "SHARED_STATE_SCHEMES",
    "Claim",
    "Limiter",
    "LocalSingleUse",
    "LocalState",
    "Meter",
    "RedisState",
    "SharedState",
    "SharedStateUnavailableError",
    "SingleUse",
    "open_shared_state",
]

SHARED_STATE_KEY_INFO: Final = b"sotto relay shared state v1"
"""HKDF ``info`` of the key that hashes every key written to the shared state."""
TIMEOUT_SECONDS: Final = 0.25
"""A round trip to Redis (or a connection) that takes longer counts as an outage."""
MAX_CONNECTIONS: Final = 64
"""Connections to Redis a node holds at most (checks beyond wait for one, within their timeout)."""
RETRY_SECONDS: Final = 1.0
"""After a failure, Redis is left alone this long: checks use the fallback (or fail closed)."""
LOG_EVERY_SECONDS: Final = 60.0
"""At most one log line about Redis being unreachable per this many seconds."""
MAX_BUCKET_TTL_MS: Final = 86_400_000
"""A bucket is kept at most a day (only a bucket that refills slower than that is cut short)."""

T = TypeVar("T")


class SharedStateUnavailableError(RelayError):
    """503: a single-use check could not reach the shared state, so the request is refused
    rather than risk accepting it twice; nothing was done. Retry shortly."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "shared_state_unavailable",
            "the relay cannot check this request against its other nodes now; try again shortly",
        )


class Claim(enum.Enum):
    """What :meth:`SingleUse.claim` found."""

    FIRST = "first"
    """Not seen before: now remembered until its expiry."""
    SEEN = "seen"
    """Remembered already: a second use."""
    FULL = "full"
    """No room to remember one more (in-process sets only); nothing remembered."""
    BEFORE_EPOCH = "before_epoch"
    """Dated before the shared memory began (it may have been used before a restart of the
    shared store, which forgot it); nothing remembered."""


# ------------------------------------------------------------------------------ the interface
# Every check is a coroutine: on Redis it is one round trip, awaited, so the event loop serves
# other requests meanwhile; in process it returns at once (no task, no thread). The methods are
# named with an ``a`` in front so the in-process classes keep their synchronous ones beside them.
class Limiter(Protocol):
    """Token buckets by key: what :class:`~sotto.server.ratelimit.RateLimiter` offers."""

    limit: RateLimit

    def limit_of(self, key: Hashable) -> RateLimit: ...
    async def aallow(self, key: Hashable, now: float, cost: float = 1.0) -> bool: ...
    async def apeek(self, key: Hashable, now: float, cost: float = 1.0) -> bool: ...
    async def acheck(self, key: Hashable, now: float, cost: float = 1.0) -> None: ...
    async def aretry_after(self, key: Hashable, now: float, cost: float = 1.0) -> int: ...
    def __len__(self) -> int: ...


class Meter(Protocol):
    """A decaying count of events: what :class:`~sotto.server.ratelimit.RateMeter` offers."""

    window: float

    async def acount(self, now: float) -> float: ...
    async def aadd(self, now: float, events: float = 1.0) -> None: ...


class SingleUse(Protocol):
    """Keys each accepted once until their expiry (unix seconds; a key is forgotten once the
    time reaches it)."""

    async def aseen(self, key: bytes, now: float) -> bool:
        """Whether ``key`` is remembered (a cheap early refusal; :meth:`aclaim` decides)."""
        ...

    async def aclaim(self, key: bytes, expires: float, now: float, *, dated: float | None = None) -> Claim:
        """Remember ``key`` until ``expires`` unless it is remembered already. ``dated``: the
        time the item carries, refused (:attr:`Claim.BEFORE_EPOCH`) if before :attr:`epoch`."""
        ...

    @property
    def epoch(self) -> float:
        """When the shared memory began, as far as known (unix seconds; -inf in process)."""
        ...

    def begin(self, now: float) -> None:
        """Say the owner started at ``now`` (no I/O): the shared memory began then unless it
        began before, written by :meth:`abegin` or by the first claim, whichever comes first."""
        ...

    async def abegin(self) -> None:
        """Write what :meth:`begin` said, now (a node starting); best effort: if the store cannot
        be reached, the first claim that reaches it dates the memory instead (with its own time)."""
        ...

    def next_expiry(self) -> float | None:
        """When the next remembered key is forgotten, if known."""
        ...


class SharedState(ABC):
    """Where protective state lives: this process (:class:`LocalState`) or a server every node
    shares (:class:`RedisState`)."""

    shared: bool = False
    """Whether other relay nodes see this state."""

    @abstractmethod
    def limiter(
        self, name: str, limit: RateLimit, *, forwarded_scale: float = 1.0, max_keys: int = 100_000
    ) -> Limiter:
        """Token buckets named ``name`` (one name per limit); ``max_keys`` bounds the buckets
        held in process."""

    @abstractmethod
    def single_use(self, name: str, *, capacity: int) -> SingleUse:
        """A single-use set named ``name``; ``capacity`` bounds the keys held in process."""

    @abstractmethod
    def meter(self, name: str, window: float) -> Meter:
        """A decaying count named ``name`` with time constant ``window`` seconds."""

    async def aclose(self) -> None:  # noqa: B027 (optional: in-process state holds no connection)
        """Let go of connections, if any."""

    def describe(self) -> str:
        """Where the state lives, for a log line (no address or password)."""
        return "in-process"


# ------------------------------------------------------------------------------ in process
class LocalSingleUse:
    """A single-use set in memory: at most ``capacity`` keys, each until its expiry."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    @property
    def epoch(self) -> float:
        return -math.inf

    def begin(self, now: float) -> None:
        """Nothing to do: the owner's own start rule covers a restart of this process."""

    def _forget(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, key = heapq.heappop(self._heap)
            self._expiry.pop(key, None)

    def seen(self, key: bytes, now: float) -> bool:
        self._forget(now)
        return key in self._expiry

    def claim(self, key: bytes, expires: float, now: float, *, dated: float | None = None) -> Claim:
        self._forget(now)
        if key in self._expiry:
            return Claim.SEEN
        if len(self._expiry) >= self.capacity:
            return Claim.FULL
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))
        return Claim.FIRST

    async def abegin(self) -> None:
        """Nothing to write."""

    async def aseen(self, key: bytes, now: float) -> bool:
        return self.seen(key, now)

    async def aclaim(self, key: bytes, expires: float, now: float, *, dated: float | None = None) -> Claim:
        return self.claim(key, expires, now, dated=dated)

    def next_expiry(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._expiry)


class LocalState(SharedState):
    """Everything in this process: one node's own limits, forgotten on restart."""

    shared = False

    def limiter(
        self, name: str, limit: RateLimit, *, forwarded_scale: float = 1.0, max_keys: int = 100_000
    ) -> Limiter:
        return RateLimiter(limit, max_keys=max_keys, forwarded_scale=forwarded_scale)

    def single_use(self, name: str, *, capacity: int) -> SingleUse:
        return LocalSingleUse(capacity)

    def meter(self, name: str, window: float) -> Meter:
        return RateMeter(window)


# ------------------------------------------------------------------------------ Redis
_BUCKET_LUA: Final = """
local burst, rate, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local held = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens, updated = burst, now
if held[1] then
  tokens, updated = tonumber(held[1]), tonumber(held[2])
  if now > updated then
    tokens = math.min(burst, tokens + (now - updated) * rate)
    updated = now
  end
end
local allowed = 0
if tokens >= cost then allowed = 1 end
if ARGV[5] == '1' then
  if allowed == 1 then tokens = tokens - cost end
  local ttl = tonumber(ARGV[6])
  if rate > 0 then ttl = math.min(ttl, math.ceil((burst - tokens) / rate * 1000) + 1000) end
  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'u', string.format('%.17g', updated))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {allowed, string.format('%.17g', tokens)}
"""
"""Take (ARGV[5] = 1) or read a token bucket: ``{allowed, tokens left}``. A node whose clock is
behind never refills a bucket twice (``updated`` only moves forward). The key expires when the
bucket would be full again, when it holds nothing a new one would not."""

_METER_LUA: Final = """
local now, window, add = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'c', 'u')
local count, updated = 0, 0
if held[1] then count, updated = tonumber(held[1]), tonumber(held[2]) end
if now > updated then count = count * math.exp(-(now - updated) / window) end
if add > 0 then
  count = count + add
  if now > updated then updated = now end
  redis.call('HSET', KEYS[1], 'c', string.format('%.17g', count), 'u', string.format('%.17g', updated))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return string.format('%.17g', count)
"""
"""Read (ARGV[3] = 0) or add to a decaying count, as :class:`RateMeter` does."""

_CLAIM_LUA: Final = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  if ARGV[4] ~= '' then epoch = ARGV[4] end
  redis.call('SET', KEYS[1], epoch)
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) < tonumber(epoch) then return {2, epoch} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {0, epoch} end
return {1, epoch}
"""
"""Claim a single use: ``{0 first | 1 seen | 2 before the epoch, epoch ms}``. The epoch key is
set by the first node to start (:meth:`RedisState.begin`, or its first claim, ARGV[4] = its
start), or, after Redis restarted empty, by the first claim (with that node's time): whatever an
earlier, forgotten memory accepted was dated before it."""

_CLAIM_CODES: Final = (Claim.FIRST, Claim.SEEN, Claim.BEFORE_EPOCH)


class _Unavailable(Exception):
    """Redis is down or was lately: use the fallback, or fail closed."""


def _encode(key: Hashable) -> bytes:
    """An unambiguous byte string for a bucket key (bytes, str, int or tuples of them)."""
    if isinstance(key, ForwarderSource):
        return b"f" + struct.pack(">I", len(key)) + bytes(key)
    if isinstance(key, bytes | bytearray | memoryview):
        data = bytes(key)
        return b"b" + struct.pack(">I", len(data)) + data
    if isinstance(key, str):
        data = key.encode()
        return b"s" + struct.pack(">I", len(data)) + data
    if isinstance(key, bool | int):
        text = str(int(key)).encode()
        return b"i" + struct.pack(">I", len(text)) + text
    if isinstance(key, tuple):
        return b"t" + struct.pack(">I", len(key)) + b"".join(_encode(part) for part in key)
    raise TypeError(f"a shared bucket key cannot be a {type(key).__name__}")


def _ms(seconds: float) -> str:
    return repr(seconds * 1000.0)


class RedisState(SharedState):
    """The state in Redis at ``url``, shared by every node that uses the same Redis and the same
    server key. ``secret``: 32 bytes derived from the server key (:data:`SHARED_STATE_KEY_INFO`).

    The client is redis-py's asyncio one: a check awaits its round trip, and the loop serves
    other requests meanwhile. Each call is bounded by ``timeout`` (connecting included), so a
    Redis that accepts connections and never answers costs a waiting request ``timeout`` at
    most, and others nothing. Connections belong to the event loop that made them: use one
    state from one loop."""

    shared = True

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float = TIMEOUT_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis  # noqa: PLC0415 (only nodes that share state need it)
        import redis.asyncio  # noqa: PLC0415
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        if len(secret) < 32:
            raise ValueError("the shared state's key must be 32 bytes")
        self._secret = secret[:32]
        deployment = hashlib.blake2b(b"deployment", key=self._secret, digest_size=6).hexdigest()
        self.prefix = f"sotto:{{{deployment}}}:"
        """Every key begins so: the braces keep a deployment's keys in one Redis Cluster slot."""
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)
        # At most MAX_CONNECTIONS round trips out at once; a check that waits for a connection
        # waits within its own timeout (the whole call is bounded, see call()).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._client = redis.asyncio.Redis.from_pool(pool)
        self._bucket = self._client.register_script(_BUCKET_LUA)
        self._meter = self._client.register_script(_METER_LUA)
        self._claim = self._client.register_script(_CLAIM_LUA)
        self._epoch_key = self.prefix + "epoch"
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._down_until = -math.inf
        self._logged_at = -math.inf
        self.outages = 0
        """Times Redis was found unreachable (each starts a :data:`RETRY_SECONDS` pause)."""

    # -------------------------------------------------------------------- plumbing
    def key(self, kind: str, name: str, data: bytes) -> str:
        """The Redis key of ``data`` in ``kind:name``: a keyed hash, never ``data`` itself."""
        digest = hashlib.blake2b(
            kind.encode() + b"\x00" + name.encode() + b"\x00" + data, key=self._secret, digest_size=16
        )
        return f"{self.prefix}{kind}:{name}:{digest.hexdigest()}"

    @property
    def available(self) -> bool:
        """False while Redis is left alone after a failure."""
        return self._monotonic() >= self._down_until

    async def call(self, run: Callable[[], Awaitable[T]]) -> T:
        """Await ``run()`` against Redis within the timeout; :class:`_Unavailable` if it fails,
        takes longer, or Redis failed lately."""
        if not self.available:
            raise _Unavailable
        try:
            async with asyncio.timeout(self._timeout):
                return await run()
        except self._redis_errors as exc:
            self._went_down(exc)
            raise _Unavailable from None

    def _went_down(self, exc: BaseException) -> None:
        # One event loop: nothing else runs between these lines.
        now = self._monotonic()
        first = now >= self._down_until
        self._down_until = now + self._retry_seconds
        if first:
            self.outages += 1
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            # The type name only (as every error line): messages can name the server.
            logger.error("error SharedStateUnavailableError [%s]", type(exc).__name__)

    async def aping(self) -> bool:
        """Whether Redis answers now."""
        try:
            return bool(await self.call(self._client.ping))
        except _Unavailable:
            return False

    async def aclose(self) -> None:
        await self._client.aclose()

    def describe(self) -> str:
        return "Redis"

    # -------------------------------------------------------------------- the three kinds
    def limiter(
        self, name: str, limit: RateLimit, *, forwarded_scale: float = 1.0, max_keys: int = 100_000
    ) -> Limiter:
        return RedisLimiter(self, name, limit, forwarded_scale=forwarded_scale, max_keys=max_keys)

    def single_use(self, name: str, *, capacity: int) -> SingleUse:
        return RedisSingleUse(self, name)

    def meter(self, name: str, window: float) -> Meter:
        return RedisMeter(self, name, window)

    # -------------------------------------------------------------------- scripts
    async def take(
        self, key: str, limit: RateLimit, now: float, cost: float, *, take: bool
    ) -> tuple[bool, float]:
        args = [repr(float(x)) for x in (limit.burst, limit.per_second, now, cost)]
        args += ["1" if take else "0", str(MAX_BUCKET_TTL_MS)]
        allowed, tokens = await self.call(lambda: self._bucket(keys=[key], args=args))
        return bool(int(allowed)), float(tokens)

    async def decay(self, key: str, window: float, now: float, add: float) -> float:
        ttl_ms = math.ceil(window * 30 * 1000)  # e^-30 of a count is nothing
        args = [repr(float(now)), repr(float(window)), repr(float(add)), str(ttl_ms)]
        return float(await self.call(lambda: self._meter(keys=[key], args=args)))

    async def claim(
        self, key: str, ttl_ms: int, now: float, dated: float | None, started: float | None
    ) -> tuple[Claim, float]:
        """``started``: the epoch to write if Redis holds none (a node's first claim), else now."""
        args = [_ms(now), str(max(1, ttl_ms)), "" if dated is None else _ms(dated)]
        args.append("" if started is None else _ms(started))
        code, epoch = await self.call(lambda: self._claim(keys=[self._epoch_key, key], args=args))
        return _CLAIM_CODES[int(code)], float(epoch) / 1000

    async def begin(self, now: float) -> float | None:
        """Set the epoch to ``now`` unless set; the epoch (None if Redis is away)."""
        try:
            await self.call(lambda: self._client.set(self._epoch_key, _ms(now), nx=True))
            held = await self.call(lambda: self._client.get(self._epoch_key))
        except _Unavailable:
            return None
        return None if held is None else float(held) / 1000

    async def exists(self, key: str) -> bool:
        return bool(await self.call(lambda: self._client.exists(key)))


class RedisLimiter:
    """Token buckets in Redis (the in-process :class:`RateLimiter` while it is unreachable)."""

    def __init__(
        self, state: RedisState, name: str, limit: RateLimit, *, forwarded_scale: float, max_keys: int
    ) -> None:
        self._state = state
        self._name = name
        self._local = RateLimiter(limit, max_keys=max_keys, forwarded_scale=forwarded_scale)
        self.limit = limit

    def limit_of(self, key: Hashable) -> RateLimit:
        return self._local.limit_of(key)

    async def _take(self, key: Hashable, now: float, cost: float, *, take: bool) -> tuple[bool, float] | None:
        try:
            return await self._state.take(
                self._state.key("bucket", self._name, _encode(key)), self.limit_of(key), now, cost, take=take
            )
        except _Unavailable:
            return None

    async def aallow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        taken = await self._take(key, now, cost, take=True)
        return self._local.allow(key, now, cost) if taken is None else taken[0]

    async def apeek(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        taken = await self._take(key, now, cost, take=False)
        return self._local.peek(key, now, cost) if taken is None else taken[0]

    async def acheck(self, key: Hashable, now: float, cost: float = 1.0) -> None:
        taken = await self._take(key, now, cost, take=True)
        if taken is None:
            self._local.check(key, now, cost)
        elif not taken[0]:
            raise RateLimitedError(self._retry(key, taken[1], cost))

    async def aretry_after(self, key: Hashable, now: float, cost: float = 1.0) -> int:
        taken = await self._take(key, now, cost, take=False)
        if taken is None:
            return self._local.retry_after(key, now, cost)
        return self._retry(key, taken[1], cost)

    def _retry(self, key: Hashable, tokens: float, cost: float) -> int:
        rate = self.limit_of(key).per_second
        if tokens >= cost:
            return 0
        return 3_600 if rate <= 0 else max(1, math.ceil((cost - tokens) / rate))

    def __len__(self) -> int:
        """Buckets held in this process (only while Redis was unreachable)."""
        return len(self._local)


class RedisMeter:
    """A decaying count in Redis (this process's own while Redis is unreachable)."""

    def __init__(self, state: RedisState, name: str, window: float) -> None:
        self._state = state
        self._key = state.key("meter", name, b"")
        self._local = RateMeter(window)
        self.window = window

    async def acount(self, now: float) -> float:
        try:
            return await self._state.decay(self._key, self.window, now, 0.0)
        except _Unavailable:
            return self._local.count(now)

    async def aadd(self, now: float, events: float = 1.0) -> None:
        self._local.add(now, events)
        with contextlib.suppress(_Unavailable):
            await self._state.decay(self._key, self.window, now, events)


class RedisSingleUse:
    """A single-use set in Redis; fails closed (:class:`SharedStateUnavailableError`)."""

    def __init__(self, state: RedisState, name: str) -> None:
        self._state = state
        self._name = name
        self._epoch = -math.inf
        self._started: float | None = None
        """This node's start, until Redis has heard of it (:meth:`abegin` or a claim)."""

    @property
    def epoch(self) -> float:
        return self._epoch

    def begin(self, now: float) -> None:
        self._started = now

    async def abegin(self) -> None:
        if self._started is None:
            return
        epoch = await self._state.begin(self._started)
        # Tried once: if Redis was away, the first claim that reaches it dates the memory with
        # its own time (stricter than the start, and right if Redis lost its memory meanwhile).
        self._started = None
        if epoch is not None:
            self._epoch = epoch

    def _key(self, key: bytes) -> str:
        return self._state.key("once", self._name, key)

    async def aseen(self, key: bytes, now: float) -> bool:
        try:
            return await self._state.exists(self._key(key))
        except _Unavailable:
            raise SharedStateUnavailableError from None

    async def aclaim(self, key: bytes, expires: float, now: float, *, dated: float | None = None) -> Claim:
        ttl_ms = math.ceil((expires - now) * 1000)
        try:
            claim, epoch = await self._state.claim(self._key(key), ttl_ms, now, dated, self._started)
        except _Unavailable:
            raise SharedStateUnavailableError from None
        self._started = None
        self._epoch = epoch
        return claim

    def next_expiry(self) -> float | None:
        return None


def open_shared_state(url: str | None, secret: bytes) -> SharedState:
    """:class:`RedisState` for a ``redis://`` (``rediss://``, ``unix://``) URL, else :class:`LocalState`."""
    if url is None:
        return LocalState()
    if not url.startswith(SHARED_STATE_SCHEMES):
        raise ValueError("shared_state must be a redis:// URL")
    return RedisState(url, secret)
