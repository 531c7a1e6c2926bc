"""The doorbell between relay nodes: the interface, in-process, NATS and Redis pub/sub."""

from __future__ import annotations

from sotto.server.bus.base import BusHealth, BusUnavailableError, Doorbell, Ring
from sotto.server.bus.local import LocalDoorbell, LocalHub
from sotto.server.bus.nats import NatsDoorbell
from sotto.server.bus.redis import RedisDoorbell


def doorbell_for(url: str | None, *, prefix: str = "sotto") -> Doorbell:
    """The doorbell a ``--bus`` URL names: ``nats://…``, ``redis://…`` (or ``rediss://…``), or
    none for a relay that is one process."""
    if not url:
        return LocalDoorbell()
    if url.startswith(("nats://", "tls://")):
        return NatsDoorbell(url, prefix=prefix)
    if url.startswith(("redis://", "rediss://")):
        return RedisDoorbell(url, prefix=prefix)
    raise ValueError("bus URL must start with nats:// or redis://")


__all__ = [
    "BusHealth",
    "BusUnavailableError",
    "Doorbell",
    "LocalDoorbell",
    "LocalHub",
    "NatsDoorbell",
    "RedisDoorbell",
    "Ring",
    "doorbell_for",
]
