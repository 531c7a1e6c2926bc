"""The relay's clock, and the one unit of time it stores: the day.

Everything the server writes about time is a day number (days since 1970-01-01 UTC), never a
timestamp. The clock is an object handed in, so tests move time forward by days.
"""

from __future__ import annotations

import time
from typing import Protocol

SECONDS_PER_DAY = 86_400


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


def day_of(unix_seconds: float) -> int:
    """The UTC day number containing ``unix_seconds``."""
    return int(unix_seconds // SECONDS_PER_DAY)


def today(clock: Clock) -> int:
    return day_of(clock.now())
