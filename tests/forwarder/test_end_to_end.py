"""Two people chat through forwarders, each from an address of their own, and neither operator
learns what it must not.

The relay runs as a process with its gateway and records its operator's view
(``--record-view``); one forwarder runs as ``python -m sotto.forwarder``, another in this
process with every body it carries captured. Alice (127.0.0.2) uses the first, Bob (127.0.0.3)
the second; both are cadence-mode SDK clients whose every call goes through
:func:`sotto.client.oblivious.oblivious_network`. They register, connect by invite and exchange
texts. Then: no client address in anything the relay received (its view), wrote (data directory)
or logged; no mailbox id, account id, message id or text in anything the forwarders carried in
clear, or the forwarder process logged; and bad encapsulations sent through a forwarder are
refused at the gateway without reaching the relay app.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sotto.client import events as ev
from sotto.client.oblivious import FORWARD_PATH, fetch_key_config, oblivious_network
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.forwarder import ForwarderConfig, create_forwarder_app
from sotto.server.observer import HttpExchange, ViewRecord, WsOpen, read_view
from sotto.wire import b64, ohttp
from tests.forwarder.processes import forwarder_process, in_thread, relay_with_gateway

ALICE_ADDR, BOB_ADDR = "127.0.0.2", "127.0.0.3"
TEXTS = ("the eagle lands at noon", "bring the blue umbrella", "quince marmalade, twice")


@dataclass
class Capture:
    """In front of the forwarder app: every request and response body it carried."""

    app: ASGIApp
    inbound: list[bytes] = field(default_factory=list)
    outbound: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    """The path of each ``inbound`` body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []

        async def receive_captured() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                # a large body (a cadence schedule) comes in several chunks: keep it whole
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.inbound.append(b"".join(chunks))
                    self.paths.append(scope.get("path", ""))
                    chunks.clear()
            return message

        async def send_captured(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.outbound.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_captured, send_captured)


@dataclass
class Stack:
    relay: str
    forwarder: str
    capturing: str
    capture: Capture
    data: Path
    view: Path
    relay_log: Path
    forwarder_log: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("oblivious")
    data, view = root / "data", root / "view.jsonl"
    relay_log, forwarder_log = root / "relay.log", root / "forwarder.log"
    with relay_with_gateway(data, relay_log, view) as relay, forwarder_process(relay, forwarder_log) as fwd:
        capture = Capture(create_forwarder_app(ForwarderConfig(relay_url=relay)))
        with in_thread(capture) as capturing:
            yield Stack(relay, fwd, capturing, capture, data, view, relay_log, forwarder_log)


async def until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "did not happen in time"
        await asyncio.sleep(0.1)


async def person(stack: Stack, tmp: Path, name: str, forwarder: str, address: str) -> Client:
    # the key configuration through the forwarder, pinned to what the relay publishes
    pinned = await fetch_key_config(stack.relay + "/v1/gateway/keys")
    config = await fetch_key_config(forwarder + "/v1/ohttp/keys", pinned=pinned, local_address=address)
    network = oblivious_network(forwarder, config, relay_url=stack.relay, local_address=address)
    return await Client.create(
        tmp / name,
        stack.relay,
        "correct horse battery staple",
        name,
        network=network,
        kdf=Argon2Params.TESTING,
        cadence=True,
        receipt_delay=0.1,
    )


def chat(stack: Stack, tmp: Path) -> dict[str, list[ev.Event]]:
    async def main() -> dict[str, list[ev.Event]]:
        alice = await person(stack, tmp, "Alice", stack.forwarder, ALICE_ADDR)
        bob = await person(stack, tmp, "Bob", stack.capturing, BOB_ADDR)
        seen: dict[str, list[ev.Event]] = {"Alice": [], "Bob": []}

        async def listen(client: Client) -> None:
            async for event in client.listen():
                seen[client.display_name].append(event)

        listeners = [asyncio.create_task(listen(c)) for c in (alice, bob)]
        try:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            await until(lambda: bob.is_ready("Alice") and alice.is_ready("Bob"), 60)
            await alice.send_text("Bob", TEXTS[0])
            await bob.send_text("Alice", TEXTS[1])
            await alice.send_text("Bob", TEXTS[2])

            def received(name: str) -> list[str]:
                return [e.text for e in seen[name] if isinstance(e, ev.MessageReceived)]

            await until(lambda: len(received("Bob")) == 2 and len(received("Alice")) == 1, 60)
        finally:
            for listener in listeners:
                listener.cancel()
            for client in (alice, bob):
                network = client.engine.network
                await client.close()
                await network.aclose()
        return seen

    return asyncio.run(asyncio.wait_for(main(), 150))


@pytest.fixture(scope="module")
def conversation(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ev.Event]]:
    return chat(stack, tmp_path_factory.mktemp("people"))


def test_two_people_chat_through_forwarders(conversation: dict[str, list[ev.Event]]) -> None:
    got = {
        name: [e.text for e in events if isinstance(e, ev.MessageReceived)]
        for name, events in conversation.items()
    }
    assert got == {"Bob": [TEXTS[0], TEXTS[2]], "Alice": [TEXTS[1]]}


