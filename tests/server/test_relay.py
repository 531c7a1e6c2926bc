"""The pure delivery window: bounded, no double push while pending, nothing lost on overflow,
storage order kept per mailbox."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.server.relay import DeliveryWindow, Fetch, Ref
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId

A, B = MailboxId(b"A" * 16), MailboxId(b"B" * 16)


def _envelope(mailbox: MailboxId, seq: int) -> EnvelopeRecord:
    return EnvelopeRecord(mailbox, MessageId(os.urandom(16)), seq, 1, b"")


class Simulation:
    """A window over an in-memory mailbox store, driven step by step."""

    def __init__(self, window: DeliveryWindow) -> None:
        self.window = window
        self.stored: dict[MailboxId, list[EnvelopeRecord]] = {A: [], B: []}
        self.seq = 0
        self.pushed_pending: set[Ref] = set()  # pushed and still stored
        self.delivered: set[Ref] = set()
        self.last_pushed: dict[MailboxId, int] = {}  # seq of each mailbox's latest push

    def store(self, mailbox: MailboxId, live: bool) -> None:
        self.seq += 1
        envelope = _envelope(mailbox, self.seq)
        self.stored[mailbox].append(envelope)
        if live:
            self.window.offer(envelope)

    def read(self, fetch: Fetch) -> list[EnvelopeRecord]:
        return [e for e in self.stored[fetch.mailbox_id] if e.message_id not in fetch.skip][: fetch.limit]

    def pump(self, *, live_during_read: MailboxId | None = None) -> list[EnvelopeRecord]:
        """Fetch and push until the window has nothing to do; with ``live_during_read``, one live
        envelope is committed to that mailbox while the first read is out (after it has read)."""
        pushed: list[EnvelopeRecord] = []
        while True:
            fetch = self.window.next_fetch()
            if fetch is not None:
                rows = self.read(fetch)
                if live_during_read is not None:
                    self.store(live_during_read, live=True)
                    live_during_read = None
                self.window.fetched(fetch, rows)
                continue
            batch = self.window.take()
            if not batch:
                return pushed
            for envelope in batch:
                assert envelope.ref not in self.pushed_pending, "pushed twice while pending"
                self.pushed_pending.add(envelope.ref)
                mailbox = envelope.mailbox_id
                assert envelope.seq > self.last_pushed.get(mailbox, 0), "pushed out of storage order"
                self.last_pushed[mailbox] = envelope.seq
            pushed += batch
            assert self.window.unacked <= self.window.max_unacked

    def ack(self, envelopes: list[EnvelopeRecord]) -> None:
        refs = self.window.acked(e.ref for e in envelopes)
        for mailbox, message_id in refs:
            self.stored[mailbox] = [e for e in self.stored[mailbox] if e.message_id != message_id]
            self.pushed_pending.discard((mailbox, message_id))
            self.delivered.add((mailbox, message_id))


def test_pending_first_then_live() -> None:
    sim = Simulation(DeliveryWindow(max_unacked=4, max_queued=2, fetch_size=2))
    for _ in range(3):
        sim.store(A, live=False)
    sim.window.subscribe([A])
    first = sim.pump()
    assert [e.seq for e in first] == [1, 2, 3]
    sim.store(A, live=True)
    assert [e.seq for e in sim.pump()] == [4]
    assert sim.pump() == []  # window full (4 unacked)
    sim.store(A, live=True)
    assert sim.pump() == []
    sim.ack(first)
    assert [e.seq for e in sim.pump()] == [5]


def test_a_live_envelope_does_not_overtake_the_backlog_being_read() -> None:
    # A reconnect: the backlog (1) is being read when 2 is committed and announced. 2 must not
    # go out first.
    sim = Simulation(DeliveryWindow(max_unacked=8, max_queued=8, fetch_size=8))
    sim.store(A, live=False)
    sim.window.subscribe([A])
    assert [e.seq for e in sim.pump(live_during_read=A)] == [1, 2]


def test_a_live_envelope_waits_for_a_backlog_read_in_several_parts() -> None:
    sim = Simulation(DeliveryWindow(max_unacked=8, max_queued=8, fetch_size=2))
    for _ in range(5):
        sim.store(A, live=False)
    sim.window.subscribe([A])
    fetch = sim.window.next_fetch()
    assert fetch is not None
    sim.window.fetched(fetch, sim.read(fetch))  # 1, 2: more may follow, A stays stale
    sim.store(A, live=True)  # 6, announced while 3-5 wait in storage
    assert [e.seq for e in sim.pump()] == [1, 2, 3, 4, 5, 6]


def test_unsubscribed_mailboxes_are_ignored() -> None:
    window = DeliveryWindow()
    window.subscribe([A])
    window.offer(_envelope(B, 1))
    assert window.take() == []
    assert window.acked([(B, MessageId(b"x" * 16))]) == []


def test_an_ack_during_a_fetch_is_not_pushed_again() -> None:
    window = DeliveryWindow(max_unacked=10, max_queued=10, fetch_size=10)
    window.subscribe([A])
    envelope = _envelope(A, 1)
    fetch = window.next_fetch()
    assert fetch is not None
    # The client acks an envelope it got on an earlier connection while the read is out.
    window.acked([envelope.ref])
    window.fetched(fetch, [envelope])
    assert window.take() == []


def test_an_acked_envelope_is_not_read_again_until_its_delete_is_reported() -> None:
    window = DeliveryWindow(max_unacked=10, max_queued=10, fetch_size=2)
    window.subscribe([A])
    first, second = _envelope(A, 1), _envelope(A, 2)
    fetch = window.next_fetch()
    assert fetch is not None
    window.fetched(fetch, [first, second])  # a full read: the mailbox may hold more
    assert window.take() == [first, second]
    assert window.acked([first.ref], until_deleted=True) == [first.ref]
    assert window.acked([first.ref], until_deleted=True) == []  # its delete is already on its way
    assert window.deleting == 1 and window.unacked == 1
    # The next read starts before the delete commits: it skips the envelope, and so does its result.
    fetch = window.next_fetch()
    assert fetch is not None and fetch.skip == {first.message_id, second.message_id}
    window.fetched(fetch, [first])
    assert window.take() == []
    window.deleted([first.ref])
    assert window.deleting == 0


@settings(max_examples=150)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("store"), st.sampled_from([A, B])),
            st.just(("subscribe",)),
            st.tuples(st.just("ack"), st.integers(0, 8)),
            st.just(("pump",)),
            st.tuples(st.just("pump_with_live"), st.sampled_from([A, B])),
        ),
        max_size=120,
    ),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_random_runs_deliver_everything_once(
    steps: list[tuple[object, ...]], max_unacked: int, max_queued: int, fetch_size: int
) -> None:
    """Envelopes stored before the subscription wait in storage; after it, each is also announced."""
    sim = Simulation(DeliveryWindow(max_unacked=max_unacked, max_queued=max_queued, fetch_size=fetch_size))
    subscribed = False
    outstanding: list[EnvelopeRecord] = []
    for step in [*steps, ("subscribe",)]:
        if step[0] == "subscribe":
            sim.window.subscribe([A, B])
            subscribed = True
        elif step[0] == "store":
            sim.store(step[1], live=subscribed)  # type: ignore[arg-type]
        elif step[0] == "ack":
            n = int(step[1])  # type: ignore[call-overload]
            sim.ack(outstanding[:n])
            outstanding = outstanding[n:]
        elif step[0] == "pump_with_live":
            outstanding += sim.pump(live_during_read=step[1] if subscribed else None)  # type: ignore[arg-type]
        else:
            outstanding += sim.pump()
    # Quiesce: keep pumping and acking; every stored envelope comes out exactly once.
    for _ in range(1000):
        outstanding += sim.pump()
        if not outstanding:
            break
        sim.ack(outstanding)
        outstanding = []
    assert sim.stored == {A: [], B: []}
    assert len(sim.delivered) == sim.seq
