"""The schedule's pure parts: how far ahead it reaches and its capability. Its behaviour with a
real relay and forwarder is in ``tests/forwarder/test_outage.py`` (processes) and
``tests/audit/sim/test_world.py`` (virtual time)."""

from __future__ import annotations

import pytest

from sotto.client.schedule import HORIZON_S, MAX_HORIZON_TICKS, capability, horizon_ticks


@pytest.mark.parametrize(
    ("tick", "ticks"),
    [(300, 24), (3600, 2), (7200, 2), (600, 12), (60, MAX_HORIZON_TICKS), (1, MAX_HORIZON_TICKS)],
)
def test_the_horizon_is_two_hours_of_ticks_within_bounds(tick: int, ticks: int) -> None:
    assert horizon_ticks(tick) == ticks
    assert HORIZON_S == 7200


def test_the_capability_is_the_devices_own_for_each_relay() -> None:
    secret = bytes(range(32))
    one = capability(secret, "https://relay.example")
    assert one == capability(secret, "https://relay.example")  # found again after a restart
    assert len(one) == 32 and secret not in one
    assert one != capability(secret, "https://other.example")
    assert one != capability(bytes(32), "https://relay.example")
