"""The in-process network: what the relay app sees comes from each device's own address."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sotto.audit import sim
from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import ASGIApp, Host
from sotto.audit.sim.scenario import address_of, chat_ring
from sotto.audit.sim.world import RELAY_URL, close_device, new_device, relay_app
from sotto.errors import RelayUnavailableError
from sotto.server.config import ServerConfig
from sotto.server.observer import HttpExchange, MemorySink, Observer
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
            await relay.key_counts(credentials)
            await asyncio.sleep(1)
            await relay.key_counts(credentials)  # within the keep-alive: the same connection
            await asyncio.sleep(60)
            await relay.key_counts(credentials)  # after it: a new one
            await close_device(device)

    sim.run(main)
    counts = [(address, port) for _, address, port, path, _, _ in seen.rows if path == "/v1/accounts/me/keys"]
    assert {address for address, _ in counts} == {"192.0.2.7"}
    # registration's key upload, then the three reads
    ports = [port for _, port in counts]
    assert ports[1] == ports[2] != ports[3]


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
