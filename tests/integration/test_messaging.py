"""Real clients through the real relay process: 1:1, groups, offline recipients, drops, restarts.

The relay is ``python -m sotto.server`` in its own process (SQLite in a temporary directory);
the clients are the SDK with encrypted SQLite stores, talking HTTP and WebSocket over loopback.
Every test checks *exactly once*: each text arrives, in order where order is promised, and a
further sync brings nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.sdk import Client
from tests.integration.harness import (
    CountingNetwork,
    RelayProcess,
    TcpProxy,
    befriend,
    collect,
    new_client,
    rejected,
    reopen,
    run,
    texts,
)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    root = tmp_path_factory.mktemp("relay")
    with RelayProcess(root / "data", root / "relay.log") as process:
        yield process


def test_one_to_one_both_ways(relay: RelayProcess, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(relay.url, tmp_path, "Alice")
        bob = await new_client(relay.url, tmp_path, "Bob")
        async with alice, bob:
            await befriend(alice, bob)
            sent = [await alice.send_text("Bob", f"from Alice {i}") for i in range(5)]
            for i in range(5):
                await bob.send_text("Alice", f"from Bob {i}")
            seen = await collect(
                [alice, bob],
                lambda s: (
                    len(texts(s[bob])) >= 5
                    and len(texts(s[alice])) >= 5
                    and any(isinstance(e, ev.DeliveryReceiptReceived) for e in s[alice])
                ),
            )
            seen[bob].extend(await bob.sync(timeout=2, idle=0.3))
            seen[alice].extend(await alice.sync(timeout=2, idle=0.3))
            assert texts(seen[bob]) == [f"from Alice {i}" for i in range(5)]
            assert texts(seen[alice]) == [f"from Bob {i}" for i in range(5)]
            receipted = {
                m for e in seen[alice] if isinstance(e, ev.DeliveryReceiptReceived) for m in e.message_ids
            }
            assert receipted <= set(sent) and receipted
            assert not rejected(seen[alice] + seen[bob])

    run(main)


def test_a_group_of_three(relay: RelayProcess, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob, carol = [await new_client(relay.url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            await befriend(bob, carol)
            group = await alice.create_group("Trio", ["Bob", "Carol"])
            await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
            await alice.send_group_text(group, "one from Alice")
            await bob.send_group_text("Trio", "one from Bob")
            await carol.send_group_text("Trio", "one from Carol")
            everyone = [alice, bob, carol]
            seen = await collect(everyone, lambda s: all(len(texts(s[c])) >= 2 for c in everyone))
            for client in everyone:
                seen[client].extend(await client.sync(timeout=2, idle=0.3))
            assert sorted(texts(seen[alice])) == ["one from Bob", "one from Carol"]
            assert sorted(texts(seen[bob])) == ["one from Alice", "one from Carol"]
            assert sorted(texts(seen[carol])) == ["one from Alice", "one from Bob"]
            group_events = [e for c in everyone for e in seen[c] if isinstance(e, ev.GroupMessageReceived)]
            assert len(group_events) == 6 and {e.group.name for e in group_events} == {"Trio"}
            history = sorted(m.text for m in carol.history("Trio"))
            assert history == ["one from Alice", "one from Bob", "one from Carol"]
            assert not rejected(e for c in everyone for e in seen[c])

    run(main)


def test_an_offline_recipient_gets_everything_when_it_connects(relay: RelayProcess, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(relay.url, tmp_path, "Alice")
        async with alice:
            async with await new_client(relay.url, tmp_path, "Bob") as bob:
                await befriend(alice, bob)
            for i in range(15):
                await alice.send_text("Bob", f"while you were away {i}")
            assert await alice.flush() == 0  # all stored by the relay, Bob still offline
            async with await reopen(tmp_path, "Bob") as bob:
                seen = await collect([bob], lambda s: len(texts(s[bob])) >= 15)
                seen[bob].extend(await bob.sync(timeout=2, idle=0.3))
                assert texts(seen[bob]) == [f"while you were away {i}" for i in range(15)]
                assert not rejected(seen[bob])
            async with await reopen(tmp_path, "Bob") as bob:
                assert not texts(await bob.sync(timeout=3, idle=0.3))  # acknowledged: gone from the relay

    run(main)


def test_clients_reconnect_after_their_connections_drop(relay: RelayProcess, tmp_path: Path) -> None:
    """A proxy between the clients and the relay resets every connection, several times, while
    texts flow; the drain reconnects, the outbox retries, nothing is lost or doubled."""

    async def main() -> None:
        alice_net, bob_net = CountingNetwork(), CountingNetwork()
        async with TcpProxy(relay.port) as proxy:
            alice = await new_client(proxy.url, tmp_path, "Alice", network=alice_net)
            bob = await new_client(proxy.url, tmp_path, "Bob", network=bob_net)
            async with alice, bob:
                await _through_cuts(proxy, alice, bob, bob_net)

    run(main)


async def _through_cuts(proxy: TcpProxy, alice: Client, bob: Client, bob_net: CountingNetwork) -> None:
    await befriend(alice, bob)
    got: list[str] = []

    async def listen() -> None:
        async for event in bob.listen():
            if isinstance(event, ev.MessageReceived):
                got.append(event.text)

    listener = asyncio.create_task(listen())
    await alice.start()
    for round_ in range(4):
        connections = bob_net.counts.connections
        for i in range(10):
            await alice.send_text("Bob", f"through the storm {10 * round_ + i}")
        await asyncio.sleep(0.1)
        assert proxy.cut() >= 1
        for _ in range(200):  # the drain notices and connects again
            if bob_net.counts.connections > connections:
                break
            await asyncio.sleep(0.05)
        assert bob_net.counts.connections > connections, "the drain reconnected"
    for _ in range(400):
        if len(got) >= 40:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # room for a duplicate to show up
    listener.cancel()
    assert got == [f"through the storm {i}" for i in range(40)]
    assert alice.pending_outbox() == 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_text_sent_before_a_relay_restart_arrives_after_it(how: str, tmp_path: Path) -> None:
    async def main() -> None:
        with RelayProcess(tmp_path / "data", tmp_path / "relay.log") as relay:
            alice = await new_client(relay.url, tmp_path, "Alice")
            async with alice:
                async with await new_client(relay.url, tmp_path, "Bob") as bob:
                    await befriend(alice, bob)
                for i in range(10):
                    await alice.send_text("Bob", f"before the restart {i}")
                assert await alice.flush() == 0  # committed by the relay
                if how == "SIGKILL":
                    relay.kill()
                else:
                    relay.stop()
                await relay.astart()
                await alice.send_text("Bob", "after the restart")
                async with await reopen(tmp_path, "Bob") as bob:
                    seen = await collect([bob], lambda s: len(texts(s[bob])) >= 11)
                    seen[bob].extend(await bob.sync(timeout=2, idle=0.3))
                    expected = [f"before the restart {i}" for i in range(10)] + ["after the restart"]
                    assert texts(seen[bob]) == expected
            assert relay.starts == 2

    run(main)
