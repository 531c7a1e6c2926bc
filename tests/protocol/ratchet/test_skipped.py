"""Skipped message-key seeds: oldest evicted first, never mutated in place."""

from __future__ import annotations

from sotto.protocol.limits import MAX_MESSAGE_KEYS
from sotto.protocol.ratchet.skipped import EMPTY_SKIPPED_KEYS, SkippedKeys


def test_eviction_keeps_the_newest_limit() -> None:
    keys = EMPTY_SKIPPED_KEYS.with_added((i, bytes([i % 256]) * 32) for i in range(MAX_MESSAGE_KEYS + 1))
    assert len(keys) == MAX_MESSAGE_KEYS
    assert 0 not in keys
    assert 1 in keys and MAX_MESSAGE_KEYS in keys
    assert len(EMPTY_SKIPPED_KEYS) == 0


def test_removal_returns_a_copy() -> None:
    keys = SkippedKeys({1: b"a" * 32, 2: b"b" * 32})
    fewer = keys.without(1)
    assert 1 in keys and 1 not in fewer
    assert list(fewer) == [2]


def test_eviction_by_insertion_order_not_by_counter() -> None:
    keys = SkippedKeys({5: b"5" * 32}).with_added([(1, b"1" * 32), (2, b"2" * 32)], limit=2)
    assert list(keys) == [1, 2]


def test_repr_hides_seeds() -> None:
    keys = SkippedKeys({7: b"\xab" * 32})
    assert "ab" not in repr(keys)
    assert "count=1" in repr(keys)
