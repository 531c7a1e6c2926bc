"""Faults under several relay nodes: a node killed (SIGKILL) while clients send through both,
and the PostgreSQL under them restarted or its connections ended, with real processes.

Two ``python -m sotto.server`` processes share one PostgreSQL database and NATS (the server on
127.0.0.1:4222, or ``SOTTO_TEST_NATS``). Clients are threads: senders that post envelopes over
HTTP at a steady pace and, like the client's outbox, send an envelope again under the same id
through the other node when their node does not answer, until it is acknowledged (202); and
receivers that hold a delivery WebSocket, acknowledge each envelope and reconnect (to the other
node, when theirs is gone). What the receivers hand to the app is each id once, as the client
does (it drops an id it has seen); the raw pushes are kept too, to say which were pushed again
and by whom. Every wait is bounded.

The restart test starts a PostgreSQL server of its own (``initdb`` and ``pg_ctl`` from the
server's packages, as the ``postgres`` user when the tests run as root) in a temporary
directory, so stopping it touches nobody else's database.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sotto.demo.relay import RelayProcess, free_port
from sotto.wire import b64, frames
from tests.server.bus.test_doorbell import NATS
from tests.server.conftest import Mailbox, create_mailbox
from tests.server.storage.conftest import POSTGRES, TIMEOUTS, postgres_database

WAIT = 60.0
"""Seconds any single wait may take before the test fails (the machine is shared and loaded)."""
PACE = 0.02
"""Seconds a sender pauses between two envelopes (some 50 a second each, at most)."""

pytestmark = pytest.mark.slow


class Node(RelayProcess):
    """A relay process that can also be killed outright."""

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as a machine that loses power."""
        process = self._process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(WAIT)


@contextlib.contextmanager
def nodes_on(dsn: str, tmp_path: Path, count: int = 2) -> Iterator[list[Node]]:
    """``count`` nodes on ``dsn`` and NATS, one server key, counters logged every second."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    command = ("-m", "sotto.server", "--store", dsn, "--bus", NATS, "--stats-interval", "1")
    started: list[Node] = []
    try:
        for i in range(count):
            node = Node(data, tmp_path / f"node{i}.log", command=command)
            started.append(node)
            node.start()  # one at a time: the first writes the server key the others read
        yield started
    finally:
        for node in reversed(started):
            node.stop()


def log_of(node: Node) -> str:
    return node.log_path.read_text(errors="replace")


def wait_for(check: Callable[[], bool], what: str, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def new_mailbox(node: Node) -> Mailbox:
    with httpx.Client(base_url=node.url, timeout=WAIT) as client:
        return create_mailbox(client)  # type: ignore[arg-type]


@dataclass(eq=False)
class Sender(threading.Thread):
    """Posts envelopes round-robin to ``mailboxes`` through ``nodes[home]``; an envelope not
    acknowledged (no answer, or 503) is sent again under the same id through the first running
    node, until acknowledged. Any other answer is a failure of the test."""

    nodes: Sequence[Node]
    home: int
    mailboxes: Sequence[Mailbox]
    acked: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(mailbox id, message id) of every envelope answered 202."""
    refusals: Counter[str] = field(default_factory=Counter)
    """Answers that were not 202, by ``status code`` or the transport error's type."""
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.at = self.home

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported by the test
            self.failures.append(repr(exc))

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            if self.paused.is_set():
                time.sleep(0.05)
                continue
            mailbox = self.mailboxes[n % len(self.mailboxes)]
            n += 1
            self.deliver(mailbox, os.urandom(16))
            time.sleep(PACE)

    def deliver(self, mailbox: Mailbox, message_id: bytes) -> None:
        """Send until acknowledged (bounded by ``WAIT``)."""
        body = {"message_id": b64.encode(message_id), "payload": b64.encode(message_id * 16)}
        headers = {"Sotto-Delivery-Token": b64.encode(mailbox.token)}
        deadline = time.monotonic() + WAIT
        while True:
            node = self.nodes[self.at]
            try:
                answer = httpx.post(
                    f"{node.url}/v1/mailboxes/{mailbox.id}/messages", json=body, headers=headers, timeout=10
                )
            except httpx.TransportError as exc:
                self.refusals[type(exc).__name__] += 1
                self.at = (self.at + 1) % len(self.nodes)  # no answer: the next node
            else:
                if answer.status_code == 202:
                    self.acked.append((mailbox.mailbox_id, message_id))
                    return
                if answer.status_code != 503 or answer.json().get("code") != "unavailable":
                    self.failures.append(f"{answer.status_code} {answer.text}")
                    return
                self.refusals["503"] += 1
            if time.monotonic() > deadline:
                self.failures.append("an envelope was never acknowledged")
                return
            time.sleep(0.1)


