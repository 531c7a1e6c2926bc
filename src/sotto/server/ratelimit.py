"""Token buckets in memory, keyed by what is asked for; nothing here is ever written to disk.

Pure bookkeeping: the caller passes the time. The number of keys is bounded (least recently
used keys are forgotten, which only ever makes the limit more lenient), so a flood of distinct
keys cannot grow memory without limit.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

from sotto.errors import RelayError
from sotto.server.config import RateLimit


class RateLimiter:
    def __init__(self, limit: RateLimit, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        tokens, updated = self._buckets.pop(key, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + max(0.0, now - updated) * self.limit.per_second)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def peek(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Whether :meth:`allow` would pass, without taking anything."""
        tokens, updated = self._buckets.get(key, (self.limit.burst, now))
        return min(self.limit.burst, tokens + max(0.0, now - updated) * self.limit.per_second) >= cost

    def check(self, key: Hashable, now: float, cost: float = 1.0) -> None:
        """:meth:`allow`, raising :class:`RateLimitedError` when refused."""
        if not self.allow(key, now, cost):
            raise RateLimitedError(self.retry_after(key, now, cost))

    def retry_after(self, key: Hashable, now: float, cost: float = 1.0) -> int:
        """Whole seconds until ``cost`` tokens will be there (for a Retry-After header)."""
        tokens, updated = self._buckets.get(key, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + max(0.0, now - updated) * self.limit.per_second)
        if tokens >= cost or self.limit.per_second <= 0:
            return 0 if tokens >= cost else 3_600
        return max(1, math.ceil((cost - tokens) / self.limit.per_second))

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
