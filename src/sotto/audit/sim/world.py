"""The pieces of a simulation: the real relay app in process, and real SDK clients on it.

::

    async def main(clock: VirtualClock) -> None:
        async with relay_app(clock, config=ServerConfig(cadence_tick_seconds=300)) as app:
            relays = {RELAY_URL: app}
            alice = await new_device(relays, clock, "Alice", host=Host("10.0.0.1"), cadence=True)
            ...

    sim.run(main)

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

from fastapi import FastAPI

from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import DEFAULT_KEEP_ALIVE_S, ASGIApp, Host, device_network
from sotto.client.runtime import DEFAULT_RECEIPT_DELAY_S
from sotto.client.sdk import Client
from sotto.client.transport import Network
from sotto.crypto.random import Rng, system_rng
from sotto.server.app import create_app
from sotto.server.config import ServerConfig
from sotto.server.observer import Observer
from sotto.server.server_key import KEY_LENGTH, ServerKey
from sotto.server.storage.base import Storage
from sotto.server.storage.memory import MemoryStorage
from sotto.store.memory import MemoryStore

RELAY_URL = "https://relay.sim"
"""The relay's URL in a simulation (no name is resolved: the network is in process)."""


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


__all__ = ["RELAY_URL", "Device", "close_device", "new_device", "relay_app"]
