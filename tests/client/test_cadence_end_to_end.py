"""Cadence mode end to end: two clients on the real relay app with a 1-second tick, on virtual time.

The relay is :func:`sotto.audit.sim.relay_app` and the clients are SDK clients whose own
transport reaches it in process (:func:`sotto.audit.sim.device_network`), all on one
:class:`~sotto.audit.sim.VirtualEventLoop`: a tick passes in the time its work takes, and a
step planned for an instant is issued at that instant, so what lands in which tick is exact.
They become contacts, exchange texts and receipts, and the relay's view is counted: per tick,
the polls of each mailbox and the sends to each mailbox are the same whether the two chat or
sit idle, no WebSocket is opened, and every request has a connection of its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.audit import sim
from sotto.audit.sim import RELAY_URL, Host, VirtualClock, device_network, relay_app
from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.client.transport import Network, Relay
from sotto.crypto.ed25519 import SigningKey
from sotto.server.config import ServerConfig
from sotto.store.memory import MemoryStore
from sotto.wire import api, b64

TICK = 1
Request = tuple[float, str, bytes]
"""(unix time, "poll" or "send", mailbox id)."""


@dataclass
class Watch:
    """What the relay observed: each cadence request with its connection, and WebSocket opens."""

    clock: VirtualClock
    requests: list[Request] = field(default_factory=list)
    connections: list[tuple[str, int]] = field(default_factory=list)
    sockets: int = 0

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "websocket":
                self.sockets += 1
            elif scope["type"] == "http":
                parts = scope["path"].split("/")
                if len(parts) == 5 and parts[2] == "mailboxes" and parts[4] in ("poll", "messages"):
                    kind = "poll" if parts[4] == "poll" else "send"
                    self.requests.append((self.clock.now(), kind, b64.decode(parts[3])))
                    self.connections.append(tuple(scope["client"]))
            await app(scope, receive, send)

        return watched


class IssuedRelay:
    """A client's relay, noting each cadence request with the time the client issued it."""

    def __init__(self, relay: Relay, log: list[Request], clock: VirtualClock) -> None:
        self._relay = relay
        self._log = log
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relay, name)

    async def poll(
        self, mailbox_id: bytes, key: SigningKey, ack_ids: Sequence[bytes], limit: int
    ) -> api.PollResult:
        self._log.append((self._clock.now(), "poll", mailbox_id))
        return await self._relay.poll(mailbox_id, key, ack_ids, limit)

    async def send_alone(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        self._log.append((self._clock.now(), "send", mailbox_id))
        return await self._relay.send_alone(mailbox_id, token, message_id, payload)


class IssuedNetwork:
    """A device's network whose relays are :class:`IssuedRelay`."""

    def __init__(self, network: Network, log: list[Request], clock: VirtualClock) -> None:
        self._network = network
        self._log = log
        self._clock = clock

    def relay(self, url: str) -> Relay:
        return IssuedRelay(self._network.relay(url), self._log, self._clock)

    async def aclose(self) -> None:
        await self._network.aclose()


async def cadence_client(
    app: ASGIApp, clock: VirtualClock, name: str, address: str, log: list[Request]
) -> Client:
    network = device_network({RELAY_URL: app}, Host(address), clock_ms=clock.now_ms, keep_alive=False)
    return await Client.register(
        MemoryStore(),
        RELAY_URL,
        name,
        network=IssuedNetwork(network, log, clock),
        clock=clock.now_ms,
        cadence=True,
    )


async def gather_events(until: Callable[[], bool], seconds: float) -> None:
    """Wait (virtual time) until ``until`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not until():
        assert loop.time() < deadline, "events did not arrive"
        await asyncio.sleep(0.05)


def per_tick(log: list[Request], first: int, last: int) -> list[Counter[tuple[str, bytes]]]:
    """Requests per tick of issue, ticks ``first`` to ``last`` (excluded)."""
    counts: list[Counter[tuple[str, bytes]]] = [Counter() for _ in range(first, last)]
    for at, kind, mailbox_id in log:
        tick = int(at // TICK)
        if first <= tick < last:
            counts[tick - first][(kind, mailbox_id)] += 1
    return counts


def test_two_cadence_clients_chat_and_the_relay_sees_the_same_as_when_idle() -> None:
    issued: list[Request] = []

    async def main(clock: VirtualClock) -> tuple[Watch, dict[str, list[ev.Event]], int, int, int]:
        watch = Watch(clock)
        async with relay_app(clock, config=ServerConfig(cadence_tick_seconds=TICK)) as app:
            relay = watch.wrap(app)
            alice = await cadence_client(relay, clock, "Alice", "10.0.0.1", issued)
            bob = await cadence_client(relay, clock, "Bob", "10.0.0.2", issued)
            seen: dict[str, list[ev.Event]] = {"Alice": [], "Bob": []}

            async def listen(client: Client) -> None:
                async for event in client.listen():
                    seen[client.display_name].append(event)

            listeners = [asyncio.create_task(listen(c)) for c in (alice, bob)]
            try:
                invite = await alice.create_invite()
                await bob.accept_invite(invite.link, "Alice")
                # Nothing leaves outside a tick: the contact request waits in the outbox.
                assert bob.pending_outbox() == 1 and await bob.flush() == 1
                await gather_events(lambda: bob.is_ready("Alice") and alice.is_ready("Bob"), 30)
                queued = bob.pending_outbox()
                await bob.send_typing("Alice")  # not sent in cadence mode
                assert bob.pending_outbox() == queued

                # Let the setup settle (answers, receipts), then watch idle ticks.
                await asyncio.sleep(3 * TICK)
                idle_from = int(clock.now() // TICK) + 1
                await asyncio.sleep((idle_from + 6) * TICK - clock.now())

                # Chat: several texts both ways, receipts owed back.
                chat_from = int(clock.now() // TICK) + 1
                sent = []
                for n in range(3):
                    sent.append(await alice.send_text("Bob", f"hello {n}"))
                    await bob.send_text("Alice", f"hi {n}")
                    await asyncio.sleep(0.4 * TICK)

                def done() -> bool:
                    got = {c: [e for e in seen[c] if isinstance(e, ev.MessageReceived)] for c in seen}
                    receipts = [e for e in seen["Alice"] if isinstance(e, ev.DeliveryReceiptReceived)]
                    acked = {m for r in receipts for m in r.message_ids}
                    return len(got["Alice"]) == 3 and len(got["Bob"]) == 3 and acked >= set(sent)

                await gather_events(done, 30)
                assert await alice.mark_read("Bob") == 3  # a read receipt, queued for a tick
                chat_to = max(chat_from + 6, int(clock.now() // TICK))
                await asyncio.sleep((chat_to + 1) * TICK - clock.now())
            finally:
                for listener in listeners:
                    listener.cancel()
                await alice.close()
                await bob.close()
        return watch, seen, idle_from, chat_from, chat_to

    watch, seen, idle_from, chat_from, chat_to = sim.run(main)

    # Both know each other and have one mailbox each now: two polls and two sends per tick.
    assert [e.text for e in seen["Bob"] if isinstance(e, ev.MessageReceived)] == [
        f"hello {n}" for n in range(3)
    ]
    assert [e.text for e in seen["Alice"] if isinstance(e, ev.MessageReceived)] == [
        f"hi {n}" for n in range(3)
    ]
    idle = per_tick(issued, idle_from, idle_from + 6)
    chat = per_tick(issued, chat_from, chat_to)
    expected = idle[0]
    assert sorted(expected.values()) == [1, 1, 1, 1] and Counter(k for k, _ in expected) == {
        "poll": 2,
        "send": 2,
    }
    assert all(tick == expected for tick in idle), idle
    assert all(tick == expected for tick in chat), chat

    # The relay saw exactly these requests, at the instants they were issued, and no WebSocket;
    # each came on a connection of its own.
    assert sorted(watch.requests) == sorted(issued)
    assert watch.sockets == 0
    assert len(set(watch.connections)) == len(watch.connections) == len(issued)
