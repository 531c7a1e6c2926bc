"""What the relay logs: counters and error codes, never an identifier.

No log line carries an address, an account, a mailbox or a message id, and there is no line per
request: the relay counts events (``http_201``, ``ws_close_4400``, ``envelopes_stored``...) and
writes the totals every ``stats_interval_seconds`` as one line, then starts counting again.
``docs/data-held.md`` lists the fields.

uvicorn's own loggers are tamed here too: its access log (which prints client addresses) is off,
and its error logger, which prints the client address of every WebSocket at INFO level, is kept
at WARNING and passed through :class:`AddressScrubber`.
"""

from __future__ import annotations

import json
import logging
import re
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
    """A ``logging.config`` dict for uvicorn: no access log, uvicorn at WARNING, addresses scrubbed."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"scrub": {"()": AddressScrubber}},
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["scrub"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            LOGGER_NAME: {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }
