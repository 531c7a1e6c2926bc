"""The in-process network: what the relay app sees comes from each device's own address."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sotto.audit import sim
from sotto.audit.sim import world
from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import (
    DEFAULT_KEEP_ALIVE_S,
    USER_AGENT,
    ASGIApp,
    AsgiHttp,
    Host,
    WebSocketOpener,
    device_network,
)
from sotto.audit.sim.scenario import address_of, chat_ring
from sotto.audit.sim.world import RELAY_URL, close_device, new_device, relay_app
from sotto.client import transport
from sotto.client.transport import HttpNetwork
from sotto.errors import RelayUnavailableError
from sotto.server.config import ServerConfig
from sotto.server.observer import HttpExchange, MemorySink, Observer, ViewRecord, WsFrame
from sotto.wire import auth


@dataclass
class Seen:
    """Each request and WebSocket the relay app was handed: kind, client address and port, path,
    the device an ``authorization`` header names, and the virtual time."""

    rows: list[tuple[str, str, int, str, bytes | None, float]] = field(default_factory=list)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                account = None
                for name, value in scope.get("headers", ()):
                    if name == b"authorization":
                        account = auth.decode_device_auth(value.decode())[0]
                address, port = scope["client"]
                now = asyncio.get_running_loop().time()
                self.rows.append((scope["type"], address, port, scope["path"], account, now))
            await app(scope, receive, send)

        return watched


def test_each_device_reaches_the_relay_from_its_own_address() -> None:
    seen = Seen()
    people = 4
    result = sim.run(lambda clock: chat_ring(clock, people, cadence=False, seconds=600, wrap=seen.wrap))
    assert sum((result.sent - result.received).values()) == 0
    addresses = {address_of(i) for i in range(people)}
    assert {row[1] for row in seen.rows} == addresses
    # Every device-authenticated request of one account comes from one address, and each
    # address speaks for one account only.
    accounts_by_address: dict[str, set[bytes]] = defaultdict(set)
    addresses_by_account: dict[bytes, set[str]] = defaultdict(set)
    for _, address, _, _, account, _ in seen.rows:
        if account is not None:
            accounts_by_address[address].add(account)
            addresses_by_account[account].add(address)
    assert set(accounts_by_address) == addresses
    assert all(len(a) == 1 for a in accounts_by_address.values())
    assert all(len(a) == 1 for a in addresses_by_account.values())
    assert any(kind == "websocket" for kind, *_ in seen.rows)


def test_cadence_requests_each_come_on_a_connection_of_their_own() -> None:
    seen = Seen()
    sim.run(lambda clock: chat_ring(clock, 2, cadence=True, seconds=1800, wrap=seen.wrap))
    polls_and_sends = [r for r in seen.rows if r[3].endswith(("/poll", "/messages"))]
    assert len(polls_and_sends) > 10
    assert not any(kind == "websocket" for kind, *_ in seen.rows)
    endpoints = [(address, port) for _, address, port, *_ in seen.rows]
    assert len(set(endpoints)) == len(endpoints)  # no two requests on one connection


def test_pooled_requests_reuse_a_connection_while_it_is_kept_alive() -> None:
    seen = Seen()

    async def main(clock: VirtualClock) -> None:
        async with relay_app(clock) as app:
            device = await new_device({RELAY_URL: seen.wrap(app)}, clock, "Solo", host=Host("192.0.2.7"))
            relay = device.network.relay(RELAY_URL)
            credentials = device.client._credentials()
            await relay.export_account(credentials)
            await asyncio.sleep(1)
            await relay.export_account(credentials)  # within the keep-alive: the same connection
            await asyncio.sleep(60)
            await relay.export_account(credentials)  # after it: a new one
            await relay.key_counts(credentials)  # an account chore: a connection of its own
            await close_device(device)

    sim.run(main)
    exports = [(address, port) for _, address, port, path, _, _ in seen.rows if path == "/v1/export"]
    assert {address for address, _ in exports} == {"192.0.2.7"}
    ports = [port for _, port in exports]
    assert ports[0] == ports[1] != ports[2]
    chore = [port for _, _, port, path, _, _ in seen.rows if path == "/v1/accounts/me/keys"][-1]
    assert chore not in ports


def test_a_websocket_to_an_unknown_relay_fails_as_unreachable() -> None:
    async def main(clock: VirtualClock) -> None:
        async with relay_app(clock) as app:
            device = await new_device({RELAY_URL: app}, clock, "Solo", host=Host("192.0.2.8"))
            try:
                await device.network.relay("https://elsewhere.sim").connect()
            finally:
                await close_device(device)

    try:
        sim.run(main)
    except RelayUnavailableError:
        return
    raise AssertionError("connecting to a relay the simulation does not hold succeeded")


def test_clients_reconnect_when_the_relay_closes_idle_websockets() -> None:
    """A relay whose idle limit is shorter than the client's keep-alive closes each delivery
    connection; the client's drain loop reconnects, and every text still arrives."""
    seen = Seen()
    config = ServerConfig(ws_idle_seconds=20.0)
    result = sim.run(
        lambda clock: chat_ring(clock, 2, cadence=False, seconds=600, wrap=seen.wrap, config=config)
    )
    assert result.received == result.sent
    assert result.events["ConnectionChanged"] > 10  # up and down, again and again
    sockets = [(address, port) for kind, address, port, *_ in seen.rows if kind == "websocket"]
    assert len(sockets) > 10
    assert len(set(sockets)) == len(sockets)  # each on a connection of its own


