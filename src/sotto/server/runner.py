"""Run the relay under uvicorn with settings that keep client addresses out of everything.

uvicorn by default logs every request with the client's address and trusts X-Forwarded-For
from loopback; here the access log is off, proxy headers are ignored, its error logger stays at
WARNING behind an address scrubber, and WebSocket compression is off (compressing padded
payloads would let frame sizes reveal the unpadded length).

WebSockets are served by uvicorn's sans-I/O implementation with two of its per-connection
objects made smaller (:class:`DeliveryProtocol`): the relay holds many idle connections, and an
``asyncio.Queue`` and an ``asyncio.Event`` cost four deques, about 3.8 KB, for each.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from sotto.server.app import create_app
from sotto.server.config import ServerConfig
from sotto.server.logging import uvicorn_log_config
from sotto.wire.api import DEFAULT_CADENCE_TICK_SECONDS
from sotto.wire.limits import MAX_FRAME_BYTES


class Inbox:
    """What uvicorn's protocol uses of its ``asyncio.Queue`` of ASGI events: ``put_nowait``,
    ``get`` and ``empty``. One consumer (the app's ``receive``) waits at a time. It also counts
    the bytes of the messages it holds (:attr:`held_bytes`)."""

    __slots__ = ("_items", "_waiter", "held_bytes")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None
        self.held_bytes = 0

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self.held_bytes += _size(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("one reader at a time")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        item = self._items.pop(0)
        self.held_bytes -= _size(item)
        return item

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


def _size(event: Any) -> int:
    data = event.get("text") or event.get("bytes") if isinstance(event, dict) else None
    return len(data) if data else 0


class Flag:
    """What uvicorn's protocol uses of its ``asyncio.Event`` (whether the socket is writable):
    ``set``, ``clear``, ``wait``; waiters are listed only while there are some."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        while not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class DeliveryProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a smaller inbox and writable flag, which stops
    reading the socket only once the app is ``PAUSE_AT`` messages or ``PAUSE_BYTES`` behind."""

    PAUSE_AT = 64
    """uvicorn pauses reading after every message until the app takes it: two ``epoll_ctl``
    calls per read, and under load one read brings a burst of frames, which the app then takes
    one by one with reading paused. At one pause per 64 frames that cost is gone. Reading still
    stops when the app falls behind, so what waits for it stays bounded by this and by
    ``PAUSE_BYTES``."""
    PAUSE_BYTES = 2 * MAX_FRAME_BYTES
    """Reading pauses once the app has this much unread, whatever the count: a connection's
    backlog stays within a few of the largest frames, less than uvicorn's own four at
    ``ws_max_size``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]

    def send_receive_event_to_app(self) -> None:
        inbox: Inbox = self.queue  # type: ignore[assignment]
        if self.read_paused or inbox.qsize() + 1 >= self.PAUSE_AT or inbox.held_bytes >= self.PAUSE_BYTES:
            super().send_receive_event_to_app()  # queue it and pause reading
            return
        # Not behind: queue it as uvicorn does, but with reading marked paused for the call so
        # that uvicorn leaves it running.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False


def uvicorn_config(config: ServerConfig, **overrides: Any) -> uvicorn.Config:
    settings: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "access_log": False,
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "server_header": False,
        "log_config": uvicorn_log_config(),
        "ws_per_message_deflate": False,
        # The sans-I/O implementation holds an idle connection in less memory than the legacy one.
        "ws": DeliveryProtocol,
        # Frames up to twice the limit reach the app, which closes them with 4413.
        "ws_max_size": 2 * MAX_FRAME_BYTES,
        "lifespan": "on",
    }
    settings.update(overrides)
    return uvicorn.Config(create_app(config), **settings)


def run(
    host: str = "127.0.0.1",
    port: int = 8787,
    data_dir: Path = Path("./data"),
    *,
    cadence_tick_seconds: int = DEFAULT_CADENCE_TICK_SECONDS,
    **overrides: Any,
) -> None:
    """Serve until interrupted: ``sotto server`` and ``python -m sotto.server`` call this."""
    config = ServerConfig(
        data_dir=Path(data_dir), host=host, port=port, cadence_tick_seconds=cadence_tick_seconds
    )
    uvicorn.Server(uvicorn_config(config, **overrides)).run()
