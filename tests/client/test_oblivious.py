"""The client's oblivious network: relay calls sealed through a forwarder to the relay's gateway.

The relay app (memory storage) behind its gateway and a forwarder run under uvicorn in threads
on 127.0.0.1; the client's calls go through :func:`sotto.client.oblivious.oblivious_network`
from 127.0.0.2. A spy in front of the relay app sees each call as the app does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.client import oblivious
from sotto.client.longpoll import LongPollDrain
from sotto.client.oblivious import (
    ForwarderUnavailableError,
    ObliviousTransport,
    ObliviousWebSocketError,
    UnroutableRelayError,
    fetch_key_config,
    oblivious_network,
    refuse_websocket,
)
from sotto.client.transport import HttpNetwork
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.errors import RelayError, RelayUnavailableError
from sotto.forwarder import FORWARD_PATH, Forwarder, ForwarderConfig
from sotto.server import ServerConfig, create_app
from sotto.server.config import RateLimit
from sotto.server.gateway import gateway_key, with_gateway
from sotto.server.server_key import ServerKey
from sotto.server.storage import MemoryStorage
from sotto.wire import api, ohttp
from tests.forwarder.processes import in_thread
from tests.server.conftest import GENEROUS

T = TypeVar("T")
CLIENT_ADDR = "127.0.0.2"
KEY = gateway_key(ServerKey(bytes(range(32))))


@dataclass
class Spy:
    app: ASGIApp
    scopes: list[Scope] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.scopes.append(scope)
        await self.app(scope, receive, send)


@dataclass
class Stack:
    relay: str
    forwarder: str
    inner: Spy
    outer: Spy
    """In front of the forwarder: what the client sent it."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    app = create_app(
        ServerConfig(data_dir=tmp_path_factory.mktemp("relay"), rate_limits=GENEROUS, cadence_tick_seconds=7),
        storage=MemoryStorage(),
    )
    inner = Spy(app)
    with in_thread(with_gateway(inner, KEY)) as relay:
        outer = Spy(
            Forwarder(ForwarderConfig(relay_url=relay, per_source=RateLimit(burst=10_000, per_second=1)))
        )
        with in_thread(outer) as forwarder:
            yield Stack(relay, forwarder, inner, outer)


