"""Token buckets in memory, keyed by what is asked for and by who asks; nothing here is ever
written to disk or to a log.

Pure bookkeeping: the caller passes the time. The number of keys is bounded, and forgetting a
key never helps whoever floods the table: only a bucket that has refilled (which holds nothing
a new one would not) is ever dropped. When every bucket in a full table still holds a debt, a
key the table does not know shares one strict overflow bucket until room comes back, so a flood
of fresh keys buys a flood of nothing.

Client addresses (:func:`source_key`) are keys here and nowhere else: they are reduced to the
network a client controls (an IPv4 address, an IPv6 /64), passed through a keyed hash whose key
lives only in this process, and used only as dictionary keys. Relay nodes that share their
limits (``--shared-state``) must hash alike: they use a key derived from the server key they
share instead (:func:`share_source_key`), and the shared store hashes the result once more.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, Final

from sotto.errors import RelayError
from sotto.server.config import RateLimit

_SOURCE_KEY = os.urandom(16)
"""Keys the hash of client networks; made at import, never stored, so a restart forgets them
(unless :func:`share_source_key` replaced it)."""


def share_source_key(key: bytes) -> None:
    """Hash client networks under ``key`` (16 bytes or more, derived from the server key) from now
    on, so every relay node sharing its limits names a network alike. One process serves one
    relay: the key is the process's."""
    global _SOURCE_KEY  # noqa: PLW0603 (one relay per process; see the note)
    if len(key) < 16:
        raise ValueError("the source key must be at least 16 bytes")
    _SOURCE_KEY = bytes(key[:32])


FORWARDED_BY: Final = "sotto.forwarded_by"
"""The ASGI scope key under which the gateway puts the :func:`source_key` of the forwarder a
request came through (its client's address never reaches the relay)."""


class ForwarderSource(bytes):
    """The source of a request that came through a forwarder: the forwarder's network, kept
    apart from the same network asking directly. Budgets per source give such a source
    ``forwarded_scale`` times the limit of one direct source, since a forwarder carries many
    clients (and applies per-client limits of its own)."""

    __slots__ = ()


def source_key(scope: Mapping[str, Any]) -> bytes:
    """The in-memory key of the network an ASGI request came from (see the module's note).

    Addresses are read from the socket only (proxy headers are not trusted). An IPv4 address is
    its own network, an IPv6 client is its /64 (one host gets a whole /64), an IPv4-mapped IPv6
    address counts as the IPv4 one. A transport without an address (a test client, a Unix
    socket) is one source. A request the gateway opened counts as its forwarder's
    (:class:`ForwarderSource`)."""
    forwarder = scope.get(FORWARDED_BY)
    if isinstance(forwarder, bytes):
        return ForwarderSource(
            hashlib.blake2b(forwarder, digest_size=12, key=_SOURCE_KEY, person=b"forwarder").digest()
        )
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        network = str(host).encode()
    else:
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped
            network = mapped.packed if mapped is not None else address.packed[:8]
        else:
            network = address.packed
    return hashlib.blake2b(network, digest_size=12, key=_SOURCE_KEY).digest()


def _is_forwarded(key: Hashable) -> bool:
    """Whether ``key`` is a :class:`ForwarderSource`, alone or first in a tuple."""
    if isinstance(key, tuple):
        return bool(key) and isinstance(key[0], ForwarderSource)
    return isinstance(key, ForwarderSource)


