"""The frontier sweep at a tiny size: each point is measured from a study of its own setting.

Four settings on the same four people and seed: default mode (no covers), cadence mode at two
ticks (300 s and 1,200 s), and cadence mode through forwarders. What each setting does to what
the relay sees is known without any attack: a shorter tick means more polls and sends per day,
covers cost bytes that default mode does not spend, a text waits for a tick in cadence mode and
not in default mode, and through forwarders no request reaches the relay with a client's
address. A sweep that mixed up its points, ran every point with one setting, or read its figures
from elsewhere fails here. The rendering (table, Pareto marks, plot) is checked on points made
by hand.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from sotto.audit.leakage.frontier import Point, Setting, markdown, pareto, sweep
from sotto.audit.leakage.frontier_chart import frontier_chart

PEOPLE, DAYS, SEED = 4, 1.0, 3  # seed 3: five conversations in the day
DEFAULT = Setting(cadence=False)
FAST = Setting(cadence=True, tick_seconds=300)
SLOW = Setting(cadence=True, tick_seconds=1200)
SLOW_FORWARDED = Setting(cadence=True, tick_seconds=1200, forwarder=True)


@pytest.fixture(scope="module")
def points() -> dict[Setting, Point]:
    measured = sweep([DEFAULT, FAST, SLOW, SLOW_FORWARDED], people=PEOPLE, days=DAYS, seed=SEED)
    return {p.setting: p for p in measured}


def test_every_point_is_its_own_settings_run(points: dict[Setting, Point]) -> None:
    assert list(points) == [DEFAULT, FAST, SLOW, SLOW_FORWARDED]
    for setting, point in points.items():
        assert (point.people, point.seed) == (PEOPLE, SEED)
        assert point.days == pytest.approx(DAYS, rel=0.01)
        assert point.view_tick_seconds == setting.tick_seconds
        assert point.view_records > 0
        assert point.cpu_s > 0 and point.wall_s > 0
        assert 0 < point.chance < 1
        assert 0 <= point.top1 <= 1


def test_a_shorter_tick_polls_and_sends_more(points: dict[Setting, Point]) -> None:
    # a poll per mailbox and a send per contact every tick: a quarter of them at four times the tick
    assert points[FAST].requests_per_person_day > 2 * points[SLOW].requests_per_person_day


def test_covers_cost_bytes_that_default_mode_does_not_spend(points: dict[Setting, Point]) -> None:
    assert points[SLOW].kbytes_per_person_day > 2 * points[DEFAULT].kbytes_per_person_day


def test_texts_wait_for_a_tick_in_cadence_mode_only(points: dict[Setting, Point]) -> None:
    for setting in (DEFAULT, SLOW):
        assert points[setting].delivered > 0, setting
    default_p50, slow_p50 = points[DEFAULT].latency_p50_s, points[SLOW].latency_p50_s
    assert default_p50 is not None and slow_p50 is not None
    assert default_p50 < 5
    assert slow_p50 > 20
    slow_p99 = points[SLOW].latency_p99_s
    assert slow_p99 is not None and slow_p99 >= slow_p50


def test_through_forwarders_the_relay_sees_no_client_address(points: dict[Setting, Point]) -> None:
    assert points[SLOW].source_addresses >= 2
    assert points[SLOW_FORWARDED].source_addresses == 0
    assert points[SLOW_FORWARDED].top1_attack != "address" or points[SLOW_FORWARDED].top1 == 0


def _point(name: int, top1: float, latency: float | None, kbytes: float) -> Point:
    point = Point(Setting(cadence=True, tick_seconds=name), 10, 1.0, 1, top1=top1, chance=0.1)
    point.top1_attack, point.top1_no_address, point.top1_no_address_attack = "gaps", top1 / 2, "gaps"
    point.latency_p50_s, point.latency_p99_s = latency, None if latency is None else latency * 3
    point.kbytes_per_person_day, point.presence_device_on = kbytes, 0.8
    point.wall_s, point.cpu_s = 12.0, 3.0
    return point


def test_pareto_marks_the_points_nothing_beats() -> None:
    points = [
        _point(100, 0.5, 50.0, 1000.0),  # beaten by the next on all three
        _point(101, 0.4, 40.0, 900.0),
        _point(102, 0.9, 0.1, 100.0),  # leaks most, but fastest and cheapest
        _point(103, 0.1, None, 10.0),  # nothing delivered: on no frontier
    ]
    assert pareto(points) == [False, True, True, False]


def test_table_and_plot_show_every_point() -> None:
    points = [_point(100, 0.5, 50.0, 1000.0), _point(200, 0.2, 300.0, 4000.0)]
    table = markdown(points)
    assert "| 1 | cadence 100 s, direct |" in table
    assert "| 2 | cadence 200 s, direct |" in table
    assert "10 × 1, seed 1" in table and "12 s / 3 s" in table and "5.0×" in table
    png = frontier_chart(points, title="TEST")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width > 1000 and height > 500
    # the points are drawn: the first two palette colours appear in the pixels
    raw = zlib.decompress(png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8])
    assert bytes((213, 94, 0)) in raw and bytes((0, 114, 178)) in raw


def test_points_survive_json() -> None:
    point = _point(100, 0.5, 50.0, 1000.0)
    assert Point.from_json(point.to_json()) == point
