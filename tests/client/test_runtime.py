"""The runtime's cadence loop over the in-memory relay (1-second ticks): nothing is lost when the
relay is away for a while, and a polled envelope is acknowledged only on the next poll, after
its commit (a client that stops in between gets it again and drops the copy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sotto.client import events as ev
from sotto.client.sdk import Client
from tests.client.fake_relay import FakeNetwork, FakeRelay
from tests.client.test_sdk import URL, SurvivingStore, client, connect

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 60))


async def until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def held(relay: FakeRelay, envelope_id: bytes) -> bool:
    return any(envelope_id in m.envelopes for m in relay.mailboxes.values())


def test_cadence_retries_after_an_outage_and_acks_only_after_the_commit() -> None:
    async def main() -> None:
        net = FakeNetwork()
        relay = net.relay(URL)
        relay.tick_seconds = 1
        stores = SurvivingStore(), SurvivingStore()
        first = await client(net, "Alice", stores[0]), await client(net, "Bob", stores[1])
        async with first[0], first[1]:
            await connect(*first)
        alice = await Client.attach(stores[0], network=net, cadence=True)
        bob = await Client.attach(stores[1], network=net, cadence=True)
        heard: list[ev.Event] = []

        async def listen() -> None:
            async for event in bob.listen():
                heard.append(event)

        listener = asyncio.create_task(listen())
        await alice.start()
        try:
            await until(lambda: alice.connected and bob.connected)
            relay.online = False
            message_id = await alice.send_text("Bob", "through an outage")
            await asyncio.sleep(2.5)  # two ticks' sends fail: the text stays queued
            assert alice.pending_outbox() >= 1 and not held(relay, message_id)
            relay.online = True
            await until(lambda: any(isinstance(e, ev.MessageReceived) for e in heard))
            # Committed and reported, not yet acknowledged: that waits for the mailbox's next poll.
            assert held(relay, message_id)
        finally:
            listener.cancel()
            await bob.close()
        again = await Client.attach(stores[1], network=net, cadence=True)
        async with alice, again:
            await again.start()
            await until(lambda: not held(relay, message_id))  # redelivered, dropped as seen, acked
            events = await again.sync(timeout=5)
        assert [e.text for e in heard if isinstance(e, ev.MessageReceived)] == ["through an outage"]
        assert not [e for e in events if isinstance(e, ev.MessageReceived)]

    run(main)
