"""What the relay logs: counters and error codes, never an identifier.

No log line carries an address, an account, a mailbox or a message id, and there is no line per
request: the relay counts events (``http_201``, ``ws_close_4400``, ``envelopes_stored``...) and
writes the totals every ``stats_interval_seconds`` as one line, then starts counting again.
``docs/data-held.md`` lists the fields.

uvicorn's own loggers are tamed here too: its access log (which prints client addresses) is off,
and its error logger, which prints the client address of every WebSocket at INFO level, is kept
at WARNING. Every line the process writes (the relay's, uvicorn's and asyncio's, whose
exception handler names sockets with their addresses) goes through one handler that drops
tracebacks (:class:`NoTraceback`: bad input never prints one, and a traceback can quote request
data), scrubs addresses (:class:`AddressScrubber`) and rate-limits (:class:`LogRateLimit`), so a
flood of bad clients cannot flood the disk.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from typing import Any

LOGGER_NAME = "sotto.server"
logger = logging.getLogger(LOGGER_NAME)

_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


class AddressScrubber(logging.Filter):
    """Replace anything that looks like an IP address in a record by ``<addr>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _IPV6.sub("<addr>", _IPV4.sub("<addr>", message))
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


class NoTraceback(logging.Filter):
    """Drop a record's traceback and stack, keeping the exception's type name only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            kind = record.exc_info[0]
            name = kind.__name__ if kind is not None else "exception"
            record.msg, record.args = f"{record.getMessage()} [{name}]", None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


_DIGITS = re.compile(r"\d+")


class LogRateLimit(logging.Filter):
    """At most ``burst`` lines of one kind (logger and first line, digits aside) and then one per
    ``interval`` seconds; at most ``total_burst`` lines of all kinds, then one per second. The
    next line let through says how many were held back."""

    def __init__(
        self, burst: int = 10, interval: float = 60.0, total_burst: int = 100, total_per_second: float = 1.0
    ) -> None:
        super().__init__()
        self.burst, self.interval = burst, interval
        self.total_burst, self.total_per_second = total_burst, total_per_second
        self._kinds: dict[tuple[str, str], tuple[float, float]] = {}
        self._total = (float(total_burst), time.monotonic())
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        kind = (record.name, _DIGITS.sub("#", str(record.msg).split("\n", 1)[0])[:80])
        if kind not in self._kinds and len(self._kinds) >= 1_000:
            self._kinds.clear()
        tokens, updated = self._kinds.get(kind, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) / self.interval)
        total, total_updated = self._total
        total = min(float(self.total_burst), total + (now - total_updated) * self.total_per_second)
        allowed = tokens >= 1 and total >= 1
        if allowed:
            tokens, total = tokens - 1, total - 1
        self._kinds[kind] = (tokens, now)
        self._total = (total, now)
        if not allowed:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = f"{record.getMessage()} ({self.suppressed} lines held back)"
            record.args, self.suppressed = None, 0
        return True


class Stats:
    """Event counters, written out and reset by :meth:`flush`."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, event: str, n: int = 1) -> None:
        self._counts[event] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)

    def flush(self) -> None:
        if self._counts:
            logger.info("stats %s", json.dumps(dict(sorted(self._counts.items())), separators=(",", ":")))
            self._counts.clear()


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config`` dict for uvicorn: no access log, uvicorn and asyncio at WARNING,
    every line without traceback, addresses scrubbed, rate-limited."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "no_traceback": {"()": NoTraceback},
            "scrub": {"()": AddressScrubber},
            "rate": {"()": LogRateLimit},
        },
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["no_traceback", "scrub", "rate"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "asyncio": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "websockets": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            LOGGER_NAME: {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }
