"""Default mode through a forwarder: deliveries arrive by long polls, promptly, and the relay
still sees no client address.

Real processes: the relay (``python -m sotto.server``, gateway on, operator's view recorded) and
the forwarder (``python -m sotto.forwarder``), and SDK clients in this process, each leaving from
an address of its own (127.0.0.2, 127.0.0.3, ...), in default mode (no ``cadence``), every call
sealed through the forwarder. Checked: messages arrive while both listen (no cadence tick to wait
for: the relay ticks once an hour here); every mailbox poll that asked to wait went through the
gateway, one mailbox per request; no client address in what the relay received, wrote or
logged; the forwarder bounds held requests with its typed refusals; and a relay killed while
polls are held, then started again, loses nothing: what was sent before and after reaches the
listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sotto.client import events as ev
from sotto.client.oblivious import HOLD_PATH, fetch_key_config, oblivious_network
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import system_rng
from sotto.forwarder import ForwarderConfig, create_forwarder_app
from sotto.server.observer import HttpExchange, read_view
from sotto.wire import api, ohttp
from sotto.wire.limits import ID_LENGTH
from tests.forwarder.processes import ROOT, forwarder_process, free_port, in_thread, wait_for_port

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
PASSPHRASE = "correct horse battery staple"


@dataclass
class Stack:
    relay: str
    forwarder: str
    data: Path
    view: Path
    relay_log: Path
    forwarder_log: Path


def _start(port: int, data: Path, log: Path, view: Path) -> subprocess.Popen[bytes]:
    """``python -m sotto.server`` on ``port``, recording the operator's view (an hour's tick:
    nothing here is cadence mode)."""
    args = ["sotto.server", "--port", str(port), "--data", str(data), "--cadence-tick", "3600"]
    args += ["--record-view", str(view)]
    with log.open("ab") as out:
        command = [sys.executable, "-m", *args]
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_for_port(port, child)
    return child


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(40)  # held polls end within their wait
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


@contextlib.contextmanager
def relay_on(port: int, data: Path, log: Path, view: Path) -> Iterator[subprocess.Popen[bytes]]:
    child = _start(port, data, log, view)
    try:
        yield child
    finally:
        _stop(child)


async def until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "did not happen in time"
        await asyncio.sleep(0.05)


async def person(relay: str, forwarder: str, home: Path, name: str, address: str) -> Client:
    pinned = await fetch_key_config(relay + "/v1/gateway/keys")
    config = await fetch_key_config(forwarder + "/v1/ohttp/keys", pinned=pinned, local_address=address)
    network = oblivious_network(forwarder, config, relay_url=relay, local_address=address)
    return await Client.create(
        home / name, relay, PASSPHRASE, name, network=network, kdf=Argon2Params.TESTING, receipt_delay=0.2
    )


class Listening:
    """Clients with their listen loops running, each event kept with its arrival time."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[float, ev.Event]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.clients: list[Client] = []

    def start(self, client: Client) -> None:
        self.clients.append(client)
        events = self.seen.setdefault(client.display_name, [])

        async def listen() -> None:
            async for event in client.listen():
                events.append((asyncio.get_running_loop().time(), event))

        self._tasks.append(asyncio.create_task(listen()))

    def texts(self, name: str) -> list[str]:
        return [e.text for _, e in self.seen.get(name, []) if isinstance(e, ev.MessageReceived)]

    def arrival(self, name: str, text: str) -> float:
        return next(t for t, e in self.seen[name] if isinstance(e, ev.MessageReceived) and e.text == text)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self.clients:
            network = client.engine.network
            await client.close()
            await network.aclose()


async def connect(people: Listening, a: Client, b: Client) -> None:
    invite = await a.create_invite()
    await b.accept_invite(invite.link, a.display_name)
    await until(lambda: b.is_ready(a.display_name) and a.is_ready(b.display_name), 90)


