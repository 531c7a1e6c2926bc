"""Timer lengths as typed (:mod:`sotto.client.durations`), shared by the CLI and the app."""

from __future__ import annotations

import pytest

from sotto.client.content import MAX_TIMER_S
from sotto.client.durations import timer_seconds


@pytest.mark.parametrize(
    ("given", "seconds"), [("off", 0), ("0", 0), ("30s", 30), (" 5M ", 300), ("8h", 28_800), ("1d", 86_400)]
)
def test_a_timer_is_read_in_seconds(given: str, seconds: int) -> None:
    assert timer_seconds(given) == seconds


@pytest.mark.parametrize("given", ["", "5", "5y", "-1d", "1.5h", "0s", "99999999d", f"{MAX_TIMER_S + 1}s"])
def test_what_is_no_timer_gives_none(given: str) -> None:
    assert timer_seconds(given) is None