@dataclass(eq=False)
class Receiver(threading.Thread):
    """Holds a delivery WebSocket on ``nodes[home]`` subscribed to ``mailbox`` and acknowledges
    each envelope; when the connection ends, connects again to the first running node."""

    nodes: Sequence[Node]
    home: int
    mailbox: Mailbox
    pushes: list[tuple[bytes, str, int]] = field(default_factory=list)
    """(message id, URL of the node that pushed it, index of the connection), every push, in order."""
    connections: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time subscribed, node URL) of each subscription."""
    closes: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.at = self.home

    @property
    def app(self) -> list[bytes]:
        """What the app gets: each id once, in the order first pushed."""
        return list(dict.fromkeys(push[0] for push in self.pushes))

    def pushed_twice_on_one_connection(self) -> bool:
        pairs = [(message_id, connection) for message_id, _, connection in self.pushes]
        return len(pairs) != len(set(pairs))

    def run(self) -> None:
        while not self.stop.is_set():
            node, held = self.nodes[self.at], len(self.connections)
            try:
                self._hold(node)
            except (ConnectionClosed, OSError, TimeoutError):
                self.closes.append(time.monotonic())
                if len(self.connections) == held:  # not even subscribed: try the next node
                    self.at = (self.at + 1) % len(self.nodes)
                time.sleep(0.1)
            except Exception as exc:  # reported by the test
                self.failures.append(repr(exc))
                return

    def _hold(self, node: Node) -> None:
        url = node.url.replace("http", "ws", 1) + "/v1/ws"
        with connect(url, open_timeout=10, close_timeout=2) as ws:
            challenge = frames.decode_server_frame(ws.recv(10))
            if not isinstance(challenge, frames.Challenge):
                raise AssertionError(f"expected a challenge, got {challenge!r}")
            signature = b64.decode(self.mailbox.drain_proof(challenge.nonce)["sig"])
            ws.send(
                frames.encode(frames.Subscribe((frames.MailboxProof(self.mailbox.mailbox_id, signature),)))
            )
            subscribed = frames.decode_server_frame(ws.recv(10))
            if not isinstance(subscribed, frames.Subscribed):
                raise ConnectionError(f"not subscribed: {subscribed!r}")  # a storage failure, say
            assert subscribed.mailboxes == (self.mailbox.mailbox_id,)
            self.connections.append((time.monotonic(), node.url))
            index = len(self.connections) - 1
            while not self.stop.is_set():
                try:
                    frame = frames.decode_server_frame(ws.recv(0.2))
                except TimeoutError:
                    continue
                if not isinstance(frame, frames.Envelope):
                    continue
                if frame.payload != frame.id * 16 or frame.mailbox != self.mailbox.mailbox_id:
                    raise AssertionError("an envelope came altered or to the wrong mailbox")
                self.pushes.append((frame.id, node.url, index))
                ws.send(frames.encode(frames.Ack((frames.EnvelopeRef(frame.mailbox, frame.id),))))


def acked_by(senders: Sequence[Sender]) -> dict[bytes, set[bytes]]:
    """Acknowledged message ids by mailbox."""
    out: dict[bytes, set[bytes]] = {}
    for sender in senders:
        for mailbox_id, message_id in list(sender.acked):
            out.setdefault(mailbox_id, set()).add(message_id)
    return out


def all_received(receivers: Sequence[Receiver], senders: Sequence[Sender]) -> Callable[[], bool]:
    def check() -> bool:
        acked = acked_by(senders)
        return all(acked.get(r.mailbox.mailbox_id, set()) <= set(r.app) for r in receivers)

    return check


def total_acked(senders: Sequence[Sender]) -> int:
    return sum(len(s.acked) for s in senders)


def acked_past(senders: Sequence[Sender], mark: int) -> bool:
    return total_acked(senders) >= mark


def finish(senders: Sequence[Sender], receivers: Sequence[Receiver]) -> None:
    """Stop the senders, wait until every acknowledged envelope has reached its receiver and
    for more than two rounds of store checks after that, then stop the receivers."""
    for sender in senders:
        sender.stop.set()
    for sender in senders:
        sender.join(WAIT)
        assert not sender.is_alive()
        assert not sender.failures, sender.failures
    wait_for(all_received(receivers, senders), "every acknowledged envelope at its receiver")
    time.sleep(2.5)  # anything pushed again after this would show up here
    for receiver in receivers:
        receiver.stop.set()
    for receiver in receivers:
        receiver.join(WAIT)
        assert not receiver.is_alive()
        assert not receiver.failures, receiver.failures


def check_nothing_lost(senders: Sequence[Sender], receivers: Sequence[Receiver]) -> None:
    """Each receiver's app got exactly the acknowledged envelopes of its mailbox, each once."""
    acked = acked_by(senders)
    assert sum(len(ids) for ids in acked.values()) == total_acked(senders)  # no id acknowledged twice
    for receiver in receivers:
        app = receiver.app
        assert set(app) == acked.get(receiver.mailbox.mailbox_id, set())


