"""Cadence mode end to end: two clients on the real relay with a 1-second tick.

They become contacts, exchange texts and receipts, and the relay's view is counted: per tick,
the polls of each mailbox and the sends to each mailbox are the same whether the two chat or
sit idle, no WebSocket is opened, and every request has a connection of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork, HttpRelay
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.passphrase import Argon2Params
from sotto.wire import api, b64
from tests.client.running_relay import free_port, running_relay

T = TypeVar("T")
TICK = 1
PASSPHRASE = "cadence passphrase"


@dataclass
class Watch:
    """What the relay observed: (unix time, kind, mailbox id) per request, and WebSocket opens."""

    requests: list[tuple[float, str, bytes]] = field(default_factory=list)
    sockets: int = 0

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "websocket":
                self.sockets += 1
            elif scope["type"] == "http":
                parts = scope["path"].split("/")
                if len(parts) == 5 and parts[2] == "mailboxes" and parts[4] in ("poll", "messages"):
                    kind = "poll" if parts[4] == "poll" else "send"
                    self.requests.append((time.time(), kind, b64.decode(parts[3])))
            await app(scope, receive, send)

        return watched


class IssuedAt(HttpRelay):
    """Our relay, noting each cadence request with the time the client issued it."""

    log: list[tuple[float, str, bytes]]

    async def poll(
        self, mailbox_id: bytes, key: SigningKey, ack_ids: Sequence[bytes], limit: int
    ) -> api.PollResult:
        self.log.append((time.time(), "poll", mailbox_id))
        return await super().poll(mailbox_id, key, ack_ids, limit)

    async def send_alone(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        self.log.append((time.time(), "send", mailbox_id))
        return await super().send_alone(mailbox_id, token, message_id, payload)


class LoggingNetwork(HttpNetwork):
    def __init__(self, log: list[tuple[float, str, bytes]]) -> None:
        super().__init__()
        self._log = log

    def relay(self, url: str) -> HttpRelay:
        found = super().relay(url)
        found.__class__ = IssuedAt
        found.log = self._log  # type: ignore[attr-defined]
        return found


@pytest.fixture(scope="module")
def watched_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Watch]]:
    watch = Watch()
    with running_relay(
        tmp_path_factory.mktemp("relay"), free_port(), wrap=watch.wrap, cadence_tick_seconds=TICK
    ) as url:
        yield url, watch


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 120))


async def gather_events(clients: list[Client], until: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "events did not arrive"
        await asyncio.sleep(0.05)


LATE = 0.25 * TICK
"""How late a step may start after its planned time (the event loop was busy committing)."""


def per_tick(log: list[tuple[float, str, bytes]], first: int, last: int) -> list[Counter[tuple[str, bytes]]]:
    """Requests per tick of issue. A request issued just after a tick began, when that tick has
    a later one of the same kind for the same mailbox and the tick before has none, was the
    previous tick's last step started late: it is counted there."""
    ticks: dict[tuple[str, bytes], list[int]] = {}
    for at, kind, mailbox_id in sorted(log):
        ticks.setdefault((kind, mailbox_id), []).append(int(at // TICK))
    times = {key: sorted(at for at, k, m in log if (k, m) == key) for key in ticks}
    counts: list[Counter[tuple[str, bytes]]] = [Counter() for _ in range(first, last)]
    for key, assigned in ticks.items():
        for i in range(len(assigned) - 1):
            late = times[key][i] - assigned[i] * TICK < LATE
            if assigned[i] == assigned[i + 1] and late and (i == 0 or assigned[i - 1] < assigned[i] - 1):
                assigned[i] -= 1
        for tick in assigned:
            if first <= tick < last:
                counts[tick - first][key] += 1
    return counts


def test_two_cadence_clients_chat_and_the_relay_sees_the_same_as_when_idle(
    watched_relay: tuple[str, Watch], tmp_path: Path
) -> None:
    url, watch = watched_relay
    issued: list[tuple[float, str, bytes]] = []

    async def main() -> None:
        alice = await Client.create(
            tmp_path / "alice", url, PASSPHRASE, "Alice", kdf=Argon2Params.TESTING,
            network=LoggingNetwork(issued), cadence=True,
        )  # fmt: skip
        bob = await Client.create(
            tmp_path / "bob", url, PASSPHRASE, "Bob", kdf=Argon2Params.TESTING,
            network=LoggingNetwork(issued), cadence=True,
        )  # fmt: skip
        seen: dict[Client, list[ev.Event]] = {alice: [], bob: []}

        async def listen(client: Client) -> None:
            async for event in client.listen():
                seen[client].append(event)

        listeners = [asyncio.create_task(listen(c)) for c in (alice, bob)]
        try:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            # Nothing leaves outside a tick: the contact request waits in the outbox.
            assert bob.pending_outbox() == 1 and await bob.flush() == 1
            await gather_events([alice, bob], lambda: bob.is_ready("Alice") and alice.is_ready("Bob"), 30)
            queued = bob.pending_outbox()
            await bob.send_typing("Alice")  # not sent in cadence mode
            assert bob.pending_outbox() == queued

            # Let the setup settle (answers, receipts), then watch idle ticks.
            await asyncio.sleep(3 * TICK)
            idle_from = int(time.time() // TICK) + 1
            await asyncio.sleep((idle_from + 6) * TICK - time.time())

            # Chat: several texts both ways, receipts owed back.
            chat_from = int(time.time() // TICK) + 1
            sent = []
            for n in range(3):
                sent.append(await alice.send_text("Bob", f"hello {n}"))
                await bob.send_text("Alice", f"hi {n}")
                await asyncio.sleep(0.4 * TICK)

            def done() -> bool:
                got = {c: [e for e in seen[c] if isinstance(e, ev.MessageReceived)] for c in seen}
                receipts = [e for e in seen[alice] if isinstance(e, ev.DeliveryReceiptReceived)]
                acked = {m for r in receipts for m in r.message_ids}
                return len(got[alice]) == 3 and len(got[bob]) == 3 and acked >= set(sent)

            await gather_events([alice, bob], done, 30)
            assert await alice.mark_read("Bob") == 3  # a read receipt, queued for a tick
            chat_to = max(chat_from + 6, int(time.time() // TICK))
            await asyncio.sleep((chat_to + 1) * TICK - time.time())
        finally:
            for listener in listeners:
                listener.cancel()
            await alice.close()
            await bob.close()

        # Both know each other and have one mailbox each now: two polls and two sends per tick.
        assert [e.text for e in seen[bob] if isinstance(e, ev.MessageReceived)] == [
            f"hello {n}" for n in range(3)
        ]
        assert [e.text for e in seen[alice] if isinstance(e, ev.MessageReceived)] == [
            f"hi {n}" for n in range(3)
        ]
        # Counted once the log is complete: a late step is recognised by the one after it.
        idle = per_tick(issued, idle_from, idle_from + 6)
        chat = per_tick(issued, chat_from, chat_to)
        expected = idle[0]
        assert sorted(expected.values()) == [1, 1, 1, 1] and Counter(k for k, _ in expected) == {
            "poll": 2,
            "send": 2,
        }
        assert all(tick == expected for tick in idle), idle
        assert all(tick == expected for tick in chat), chat

        # The relay saw exactly these requests, in this order per mailbox, and no WebSocket.
        def per_mailbox(log: list[tuple[float, str, bytes]]) -> Counter[tuple[str, bytes]]:
            return Counter((kind, mailbox_id) for _, kind, mailbox_id in log)

        assert per_mailbox(watch.requests) == per_mailbox(issued)
        assert watch.sockets == 0

    run(main)
