"""The membership rule: the state is a function of the set of changes held, so every arrival
order ends the same; only admins add, remove and make admins; a removal sticks."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sotto.client import group_membership as gm
from sotto.errors import DecodeError

PEOPLE = [bytes([n]) * 16 for n in range(1, 6)]
A, B, C, D, E = PEOPLE


def _base() -> gm.Membership:
    return gm.Membership(gm.Roster(frozenset({A, B, C}), frozenset({A}), "Lunch"), 0)


def _apply_in_order(start: gm.Membership, changes: list[gm.Change]) -> gm.Membership:
    held = start
    for change in changes:
        after = gm.receive(held, change)
        if not isinstance(after, gm.Refusal):
            held = after
    return held


def _change(draw: st.DrawFn) -> gm.Change:
    action = draw(st.sampled_from(list(gm.Action)))
    version = draw(st.integers(1, 6))
    author = draw(st.sampled_from(PEOPLE))
    if action is gm.Action.RENAME:
        name = draw(st.sampled_from(["x", "y", "Lunch"]))
        return gm.Change(version, author, action, b"", name, draw(st.sampled_from(["", "d"])))
    if action is gm.Action.LEAVE:
        return gm.Change(version, author, action)
    return gm.Change(version, author, action, draw(st.sampled_from(PEOPLE)))


changes_strategy = st.lists(st.composite(_change)(), max_size=8, unique=True)


@given(changes_strategy, st.randoms(use_true_random=False))
def test_the_state_is_a_function_of_the_set_of_changes(changes: list[gm.Change], rng) -> None:  # type: ignore[no-untyped-def]
    # resolve() itself folds the sorted set: any two orders hold the same set, so the same state
    shuffled = list(changes)
    rng.shuffle(shuffled)
    one = gm.Membership(_base().base, 0, frozenset(changes))
    two = gm.Membership(_base().base, 0, frozenset(shuffled))
    assert gm.resolve(one) == gm.resolve(two)


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(st.composite(_change)(), min_size=2, max_size=2, unique=True))
def test_two_concurrent_changes_received_in_either_order_end_equal(pair: list[gm.Change]) -> None:
    # concurrent: both made on the same state (so the same version), each valid where it was made
    first, second = (replace(change, version=1) for change in pair)
    assume(first != second)
    base = gm.Membership(gm.Roster(frozenset({A, B, C, D}), frozenset({A, B}), "Lunch"), 0)
    assume(all(isinstance(gm.receive(base, ch), gm.Membership) for ch in (first, second)))
    one = _apply_in_order(base, [first, second])
    two = _apply_in_order(base, [second, first])
    assert gm.resolve(one)[0] == gm.resolve(two)[0]


def test_concurrent_removal_and_addition_both_take_effect() -> None:
    base = gm.Membership(gm.Roster(frozenset({A, B, C}), frozenset({A, B}), "Lunch"), 3)
    remove = gm.Change(4, A, gm.Action.REMOVE, C)
    add = gm.Change(4, B, gm.Action.ADD, D)
    for order in itertools.permutations([remove, add]):
        roster, refused = gm.resolve(_apply_in_order(base, list(order)))
        assert roster.members == {A, B, D} and not refused


def test_an_admin_removed_concurrently_cannot_undo_it_later() -> None:
    base = gm.Membership(gm.Roster(frozenset({A, B, C}), frozenset({A, B}), "Lunch"), 0)
    removed = gm.receive(base, gm.Change(1, A, gm.Action.REMOVE, B))
    assert isinstance(removed, gm.Membership)
    assert gm.receive(removed, gm.Change(2, B, gm.Action.ADD, B)) is gm.Refusal.NOT_A_MEMBER
    assert gm.receive(removed, gm.Change(2, B, gm.Action.REMOVE, A)) is gm.Refusal.NOT_A_MEMBER


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (gm.Change(1, B, gm.Action.ADD, D), gm.Refusal.NOT_AN_ADMIN),
        (gm.Change(1, B, gm.Action.REMOVE, C), gm.Refusal.NOT_AN_ADMIN),
        (gm.Change(1, B, gm.Action.ADMIN, B), gm.Refusal.NOT_AN_ADMIN),
        (gm.Change(1, D, gm.Action.RENAME, b"", "x"), gm.Refusal.NOT_A_MEMBER),
        (gm.Change(1, A, gm.Action.REMOVE, D), gm.Refusal.NOT_IN_GROUP),
    ],
)
def test_refusals_are_typed(change: gm.Change, reason: gm.Refusal) -> None:
    assert gm.receive(_base(), change) is reason


def test_members_rename_and_leave_and_the_last_admin_is_replaced() -> None:
    held: gm.Membership | gm.Refusal = _base()
    assert isinstance(held, gm.Membership)
    rename = gm.propose(held, B, gm.Action.RENAME, name="Dinner", description="Fridays")
    assert isinstance(rename, gm.Change) and rename.version == 1
    held = gm.receive(held, rename)
    assert isinstance(held, gm.Membership)
    leave = gm.propose(held, A, gm.Action.LEAVE)
    assert isinstance(leave, gm.Change) and leave.version == 2
    held = gm.receive(held, leave)
    assert isinstance(held, gm.Membership)
    roster, _ = gm.resolve(held)
    assert (roster.name, roster.description) == ("Dinner", "Fridays")
    assert roster.members == {B, C} and roster.admins == {min(B, C)}


def test_a_change_older_than_the_base_is_stale() -> None:
    base = gm.Membership(_base().base, 5)
    assert gm.receive(base, gm.Change(5, A, gm.Action.ADD, D)) is gm.Refusal.STALE


@given(changes_strategy)
def test_membership_round_trips(changes: list[gm.Change]) -> None:
    held = gm.Membership(gm.Roster(frozenset({A, B}), frozenset({A}), "Lunch", "d"), 2, frozenset(changes))
    assert gm.decode_membership(gm.encode_membership(held)) == held
    for change in changes:
        assert gm.decode_change(gm.encode_change(change)) == change


@given(st.binary(max_size=200))
def test_decoding_raises_decode_error_only(data: bytes) -> None:
    for decoder in (gm.decode_change, gm.decode_membership):
        with contextlib.suppress(DecodeError):
            decoder(data)


@pytest.mark.parametrize(
    "fields",
    [
        (0, A, gm.Action.ADD, D, "", ""),
        (1, b"short", gm.Action.ADD, D, "", ""),
        (1, A, gm.Action.ADD, b"", "", ""),
        (1, A, gm.Action.LEAVE, D, "", ""),
        (1, A, gm.Action.ADD, D, "name", ""),
        (1, A, gm.Action.RENAME, b"", "", ""),
        (1, A, gm.Action.RENAME, b"", "x", "d" * (gm.MAX_DESCRIPTION_BYTES + 1)),
    ],
)
def test_malformed_changes_are_refused(fields: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        gm.Change(*fields)
