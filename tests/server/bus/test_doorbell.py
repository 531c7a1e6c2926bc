"""One conformance suite for every doorbell: in-process, NATS and Redis pub/sub.

NATS and Redis are the servers on 127.0.0.1:4222 and 127.0.0.1:6379 (``SOTTO_TEST_NATS`` and
``SOTTO_TEST_REDIS`` name others). Each test uses a random subject prefix, so tests running at
once never hear each other. Two doorbells on one bus stand for two relay nodes. Outages are made
on a private ``nats-server`` or ``redis-server`` started by the test on a free port and stopped
and restarted under the doorbell. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import nats
import pytest
import redis.asyncio as aioredis

from sotto.server.bus import (
    BusUnavailableError,
    Doorbell,
    LocalDoorbell,
    LocalHub,
    NatsDoorbell,
    RedisDoorbell,
    Ring,
    doorbell_for,
)
from sotto.server.bus.base import decode_ring, encode_ring

T = TypeVar("T")
NATS = os.environ.get("SOTTO_TEST_NATS", "nats://127.0.0.1:4222")
REDIS = os.environ.get("SOTTO_TEST_REDIS", "redis://127.0.0.1:6379")
WAIT = 30.0
"""Seconds any single wait in these tests may take before the test fails."""

Factory = Callable[[], Doorbell]


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(bounded())


def make_factory(kind: str, url: str | None = None) -> Factory:
    """Doorbells of ``kind`` that hear each other (one random prefix per factory)."""
    prefix = f"sotto-test-{secrets.token_hex(6)}"
    hub = LocalHub()
    if kind == "local":
        return lambda: LocalDoorbell(hub)
    if kind == "nats":
        return lambda: NatsDoorbell(url or NATS, prefix=prefix)
    return lambda: RedisDoorbell(url or REDIS, prefix=prefix, client_name=prefix)


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def mailbox() -> bytes:
    return secrets.token_bytes(16)


@pytest.fixture(params=["local", "nats", "redis"])
def factory(request: pytest.FixtureRequest) -> Factory:
    return make_factory(str(request.param))


def test_a_ring_reaches_every_subscriber_on_every_node(factory: Factory) -> None:
    async def go() -> None:
        a, b, c = factory(), factory(), factory()
        for d in (a, b, c):
            await d.start()
        heard_b: list[Ring] = []
        heard_c: list[Ring] = []
        heard_b2: list[Ring] = []
        await b.subscribe(heard_b.append)
        await b.subscribe(heard_b2.append)
        await c.subscribe(heard_c.append)
        box = mailbox()
        await a.ring(box, 7)
        await until(lambda: len(heard_b) == len(heard_c) == len(heard_b2) == 1, "the ring")
        assert heard_b == heard_c == heard_b2 == [Ring(box, 7)]
        assert a.healthy and b.healthy
        for d in (a, b, c):
            await d.close()
        assert not a.healthy

    run(go())


def test_a_nats_subscription_is_on_the_server_before_subscribe_returns() -> None:
    """The PONG that ends ``subscribe`` answers a PING sent after the SUB, so a ring sent by
    another node as soon as it returns is heard. A scripted server records the order it reads
    commands in (a real server's timing would make this pass or fail by chance)."""
    commands: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"scripted","version":"2.9.10","proto":1,"max_payload":1048576}\r\n')
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().decode()
            commands.append(verb)
            if verb == "PING":
                writer.write(b"PONG\r\n")
                await writer.drain()

    async def go() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        bell = NatsDoorbell(f"nats://127.0.0.1:{port}", prefix=f"sotto-test-{secrets.token_hex(6)}")
        await bell.start()
        await bell.subscribe(lambda ring: None)
        answered = list(commands)
        await bell.close()
        server.close()
        assert answered[:2] == ["CONNECT", "PING"]  # the handshake
        assert "SUB" in answered
        assert answered.index("SUB") < len(answered) - 1 - answered[::-1].index("PING"), answered

    run(go())


