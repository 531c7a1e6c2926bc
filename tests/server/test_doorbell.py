"""The fan-out across nodes (:class:`~sotto.server.doorbell.BusFanout`) on in-process doorbells
that can be made unreachable: who is asked to recheck, the store checks while the bus is down,
rings sent again once it is back, merged rings. The same over real processes, PostgreSQL and
NATS or Redis: ``tests/server/test_nodes.py``. Every wait is bounded."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from sotto.server.bus import BusUnavailableError, LocalDoorbell, LocalHub, Ring
from sotto.server.doorbell import BusFanout, HasPending
from sotto.server.logging import Stats
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId

T = TypeVar("T")
WAIT = 30.0
FAST: dict[str, float] = {"fallback_interval": 0.05, "watch_interval": 0.01, "retry_interval": 0.02}


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(bounded())


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class FlakyDoorbell(LocalDoorbell):
    """An in-process doorbell whose bus can be taken away (:meth:`lose`) and brought back
    (:meth:`regain`), and which can refuse to start at all (``reachable``)."""

    def __init__(self, hub: LocalHub, reachable: list[bool]) -> None:
        super().__init__(hub)
        self._reachable = reachable
        self.lost = False

    async def start(self) -> None:
        if not self._reachable[0]:
            self.health.down()
            raise BusUnavailableError("unreachable")
        await super().start()

    async def ring(self, mailbox_id: bytes, seq: int) -> None:
        if self.lost:
            self.health.ring_failures += 1
            raise BusUnavailableError("lost")
        await super().ring(mailbox_id, seq)

    def lose(self) -> None:
        self.lost = True
        self.health.down()

    def regain(self) -> None:
        self.lost = False
        self.health.up(again=True)


class Node:
    """One node's fan-out, with listeners that record what they were handed."""

    def __init__(
        self, hub: LocalHub, reachable: list[bool] | None = None, has_pending: HasPending | None = None
    ) -> None:
        self.hub = hub
        self.reachable = reachable if reachable is not None else [True]
        self.bells: list[FlakyDoorbell] = []
        self.stats = Stats()
        self.fanout = BusFanout(self._make, self.stats, max_unsent=100, has_pending=has_pending, **FAST)
        self.live: list[EnvelopeRecord] = []
        self.rechecks: list[MailboxId] = []

    def _make(self) -> FlakyDoorbell:
        bell = FlakyDoorbell(self.hub, self.reachable)
        self.bells.append(bell)
        return bell

    def listen(self, mailbox_id: MailboxId) -> None:
        self.fanout.subscribe(mailbox_id, self.live.append, self.rechecks.append)

    @property
    def bell(self) -> FlakyDoorbell:
        return self.bells[-1]

    def count(self, name: str) -> int:
        return self.stats.snapshot().get(name, 0)


def envelope(mailbox_id: MailboxId, seq: int) -> EnvelopeRecord:
    return EnvelopeRecord(mailbox_id, MessageId(os.urandom(16)), seq, 20_000, b"x")


def nodes(count: int, reachable: list[bool] | None = None) -> list[Node]:
    hub = LocalHub()
    return [Node(hub, reachable) for _ in range(count)]


def box() -> MailboxId:
    return MailboxId(os.urandom(16))


def test_a_ring_asks_only_the_listeners_of_its_mailbox_on_other_nodes_to_recheck() -> None:
    async def go() -> None:
        a, b = nodes(2)
        for node in (a, b):
            await node.fanout.start()
        mine, other = box(), box()
        b.listen(mine)
        a.listen(mine)
        sent = envelope(mine, 1)
        a.fanout.publish(sent)
        await until(lambda: b.rechecks == [mine], "node B's recheck")
        assert a.live == [sent] and b.live == []  # this node's listener gets the envelope itself
        a.fanout.publish(envelope(other, 1))
        await until(lambda: b.bell.health.rings_received == 2, "the second ring")
        assert b.rechecks == [mine]  # nobody here listens to the other mailbox
        assert a.fanout.on_bus and b.fanout.on_bus
        assert b.count("bus_fallback_checks") == 0
        for node in (a, b):
            await node.fanout.close()

    run(go())


def test_rings_waiting_for_one_mailbox_are_merged() -> None:
    async def go() -> None:
        a, b = nodes(2)
        for node in (a, b):
            await node.fanout.start()
        heard: list[Ring] = []
        await b.bell.subscribe(heard.append)
        mailbox = box()
        for seq in (1, 3, 2):  # all before the sender runs
            a.fanout.publish(envelope(mailbox, seq))
        await until(lambda: heard != [], "the ring")
        await asyncio.sleep(0.05)
        assert heard == [Ring(mailbox, 3)]
        for node in (a, b):
            await node.fanout.close()

    run(go())


