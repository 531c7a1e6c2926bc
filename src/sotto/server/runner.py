"""Run the relay under uvicorn with settings that keep client addresses out of everything.

uvicorn by default logs every request with the client's address and trusts X-Forwarded-For
from loopback; here the access log is off, proxy headers are ignored, its error logger stays at
WARNING behind an address scrubber, and WebSocket compression is off (compressing padded
payloads would let frame sizes reveal the unpadded length). The one exception is asked for by
name: ``record_view`` (``--record-view PATH``, off by default) appends the operator's view, client
addresses included, to that file (``docs/operator-view.md``).

WebSockets are served by uvicorn's sans-I/O implementation with two of its per-connection
objects made smaller (:class:`DeliveryProtocol`): the relay holds many idle connections, and an
``asyncio.Queue`` and an ``asyncio.Event`` cost four deques, about 3.8 KB, for each.

Every connection's resources are bounded (:class:`HttpProtocol`, :class:`ConnectionLimits`):
beyond ``max_connections`` a new one gets a bare 503 and is closed at once (the cap is derived
from the file descriptor limit, so descriptors never run out); a connection must send complete
request headers within ``header_timeout_seconds`` and a body within ``body_timeout_seconds``;
idle keep-alive connections close after ``keep_alive_seconds``; and a connection whose send
buffer stays full for ``write_stall_seconds`` (a client that does not read) is dropped, freeing
what it pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from sotto.server.app import create_app
from sotto.server.config import ServerConfig
from sotto.server.logging import logger, uvicorn_log_config
from sotto.server.observer import FileSink, Observer
from sotto.server.ws import INVALID_TEXT
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


RESERVED_FDS = 256
"""Descriptors kept out of the connection cap: the database and its journal, the listening
socket, worker threads' files, logs."""

MAX_BACKLOG = 256
"""The listen backlog, which is also how many connections asyncio accepts in one go: a flood of
connection attempts waits in the kernel (whose queue drops the excess, and clients retry)
instead of stalling the event loop for everyone, and few descriptors need to be set aside."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may hold, and how many there may be (see the module's note)."""

    max_connections: int = 10_000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    write_stall: float = 30.0

    @classmethod
    def of(cls, config: ServerConfig, max_connections: int) -> ConnectionLimits:
        return cls(
            max_connections=max_connections,
            header_timeout=config.header_timeout_seconds,
            body_timeout=config.body_timeout_seconds,
            write_stall=config.write_stall_seconds,
        )


DEFAULT_LIMITS = ConnectionLimits()

_REFUSAL_BODY = b'{"code":"unavailable","message":"too many connections; retry shortly"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)
"""A new connection beyond the cap gets this, then is closed: no parsing, no app."""


def _limits_of(config: Any) -> ConnectionLimits:
    limits = getattr(config, "sotto_limits", None)
    return limits if isinstance(limits, ConnectionLimits) else DEFAULT_LIMITS


class HttpProtocol(H11Protocol):
    """uvicorn's h11 protocol with the relay's bounds: a connection cap, a deadline for request
    headers and one for the body, and a limit on how long the send buffer may stay full."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits_of(self.config)
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_cycle: object = None
        self._stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            logger.warning("event connection refused: %d open", self._limits.max_connections)
            transport.write(_REFUSAL)
            transport.close()
            return
        self._arm(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)
        self._armed_cycle = self.cycle

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        """No new request head since arming (or its body still incomplete): close."""
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is not self._armed_cycle:
            return
        if cycle is None or cycle.response_complete or cycle.more_body:
            self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is not before and cycle is not None and cycle.more_body and not self.transport.is_closing():
            self._arm(self._limits.body_timeout)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the WebSocket has its own idle limit
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self._limits.header_timeout)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self._limits.write_stall, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None


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

    _stall: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]

    def pause_writing(self) -> None:
        """The peer reads slower than the relay writes: drop it if that lasts (the send that
        waits for room is released by the drop)."""
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(_limits_of(self.config).write_stall, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        super().connection_lost(exc)

    def send_receive_event_to_app(self) -> None:
        """Queue the message for the app as uvicorn does, except that reading pauses only once
        the app is behind, and that a text frame which is not UTF-8 becomes an event marked
        :data:`INVALID_TEXT` (the app refuses it like any malformed frame, 4400) instead of a
        logged traceback."""
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past websocket.close: read on until the peer's close reply
        inbox: Inbox = self.queue  # type: ignore[assignment]
        behind = inbox.qsize() + 1 >= self.PAUSE_AT or inbox.held_bytes >= self.PAUSE_BYTES
        if self.curr_msg_data_type == "text":
            try:
                inbox.put_nowait({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                inbox.put_nowait({"type": "websocket.receive", INVALID_TEXT: True})
        else:
            inbox.put_nowait({"type": "websocket.receive", "bytes": data})
        if behind and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(config: ServerConfig, fd_limit: int, backlog: int) -> int:
    """Connections the relay holds at most: ``config.max_connections`` if set, and never more
    than the descriptors left once the listen backlog (accepted in one go before any is
    refused) and :data:`RESERVED_FDS` are set aside."""
    room = max(1, fd_limit - backlog - RESERVED_FDS)
    return room if config.max_connections is None else max(1, min(config.max_connections, room))


def uvicorn_config(
    config: ServerConfig, *, observer: Observer | None = None, **overrides: Any
) -> uvicorn.Config:
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if fd_limit == resource.RLIM_INFINITY:
        fd_limit = 1 << 20
    backlog = max(16, min(MAX_BACKLOG, fd_limit // 4))
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
        "http": HttpProtocol,
        "backlog": backlog,
        "timeout_keep_alive": config.keep_alive_seconds,
        # Request heads larger than this are refused (h11's default, stated).
        "h11_max_incomplete_event_size": 16 * 1024,
        # Frames up to twice the limit reach the app, which closes them with 4413.
        "ws_max_size": 2 * MAX_FRAME_BYTES,
        "lifespan": "on",
    }
    settings.update(overrides)
    server_config = uvicorn.Config(create_app(config, observer=observer), **settings)
    cap = connection_cap(config, fd_limit, server_config.backlog)
    server_config.sotto_limits = ConnectionLimits.of(config, cap)  # type: ignore[attr-defined]
    return server_config


def run(
    host: str = "127.0.0.1",
    port: int = 8787,
    data_dir: Path = Path("./data"),
    *,
    cadence_tick_seconds: int = DEFAULT_CADENCE_TICK_SECONDS,
    settings: dict[str, Any] | None = None,
    record_view: Path | None = None,
    **overrides: Any,
) -> None:
    """Serve until interrupted: ``sotto server`` and ``python -m sotto.server`` call this.
    ``settings``: more :class:`ServerConfig` fields (quotas, checkpoint interval).
    ``record_view``: append the operator's view to this file (``docs/operator-view.md``; off
    unless given)."""
    raise_fd_limit()
    config = ServerConfig(
        data_dir=Path(data_dir),
        host=host,
        port=port,
        cadence_tick_seconds=cadence_tick_seconds,
        **(settings or {}),
    )
    observer = None
    if record_view is not None:
        observer = Observer(FileSink(Path(record_view)), keep_alive_seconds=config.keep_alive_seconds)
    uvicorn.Server(uvicorn_config(config, observer=observer, **overrides)).run()