def test_a_node_killed_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with postgres_database() as dsn, nodes_on(dsn, tmp_path) as nodes:
        a, b = nodes
        mailboxes = [new_mailbox(b) for _ in range(4)]
        # Two receivers on each node; two senders, one through each node, each to all four.
        receivers = [Receiver(nodes, i % 2, mailbox) for i, mailbox in enumerate(mailboxes)]
        for receiver in receivers:
            receiver.start()
        wait_for(lambda: all(r.connections for r in receivers), "every receiver subscribed")
        senders = [Sender(nodes, 0, mailboxes), Sender(nodes, 1, mailboxes)]
        for sender in senders:
            sender.start()
        wait_for(lambda: total_acked(senders) >= 100, "100 envelopes acknowledged before the kill")

        a.kill()
        killed_at = time.monotonic()
        acked_at_kill = total_acked(senders)
        on_a = [r for r in receivers if r.connections[0][1] == a.url]
        wait_for(lambda: all(len(r.connections) == 2 for r in on_a), "A's receivers subscribed on B")
        wait_for(lambda: total_acked(senders) >= acked_at_kill + 100, "100 envelopes acknowledged after")
        finish(senders, receivers)

        check_nothing_lost(senders, receivers)
        for receiver in on_a:
            assert [url for _, url in receiver.connections] == [a.url, b.url]
            assert receiver.connections[1][0] > killed_at
        for receiver in receivers:
            if receiver not in on_a:
                assert len(receiver.connections) == 1, "B's receivers kept their connection"
            # Node B pushed each envelope once to each connection; an envelope pushed twice was
            # pushed first by A, which may have died before it committed the acknowledgement.
            by_b = [message_id for message_id, url, _ in receiver.pushes if url == b.url]
            by_a = {message_id for message_id, url, _ in receiver.pushes if url == a.url}
            assert len(by_b) == len(set(by_b))
            repeated = [m for m, n in Counter(push[0] for push in receiver.pushes).items() if n > 1]
            assert set(repeated) <= by_a
        assert "Traceback" not in log_of(b)
        assert b.running
        gaps = [r.connections[1][0] - killed_at for r in on_a]
        again = sum(len(r.pushes) - len(r.app) for r in receivers)
        print(f"acknowledged {total_acked(senders)}, pushed again {again}, resubscribed after {gaps} s,")
        print(f"sends retried: {[dict(s.refusals) for s in senders]}")