# ---------------------------------------------------------------------------- the conversation
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("longpoll")
    data, view = root / "data", root / "view.jsonl"
    relay_log, forwarder_log = root / "relay.log", root / "forwarder.log"
    port = free_port()
    relay = f"http://127.0.0.1:{port}"
    with relay_on(port, data, relay_log, view), forwarder_process(relay, forwarder_log) as fwd:
        yield Stack(relay, fwd, data, view, relay_log, forwarder_log)


TEXTS = ("the kettle is on", "ten minutes", "bring biscuits", "the good ones")


@pytest.fixture(scope="module")
def conversation(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Listening:
    home = tmp_path_factory.mktemp("people")

    async def main() -> Listening:
        people = Listening()
        try:
            alice = await person(stack.relay, stack.forwarder, home, "Alice", ADDRESSES[0])
            bob = await person(stack.relay, stack.forwarder, home, "Bob", ADDRESSES[1])
            people.start(alice)
            people.start(bob)
            await connect(people, alice, bob)
            for i, text in enumerate(TEXTS):
                sender, to = (alice, "Bob") if i % 2 == 0 else (bob, "Alice")
                await sender.send_text(to, text)
                await until(lambda text=text, to=to: text in people.texts(to), 30)  # type: ignore[misc]
        finally:
            await people.close()
        return people

    return asyncio.run(asyncio.wait_for(main(), 240))


def test_messages_arrive_in_default_mode_through_the_forwarder(conversation: Listening) -> None:
    assert conversation.texts("Bob") == [TEXTS[0], TEXTS[2]]
    assert conversation.texts("Alice") == [TEXTS[1], TEXTS[3]]


def _settled(path: Path) -> list[HttpExchange]:
    records = [r for r in read_view(path) if isinstance(r, HttpExchange)]
    for _ in range(50):
        again = [r for r in read_view(path) if isinstance(r, HttpExchange)]
        if len(again) == len(records):
            break
        records = again
        time.sleep(0.3)
    return records


def test_the_relay_sees_long_polls_one_mailbox_each_and_no_client_address(
    stack: Stack, conversation: Listening
) -> None:
    records = _settled(stack.view)
    inner = [r for r in records if not r.path.startswith("/v1/gateway")]
    polls = [r for r in inner if r.path.endswith("/poll")]
    assert len(polls) >= 4  # every mailbox polled at least once, and deliveries answered
    for record in polls:
        assert record.addr is None and record.port is None, record
        assert len(record.mailboxes) == 1  # one mailbox per request, never a list
    assert {r.path.rsplit("/", 1)[-1] for r in inner} >= {"accounts", "poll", "messages"}
    for record in records:
        if record.path.startswith("/v1/gateway"):
            assert record.addr == "127.0.0.1"  # the forwarder (and this test's key fetches)
        else:
            assert record.addr is None and record.port is None, record
    files = [p for p in stack.data.rglob("*") if p.is_file()]
    for path in [*files, stack.view, stack.relay_log]:
        content = path.read_bytes()
        for address in ADDRESSES:
            assert address.encode() not in content, path


# ---------------------------------------------------------------------------- bounds
async def _hold_one(relay: str, forwarder: str, address: str) -> httpx.Response | Exception:
    """One long poll of a fresh mailbox, through ``forwarder`` from ``address``: the outer answer."""
    network = HttpNetwork()
    try:
        key = SigningKey.generate(system_rng)
        mailbox_id = system_rng(ID_LENGTH)
        await network.relay(relay).create_mailbox(
            api.CreateMailbox(mailbox_id=mailbox_id, auth_key=key.public.raw, delivery_token=system_rng(32))
        )
    finally:
        await network.aclose()
    pinned = await fetch_key_config(relay + "/v1/gateway/keys")
    sealed = oblivious_network(forwarder, pinned, relay_url=relay, local_address=address)
    try:
        return await sealed.relay(relay).long_poll(mailbox_id, key, [], 32, 20_000)  # type: ignore[return-value]
    except Exception as e:
        return e
    finally:
        await sealed.aclose()


def test_the_forwarder_bounds_held_requests(stack: Stack) -> None:
    """A forwarder holding two requests at most, one per client network: the third from a new
    network gets 503 ``busy``, the second from one network 429 ``too_many_held``."""
    config = ForwarderConfig(relay_url=stack.relay, max_held=2, max_held_per_source=1)

    async def main() -> list[httpx.Response | Exception]:
        forwarder = create_forwarder_app(config)
        with in_thread(forwarder) as fwd:
            first = asyncio.create_task(_hold_one(stack.relay, fwd, ADDRESSES[0]))
            second = asyncio.create_task(_hold_one(stack.relay, fwd, ADDRESSES[1]))
            deadline = asyncio.get_running_loop().time() + 30
            while forwarder._total_held < 2:  # both carried to the relay, held there
                late = asyncio.get_running_loop().time() > deadline
                assert not late, [t.result() if t.done() else None for t in (first, second)]
                await asyncio.sleep(0.02)
            headers = {"content-type": ohttp.REQUEST_MEDIA_TYPE}
            answers: list[httpx.Response | Exception] = []
            for address in (ADDRESSES[2], ADDRESSES[0]):
                transport = httpx.AsyncHTTPTransport(local_address=address)
                async with httpx.AsyncClient(timeout=10, transport=transport) as http:
                    answers.append(await http.post(fwd + HOLD_PATH, content=b"\x01", headers=headers))
            held_throughout = not first.done() and not second.done()
            for task in (first, second):
                task.cancel()
            await asyncio.gather(first, second, return_exceptions=True)
            assert held_throughout
            return answers

    busy, same_source = asyncio.run(asyncio.wait_for(main(), 90))
    assert isinstance(busy, httpx.Response) and busy.status_code == 503
    assert busy.json()["code"] == "busy" and "retry-after" in busy.headers
    assert isinstance(same_source, httpx.Response) and same_source.status_code == 429
    assert same_source.json()["code"] == "too_many_held"


def test_held_request_bodies_are_small(stack: Stack) -> None:
    headers = {"content-type": ohttp.REQUEST_MEDIA_TYPE}
    limit = ForwarderConfig(relay_url="").max_held_body_bytes
    with httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=ADDRESSES[3])) as http:
        answer = http.post(stack.forwarder + HOLD_PATH, content=bytes(limit + 1), headers=headers)
    assert answer.status_code == 413 and answer.json()["code"] == "too_large"