def run(stack: Stack, use: Callable[[HttpNetwork], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        network = oblivious_network(stack.forwarder, KEY.config, relay_url=stack.relay, **options)
        try:
            return await use(network)
        finally:
            await network.aclose()

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_signed_calls_round_trip_through_the_forwarder_with_no_address_or_extra_header(stack: Stack) -> None:
    key = SigningKey.generate(system_rng)
    mailbox_id, token = bytes(range(16)), bytes(32)

    async def use(network: HttpNetwork) -> tuple[api.Cadence, bool, api.PollResult]:
        relay = network.relay(stack.relay)
        cadence = await relay.cadence()
        await relay.create_mailbox(
            api.CreateMailbox(
                mailbox_id=mailbox_id, auth_key=key.public.raw, delivery_token=token, ttl_days=7
            )
        )
        duplicate = await relay.send_alone(mailbox_id, token, bytes(16), bytes(256))
        polled = await relay.poll(mailbox_id, key, [], 10)
        return cadence, duplicate, polled

    before = len(stack.inner.scopes)
    cadence, duplicate, polled = run(stack, use, local_address=CLIENT_ADDR)
    assert cadence.tick_seconds == 7 and duplicate is False and len(polled.envelopes) == 1
    scopes = stack.inner.scopes[before:]
    assert [s["path"].rsplit("/", 1)[-1] for s in scopes] == ["cadence", "mailboxes", "messages", "poll"]
    for scope in scopes:
        assert scope["client"] is None
        names = {bytes(n) for n, _ in scope["headers"]}
        assert names <= {
            b"host",
            b"content-type",
            b"content-length",
            b"sotto-delivery-token",
            b"sotto-mailbox-auth",
        }
    sent = [s for s in stack.outer.scopes if s["path"] == FORWARD_PATH][-4:]
    assert {s["client"][0] for s in sent} == {CLIENT_ADDR}


def test_a_client_clock_off_by_minutes_is_corrected_once_and_kept(stack: Stack) -> None:
    skewed = {"clock_ms": lambda: int((time.time() + 600) * 1000)}

    async def use(network: HttpNetwork) -> int:
        relay = network.relay(stack.relay)
        await relay.cadence()
        start = len(stack.outer.scopes)
        await relay.cadence()
        return len(stack.outer.scopes) - start

    before = len(stack.outer.scopes)
    assert run(stack, use, **skewed) == 1  # the second call needed no retry
    assert len(stack.outer.scopes) - before == 3  # the first: refused for its Date, sent again


def test_only_the_configured_relay_is_reachable_and_nothing_else_is_sent(stack: Stack) -> None:
    async def use(network: HttpNetwork) -> None:
        await network.relay("http://127.0.0.1:1").cadence()

    before = len(stack.outer.scopes)
    with pytest.raises(UnroutableRelayError):
        run(stack, use)
    assert len(stack.outer.scopes) == before


def test_the_delivery_websocket_is_refused_with_its_own_error(stack: Stack) -> None:
    with pytest.raises(ObliviousWebSocketError) as caught:
        asyncio.run(refuse_websocket(stack.relay))
    assert isinstance(caught.value, RelayUnavailableError)


def test_the_drain_connection_is_made_of_long_polls(stack: Stack) -> None:
    async def use(network: HttpNetwork) -> None:
        drain = await network.relay(stack.relay).connect()
        try:
            assert isinstance(drain, LongPollDrain)
        finally:
            await drain.close()

    run(stack, use)


def _forwarder_answering(status: int, body: bytes, content_type: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda _: httpx.Response(status, headers={"content-type": content_type}, content=body)
    )


def test_forwarder_refusals_become_relay_errors_and_its_outages_unavailability() -> None:
    async def call(transport: httpx.MockTransport) -> None:
        network = oblivious_network(
            "http://fwd.test", KEY.config, relay_url="http://relay.test", transport=transport
        )
        try:
            await network.relay("http://relay.test").cadence()
        finally:
            await network.aclose()

    limited = _forwarder_answering(
        429, b'{"code": "rate_limited", "title": "slow down"}', "application/problem+json"
    )
    with pytest.raises(RelayError) as caught:
        asyncio.run(call(limited))
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    with pytest.raises(RelayUnavailableError):
        asyncio.run(call(_forwarder_answering(502, b"{}", "application/problem+json")))
    with pytest.raises(RelayUnavailableError):  # an answer that does not open
        asyncio.run(call(_forwarder_answering(200, bytes(64), ohttp.RESPONSE_MEDIA_TYPE)))
    assert issubclass(ForwarderUnavailableError, httpx.TransportError)


def test_the_key_configuration_comes_through_the_forwarder_and_a_substitute_is_refused(stack: Stack) -> None:
    config = asyncio.run(fetch_key_config(stack.forwarder + "/v1/ohttp/keys", pinned=KEY.config))
    assert config == KEY.config
    other = gateway_key(ServerKey(bytes(32))).config
    with pytest.raises(RelayUnavailableError):
        asyncio.run(fetch_key_config(stack.forwarder + "/v1/ohttp/keys", pinned=other))
    with pytest.raises(RelayUnavailableError):
        asyncio.run(fetch_key_config(stack.relay + "/v1/health"))
    assert oblivious.FORWARD_PATH == FORWARD_PATH


def test_a_sealed_request_to_the_forwarder_holds_no_readable_part_of_the_call(
    stack: Stack, tmp_path: Path
) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(502)

    async def use() -> None:
        network = oblivious_network(
            "http://fwd.test",
            KEY.config,
            relay_url="http://relay.test",
            transport=httpx.MockTransport(handler),
        )
        try:
            await network.relay("http://relay.test").poll(b"M" * 16, SigningKey.generate(system_rng), [], 5)
        finally:
            await network.aclose()

    with pytest.raises(RelayUnavailableError):
        asyncio.run(use())
    (body,) = seen
    assert body[:3] == b"\x01\x00\x20"
    for part in (b"poll", b"mailboxes", b"TU1NTU1N", b"sotto-mailbox-auth", b"relay.test"):
        assert part not in body


def test_a_sealed_refusal_of_the_gateway_reads_like_the_relays_own(stack: Stack) -> None:
    async def main() -> httpx.Response:
        transport = ObliviousTransport(stack.forwarder, KEY.config, relay_url=stack.relay)
        async with httpx.AsyncClient(transport=transport) as http:
            return await http.post(stack.relay + "/v1/gateway", content=b"{}")

    answer = asyncio.run(main())
    assert answer.status_code == 400 and answer.json()["code"] == "bad_path" and answer.json()["message"]
