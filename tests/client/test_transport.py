"""The HTTP and WebSocket transport against the real relay: requests, errors, the drain socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from sotto.client.clock import wall_clock_ms
from sotto.client.transport import HttpNetwork, access_token_hash, mailbox_auth
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.errors import RelayError, RelayUnavailableError
from sotto.wire import api, auth, b64
from sotto.wire.padding import pad
from tests.client.running_relay import free_port, running_relay

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 60))


def new_mailbox() -> tuple[bytes, SigningKey, bytes]:
    return system_rng(16), SigningKey.generate(system_rng), system_rng(32)


def body(mailbox: tuple[bytes, SigningKey, bytes]) -> api.CreateMailbox:
    mailbox_id, key, token = mailbox
    return api.CreateMailbox(mailbox_id=mailbox_id, auth_key=key.public.raw, delivery_token=token)


def test_many_mailboxes_on_one_drain_connection(server_url: str) -> None:
    async def main() -> None:
        network = HttpNetwork()
        relay = network.relay(server_url)
        boxes = [new_mailbox() for _ in range(450)]
        for box in boxes:
            await relay.create_mailbox(body(box))
        await relay.create_mailbox(body(boxes[0]))  # the same body again is fine
        unknown = new_mailbox()
        drain = await relay.connect()
        try:
            answer = await drain.subscribe({m: k for m, k, _ in [*boxes, unknown]})
            assert len(answer.mailboxes) == 450 and answer.refused == (unknown[0],)
            assert await drain.receive(timeout=0.1) is None
            mailbox_id, _, token = boxes[-1]
            message_id = system_rng(16)
            assert not await relay.send(mailbox_id, token, message_id, pad(b"hello"))
            assert await relay.send(mailbox_id, token, message_id, pad(b"hello"))  # a retry
            envelope = await drain.receive(timeout=5)
            assert envelope is not None and envelope.id == message_id and envelope.payload == pad(b"hello")
            await drain.ack([(envelope.mailbox, envelope.id), (unknown[0], message_id)])
            await drain.ack([])  # keep-alive
        finally:
            await drain.close()
        with pytest.raises(RelayUnavailableError):
            await drain.receive(timeout=1)
        # Acknowledged: a new connection gets nothing.
        again = await relay.connect()
        try:
            await again.subscribe({boxes[-1][0]: boxes[-1][1]})
            assert await again.receive(timeout=0.3) is None
        finally:
            await again.close()
        await network.aclose()

    run(main)


def test_relay_errors_are_typed(server_url: str) -> None:
    async def main() -> None:
        network = HttpNetwork()
        relay = network.relay(server_url)
        box = new_mailbox()
        await relay.create_mailbox(body(box))
        mailbox_id, key, token = box
        with pytest.raises(RelayError) as wrong_token:
            await relay.send(mailbox_id, system_rng(32), system_rng(16), pad(b"x"))
        assert wrong_token.value.status == 404
        with pytest.raises(RelayError) as conflict:
            await relay.create_mailbox(
                api.CreateMailbox(
                    mailbox_id=mailbox_id, auth_key=key.public.raw, delivery_token=system_rng(32)
                )
            )
        assert conflict.value.status == 409
        with pytest.raises(RelayError) as no_bundle:
            await relay.fetch_bundle(system_rng(16), system_rng(32))
        assert no_bundle.value.status == 401
        with pytest.raises(RelayError) as stranger:
            await relay.delete_mailbox(mailbox_id, SigningKey.generate(system_rng))
        assert stranger.value.status == 404
        exported = await relay.export_mailbox(mailbox_id, key)
        assert exported
        await relay.delete_mailbox(mailbox_id, key)
        with pytest.raises(RelayError):
            await relay.export_mailbox(mailbox_id, key)
        offline = network.relay(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(RelayUnavailableError):
            await offline.send(mailbox_id, token, system_rng(16), pad(b"x"))
        with pytest.raises(RelayUnavailableError):
            await offline.connect()
        await network.aclose()

    run(main)


def test_header_helpers() -> None:
    key = SigningKey(bytes(32))
    path = "/v1/mailboxes/x/poll"
    header = mailbox_auth(key, "POST", path, b"{}", unix_ms=1_700_000_000_000)
    ms, nonce, signature = auth.decode_mailbox_auth(header)
    assert ms == 1_700_000_000_000 and header.startswith("1700000000000.")
    key.public.verify(auth.http_message("POST", path, ms, nonce, b"{}"), signature)
    # A fresh nonce each time, so no two headers are alike.
    assert mailbox_auth(key, "POST", path, b"{}", unix_ms=ms) != header
    assert len(access_token_hash(bytes(32))) == 43


def test_a_replayed_signed_request_changes_nothing(server_url: str) -> None:
    """A captured poll, replayed as it was or with an ack of every pending id, is refused and
    deletes nothing (it used to delete them all)."""

    async def main() -> None:
        network = HttpNetwork(websocket_sends=False)
        relay = network.relay(server_url)
        box = new_mailbox()
        mailbox_id, key, token = box
        await relay.create_mailbox(body(box))
        ids = [system_rng(16) for _ in range(3)]
        for message_id in ids:
            await relay.send(mailbox_id, token, message_id, pad(b"x"))
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/poll"
        content = api.Poll(limit=8).model_dump_json().encode()
        json_type = {"content-type": "application/json"}
        async with httpx.AsyncClient(base_url=server_url) as http:

            async def post(content: bytes, signed: str) -> httpx.Response:
                return await http.post(
                    path, content=content, headers={**json_type, "sotto-mailbox-auth": signed}
                )

            signed = mailbox_auth(key, "POST", path, content)
            captured = await post(content, signed)
            assert captured.status_code == 200, captured.text
            pending = [b64.decode(e["id"]) for e in captured.json()["envelopes"]]
            assert sorted(pending) == sorted(ids)
            # The attacker replays the captured request, then the same header over a body that
            # acknowledges everything the reply listed.
            assert (await post(content, signed)).status_code == 401
            ack_all = api.Poll(ack=pending, limit=8).model_dump_json().encode()
            assert (await post(ack_all, signed)).status_code == 404
        still = await relay.poll(mailbox_id, key, [], 8)
        assert sorted(e.id for e in still.envelopes) == sorted(ids)
        await network.aclose()

    run(main)


def test_a_client_ahead_of_the_relay_signs_again_with_the_time_it_names(tmp_path: Path) -> None:
    """The relay accepts no signature dated after its own clock; a client a minute ahead gets
    one 401 naming the relay's time, signs again with it, and keeps the correction."""
    seen: list[int] = []

    def watch(app: Any) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            async def send_status(message: Any) -> None:
                if message["type"] == "http.response.start" and scope["path"].endswith("/export"):
                    seen.append(message["status"])
                await send(message)

            await app(scope, receive, send_status)

        return wrapped

    async def main(url: str) -> None:
        network = HttpNetwork(clock_ms=lambda: wall_clock_ms() + 60_000)  # a minute fast
        relay = network.relay(url)
        box = new_mailbox()
        await relay.create_mailbox(body(box))
        for _ in range(2):
            exported = await relay.export_mailbox(box[0], box[1])
            assert exported["tables"]["mailboxes"][0]["mailbox_id"] == b64.encode(box[0])
        await network.aclose()

    with running_relay(tmp_path, free_port(), wrap=watch) as url:
        run(lambda: main(url))
    assert seen == [401, 200, 200]