class RateLimiter:
    """Token buckets by key. ``forwarded_scale``: a key that is (or begins with) a
    :class:`ForwarderSource` gets a bucket that many times larger and faster."""

    def __init__(self, limit: RateLimit, *, max_keys: int = 100_000, forwarded_scale: float = 1.0) -> None:
        if not forwarded_scale >= 1:
            raise ValueError("forwarded_scale must be at least 1")
        self.limit = limit
        self.forwarded = RateLimit(limit.burst * forwarded_scale, limit.per_second * forwarded_scale)
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._overflow = TokenBucket(limit, 0.0)  # full; shared by keys the table has no room for

    def limit_of(self, key: Hashable) -> RateLimit:
        """The limit that applies to ``key``."""
        return self.forwarded if _is_forwarded(key) else self.limit

    def _refilled(self, tokens: float, updated: float, now: float, limit: RateLimit | None = None) -> float:
        limit = limit or self.limit
        return min(limit.burst, tokens + max(0.0, now - updated) * limit.per_second)

    def _make_room(self, now: float) -> bool:
        """Drop the least recently used bucket if it has refilled; whether there is room."""
        if len(self._buckets) < self._max_keys:
            return True
        oldest = next(iter(self._buckets))
        tokens, updated = self._buckets[oldest]
        limit = self.limit_of(oldest)
        if self._refilled(tokens, updated, now, limit) < limit.burst:
            return False
        del self._buckets[oldest]
        return True

    def allow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        limit = self.limit_of(key)
        held = self._buckets.pop(key, None)
        if held is None:
            if not self._make_room(now):
                return self._overflow.allow(now, cost)
            held = (limit.burst, now)
        tokens = self._refilled(*held, now, limit)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        return allowed

    def peek(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Whether :meth:`allow` would pass, without taking anything."""
        return self._tokens(key, now) >= cost

    def _tokens(self, key: Hashable, now: float) -> float:
        limit = self.limit_of(key)
        held = self._buckets.get(key)
        if held is not None:
            return self._refilled(*held, now, limit)
        if len(self._buckets) < self._max_keys:
            return limit.burst
        oldest_key = next(iter(self._buckets))
        oldest_limit = self.limit_of(oldest_key)
        if self._refilled(*self._buckets[oldest_key], now, oldest_limit) >= oldest_limit.burst:
            return limit.burst
        overflow = self._overflow
        return self._refilled(overflow.tokens, overflow.updated, now)

    def check(self, key: Hashable, now: float, cost: float = 1.0) -> None:
        """:meth:`allow`, raising :class:`RateLimitedError` when refused."""
        if not self.allow(key, now, cost):
            raise RateLimitedError(self.retry_after(key, now, cost))

    def retry_after(self, key: Hashable, now: float, cost: float = 1.0) -> int:
        """Whole seconds until ``cost`` tokens will be there (for a Retry-After header)."""
        tokens, rate = self._tokens(key, now), self.limit_of(key).per_second
        if tokens >= cost or rate <= 0:
            return 0 if tokens >= cost else 3_600
        return max(1, math.ceil((cost - tokens) / rate))

    # The asynchronous face of the shared-state interface (``shared_state.Limiter``): the same
    # checks, answered at once, so the in-process default costs no task and no thread.
    async def aallow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        return self.allow(key, now, cost)

    async def apeek(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        return self.peek(key, now, cost)

    async def acheck(self, key: Hashable, now: float, cost: float = 1.0) -> None:
        self.check(key, now, cost)

    async def aretry_after(self, key: Hashable, now: float, cost: float = 1.0) -> int:
        return self.retry_after(key, now, cost)

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimitedError(RelayError):
    """429: a limit was hit; ``retry_after`` says when to try again, in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "rate_limited", f"too many requests; retry in {retry_after} s")
        self.retry_after = retry_after


class TokenBucket:
    """One bucket, for state that lives with its owner (a connection's frame budget)."""

    __slots__ = ("limit", "tokens", "updated")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.tokens = limit.burst
        self.updated = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        self.tokens = min(
            self.limit.burst, self.tokens + max(0.0, now - self.updated) * self.limit.per_second
        )
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class RateMeter:
    """How busy something has been lately: an exponentially decaying count of events.

    Each event adds 1; the sum decays by ``e`` every ``window`` seconds, so a steady ``r``
    events per second settles at ``r × window`` and a burst of ``n`` at once counts ``n`` right
    away. Two floats of state, whatever the rate; the caller passes the time."""

    __slots__ = ("_count", "_updated", "window")

    def __init__(self, window: float) -> None:
        if not window > 0:
            raise ValueError("the window must be positive")
        self.window = window
        self._count = 0.0
        self._updated = 0.0

    def count(self, now: float) -> float:
        """The decayed count of events up to ``now``."""
        elapsed = max(0.0, now - self._updated)
        return self._count * math.exp(-elapsed / self.window) if elapsed else self._count

    def add(self, now: float, events: float = 1.0) -> None:
        self._count = self.count(now) + events
        self._updated = max(now, self._updated)

    async def acount(self, now: float) -> float:
        """:meth:`count`, as ``shared_state.Meter`` asks (answered at once)."""
        return self.count(now)

    async def aadd(self, now: float, events: float = 1.0) -> None:
        """:meth:`add`, as ``shared_state.Meter`` asks (answered at once)."""
        self.add(now, events)
