"""Cadence mode's planner (pure) and its cover envelopes (sealed like texts, dropped on arrival)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.client import content as c
from sotto.client.cadence import Poll, Send, TickPlan, oldest_for, plan_tick, tick_of, tick_start
from sotto.client.events import MessageReceived
from sotto.client.flows import sending
from sotto.crypto.random import seeded_rng
from sotto.store.model import ContactId, MailboxId, OutboxItemId
from tests.client.peers import connect, people

OURS = [MailboxId(bytes([1, n]) * 8) for n in range(3)]
THEIRS = {ContactId(n): MailboxId(bytes([2, n]) * 8) for n in range(4)}


def _observed(plan: TickPlan) -> Counter[tuple[str, bytes]]:
    """What the relay sees of a tick: requests per mailbox, by kind."""
    return Counter(("poll" if isinstance(s, Poll) else "send", s.mailbox_id) for s in plan.steps)


def test_ticks_are_aligned_to_unix_time() -> None:
    assert tick_of(0, 300) == 0 and tick_of(299.999, 300) == 0 and tick_of(300, 300) == 1
    assert tick_of(1_800_000_123, 300) == 6_000_000 and tick_start(6_000_000, 300) == 1_800_000_000


def test_one_poll_per_mailbox_and_one_send_per_contact_at_offsets_inside_the_tick() -> None:
    plan = plan_tick(10, 60, OURS, THEIRS, queue=[], rng=seeded_rng(1))
    assert plan.start == 600 and plan.end == 660
    assert _observed(plan) == Counter([("poll", m) for m in OURS] + [("send", m) for m in THEIRS.values()])
    assert all(600 <= s.at < 660 for s in plan.steps)
    assert [s.at for s in plan.steps] == sorted(s.at for s in plan.steps)
    sends = [s for s in plan.steps if isinstance(s, Send)]
    assert all(s.cover for s in sends) and {s.contact_id for s in sends} == set(THEIRS)


def test_queued_items_go_oldest_first_one_per_contact_per_tick() -> None:
    bob, carol = THEIRS[ContactId(0)], THEIRS[ContactId(1)]
    queue = [(OutboxItemId(i), bob) for i in (5, 6, 7)] + [(OutboxItemId(8), carol)]
    sent: list[OutboxItemId | None] = []
    for tick in range(5):
        plan = plan_tick(tick, 60, OURS, THEIRS, queue=queue, rng=seeded_rng(tick))
        assert _observed(plan) == _observed(plan_tick(tick, 60, OURS, THEIRS, queue=[], rng=seeded_rng(tick)))
        to_bob = [s for s in plan.steps if isinstance(s, Send) and s.mailbox_id == bob]
        assert len(to_bob) == 1
        sent.append(to_bob[0].item_id)
        queue = [q for q in queue if q[0] not in {s.item_id for s in plan.steps if isinstance(s, Send)}]
    assert sent == [5, 6, 7, None, None]


def test_envelopes_for_a_mailbox_no_contact_uses_go_out_as_extra_sends() -> None:
    invite = MailboxId(bytes(16))
    queue = [(OutboxItemId(1), invite), (OutboxItemId(2), invite)]
    plan = plan_tick(0, 60, OURS, THEIRS, queue=queue, rng=seeded_rng(0))
    extra = [s for s in plan.steps if isinstance(s, Send) and s.contact_id is None]
    assert extra == [Send(extra[0].at, invite, None, OutboxItemId(1))]
    assert oldest_for(queue, invite) == 1 and oldest_for(queue, OURS[0]) is None


@given(st.integers(0, 2**32), st.integers(0, 10**9), st.integers(1, 3_600))
def test_offsets_are_inside_the_tick_for_any_randomness(seed: int, tick: int, seconds: int) -> None:
    plan = plan_tick(tick, seconds, OURS, THEIRS, queue=[], rng=seeded_rng(seed))
    assert all(plan.start <= s.at <= plan.end - 0.001 for s in plan.steps)
    # on the engine's clock's grid: a whole number of milliseconds
    assert all(round(s.at * 1000) / 1000 == s.at for s in plan.steps)


def test_a_step_is_waited_for_within_its_tick_on_a_millisecond_clock() -> None:
    """The engine's clock counts milliseconds and a wait for an instant is computed from it, so
    the wait ends up to a millisecond past the instant: a step planned in a tick's last
    millisecond must still be issued inside the tick, which an instant finer than a millisecond
    near the tick's end would not be."""
    tick = 1_800_000_000  # a 1-s tick of today's unix time
    for draw in (b"\xff" * 7, (999).to_bytes(7), (1_999).to_bytes(7)):
        plan = plan_tick(tick, 1, OURS[:1], {}, queue=[], rng=lambda n, d=draw: d[:n])  # type: ignore[misc]
        (step,) = plan.steps
        for true_now in (plan.start + 0.25, step.at - 0.000_5, step.at - 0.000_000_1):
            now_ms = int(true_now * 1000)  # what the clock says
            woke = true_now + (step.at - now_ms / 1000)
            assert woke >= step.at - 1e-6 and tick_of(woke, 1) == tick


def test_offsets_are_independent_and_uniform() -> None:
    # 4,000 offsets in 10 bins: each bin within 25% of its expected count.
    offsets = [
        s.at - p.start
        for tick in range(1_000)
        for p in [plan_tick(tick, 100, OURS[:2], dict(list(THEIRS.items())[:2]), rng=seeded_rng(tick))]
        for s in p.steps
    ]
    bins = Counter(int(o // 10) for o in offsets)
    assert set(bins) == set(range(10)) and all(300 <= n <= 500 for n in bins.values())
    # 4,000 draws from 100,000 milliseconds repeat about 80 times
    assert len(set(offsets)) > 3_850


def test_a_tick_needs_a_positive_length() -> None:
    with pytest.raises(ValueError):
        plan_tick(0, 0, OURS, THEIRS, queue=[], rng=seeded_rng(0))


# ------------------------------------------------------------------------------ cover envelopes
def test_cover_is_sealed_like_a_short_text_and_dropped_silently() -> None:
    _, (alice, bob) = people("Alice", "Bob")
    bob_at_alice, alice_at_bob = connect(alice, bob)
    alice.events.clear()
    bob.events.clear()
    assert alice.act(lambda ctx: sending.send_cover(ctx, bob_at_alice))
    alice.act(lambda ctx: sending.send_text(ctx, bob_at_alice, "x" * 40))
    cover, text = alice.read(lambda tx: tx.outbox.all())
    assert len(cover.payload) == len(text.payload) and cover.message_row is None
    alice.flush()
    assert bob.drain() == 2
    assert [type(e) for e in bob.events] == [MessageReceived] and bob.rejections == []
    # The cover asked for no receipt: the one owed is for the text.
    owed = bob.read(lambda tx: tx.messages.pending_receipts(100))
    assert [r.message_id for r in owed] == [text.message_id]
    # And the session kept working after it, both ways.
    bob.act(lambda ctx: sending.send_text(ctx, alice_at_bob, "back"))
    bob.flush()
    alice.drain()
    assert [e.text for e in alice.events if isinstance(e, MessageReceived)] == ["back"]


def test_cover_content_is_empty() -> None:
    assert c.encode(c.Cover()) == bytes((c.FORMAT_VERSION, c.Kind.COVER))
    assert c.decode(c.encode(c.Cover())) == c.Cover()
