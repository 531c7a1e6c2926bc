"""The doorbell of a relay that is one process: rings go straight to this process's subscribers.

Nothing is encoded or sent anywhere; it is always healthy. Several doorbells may share one
:class:`LocalHub` (tests use that to stand in for several nodes)."""

from __future__ import annotations

from collections.abc import Callable

from sotto.server.bus.base import BusHealth, RingCallback, Subscribers, encode_ring


class LocalHub:
    """The doorbells of one process that hear each other."""

    def __init__(self) -> None:
        self.members: list[LocalDoorbell] = []


class LocalDoorbell:
    """An in-process :class:`~sotto.server.bus.base.Doorbell`."""

    def __init__(self, hub: LocalHub | None = None) -> None:
        self._hub = hub if hub is not None else LocalHub()
        self._health = BusHealth()
        self._subscribers = Subscribers(self._health)

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    @property
    def health(self) -> BusHealth:
        return self._health

    async def start(self) -> None:
        if self not in self._hub.members:
            self._hub.members.append(self)
        self._health.up(again=False)

    async def ring(self, mailbox_id: bytes, seq: int) -> None:
        data = encode_ring(mailbox_id, seq)
        self._health.rings_sent += 1
        for member in list(self._hub.members):
            await member._subscribers.deliver(data)

    async def subscribe(self, callback: RingCallback) -> Callable[[], None]:
        return self._subscribers.add(callback)

    async def close(self) -> None:
        if self in self._hub.members:
            self._hub.members.remove(self)
        self._health.healthy = False


__all__ = ["LocalDoorbell", "LocalHub"]