def test_an_unreachable_bus_means_store_checks_until_it_is_reached() -> None:
    async def go() -> None:
        reachable = [False]
        (a,) = nodes(1, reachable)
        mailbox = box()
        a.listen(mailbox)
        await a.fanout.start()
        assert not a.fanout.on_bus and a.count("bus_down") == 1
        await until(lambda: a.count("bus_fallback_checks") >= 3, "three rounds of store checks")
        assert set(a.rechecks) == {mailbox} and len(a.rechecks) >= 3
        a.fanout.publish(envelope(mailbox, 1))  # cannot ring: kept for later
        await until(lambda: a.count("bus_rings_failed") == 1, "the failed ring")
        reachable[0] = True
        await until(lambda: a.fanout.on_bus, "the bus reached")
        assert a.count("bus_up") == 1 and a.count("bus_rings_resent") == 1
        await until(lambda: a.bell.health.rings_sent == 1, "the ring sent again")
        checks = a.count("bus_fallback_checks")
        await asyncio.sleep(0.2)  # four fallback intervals: no more store checks on the bus
        assert a.count("bus_fallback_checks") == checks
        await a.fanout.close()

    run(go())


def test_a_bus_lost_and_back_rechecks_at_once_and_rings_what_failed_meanwhile() -> None:
    async def go() -> None:
        a, b = nodes(2)
        for node in (a, b):
            await node.fanout.start()
        mailbox = box()
        b.listen(mailbox)
        a.bell.lose()  # only node A loses the bus: node B stays on it and does not check the store
        await until(lambda: not a.fanout.on_bus, "node A on the fallback")
        a.fanout.publish(envelope(mailbox, 5))
        await until(lambda: a.count("bus_rings_failed") == 1, "the failed ring")
        assert b.rechecks == []
        a.bell.regain()
        await until(lambda: b.rechecks == [mailbox], "node B hearing the ring sent again")
        assert a.count("bus_down") == a.count("bus_up") == 1
        assert b.count("bus_down") == 0
        b.bell.lose()
        await until(lambda: b.count("bus_fallback_checks") >= 2, "node B checking the store")
        assert b.rechecks.count(mailbox) >= 3  # at the loss, then every interval
        b.bell.regain()
        await until(lambda: b.fanout.on_bus, "node B back on the bus")
        assert b.count("bus_up") == 1
        for node in (a, b):
            await node.fanout.close()

    run(go())


def test_only_bus_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="nats://"):
        BusFanout.for_url("amqp://x", Stats())


def test_a_failing_recheck_is_logged_by_type_and_the_checks_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        (a,) = nodes(1, [False])
        calls: list[MailboxId] = []

        def broken(mailbox_id: MailboxId) -> None:
            calls.append(mailbox_id)
            raise RuntimeError("secret detail")

        a.fanout.subscribe(box(), a.live.append, broken)
        await a.fanout.start()
        await until(lambda: len(calls) >= 3, "three rounds of checks despite the failures")
        await a.fanout.close()

    run(go())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all(e == "error RuntimeError" for e in errors)


def test_rings_kept_for_later_are_bounded() -> None:
    async def go() -> None:
        (a,) = nodes(1, [False])
        a.fanout.max_unsent = 2
        await a.fanout.start()
        for _ in range(5):
            a.fanout.publish(envelope(box(), 1))
        await until(lambda: a.count("bus_rings_failed") == 5, "five failed rings")
        a.reachable[0] = True
        await until(lambda: a.fanout.on_bus, "the bus reached")
        assert a.count("bus_rings_resent") == 2
        await a.fanout.close()

    run(go())


def test_store_checks_ask_only_the_listeners_of_mailboxes_that_hold_something() -> None:
    """So a held long poll is not answered with nothing at every check while the bus is down."""

    async def go() -> None:
        holding: set[MailboxId] = set()
        failing: set[MailboxId] = set()
        checked: list[MailboxId] = []

        async def has_pending(mailbox_id: MailboxId) -> bool:
            checked.append(mailbox_id)
            await asyncio.sleep(0)
            if mailbox_id in failing:
                raise RuntimeError("store down")
            return mailbox_id in holding

        hub = LocalHub()
        a = Node(hub, [False], has_pending)
        full, empty, broken = box(), box(), box()
        holding.add(full)
        failing.add(broken)
        for mailbox_id in (full, empty, broken):
            a.listen(mailbox_id)
        await a.fanout.start()
        await until(lambda: a.count("bus_fallback_checks") >= 3, "three rounds of store checks")
        await until(lambda: checked.count(empty) >= 3, "the empty mailbox checked")
        assert empty not in a.rechecks
        assert a.rechecks.count(full) >= 2 and a.rechecks.count(broken) >= 2  # a failed check rechecks
        holding.add(empty)
        await until(lambda: empty in a.rechecks, "the mailbox that came to hold something")
        await a.fanout.close()

    run(go())


def test_a_ring_without_an_envelope_asks_listeners_here_and_on_other_nodes_to_recheck() -> None:
    async def go() -> None:
        a, b = nodes(2)
        for node in (a, b):
            await node.fanout.start()
        mailbox = box()
        a.listen(mailbox)
        b.listen(mailbox)
        a.fanout.ring(mailbox)  # a send found its envelope stored already
        assert a.rechecks == [mailbox] and a.live == []
        await until(lambda: b.rechecks == [mailbox], "node B's recheck")
        assert b.live == []
        for node in (a, b):
            await node.fanout.close()

    run(go())