def test_order_per_mailbox_is_kept_and_unsubscribe_stops_calls(factory: Factory) -> None:
    async def go() -> None:
        a, b = factory(), factory()
        await a.start()
        await b.start()
        heard: list[Ring] = []
        stop_heard: list[Ring] = []
        await b.subscribe(heard.append)
        remove = await b.subscribe(stop_heard.append)
        remove()
        boxes = [mailbox() for _ in range(4)]
        for seq in range(200):
            await a.ring(boxes[seq % 4], seq)
        await until(lambda: len(heard) == 200, "200 rings")
        for box in boxes:
            seqs = [r.seq for r in heard if r.mailbox_id == box]
            assert seqs == sorted(seqs) and len(seqs) == 50
        assert stop_heard == []
        assert b.health.rings_received >= 200
        await a.close()
        await b.close()

    run(go())


def test_a_coroutine_callback_is_awaited(factory: Factory) -> None:
    async def go() -> None:
        a = factory()
        await a.start()
        heard: list[Ring] = []

        async def callback(ring: Ring) -> None:
            await asyncio.sleep(0)
            heard.append(ring)

        await a.subscribe(callback)
        await a.ring(b"x" * 16, 1)
        await until(lambda: heard == [Ring(b"x" * 16, 1)], "the ring")
        await a.close()

    run(go())


def test_only_mailbox_and_sequence_travel_on_nats() -> None:
    async def go() -> None:
        bell = NatsDoorbell(NATS, prefix=f"sotto-test-{secrets.token_hex(6)}")
        await bell.start()
        raw = await nats.connect(NATS)
        seen: list[bytes] = []

        async def heard(msg: Any) -> None:
            seen.append(bytes(msg.data))
            assert not msg.headers

        await raw.subscribe(bell.subject, cb=heard)
        while raw.pending_data_size:  # the SUB on the socket before the flush's PING (see NatsDoorbell)
            await asyncio.sleep(0)
        await raw.flush()
        box = mailbox()
        await bell.ring(box, 2**40 + 5)
        await until(lambda: len(seen) == 1, "the raw ring")
        assert seen == [box + (2**40 + 5).to_bytes(8, "big")]
        await raw.close()
        await bell.close()

    run(go())


def test_only_mailbox_and_sequence_travel_on_redis() -> None:
    async def go() -> None:
        bell = RedisDoorbell(REDIS, prefix=f"sotto-test-{secrets.token_hex(6)}")
        await bell.start()
        raw = aioredis.Redis.from_url(REDIS)
        pubsub = raw.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(bell.channel)
        box = mailbox()
        await bell.ring(box, 3)
        message = None
        for _ in range(100):
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                break
        assert message is not None
        assert message["data"] == box + (3).to_bytes(8, "big")
        await pubsub.aclose()
        await raw.aclose()
        await bell.close()

    run(go())


def test_rings_that_do_not_decode_are_counted_and_dropped() -> None:
    async def go() -> None:
        bell = RedisDoorbell(REDIS, prefix=f"sotto-test-{secrets.token_hex(6)}")
        await bell.start()
        heard: list[Ring] = []
        await bell.subscribe(heard.append)
        raw = aioredis.Redis.from_url(REDIS)
        await raw.publish(bell.channel, b"short")
        await raw.publish(bell.channel, b"y" * 100)
        await bell.ring(b"z" * 16, 9)
        await until(lambda: len(heard) == 1, "the valid ring")
        assert heard == [Ring(b"z" * 16, 9)]
        assert bell.health.rings_dropped == 2
        await raw.aclose()
        await bell.close()

    run(go())


def test_encoding_round_trips_and_refuses_bad_ids() -> None:
    assert decode_ring(encode_ring(b"\x00" * 16, 0)) == Ring(b"\x00" * 16, 0)
    assert decode_ring(b"\x01" * 8) is None
    with pytest.raises(ValueError):
        encode_ring(b"", 1)
    with pytest.raises(ValueError):
        encode_ring(b"a" * 65, 1)


def test_doorbell_for_picks_by_url() -> None:
    assert isinstance(doorbell_for(None), LocalDoorbell)
    assert isinstance(doorbell_for(NATS), NatsDoorbell)
    assert isinstance(doorbell_for(REDIS), RedisDoorbell)
    with pytest.raises(ValueError):
        doorbell_for("amqp://127.0.0.1")


