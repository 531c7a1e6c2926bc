"""The schedule's pure parts: how far ahead it reaches and its capability. Its behaviour with a
real relay and forwarder is in ``tests/forwarder/test_outage.py`` (processes) and
``tests/audit/sim/test_world.py`` (virtual time)."""

from __future__ import annotations

from typing import Any

import pytest

from sotto.client.schedule import HORIZON_S, MAX_HORIZON_TICKS, _either_way, capability, horizon_ticks
from sotto.forwarder.schedule import ScheduleBook, ScheduleLimits, parse_upload
from sotto.wire import b64

NOW = 1_800_000_000.0


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


def _held(book: ScheduleBook, key: bytes) -> set[bytes]:
    return {slot_id for _, slot_id, _ in book.due(2e9)}


@pytest.mark.parametrize("applied", [True, False])
def test_an_upload_sent_again_after_a_lost_answer_means_the_same_either_way(applied: bool) -> None:
    def sid(n: int) -> str:
        return b64.encode(n.to_bytes(16, "big"))

    def slot(n: int, replaces: int | None = None) -> dict[str, Any]:
        raw: dict[str, Any] = {"id": sid(n), "at": int((NOW + n) * 1000), "request": b64.encode(b"r%d" % n)}
        return raw if replaces is None else {**raw, "replaces": sid(replaces)}

    def store(book: ScheduleBook, body: dict[str, Any]) -> None:
        slots, cancel = parse_upload(body, book.limits, 1 << 16)
        book.store(b"k" * 32, slots, cancel, NOW)

    book = ScheduleBook()
    store(book, {"slots": [slot(1), slot(2), slot(3)], "cancel": []})
    body = {"slots": [slot(4, replaces=1), slot(5)], "cancel": [sid(2)]}
    if applied:
        store(book, body)
    store(book, _either_way(body))
    assert _held(book, b"k" * 32) == {n.to_bytes(16, "big") for n in (3, 4, 5)}
