"""Several relay nodes on one PostgreSQL database and a message bus (``--bus``): two real
``python -m sotto.server`` processes, a sender on one and a WebSocket receiver on the other.

NATS and Redis are the servers on 127.0.0.1:4222 and 127.0.0.1:6379 (``SOTTO_TEST_NATS`` and
``SOTTO_TEST_REDIS`` name others); a bus that is lost mid-run is a private ``nats-server`` or
``redis-server`` on a free port, stopped and started again under the nodes. While their bus is
healthy the nodes never check the store on their own, so an envelope that arrives then came by
a ring. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from sotto.client.transport import HttpNetwork
from sotto.demo.relay import RelayProcess
from sotto.wire import b64, frames
from sotto.wire.api import MAX_POLL_WAIT_MS
from tests.server.bus.test_doorbell import NATS, REDIS, free_port, private_server
from tests.server.conftest import Mailbox, create_mailbox
from tests.server.storage.conftest import postgres_database

WAIT = 30.0
"""Seconds any single wait may take before the test fails."""
BUSES = {"nats": NATS, "redis": REDIS}


@contextlib.contextmanager
def two_nodes(tmp_path: Path, bus: str, *extra: str) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    """Nodes A and B on one new PostgreSQL database (dropped afterwards), one server key, and
    ``--bus bus``; counters logged every second."""
    data = tmp_path / "data"
    data.mkdir()
    with postgres_database() as dsn:
        command = ("-m", "sotto.server", "--store", dsn, "--bus", bus, "--stats-interval", "1", *extra)
        a = RelayProcess(data, tmp_path / "a.log", command=command)
        b = RelayProcess(data, tmp_path / "b.log", command=command)
        try:
            a.start()  # first: it writes the server key both use
            b.start()
            yield a, b
        finally:
            b.stop()
            a.stop()


def log_of(node: RelayProcess) -> str:
    return node.log_path.read_text(errors="replace")


def logged(node: RelayProcess, text: str) -> Callable[[], bool]:
    return lambda: text in log_of(node)


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def counters(node: RelayProcess) -> dict[str, int]:
    """The counters of every stats line the node logged so far, summed."""
    total: dict[str, int] = {}
    for line in re.findall(r"stats (\{.*\})", log_of(node)):
        for name, value in json.loads(line).items():
            total[name] = total.get(name, 0) + value
    return total


@contextlib.contextmanager
def receiver(node: RelayProcess, mailbox: Mailbox) -> Iterator[ClientConnection]:
    """A delivery WebSocket on ``node`` subscribed to ``mailbox``."""
    with connect(node.url.replace("http", "ws", 1) + "/v1/ws", open_timeout=WAIT, close_timeout=2) as ws:
        challenge = frames.decode_server_frame(ws.recv(WAIT))
        assert isinstance(challenge, frames.Challenge)
        signature = b64.decode(mailbox.drain_proof(challenge.nonce)["sig"])
        proof = frames.MailboxProof(mailbox.mailbox_id, signature)
        ws.send(frames.encode(frames.Subscribe((proof,))))
        subscribed = frames.decode_server_frame(ws.recv(WAIT))
        assert isinstance(subscribed, frames.Subscribed) and subscribed.mailboxes == (mailbox.mailbox_id,)
        yield ws


def send(node: RelayProcess, mailbox: Mailbox) -> bytes:
    """Send an envelope to ``mailbox`` through ``node`` over HTTP; its id."""
    message_id = os.urandom(16)
    answer = httpx.post(
        f"{node.url}/v1/mailboxes/{mailbox.id}/messages",
        json={"message_id": b64.encode(message_id), "payload": b64.encode(message_id * 16)},
        headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
        timeout=WAIT,
    )
    assert answer.status_code == 202, answer.text
    return message_id


def receive(ws: ClientConnection, count: int = 1) -> list[bytes]:
    """The ids of the next ``count`` envelopes, acknowledged."""
    ids: list[bytes] = []
    while len(ids) < count:
        frame = frames.decode_server_frame(ws.recv(WAIT))
        assert isinstance(frame, frames.Envelope), frame
        assert frame.payload == frame.id * 16
        ids.append(frame.id)
        ws.send(frames.encode(frames.Ack((frames.EnvelopeRef(frame.mailbox, frame.id),))))
    return ids


def nothing_more(ws: ClientConnection, seconds: float = 2.5) -> None:
    """No further frame arrives within ``seconds`` (more than two rounds of store checks)."""
    with pytest.raises(TimeoutError):
        frame = ws.recv(seconds)
        raise AssertionError(f"unexpected frame {frame!r}")


def new_mailbox(node: RelayProcess) -> Mailbox:
    with httpx.Client(base_url=node.url, timeout=WAIT) as client:
        return create_mailbox(client)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["nats", "redis"])
def test_a_message_sent_on_one_node_reaches_a_receiver_on_the_other(kind: str, tmp_path: Path) -> None:
    with two_nodes(tmp_path, BUSES[kind]) as (a, b):
        mailbox = new_mailbox(a)
        with receiver(b, mailbox) as ws:
            sent = [send(a, mailbox) for _ in range(5)]
            assert receive(ws, 5) == sent  # in order, each once
            sent = [send(a, mailbox), send(b, mailbox)]  # from the other node too, and its own
            assert receive(ws, 2) == sent
            nothing_more(ws)
        for node in (a, b):
            assert "bus down" not in log_of(node)
        # The pushes may straddle two stats lines, logged a second apart: wait for all of them.
        wait_for(lambda: counters(b).get("envelopes_pushed", 0) >= 7, "node B's stats lines")
        assert "bus_fallback_checks" not in counters(b)
        assert counters(b)["envelopes_pushed"] == 7


def test_a_long_poll_held_on_one_node_is_answered_by_a_send_on_the_other(tmp_path: Path) -> None:
    with two_nodes(tmp_path, NATS) as (a, b):
        mailbox = new_mailbox(a)

        async def go() -> None:
            network = HttpNetwork()
            try:
                poll = asyncio.create_task(
                    network.relay(b.url).long_poll(mailbox.mailbox_id, mailbox.key, [], 32, MAX_POLL_WAIT_MS)
                )
                await asyncio.to_thread(wait_for, lambda: counters(b).get("polls_held", 0) == 1, "the hold")
                assert not poll.done()
                sent = await asyncio.to_thread(send, a, mailbox)
                result = await asyncio.wait_for(poll, WAIT)
                assert [e.id for e in result.envelopes] == [sent]
            finally:
                await network.aclose()

        asyncio.run(go())


def test_an_unreachable_bus_falls_back_to_checking_the_store(tmp_path: Path) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    with two_nodes(tmp_path, nowhere) as (a, b):
        for node in (a, b):
            assert log_of(node).count("event bus down (unreachable at start)") == 1
        mailbox = new_mailbox(a)
        with receiver(b, mailbox) as ws:
            sent = [send(a, mailbox) for _ in range(3)]
            assert receive(ws, 3) == sent
            nothing_more(ws)
        wait_for(lambda: counters(b).get("bus_fallback_checks", 0) >= 2, "the fallback's counter on node B")
        assert counters(b)["bus_down"] == 1
        assert "Traceback" not in log_of(b)
        assert log_of(b).count("bus down") == 1  # one line per change of state, not per check


@pytest.mark.parametrize("kind", ["nats", "redis"])
def test_a_bus_lost_mid_run_still_delivers_and_is_used_again_when_back(kind: str, tmp_path: Path) -> None:
    port = free_port()
    with private_server(kind, port) as stop, two_nodes(tmp_path, f"{kind}://127.0.0.1:{port}") as (a, b):
        mailbox = new_mailbox(a)
        with receiver(b, mailbox) as ws:
            first = send(a, mailbox)
            assert receive(ws) == [first]
            stop()
            for node in (a, b):
                wait_for(logged(node, "bus down (connection lost)"), "the loss logged")
            during = [send(a, mailbox) for _ in range(3)]
            assert receive(ws, 3) == during
            with private_server(kind, port):
                for node in (a, b):
                    wait_for(logged(node, "event bus up"), "the bus back in the log")
                after = [send(a, mailbox) for _ in range(3)]
                assert receive(ws, 3) == after
                nothing_more(ws)
                wait_for(lambda: counters(b).get("bus_up", 0) == 1, "node B's count of the bus's return")
                assert counters(b)["bus_down"] == 1
                assert counters(b).get("bus_fallback_checks", 0) >= 1
                assert "Traceback" not in log_of(a) + log_of(b)


def test_the_bus_url_is_checked(tmp_path: Path) -> None:
    node = RelayProcess(tmp_path, tmp_path / "x.log", command=("-m", "sotto.server", "--bus", "amqp://x"))
    with pytest.raises(Exception, match="nats:// or redis://"):
        node.start()
    node.stop()
