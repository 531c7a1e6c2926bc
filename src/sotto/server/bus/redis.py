"""The doorbell on Redis pub/sub (redis-py): one channel, ``<prefix>:rings``.

Two connections: rings are published on the client's pool, and one reader task holds the
subscription. The client's own retries are off so that a lost connection shows at once; the
reader reconnects and subscribes again every :data:`RECONNECT_WAIT` seconds until it succeeds.
Rings published while the reader was away are lost (pub/sub keeps nothing), which is what the
:attr:`~sotto.server.bus.base.BusHealth.reconnects` counter is for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sotto.server.bus.base import BusHealth, BusUnavailableError, RingCallback, Subscribers, encode_ring

CONNECT_TIMEOUT = 2.0
"""Seconds to wait for the server when connecting."""
RECONNECT_WAIT = 0.25
"""Seconds between attempts to subscribe again after the connection is lost."""
READ_TIMEOUT = 1.0
"""The reader wakes at least this often (to notice a close)."""


class RedisDoorbell:
    """A :class:`~sotto.server.bus.base.Doorbell` on a Redis server at ``url`` (``redis://…``).

    ``client_name`` names this node's connections in ``CLIENT LIST`` (no mailbox ever does)."""

    def __init__(self, url: str, *, prefix: str = "sotto", client_name: str | None = None) -> None:
        self.channel = f"{prefix}:rings"
        self._health = BusHealth()
        self._subscribers = Subscribers(self._health)
        self._client = aioredis.Redis.from_url(
            url,
            client_name=client_name,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._listening = False
        self._closed = False
        self._probe: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    @property
    def health(self) -> BusHealth:
        return self._health

    async def start(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            self._health.down()
            raise BusUnavailableError(f"Redis unreachable: {type(exc).__name__}") from exc
        self._health.up(again=False)

    async def ring(self, mailbox_id: bytes, seq: int) -> None:
        data = encode_ring(mailbox_id, seq)
        try:
            await self._client.publish(self.channel, data)
        except (RedisError, OSError) as exc:
            self._health.ring_failures += 1
            self._health.down()
            self._probe_until_up()
            raise BusUnavailableError(f"Redis publish failed: {type(exc).__name__}") from exc
        self._health.rings_sent += 1
        if self._reader is None or self._listening:  # healthy only if it can hear rings too
            self._health.up(again=True)

    def _probe_until_up(self) -> None:
        """After a failed publish, ping every :data:`RECONNECT_WAIT` seconds until the server
        answers, then count the bus healthy again (if the subscription holds too): without it, a
        node that stopped ringing would not learn that the bus is back."""
        if self._closed or (self._probe is not None and not self._probe.done()):
            return
        self._probe = asyncio.get_running_loop().create_task(self._probe_loop())

    async def _probe_loop(self) -> None:
        while not self._closed and not self._health.healthy:
            await asyncio.sleep(RECONNECT_WAIT)
            try:
                await asyncio.wait_for(self._client.ping(), CONNECT_TIMEOUT)
            except (RedisError, OSError, TimeoutError):
                continue
            if self._reader is None or self._listening:
                self._health.up(again=True)
            return

    async def subscribe(self, callback: RingCallback) -> Callable[[], None]:
        remove = self._subscribers.add(callback)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        try:
            await asyncio.wait_for(self._ready.wait(), CONNECT_TIMEOUT * 2)
        except TimeoutError as exc:
            remove()
            raise BusUnavailableError("Redis subscribe timed out") from exc
        return remove

    async def _read(self) -> None:
        """Hold the subscription: subscribe, read, and on a lost connection start over."""
        first = True
        while not self._closed:
            pubsub: PubSub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while not self._closed:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is None:
                        continue
                    if message.get("type") == "message":
                        await self._subscribers.deliver(message["data"])
                    elif message.get("type") == "subscribe":  # the server confirmed: rings reach us now
                        self._listening = True
                        self._health.up(again=not first)
                        first = False
                        self._ready.set()
            except (RedisError, OSError):
                self._listening = False
                self._health.down()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            if not self._closed:
                await asyncio.sleep(RECONNECT_WAIT)

    async def close(self) -> None:
        self._closed = True
        self._health.healthy = False
        reader, self._reader = self._reader, None
        for task in (reader, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


__all__ = ["RedisDoorbell"]