def _files(directory: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def settled_view(path: Path) -> list[ViewRecord]:
    """The view once no record was added for a moment (a record is written after its answer)."""
    records = read_view(path)
    for _ in range(50):
        time.sleep(0.3)
        again = read_view(path)
        if len(again) == len(records):
            break
        records = again
    return records


def test_no_client_address_reaches_the_relay_or_its_files(stack: Stack, conversation: object) -> None:
    records = settled_view(stack.view)
    http = [r for r in records if isinstance(r, HttpExchange)]
    assert len(http) > 20
    assert not [r for r in records if isinstance(r, WsOpen)]
    for record in http:
        if record.path.startswith("/v1/gateway"):
            assert record.addr == "127.0.0.1"  # the forwarders (and this test's one key fetch)
        else:
            assert record.addr is None and record.port is None, record
    inner = [r for r in http if not r.path.startswith("/v1/gateway")]
    assert {r.path.rsplit("/", 1)[-1] for r in inner} >= {"accounts", "poll", "messages"}
    # many clients' requests, few connections: the forwarders' pools
    outer = [r for r in http if r.path == "/v1/gateway"]
    assert len(outer) == len(inner)
    assert len({r.port for r in outer}) <= min(
        len(outer) // 2, 2 * ForwarderConfig(relay_url="").max_connections
    )
    for path, content in [*_files(stack.data), (stack.view, stack.view.read_bytes())]:
        for address in (ALICE_ADDR, BOB_ADDR):
            assert address.encode() not in content, path
    log = stack.relay_log.read_bytes()
    assert ALICE_ADDR.encode() not in log and BOB_ADDR.encode() not in log


def _secrets(stack: Stack) -> list[bytes]:
    """Every id the relay saw (in base64 and raw) and every text."""
    found: set[str] = set()
    for record in read_view(stack.view):
        if isinstance(record, HttpExchange):
            found.update(record.mailboxes, record.accounts, record.messages)
    assert found, "the relay's view names no ids"
    raw = [b64.decode(value) for value in found]
    return [*(v.encode() for v in found), *raw, *(t.encode() for t in TEXTS)]


def test_the_forwarders_carry_only_ciphertext_and_log_nothing_that_names_anyone(
    stack: Stack, conversation: object
) -> None:
    secrets = _secrets(stack)
    carried = stack.capture.inbound + stack.capture.outbound
    assert len(stack.capture.inbound) > 5
    for body in carried:
        for secret in secrets:
            assert secret not in body
    # every request body is an Encapsulated Request to the relay's key, or (cadence mode's
    # schedule) JSON whose every slot carries one, with ids and instants beside it
    requests = [b for b, path in zip(stack.capture.inbound, stack.capture.paths, strict=True) if b]
    sealed = [b for b in requests if not b.startswith(b"{")]
    schedules = [json.loads(b) for b in requests if b.startswith(b"{")]
    assert sealed and schedules
    for body in schedules:
        assert set(body) <= {"slots", "cancel", "clear_from", "ack"}
        for slot in body.get("slots", []):
            assert set(slot) <= {"id", "at", "request", "replaces"}
            assert len(b64.decode(slot["id"])) == 16
            request = b64.decode(slot["request"])
            assert request[0] == 1 and request[1:3] == b"\x00\x20"
    assert all(b[0] == 1 and b[1:3] == b"\x00\x20" for b in sealed)
    assert {p for p in stack.capture.paths if not p.startswith("/v1/schedules/")} == {FORWARD_PATH}
    log = stack.forwarder_log.read_bytes()
    for secret in secrets:
        assert secret not in log
    assert ALICE_ADDR.encode() not in log


def test_bad_encapsulations_through_a_forwarder_are_refused_before_the_relay_app(
    stack: Stack, conversation: object
) -> None:
    seen_before = len(settled_view(stack.view))
    replayed = next(b for b in stack.capture.inbound if len(b) > 100 and not b.startswith(b"{"))
    wrong_key = bytes([replayed[0] ^ 0xFF]) + replayed[1:]
    headers = {"content-type": ohttp.REQUEST_MEDIA_TYPE}
    with httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=ALICE_ADDR)) as http:
        answers = {
            "replayed": http.post(stack.forwarder + FORWARD_PATH, content=replayed, headers=headers),
            "malformed": http.post(stack.forwarder + FORWARD_PATH, content=b"\x01\x00", headers=headers),
            "ohttp_key": http.post(stack.forwarder + FORWARD_PATH, content=wrong_key, headers=headers),
            "decryption_failed": http.post(
                stack.forwarder + FORWARD_PATH,
                content=replayed[:-1] + bytes([replayed[-1] ^ 1]),
                headers=headers,
            ),
        }
        oversized = http.post(
            stack.forwarder + FORWARD_PATH, content=bytes(ohttp.MAX_ENCAPSULATED_BYTES + 1), headers=headers
        )
    with httpx.Client(timeout=10) as http:  # straight to the gateway, as a forwarder that did not check
        at_gateway = http.post(
            stack.relay + "/v1/gateway", content=bytes(ohttp.MAX_ENCAPSULATED_BYTES + 1), headers=headers
        )
    for code, answer in answers.items():
        assert answer.status_code == 400, (code, answer.text)
        assert answer.json()["code"] == code
    assert oversized.status_code == 413  # refused by the forwarder: the relay never saw it
    assert at_gateway.status_code == 413 and at_gateway.json()["code"] == "too_large"

    # a record is written once its answer went out: wait for the last one. The closed clients'
    # schedules still go on at the forwarder meanwhile (polls and sends, answered 2xx).
    def refused() -> list[HttpExchange]:
        after = read_view(stack.view)[seen_before:]
        return [r for r in after if isinstance(r, HttpExchange) and r.status >= 400]

    deadline = time.monotonic() + 10
    while len(refused()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.path for r in refused()] == ["/v1/gateway"] * 5
    after = [r for r in read_view(stack.view)[seen_before:] if isinstance(r, HttpExchange)]
    assert {r.path.rsplit("/", 1)[-1] for r in after} <= {"gateway", "poll", "messages"}