# ---------------------------------------------------------------------------- restart
def test_a_relay_killed_while_polls_are_held_loses_nothing(tmp_path: Path) -> None:
    """Both listen (their polls held at the relay) when the relay is killed; a text written while
    it is down and one written after it is back both arrive, once each."""
    data, view, log = tmp_path / "data", tmp_path / "view.jsonl", tmp_path / "relay.log"
    port = free_port()
    relay = f"http://127.0.0.1:{port}"
    during, after = "written while the relay is down", "written after it is back"

    async def main(fwd: str, child: list[subprocess.Popen[bytes]]) -> Listening:
        people = Listening()
        try:
            carol = await person(relay, fwd, tmp_path, "Carol", ADDRESSES[2])
            dan = await person(relay, fwd, tmp_path, "Dan", ADDRESSES[3])
            people.start(carol)
            people.start(dan)
            await connect(people, carol, dan)
            await carol.send_text("Dan", "hello")
            await until(lambda: "hello" in people.texts("Dan"), 30)
            await asyncio.sleep(1.0)  # the answered poll is followed by a held one again
            child[0].kill()
            await asyncio.to_thread(child[0].wait, 10)
            await dan.send_text("Carol", during)  # queued: the relay is down
            child[0] = await asyncio.to_thread(_start, port, data, log, view)
            await until(lambda: during in people.texts("Carol"), 120)
            await dan.send_text("Carol", after)
            await until(lambda: after in people.texts("Carol"), 60)
        finally:
            await people.close()
        return people

    started = [_start(port, data, log, view)]
    try:
        with forwarder_process(relay, tmp_path / "forwarder.log") as fwd:
            people = asyncio.run(asyncio.wait_for(main(fwd, started), 300))
    finally:
        _stop(started[0])
    assert people.texts("Carol") == [during, after]
    assert people.texts("Dan") == ["hello"]