@pytest.mark.parametrize("kind", ["nats", "redis"])
def test_an_unreachable_bus_is_unhealthy_with_a_typed_error(kind: str) -> None:
    port = free_port()
    url = f"{kind}://127.0.0.1:{port}"

    async def go() -> None:
        bell = make_factory(kind, url)()
        with pytest.raises(BusUnavailableError):
            await bell.start()
        assert not bell.healthy
        with pytest.raises(BusUnavailableError):
            await bell.ring(mailbox(), 1)
        assert bell.health.ring_failures == 1
        await bell.close()

    run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def private_server(kind: str, port: int) -> Iterator[Callable[[], None]]:
    """A private ``nats-server`` or ``redis-server`` on ``port``; yields a function that stops it."""
    binary = shutil.which(f"{kind}-server") or f"/usr/sbin/{kind}-server"
    if kind == "nats":
        argv = [binary, "-a", "127.0.0.1", "-p", str(port)]
    else:
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    try:
        for _ in range(500):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            if proc.poll() is not None:
                raise AssertionError(f"{kind}-server exited")
            subprocess.run(["sleep", "0.01"], check=True)
        yield stop
    finally:
        stop()


@pytest.mark.parametrize("kind", ["nats", "redis"])
def test_the_bus_going_away_turns_health_false_and_coming_back_reconnects(kind: str) -> None:
    port = free_port()
    url = f"{kind}://127.0.0.1:{port}"

    async def go() -> None:
        make = make_factory(kind, url)
        with private_server(kind, port) as stop:
            sender, receiver = make(), make()
            await sender.start()
            await receiver.start()
            heard: list[Ring] = []
            await receiver.subscribe(heard.append)
            box = mailbox()
            await sender.ring(box, 1)
            await until(lambda: len(heard) == 1, "the first ring")
            await asyncio.to_thread(stop)
            await until(lambda: not receiver.healthy, "the receiver to notice")
            with pytest.raises(BusUnavailableError):
                for _ in range(int(WAIT / 0.05)):  # the first publish may only discover the loss
                    await sender.ring(box, 2)
                    await asyncio.sleep(0.05)
            assert not sender.healthy
            assert receiver.health.outages == 1
            with private_server(kind, port):
                await until(lambda: receiver.healthy, "the receiver to reconnect")

                async def ring_until_heard() -> None:
                    while Ring(box, 3) not in heard:
                        with contextlib.suppress(BusUnavailableError):
                            await sender.ring(box, 3)
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(ring_until_heard(), WAIT)
                # A ring the sender wrote before it noticed the loss may come late, never another.
                assert set(heard[1:]) <= {Ring(box, 2), Ring(box, 3)}
                assert receiver.health.reconnects >= 1
                await sender.close()
                await receiver.close()

    run(go())


def test_redis_subscriber_comes_back_after_client_kill() -> None:
    async def go() -> None:
        make = make_factory("redis")
        sender = make()
        receiver = make()
        assert isinstance(receiver, RedisDoorbell)
        await sender.start()
        await receiver.start()
        heard: list[Ring] = []
        await receiver.subscribe(heard.append)
        admin = aioredis.Redis.from_url(REDIS)
        name = receiver.channel.removesuffix(":rings")
        clients = await admin.client_list()
        ours = [c for c in clients if c.get("name") == name and "subscribe" in c.get("cmd", "")]
        assert ours, "the subscriber's connection is in CLIENT LIST under its prefix"
        for c in ours:
            await admin.client_kill_filter(_id=c["id"])
        await until(lambda: receiver.health.reconnects >= 1, "the subscriber to come back")
        box = mailbox()
        await sender.ring(box, 4)
        await until(lambda: heard == [Ring(box, 4)], "a ring after the kill")
        await admin.aclose()
        await sender.close()
        await receiver.close()

    run(go())


def test_a_redis_sender_whose_publish_failed_is_healthy_again_once_the_server_answers() -> None:
    """No ring is needed to find out: a node that stopped ringing learns that the bus is back."""
    port = free_port()

    async def go() -> None:
        with private_server("redis", port) as stop:
            sender = make_factory("redis", f"redis://127.0.0.1:{port}")()
            await sender.start()
            await asyncio.to_thread(stop)
            with pytest.raises(BusUnavailableError):
                await sender.ring(mailbox(), 1)
            assert not sender.healthy
            with private_server("redis", port):
                await until(lambda: sender.healthy, "the sender healthy again")
                assert sender.health.reconnects == 1
                await sender.close()

    run(go())
