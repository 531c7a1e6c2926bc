"""The in-memory limiter: fair per-source keys, and a bounded table that never forgets a debt."""

from __future__ import annotations

import os

from sotto.server.config import RateLimit
from sotto.server.ratelimit import RateLimiter, source_key


def _scope(host: str) -> dict[str, object]:
    return {"client": (host, 40_000)}


def test_an_abusive_source_cannot_drain_an_honest_one() -> None:
    limiter = RateLimiter(RateLimit(burst=5, per_second=0.1))
    abusive, honest = source_key(_scope("127.0.0.2")), source_key(_scope("127.0.0.1"))
    now = 100.0
    assert sum(limiter.allow(abusive, now) for _ in range(10_000)) == 5
    assert [limiter.allow(honest, now) for _ in range(5)] == [True] * 5
    assert not limiter.allow(honest, now)


def test_source_keys_group_a_network_and_hold_no_address() -> None:
    a = source_key(_scope("2001:db8:1:2::7"))
    assert a == source_key(_scope("2001:db8:1:2:ffff::1"))  # one /64
    assert a != source_key(_scope("2001:db8:1:3::7"))
    assert source_key(_scope("::ffff:192.0.2.7")) == source_key(_scope("192.0.2.7"))
    assert source_key(_scope("192.0.2.7")) != source_key(_scope("192.0.2.8"))
    key = source_key(_scope("192.0.2.7"))
    assert bytes([192, 0, 2, 7]) not in key and b"192.0.2.7" not in key
    assert source_key({"client": None}) == source_key({})


def test_a_flood_of_new_keys_cannot_reset_a_bucket_in_use() -> None:
    limiter = RateLimiter(RateLimit(burst=6, per_second=1 / 600), max_keys=100)
    now = 1_000.0
    victim = "victim-target"
    assert all(limiter.allow(victim, now) for _ in range(6))
    assert not limiter.allow(victim, now)
    for _ in range(1_000):  # ten times the table, each key used once
        limiter.allow(os.urandom(16), now)
    assert len(limiter) <= 100
    assert not limiter.allow(victim, now)  # still empty: its debt was never forgotten
    assert limiter.retry_after(victim, now) > 0


def test_keys_the_full_table_cannot_hold_share_one_strict_bucket() -> None:
    limiter = RateLimiter(RateLimit(burst=3, per_second=1 / 600), max_keys=10)
    now = 0.0
    for key in range(10):
        limiter.allow(("held", key), now)
    outsiders = [limiter.allow(("new", key), now) for key in range(10)]
    assert outsiders == [True] * 3 + [False] * 7


def test_refilled_buckets_make_room() -> None:
    limiter = RateLimiter(RateLimit(burst=2, per_second=1.0), max_keys=4)
    for key in range(4):
        assert limiter.allow(key, 0.0)
    # Ten seconds on, every bucket has refilled: new keys evict them and start full.
    assert all(limiter.allow(("new", key), 10.0) for key in range(4))
    assert len(limiter) == 4


def test_retry_after_counts_whole_seconds() -> None:
    limiter = RateLimiter(RateLimit(burst=1, per_second=0.5))
    assert limiter.allow("k", 0.0) and not limiter.allow("k", 0.0)
    assert limiter.retry_after("k", 0.0) == 2
    assert limiter.allow("k", 2.0)