# ---------------------------------------------------------------------- PostgreSQL goes away


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PrivatePostgres:
    """A PostgreSQL server of its own in a temporary directory, on 127.0.0.1 and a free port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="sotto-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bindir / tool), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, timeout=WAIT, check=False)
        assert done.returncode == 0, done.stdout.decode(errors="replace") + done.stderr.decode(
            errors="replace"
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?options={urllib.parse.quote(TIMEOUTS)}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=40"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """As a crash would (``immediate``): no checkpoint; what was committed is in the WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def refused_typed(node: Node, mailbox: Mailbox) -> bool:
    """A send through ``node`` is answered 503 ``unavailable`` (and not stored)."""
    answer = httpx.post(
        f"{node.url}/v1/mailboxes/{mailbox.id}/messages",
        json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(bytes(256))},
        headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
        timeout=WAIT,
    )
    return answer.status_code == 503 and answer.json()["code"] == "unavailable"


def test_postgresql_restarted_under_two_nodes_answers_503_and_recovers_losing_nothing(
    tmp_path: Path,
) -> None:
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    server = PrivatePostgres(bindir)
    try:
        server.start()
        with nodes_on(server.dsn, tmp_path) as nodes:
            a = nodes[0]
            live, parked = new_mailbox(a), new_mailbox(a)
            receiver = Receiver(nodes, 1, live)
            receiver.start()
            wait_for(lambda: bool(receiver.connections), "the receiver subscribed on B")
            sender = Sender(nodes, 0, [live, parked])
            sender.start()
            wait_for(lambda: len(sender.acked) >= 40, "40 envelopes acknowledged")

            server.stop()
            # Both nodes answer at once, with the typed refusal a client retries.
            for node in nodes:
                wait_for(functools.partial(refused_typed, node, live), f"a 503 from {node.url}")
            wait_for(lambda: sender.refusals["503"] >= 3, "the sender refused meanwhile")
            acked_while_down = len(sender.acked)
            time.sleep(1.0)
            assert len(sender.acked) == acked_while_down, "nothing is acknowledged while it is down"

            server.start()
            restarted_at = time.monotonic()
            # The nodes were not restarted: they reconnect by themselves.
            wait_for(lambda: len(sender.acked) > acked_while_down, "an envelope acknowledged after")
            recovered = time.monotonic() - restarted_at
            wait_for(lambda: len(sender.acked) >= acked_while_down + 40, "40 envelopes acknowledged after")
            parking = Receiver(nodes, 1, parked)
            parking.start()
            finish([sender], [receiver, parking])
            check_nothing_lost([sender], [receiver, parking])
            for r in (receiver, parking):
                assert not r.pushed_twice_on_one_connection()
            assert recovered < WAIT
            print(f"first acknowledged {recovered:.2f} s after the restart; {dict(sender.refusals)}")
            for node in nodes:
                assert node.running
                assert "Traceback" not in log_of(node)
    finally:
        server.close()


def test_the_relays_database_connections_ended_mid_stream_lose_nothing(tmp_path: Path) -> None:
    with postgres_database() as dsn, nodes_on(dsn, tmp_path) as nodes:
        mailboxes = [new_mailbox(nodes[0]) for _ in range(2)]
        receivers = [Receiver(nodes, i, mailbox) for i, mailbox in enumerate(mailboxes)]
        for receiver in receivers:
            receiver.start()
        wait_for(lambda: all(r.connections for r in receivers), "every receiver subscribed")
        senders = [Sender(nodes, 0, mailboxes), Sender(nodes, 1, mailboxes)]
        for sender in senders:
            sender.start()
        database = urllib.parse.urlsplit(dsn).path.lstrip("/")
        ended = 0
        for _ in range(3):
            mark = total_acked(senders)
            wait_for(functools.partial(acked_past, senders, mark + 30), "30 more envelopes acknowledged")
            with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5) as admin:
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
                ).fetchall()
            ended += len(rows)
        mark = total_acked(senders)
        wait_for(lambda: total_acked(senders) >= mark + 30, "30 envelopes acknowledged after the last")
        finish(senders, receivers)
        check_nothing_lost(senders, receivers)
        assert ended > 0
        print(f"backends ended {ended}; sends retried: {[dict(s.refusals) for s in senders]}")
        print(f"pushed again {sum(len(r.pushes) - len(r.app) for r in receivers)}")
        for receiver in receivers:
            # A connection closed by a failed read or acknowledgement may be followed by a push
            # again on the next, of what was not yet deleted; never twice on one connection.
            assert not receiver.pushed_twice_on_one_connection()
        for node in nodes:
            assert "Traceback" not in log_of(node)
