"""The doorbell on NATS (nats-py): core publish/subscribe on one subject, ``<prefix>.rings``.

The client reconnects by itself and re-subscribes after a reconnect; while it is disconnected a
ring raises :class:`~sotto.server.bus.base.BusUnavailableError` instead of waiting in the
client's buffer (a ring that arrives late is worth less than the store poll that replaces it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from sotto.server.bus.base import BusHealth, BusUnavailableError, RingCallback, Subscribers, encode_ring

CONNECT_TIMEOUT = 2
"""Seconds to wait for the server when connecting."""
RECONNECT_WAIT = 0.25
"""Seconds between reconnection attempts after the connection is lost."""
PING_INTERVAL = 5
"""Seconds between the client's pings; after :data:`MAX_OUTSTANDING_PINGS` unanswered, it counts the
connection lost (a server that stops answering without closing it is noticed in about 10 to 15 s,
not the client's default of minutes)."""
MAX_OUTSTANDING_PINGS = 2


class NatsDoorbell:
    """A :class:`~sotto.server.bus.base.Doorbell` on a NATS server at ``url`` (``nats://…``)."""

    def __init__(self, url: str, *, prefix: str = "sotto") -> None:
        self._url = url
        self.subject = f"{prefix}.rings"
        self._health = BusHealth()
        self._subscribers = Subscribers(self._health)
        self._client: Client | None = None
        self._subscribed = False

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    @property
    def health(self) -> BusHealth:
        return self._health

    async def start(self) -> None:
        async def disconnected() -> None:
            self._health.down()

        async def reconnected() -> None:
            self._health.up(again=True)

        async def error(_exc: Exception) -> None:
            return None

        client = Client()
        try:
            await asyncio.wait_for(
                client.connect(
                    servers=[self._url],
                    connect_timeout=CONNECT_TIMEOUT,
                    reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # seconds, a float works
                    max_reconnect_attempts=-1,
                    ping_interval=PING_INTERVAL,
                    max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                    allow_reconnect=True,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                ),
                CONNECT_TIMEOUT * 2,
            )
        except Exception as exc:
            self._health.down()
            with contextlib.suppress(Exception):
                await client.close()
            raise BusUnavailableError(f"NATS unreachable: {type(exc).__name__}") from exc
        self._client = client
        self._health.up(again=False)

    def _connected(self) -> Client:
        client = self._client
        if client is None or not client.is_connected:
            self._health.down()
            raise BusUnavailableError("NATS not connected")
        return client

    async def ring(self, mailbox_id: bytes, seq: int) -> None:
        data = encode_ring(mailbox_id, seq)
        try:
            await self._connected().publish(self.subject, data)
        except BusUnavailableError:
            self._health.ring_failures += 1
            raise
        except Exception as exc:
            self._health.ring_failures += 1
            raise BusUnavailableError(f"NATS publish failed: {type(exc).__name__}") from exc
        self._health.rings_sent += 1

    async def subscribe(self, callback: RingCallback) -> Callable[[], None]:
        remove = self._subscribers.add(callback)
        if not self._subscribed:

            async def heard(msg: Msg) -> None:
                await self._subscribers.deliver(msg.data)

            try:
                client = self._connected()
                await client.subscribe(self.subject, cb=heard)
                # nats-py writes a flush's PING to the socket at once while the SUB waits in the
                # client's buffer for its flusher task: the PONG could come back before the server
                # had the SUB, and a ring sent then would be lost. Once the buffer is on the
                # socket, the PING follows the SUB and its PONG means the subscription holds.
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    while client.pending_data_size:
                        await asyncio.sleep(0)
                await client.flush(timeout=CONNECT_TIMEOUT)
            except BusUnavailableError:
                remove()
                raise
            except Exception as exc:
                remove()
                raise BusUnavailableError(f"NATS subscribe failed: {type(exc).__name__}") from exc
            self._subscribed = True
        return remove

    async def close(self) -> None:
        client, self._client = self._client, None
        self._health.healthy = False
        if client is not None and not client.is_closed:
            await client.close()


__all__ = ["NatsDoorbell"]