class _CountingProxy:
    """A TCP proxy in front of the relay that counts the connections it accepts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65_536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


def test_cadence_calls_each_open_their_own_connection(server_url: str) -> None:
    async def main() -> None:
        network = HttpNetwork()
        proxy = _CountingProxy(int(server_url.rsplit(":", 1)[1]))
        async with proxy as url:
            relay = network.relay(url)
            await relay.create_mailbox(body(box := new_mailbox()))
            pooled = proxy.connections
            await relay.create_mailbox(body(new_mailbox()))
            assert proxy.connections == pooled  # ordinary calls reuse their connection
            assert (await relay.cadence()).tick_seconds == 300
            mailbox_id, key, token = box
            message_id = system_rng(16)
            assert not await relay.send_alone(mailbox_id, token, message_id, pad(b"tick"))
            first = await relay.poll(mailbox_id, key, [], 8)
            assert [e.id for e in first.envelopes] == [message_id] and not first.more
            second = await relay.poll(mailbox_id, key, [message_id], 8)
            assert second.envelopes == [] and not second.more
            # cadence, send, poll, poll: four requests, four connections
            assert proxy.connections == pooled + 4
            with pytest.raises(RelayError) as refused:
                await relay.poll(mailbox_id, SigningKey.generate(system_rng), [], 8)
            assert refused.value.status == 404
            # A cadence client's network keeps no connection for any call.
            isolated = HttpNetwork(keep_alive=False)
            before = proxy.connections
            await isolated.relay(url).create_mailbox(body(new_mailbox()))
            await isolated.relay(url).create_mailbox(body(new_mailbox()))
            assert proxy.connections == before + 2
            await isolated.aclose()
        await network.aclose()

    run(main)
