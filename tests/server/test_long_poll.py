"""Long polls (``wait_ms`` on the signed mailbox poll): held until an envelope arrives, answered
at once when one is pending, one per mailbox, a relay-wide cap with a typed 503, strict bounds
on the wait, and a hold freed when its client leaves.

The relay runs under uvicorn on 127.0.0.1 in this process; the calls are the client SDK's own
(:class:`~sotto.client.transport.HttpRelay`)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sotto.client.transport import HttpNetwork, HttpRelay, mailbox_auth
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.errors import RelayError
from sotto.server import ServerConfig, create_app
from sotto.server.fanout import LocalFanout
from sotto.server.logging import Stats
from sotto.server.longpoll import HeldPolls, PollsBusyError
from sotto.server.storage import MemoryStorage
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId
from sotto.wire import api, b64
from sotto.wire.limits import ID_LENGTH
from tests.forwarder.processes import ROOT, free_port, in_thread, wait_for_port
from tests.server.conftest import GENEROUS

DEADLINE_S = 20.0


@dataclass
class Box:
    mailbox_id: bytes
    key: SigningKey
    token: bytes


@dataclass
class Running:
    url: str
    app: Any

    def held(self) -> int:
        registry: HeldPolls | None = getattr(self.app.state, "held_polls", None)
        return 0 if registry is None else len(registry)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Running]:
    app = create_app(
        ServerConfig(data_dir=tmp_path / "data", rate_limits=GENEROUS, max_held_polls=3),
        storage=MemoryStorage(),
    )
    with in_thread(app) as url:
        yield Running(url, app)


async def with_relay(url: str, body: Any) -> Any:
    network = HttpNetwork()
    try:
        return await asyncio.wait_for(body(network.relay(url)), 60)
    finally:
        await network.aclose()


async def new_box(relay: HttpRelay) -> Box:
    box = Box(secrets.token_bytes(ID_LENGTH), SigningKey.generate(system_rng), secrets.token_bytes(32))
    await relay.create_mailbox(
        api.CreateMailbox(mailbox_id=box.mailbox_id, auth_key=box.key.public.raw, delivery_token=box.token)
    )
    return box


async def send(relay: HttpRelay, box: Box, text: bytes = b"x") -> bytes:
    message_id = secrets.token_bytes(ID_LENGTH)
    await relay.send_alone(box.mailbox_id, box.token, message_id, text.ljust(256, b"\0"))
    return message_id


async def until(condition: Any) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "did not happen in time"
        await asyncio.sleep(0.02)


def test_a_held_poll_answers_with_the_envelope_that_arrives(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        box = await new_box(http)
        poll = asyncio.create_task(http.long_poll(box.mailbox_id, box.key, [], 32, 25_000))
        await until(lambda: relay.held() == 1)
        assert not poll.done()
        sent = await send(http, box, b"hello")
        result = await poll
        assert [e.id for e in result.envelopes] == [sent]
        assert result.envelopes[0].payload.startswith(b"hello")
        assert relay.held() == 0

    asyncio.run(with_relay(relay.url, body))


def test_a_pending_envelope_is_answered_without_holding_and_acks_delete_first(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        box = await new_box(http)
        first = await send(http, box)
        # the client's timeout is far below the wait asked for: only an answer at once passes
        quick = HttpNetwork(timeout=5.0)
        try:
            result = await quick.relay(relay.url).poll(box.mailbox_id, box.key, [], 32)
            assert [e.id for e in result.envelopes] == [first]
            answer = await http.long_poll(box.mailbox_id, box.key, [], 32, 25_000)
            assert [e.id for e in answer.envelopes] == [first]  # not acked: handed out again
        finally:
            await quick.aclose()
        # acked, then held: the ack is deleted before the wait, and the next envelope wakes it
        poll = asyncio.create_task(http.long_poll(box.mailbox_id, box.key, [first], 32, 25_000))
        await until(lambda: relay.held() == 1)
        second = await send(http, box)
        assert [e.id for e in (await poll).envelopes] == [second]

    asyncio.run(with_relay(relay.url, body))


def test_an_empty_wait_ends_with_nothing(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        box = await new_box(http)
        result = await http.long_poll(box.mailbox_id, box.key, [], 32, 300)
        assert result.envelopes == [] and result.more is False
        assert relay.held() == 0

    asyncio.run(with_relay(relay.url, body))


def test_a_newer_poll_of_a_mailbox_answers_the_older_one(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        box = await new_box(http)
        older = asyncio.create_task(http.long_poll(box.mailbox_id, box.key, [], 32, 25_000))
        await until(lambda: relay.held() == 1)
        newer = asyncio.create_task(http.long_poll(box.mailbox_id, box.key, [], 32, 25_000))
        assert (await older).envelopes == []  # answered by the newer one's arrival
        await until(lambda: relay.held() == 1)
        assert not newer.done()
        sent = await send(http, box)
        assert [e.id for e in (await newer).envelopes] == [sent]

    asyncio.run(with_relay(relay.url, body))


def test_held_polls_are_capped_relay_wide_with_a_typed_503(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        boxes = [await new_box(http) for _ in range(4)]
        held = [asyncio.create_task(http.long_poll(b.mailbox_id, b.key, [], 32, 25_000)) for b in boxes[:3]]
        await until(lambda: relay.held() == 3)
        with pytest.raises(RelayError) as refused:
            await http.long_poll(boxes[3].mailbox_id, boxes[3].key, [], 32, 25_000)
        assert (refused.value.status, refused.value.code) == (503, "polls_busy")
        # a poll that does not ask to wait is still answered
        assert (await http.poll(boxes[3].mailbox_id, boxes[3].key, [], 32)).envelopes == []
        # a woken one frees its place
        sent = await send(http, boxes[0])
        assert [e.id for e in (await held[0]).envelopes] == [sent]
        late = asyncio.create_task(http.long_poll(boxes[3].mailbox_id, boxes[3].key, [], 32, 25_000))
        await until(lambda: relay.held() == 3)
        for box, task in zip(boxes[1:], [*held[1:], late], strict=True):
            sent = await send(http, box)
            assert [e.id for e in (await task).envelopes] == [sent]

    asyncio.run(with_relay(relay.url, body))


def test_the_retry_after_of_polls_busy(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        boxes = [await new_box(http) for _ in range(3)]
        held = [asyncio.create_task(http.long_poll(b.mailbox_id, b.key, [], 32, 2_000)) for b in boxes]
        await until(lambda: relay.held() == 3)
        other = await new_box(http)
        # the raw answer, to see its header
        answer = await http._send(
            "POST",
            f"/v1/mailboxes/{_b64(other.mailbox_id)}/poll",
            {"sotto-mailbox-auth": _auth(other, api.Poll(wait_ms=1_000))},
            api.Poll(wait_ms=1_000).model_dump_json().encode(),
            False,
        )
        assert answer.status_code == 503
        assert answer.json()["code"] == "polls_busy"
        assert int(answer.headers["retry-after"]) >= 1
        await asyncio.gather(*held)

    asyncio.run(with_relay(relay.url, body))


def _b64(raw: bytes) -> str:
    return b64.encode(raw)


def _auth(box: Box, poll: api.Poll) -> str:
    path = f"/v1/mailboxes/{_b64(box.mailbox_id)}/poll"
    return mailbox_auth(box.key, "POST", path, poll.model_dump_json().encode())


@pytest.mark.parametrize("wait_ms", [25_001, -1, True, 1.5, "100"])
def test_the_wait_is_strict(relay: Running, wait_ms: object) -> None:
    async def body(http: HttpRelay) -> None:
        box = await new_box(http)
        content = b'{"wait_ms": ' + httpx.Response(200, json=wait_ms).content + b"}"
        path = f"/v1/mailboxes/{_b64(box.mailbox_id)}/poll"
        answer = await http._send(
            "POST", path, {"sotto-mailbox-auth": mailbox_auth(box.key, "POST", path, content)}, content, False
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "invalid_request"
        assert relay.held() == 0

    asyncio.run(with_relay(relay.url, body))


def test_a_client_that_leaves_frees_its_hold(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        box = await new_box(http)
        leaving = HttpNetwork()
        poll = asyncio.create_task(
            leaving.relay(relay.url).long_poll(box.mailbox_id, box.key, [], 32, 25_000)
        )
        await until(lambda: relay.held() == 1)
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
        await leaving.aclose()  # the connection closes
        await until(lambda: relay.held() == 0)

    asyncio.run(with_relay(relay.url, body))


def test_a_poll_of_an_unknown_mailbox_is_refused_before_any_hold(relay: Running) -> None:
    async def body(http: HttpRelay) -> None:
        stranger = Box(secrets.token_bytes(ID_LENGTH), SigningKey.generate(system_rng), b"")
        with pytest.raises(RelayError) as refused:
            await http.long_poll(stranger.mailbox_id, stranger.key, [], 32, 25_000)
        assert refused.value.status == 404
        assert relay.held() == 0

    asyncio.run(with_relay(relay.url, body))


def test_a_recheck_from_another_node_wakes_a_hold_and_a_publish_does_too() -> None:
    """The registry on its own: the fan-out's two signals wake a hold, a newer hold of the same
    mailbox wakes and replaces the older, and the cap counts holds, not mailboxes polled."""

    async def main() -> None:
        fanout = LocalFanout()
        ctx: Any = SimpleNamespace(config=ServerConfig(max_held_polls=2), fanout=fanout, stats=Stats())
        held = HeldPolls(ctx)
        a, b, c = (MailboxId(bytes([i]) * ID_LENGTH) for i in (1, 2, 3))
        first = held.hold(a)
        fanout.recheck(a)
        assert await first.wait(5)
        first.release()
        assert len(held) == 0 and a not in fanout
        second = held.hold(b)
        fanout.publish(EnvelopeRecord(b, MessageId(b"m" * ID_LENGTH), 1, 1, b"\0" * 256))
        assert await second.wait(5)
        second.release()
        older = held.hold(a)
        newer = held.hold(a)
        assert older.superseded and await older.wait(5) and len(held) == 1
        held.hold(c)
        with pytest.raises(PollsBusyError):
            held.hold(b)
        newer.release()
        assert not await held.hold(b).wait(0.01)

    asyncio.run(main())


def test_a_stopping_relay_answers_its_held_polls_at_once(tmp_path: Path) -> None:
    """``python -m sotto.server`` told to stop while a poll is held answers it (empty) and
    exits, rather than waiting for the hold to run out (25 s, longer than the exit is given)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "sotto.server", "--port", str(port), "--data", str(tmp_path / "data")]
    with (tmp_path / "relay.log").open("wb") as log:
        child = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, child)

        async def body(http: HttpRelay) -> api.PollResult:
            box = await new_box(http)
            older = asyncio.create_task(http.long_poll(box.mailbox_id, box.key, [], 32, 25_000))
            await asyncio.sleep(0.5)
            newer = asyncio.create_task(http.long_poll(box.mailbox_id, box.key, [], 32, 25_000))
            await older  # answered once the newer one is held
            child.terminate()
            return await asyncio.wait_for(newer, 15)  # well before the 25 s hold ends

        answer = asyncio.run(with_relay(url, body))
        assert answer.envelopes == []
        assert child.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
