"""Disappearing-timer lengths as people type them: ``off`` or ``0``, or a number and a unit
(``30s``, ``5m``, ``8h``, ``1d``, ``4w``), up to :data:`~sotto.client.content.MAX_TIMER_S`."""

from __future__ import annotations

import re

from sotto.client.content import MAX_TIMER_S

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def timer_seconds(value: str) -> int | None:
    """The timer ``value`` names, in seconds (0: off), or None if it names none."""
    given = value.strip().lower()
    if given in ("off", "0"):
        return 0
    found = re.fullmatch(r"(\d{1,7})\s*([smhdw])", given)
    seconds = 0 if found is None else int(found.group(1)) * _UNITS[found.group(2)]
    return seconds if 0 < seconds <= MAX_TIMER_S else None
