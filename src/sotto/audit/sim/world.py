"""The pieces of a simulation: the real relay app in process, and real SDK clients on it.

::

    async def main(clock: VirtualClock) -> None:
        async with relay_app(clock, config=ServerConfig(cadence_tick_seconds=300)) as app:
            relays = {RELAY_URL: app}
            alice = await new_device(relays, clock, "Alice", host=Host("10.0.0.1"), cadence=True)
            ...

    sim.run(main)

With :func:`forwarded_network`, a device reaches the relay as ``sotto init --forwarder`` does:
every request sealed (Oblivious HTTP) to the relay's gateway and carried by a forwarder, the
real :class:`~sotto.forwarder.app.Forwarder` in process, which also holds the device's schedule
in cadence mode (:mod:`sotto.client.schedule`) and goes on releasing it while the device's host
is offline. Each device has a forwarder of its own, all at one address
(:data:`FORWARDER_ADDRESS`), so the relay's work for each request still runs under the device's
tag (a study's truth needs it); the relay sees one forwarder either way.

Everything runs on one :class:`~sotto.audit.sim.clock.VirtualEventLoop`. The relay is
:func:`sotto.server.app.create_app` with its lifespan (sweeps and stats on their timers), the
given storage (in-memory unless told otherwise: the SQLite storage's writer thread would let
virtual time run on while it works) and the simulation's clock. Each device is a
:class:`~sotto.client.sdk.Client` over an in-memory store, its own :class:`Host` and its own
:func:`~sotto.audit.sim.network.device_network`, reading the same clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import DEFAULT_KEEP_ALIVE_S, ASGIApp, Host, device_network
from sotto.client.oblivious import oblivious_network
from sotto.client.runtime import DEFAULT_RECEIPT_DELAY_S
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork, Network
from sotto.crypto.random import Rng, system_rng
from sotto.forwarder.app import Forwarder, ForwarderConfig
from sotto.server.app import create_app
from sotto.server.config import RateLimit, ServerConfig
from sotto.server.gateway import with_gateway
from sotto.server.observer import Observer
from sotto.server.server_key import KEY_LENGTH, ServerKey
from sotto.server.storage.base import Storage
from sotto.server.storage.memory import MemoryStorage
from sotto.store.memory import MemoryStore
from sotto.wire import ohttp

RELAY_URL = "https://relay.sim"
"""The relay's URL in a simulation (no name is resolved: the network is in process)."""
FORWARDER_URL = "https://forwarder.sim"
FORWARDER_ADDRESS = "10.255.0.1"
"""Where every forwarder's requests reach the relay from."""
_UNLIMITED = RateLimit(burst=1e9, per_second=1e9)


@contextlib.asynccontextmanager
async def relay_app(
    clock: VirtualClock,
    *,
    config: ServerConfig | None = None,
    storage: Storage | None = None,
    rng: Rng = system_rng,
    observer: Observer | None = None,
) -> AsyncIterator[FastAPI]:
    """The real relay app, started (its lifespan runs) until the block ends.

    With ``observer``, the operator's view of it is recorded (``docs/operator-view.md``): pass
    ``Observer(MemorySink(), clock=clock)`` and read ``observer.sink.records`` afterwards.
    """
    config = config or ServerConfig()
    app = create_app(
        config,
        storage=storage if storage is not None else MemoryStorage(quotas=config.quotas),
        clock=clock,
        rng=rng,
        server_key=ServerKey(rng(KEY_LENGTH)),
        observer=observer,
    )
    async with app.router.lifespan_context(app):
        yield app


@dataclass
class Device:
    """One simulated device: its client, its network and where it connects from."""

    name: str
    host: Host
    network: Network
    client: Client


async def new_device(
    relays: Mapping[str, ASGIApp],
    clock: VirtualClock,
    name: str,
    *,
    host: Host,
    relay_url: str = RELAY_URL,
    cadence: bool = False,
    rng: Rng = system_rng,
    receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
    latency_s: float = 0.0,
) -> Device:
    """Register a new account on ``relay_url`` from a new device (an in-memory store)."""
    network = device_network(
        relays,
        host,
        clock_ms=clock.now_ms,
        keep_alive=not cadence,
        keep_alive_s=keep_alive_s,
        latency_s=latency_s,
    )
    client = await Client.register(
        MemoryStore(),
        relay_url,
        name,
        network=network,
        rng=rng,
        clock=clock.now_ms,
        receipt_delay=receipt_delay,
        cadence=cadence,
    )
    return Device(name, host, network, client)


async def close_device(device: Device) -> None:
    """Close the client, then its network (the client does not own a network it was handed)."""
    await device.client.close()
    await device.network.aclose()


class _HostTransport(httpx.AsyncBaseTransport):
    """Requests from ``host`` to an in-process app: refused at once while the host is offline
    (``httpx.ConnectError``, as :mod:`~sotto.audit.sim.network` does), else each on a fresh
    port."""

    def __init__(self, app: Any, host: Host) -> None:
        self._app = app
        self._host = host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._host.online:
            raise httpx.ConnectError("the network is down", request=request)
        transport = httpx.ASGITransport(app=self._app, client=(self._host.address, self._host.new_port()))
        return await transport.handle_async_request(request)


class _ForwarderPort(httpx.AsyncBaseTransport):
    """The forwarder's requests to the gateway, from :data:`FORWARDER_ADDRESS`."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._port = 40_000

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._port = self._port + 1 if self._port < 60_000 else 40_000
        transport = httpx.ASGITransport(app=self._app, client=(FORWARDER_ADDRESS, self._port))
        return await transport.handle_async_request(request)


def gateway_key(rng: Rng) -> ohttp.GatewayKey:
    """The relay's gateway key in a simulation (one for all its gateways)."""
    return ohttp.GatewayKey(1, rng(32))


def device_forwarder(
    relay: ASGIApp, clock: VirtualClock, key: ohttp.GatewayKey, *, rng: Rng = system_rng
) -> Forwarder:
    """A device's forwarder to ``relay`` (the relay app as this device reaches it) behind a
    gateway with ``key``: it outlives the device's processes, as a server does (close it with
    ``aclose`` before the relay stops). Its limits are lifted (one device uses it); its schedule
    release loop reads the simulation's clock."""
    gateway = with_gateway(relay, key, clock=clock, rng=rng, limit=None)
    return Forwarder(
        ForwarderConfig(relay_url=RELAY_URL, per_source=_UNLIMITED, release_idle_seconds=3600.0),
        transport=_ForwarderPort(gateway),
        clock=clock.now,
        wall=clock.now,
    )


def forwarded_network(
    forwarder: Forwarder, host: Host, clock: VirtualClock, key: ohttp.GatewayKey, *, rng: Rng = system_rng
) -> HttpNetwork:
    """One process's network through ``forwarder`` from ``host`` (refused while it is offline),
    every request sealed to ``key``'s configuration, as ``sotto init --forwarder`` sets up."""
    return oblivious_network(
        FORWARDER_URL,
        key.config,
        relay_url=RELAY_URL,
        clock_ms=clock.now_ms,
        rng=rng,
        transport=_HostTransport(forwarder, host),
    )


__all__ = [
    "FORWARDER_ADDRESS",
    "FORWARDER_URL",
    "RELAY_URL",
    "Device",
    "close_device",
    "device_forwarder",
    "forwarded_network",
    "gateway_key",
    "new_device",
    "relay_app",
]