def test_a_simulated_relay_records_the_operators_view_of_every_request() -> None:
    async def main(clock: VirtualClock) -> list[object]:
        sink = MemorySink()
        async with relay_app(clock, observer=Observer(sink, clock=clock)) as app:
            device = await new_device({RELAY_URL: app}, clock, "Ann", host=Host("10.0.0.9"))
            await close_device(device)
        return list(sink.records)

    records = sim.run(main)
    http = [r for r in records if isinstance(r, HttpExchange)]
    assert http, "registering a device makes requests the operator sees"
    assert {r.addr for r in http} == {"10.0.0.9"}


# --------------------------------------------------------------------------- faithful to httpx
class HttpxDeviceTransport(httpx.AsyncBaseTransport):
    """The reference the direct path must match: the client's own ``HttpNetwork`` over httpx,
    each connection an ``httpx.ASGITransport`` into the app from the host's address and a port,
    pooled for ``keep_alive_s`` as :class:`AsgiHttp` pools them."""

    def __init__(self, relays: Mapping[str, ASGIApp], host: Host, *, keep_alive_s: float | None) -> None:
        self._app = next(iter(relays.values()))
        self._host = host
        self._keep_alive_s = keep_alive_s
        self._idle: list[tuple[httpx.ASGITransport, int, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._host.online:
            raise httpx.ConnectError("the network is unreachable")
        loop = asyncio.get_running_loop()
        connection = None
        while self._idle:
            candidate, epoch, since = self._idle.pop()
            kept = self._keep_alive_s is not None and loop.time() - since < self._keep_alive_s
            if kept and epoch == self._host.epoch:
                connection = candidate
                break
        if connection is None:
            client = (self._host.address, self._host.new_port())
            connection = httpx.ASGITransport(self._app, client=client)
        response = await connection.handle_async_request(request)
        if self._keep_alive_s is not None:
            self._idle.append((connection, self._host.epoch, loop.time()))
        return response


def httpx_network(
    relays: Mapping[str, ASGIApp],
    host: Host,
    *,
    clock_ms: Callable[[], int],
    keep_alive: bool = True,
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
    latency_s: float = 0.0,
) -> HttpNetwork:
    """:func:`device_network` as the product builds it: ``HttpNetwork`` over httpx."""
    assert latency_s == 0.0
    return HttpNetwork(
        transport=HttpxDeviceTransport(relays, host, keep_alive_s=keep_alive_s),
        fresh_transport=HttpxDeviceTransport(relays, host, keep_alive_s=None),
        open_socket=WebSocketOpener(relays, host),
        keep_alive=keep_alive,
        clock_ms=clock_ms,
    )


def operator_view(
    monkeypatch: pytest.MonkeyPatch, network: Callable[..., Any], *, cadence: bool
) -> list[ViewRecord]:
    """Every record an observer around the relay keeps of a small chat ring on ``network``.

    Everything random is seeded, the signed calls' nonces too, so two runs that hand the relay
    the same requests give equal records."""
    monkeypatch.setattr(world, "device_network", network)
    nonces = random.Random(7)
    monkeypatch.setattr(transport, "secrets", SimpleNamespace(token_bytes=nonces.randbytes))
    sink = MemorySink()
    sim.run(
        lambda clock: chat_ring(
            clock, 3, cadence=cadence, seconds=1800, wrap=lambda app: Observer(sink, clock=clock).wrap(app)
        )
    )
    return sink.records


@pytest.mark.parametrize("cadence", [False, True], ids=["default", "cadence"])
def test_the_operator_sees_the_same_requests_as_through_httpx(
    monkeypatch: pytest.MonkeyPatch, cadence: bool
) -> None:
    built: list[HttpNetwork] = []

    def reference(*args: Any, **kwargs: Any) -> HttpNetwork:
        built.append(httpx_network(*args, **kwargs))
        return built[-1]

    through_httpx = operator_view(monkeypatch, reference, cadence=cadence)
    direct = operator_view(monkeypatch, device_network, cadence=cadence)
    assert len(built) == 3  # the reference really ran on httpx
    http = [r for r in through_httpx if isinstance(r, HttpExchange)]
    assert {r.method for r in http} >= {"GET", "POST", "PUT"}
    if cadence:
        assert any(name == "sotto-mailbox-auth" for r in http for name, _ in r.headers)
        assert any(r.path.endswith("/poll") for r in http)
    else:
        assert any(isinstance(r, WsFrame) for r in through_httpx)
    # Record for record: times, connections, addresses and ports, methods, paths, every
    # header in full and in order, sizes, statuses and the ids they name.
    assert len(direct) == len(through_httpx)
    for ours, theirs in zip(direct, through_httpx, strict=True):
        assert ours == theirs


def scope_seen_by_app(call: Callable[[ASGIApp], Any]) -> tuple[dict[str, Any], bytes]:
    """The scope and the whole body an app is handed for one request made by ``call``."""
    seen: dict[str, Any] = {}
    body = bytearray()

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [(b"content-type", b"application/json"), (b"x-twice", b"a"), (b"X-Twice", b"b")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"ok": ', "more_body": True})
        await send({"type": "http.response.body", "body": b"true}"})

    async def main(clock: VirtualClock) -> None:
        await call(app)

    sim.run(main)
    return seen, bytes(body)


REQUESTS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/v1/cadence", {}, None),
    ("POST", "/v1/accounts", {"content-type": "application/json"}, b'{"a": 1}'),
    ("POST", "/v1/mailboxes/x/poll", {"content-type": "application/json"}, b""),
    ("PUT", "/v1/accounts/me/keys", {"authorization": "Device abc"}, b"{}"),
    ("DELETE", "/v1/mailboxes/AbC-_09", {"sotto-mailbox-auth": "t.n.s"}, None),
    ("POST", "/v1/empty", {}, None),
    ("GET", "/v1/x?limit=3&y=%20", {"accept": "application/json", "User-Agent": "other"}, None),
    ("GET", "/v1/a%2Fb/./c/../d", {}, None),
    ("GET", "/v1/pad==/it's/[x]/.dot/~a.b", {}, None),
    ("GET", "/v1/caf\u00e9 au lait", {}, None),
    ("HEAD", "/v1/head", {}, None),
]


@pytest.mark.parametrize("url", [RELAY_URL, "http://127.0.0.1:8787"])
@pytest.mark.parametrize(("method", "path", "headers", "content"), REQUESTS)
def test_a_request_reaches_the_app_as_httpx_would_hand_it_over(
    url: str, method: str, path: str, headers: dict[str, str], content: bytes | None
) -> None:
    answers: list[tuple[int, str | None, bytes]] = []

    async def through_httpx(app: ASGIApp) -> None:
        connection = httpx.ASGITransport(app, client=("10.1.2.3", 50_000))
        async with httpx.AsyncClient(transport=connection, headers={"user-agent": USER_AGENT}) as client:
            reply = await client.request(method, url + path, content=content, headers=headers)
            answers.append((reply.status_code, reply.headers.get("X-TWICE"), reply.content))

    async def direct(app: ASGIApp) -> None:
        host = Host("10.1.2.3", lambda n: (50_000 - 49_152).to_bytes(n, "big"))
        reply = await AsgiHttp({url: app}, host).request(method, url + path, content=content, headers=headers)
        answers.append((reply.status_code, reply.headers.get("X-TWICE"), reply.content))

    assert scope_seen_by_app(direct) == scope_seen_by_app(through_httpx)
    assert answers[0] == answers[1]
    assert answers[0][:2] == (201, "a, b")


def test_a_reply_reads_as_json_as_httpx_reads_it() -> None:
    replies: list[Any] = []

    async def main(clock: VirtualClock) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"n": 12345678901234567890, "s": "\\u00e9"}'})

        reply = await AsgiHttp({RELAY_URL: app}, Host("10.0.0.1")).request("GET", RELAY_URL + "/")
        replies.append(reply.json())

    sim.run(main)
    assert replies == [{"n": 12345678901234567890, "s": "\u00e9"}]


def test_requests_to_an_unknown_relay_or_from_an_offline_host_fail_to_connect() -> None:
    failures: list[str] = []

    async def main(clock: VirtualClock) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("reached the app")

        host = Host("10.0.0.1")
        http = AsgiHttp({RELAY_URL: app}, host)
        for url in ("https://elsewhere.sim/v1/x", "https://relay.sim.evil/v1/x"):
            with pytest.raises(httpx.ConnectError):
                await http.request("GET", url)
            failures.append(url)
        host.go_offline()
        with pytest.raises(httpx.ConnectError):
            await http.request("GET", RELAY_URL + "/v1/x")
        failures.append("offline")

    sim.run(main)
    assert len(failures) == 3


def test_a_device_network_is_the_products_with_its_options() -> None:
    """The simulation builds its relays with the product's own HttpNetwork: options the product
    takes reach each relay, and the defaults are the product's."""

    async def main(clock: VirtualClock) -> None:
        async with relay_app(clock) as app:
            host = Host("192.0.2.9")
            default = device_network({RELAY_URL: app}, host, clock_ms=clock.now_ms)
            assert isinstance(default, HttpNetwork)
            product = HttpNetwork(clock_ms=clock.now_ms)
            ours, theirs = default.relay(RELAY_URL), product.relay(RELAY_URL)
            assert ours._max_work_bits == theirs._max_work_bits
            assert (ours._sender is None) == (theirs._sender is None)
            tuned = device_network(
                {RELAY_URL: app}, host, clock_ms=clock.now_ms, websocket_sends=False, max_work_bits=3
            )
            relay = tuned.relay(RELAY_URL + "/")
            assert relay._sender is None and relay._max_work_bits == 3
            assert tuned.relay(RELAY_URL) is relay
            fresh = device_network({RELAY_URL: app}, host, clock_ms=clock.now_ms, keep_alive=False)
            assert fresh._http is fresh._fresh  # cadence mode: every request on its own connection
            for network in (default, product, tuned, fresh):
                await network.aclose()

    sim.run(main)
