"""The schedule's pure parts: how far ahead it reaches and its capability. Its behaviour with a
real relay and forwarder is in ``tests/forwarder/test_outage.py`` (processes) and
``tests/audit/sim/test_world.py`` (virtual time)."""

from __future__ import annotations

import pytest

from sotto.client.schedule import HORIZON_S, MAX_HORIZON_TICKS, capability, horizon_ticks
from sotto.forwarder.schedule import ScheduleLimits


@pytest.mark.parametrize(
    ("tick", "ticks"),
    [(300, 168), (3600, 14), (7200, 7), (600, 84), (60, MAX_HORIZON_TICKS), (1, MAX_HORIZON_TICKS)],
)
def test_the_horizon_is_a_night_of_ticks_within_bounds(tick: int, ticks: int) -> None:
    assert horizon_ticks(tick) == ticks
    assert HORIZON_S == 14 * 3600


def test_the_horizon_is_configurable_up_to_sixteen_hours_of_default_ticks() -> None:
    assert horizon_ticks(300, 2 * 3600) == 24  # the horizon before it reached a night
    assert horizon_ticks(300, 16 * 3600) == MAX_HORIZON_TICKS == 192
    assert horizon_ticks(300, 48 * 3600) == MAX_HORIZON_TICKS
    assert horizon_ticks(300, 60) == 2


def test_the_forwarder_holds_the_longest_horizon_the_client_builds() -> None:
    """The last tick built is at most the horizon's ticks after the current one, so it is due
    within the horizon and one tick; the forwarder's bound must take it at every tick."""
    for tick in (1, 10, 60, 300, 600, 3600):
        furthest = (horizon_ticks(tick, 16 * 3600) + 1) * tick
        assert furthest <= ScheduleLimits().max_horizon_seconds, tick


def test_the_capability_is_the_devices_own_for_each_relay() -> None:
    secret = bytes(range(32))
    one = capability(secret, "https://relay.example")
    assert one == capability(secret, "https://relay.example")  # found again after a restart
    assert len(one) == 32 and secret not in one
    assert one != capability(secret, "https://other.example")
    assert one != capability(bytes(32), "https://relay.example")
