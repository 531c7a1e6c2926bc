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
beyond ``max_connections`` in all, or ``per_source`` from one address, a new one gets a bare 503
and is closed at once (the cap is derived from the file descriptor limit, so descriptors never
run out); a connection must send complete request headers within ``header_timeout_seconds``
(a new connection within a random share more, up to half, so that connections opened together
are not cut off together: ``HEADER_SPREAD``) and a body within ``body_timeout_seconds``; idle
keep-alive connections close after ``keep_alive_seconds``; a connection whose send buffer stays
full for ``write_stall_seconds`` (a client that does not read) is dropped, freeing what it
pinned; and the next request on a connection is not read while the last answer still sits
unread in the kernel's send queue.

Refusals cost next to nothing: :class:`RelayServer` listens on an :class:`AdmissionSocket`, which
counts connections per source address as the kernel hands them over and refuses the excess
there, before asyncio builds a transport or uvicorn a protocol for them. It also hands over at
most ``ACCEPT_BATCH`` connections per turn of the event loop, so that a storm of connection
attempts waits in the kernel's backlog instead of in front of traffic on open connections.

Held connections cost full garbage collections: those scan every object in the oldest
generation, and a flood holds thousands of connections of about 20 objects each. So a
connection ends without a reference cycle (:func:`release_transport`), and is freed at once by
reference counting; what start-up made is frozen out of full collections, and so is what a full
collection finds alive while connections come and go (:class:`SurvivorFreezer`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import gc
import random
import resource
import socket
import termios
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from sotto.server.answering import UNREAD_EXTENSION
from sotto.server.app import create_app
from sotto.server.config import ServerConfig
from sotto.server.gateway import load_gateway_key, with_gateway
from sotto.server.logging import logger, uvicorn_log_config
from sotto.server.longpoll import stop_holding
from sotto.server.observer import FileSink, Observer
from sotto.server.ws import INVALID_TEXT, SEND_MANY
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
    per_source: int | None = 64
    """Connections one address may hold at once (``None``: no limit). Clients behind one NAT
    share it; a relay behind a proxy that connects from one address must turn it off."""

    @classmethod
    def of(cls, config: ServerConfig, max_connections: int, per_source: int | None) -> ConnectionLimits:
        return cls(
            max_connections=max_connections,
            per_source=per_source,
            header_timeout=config.header_timeout_seconds,
            body_timeout=config.body_timeout_seconds,
            write_stall=config.write_stall_seconds,
        )


DEFAULT_LIMITS = ConnectionLimits()

PER_SOURCE = DEFAULT_LIMITS.per_source
ACCEPT_BATCH = 4
"""Connections admitted per turn of the event loop; the rest wait in the kernel's backlog."""
REFUSE_BATCH = 16
"""Connections refused per turn of the event loop (each is an accept, a send and a close)."""
CLOSE_BATCH = 8
"""Connections closed for a timeout per turn of the event loop."""
UNREAD_HOLD_BYTES = 64 * 1024
"""The next request on a connection waits while more than this of earlier answers is still
unread in the kernel's send queue (checked every ``UNREAD_CHECK_SECONDS``)."""
UNREAD_CHECK_SECONDS = 0.5
HEADER_SPREAD = 0.5
"""A new connection's first header deadline is the header timeout times a random factor from 1
to 1 + this: connections opened together (a flood of slow-header clients, a reconnecting
crowd) are not all cut off, and do not all come back, in the same instant."""
REFUSAL_LOG_SECONDS = 60.0
"""Refused connections are logged as a count, at most once per this many seconds."""


class Admission:
    """Who holds connections: how many in all and from each source address, against the cap
    and the per-source limit. :class:`AdmissionSocket` admits at accept time; without it (a
    plain ``uvicorn.Server``) :class:`HttpProtocol` admits when the connection is made.
    Whoever admitted a connection, its protocol releases it when it ends."""

    __slots__ = (
        "_by_source",
        "_closing",
        "_closing_soon",
        "_logged",
        "_logged_at",
        "at_accept",
        "limits",
        "open",
        "refused",
    )

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.at_accept = False
        self._by_source: dict[str, int] = {}
        self._logged = 0
        self._logged_at = -REFUSAL_LOG_SECONDS
        self._closing: collections.deque[asyncio.BaseTransport] = collections.deque()
        self._closing_soon = False

    def admit(self, source: str) -> bool:
        """Count one more connection from ``source``, or say it must be refused."""
        held = self._by_source.get(source, 0)
        per_source = self.limits.per_source
        if self.open >= self.limits.max_connections or (per_source is not None and held >= per_source):
            self.refused += 1
            now = time.monotonic()
            if now - self._logged_at >= REFUSAL_LOG_SECONDS:  # one line a minute at most
                logger.warning(
                    "event connections refused: %d (%d open)", self.refused - self._logged, self.open
                )
                self._logged_at, self._logged = now, self.refused
            return False
        self._by_source[source] = held + 1
        self.open += 1
        return True

    def release(self, source: str) -> None:
        held = self._by_source.get(source, 0)
        if held <= 0:
            return
        self.open -= 1
        if held == 1:
            del self._by_source[source]
        else:
            self._by_source[source] = held - 1

    def held_by(self, source: str) -> int:
        return self._by_source.get(source, 0)

    def close_soon(self, transport: asyncio.BaseTransport) -> None:
        """Close ``transport`` within a few turns of the event loop, ``CLOSE_BATCH`` per turn:
        connections admitted together time out together, and closing thousands in one turn
        would hold up everyone else's traffic."""
        self._closing.append(transport)
        if not self._closing_soon:
            self._closing_soon = True
            asyncio.get_running_loop().call_soon(self._close_some)

    def _close_some(self) -> None:
        closing = self._closing
        for _ in range(min(CLOSE_BATCH, len(closing))):
            transport = closing.popleft()
            if not transport.is_closing():
                transport.close()
        if closing:
            asyncio.get_running_loop().call_soon(self._close_some)
        else:
            self._closing_soon = False


_REFUSAL_BODY = b'{"code":"unavailable","message":"too many connections; retry shortly"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)
"""A new connection beyond the cap gets this, then is closed: no parsing, no app."""


def _limits_of(config: Any) -> ConnectionLimits:
    limits = getattr(config, "sotto_limits", None)
    return limits if isinstance(limits, ConnectionLimits) else DEFAULT_LIMITS


def _admission_of(config: Any) -> Admission:
    admission = getattr(config, "sotto_admission", None)
    if not isinstance(admission, Admission):
        admission = Admission(_limits_of(config))
        with contextlib.suppress(AttributeError):
            config.sotto_admission = admission
    return admission


def _no_read() -> None:
    """What a closed transport would do if it were told to read: nothing (it is not asked)."""


def release_transport(transport: asyncio.BaseTransport | None) -> None:
    """Break the reference cycle asyncio's selector transport keeps with itself (a bound method
    of its own, ``_read_ready_cb``), once its connection is lost: reference counting then frees
    the transport, its socket and their dicts at once. Left alone, every closed connection is
    cyclic garbage (five objects) that waits in the oldest generation for a full collection; a
    connection flood leaves thousands, and the full collection that frees them pauses the relay.
    Only the connection's reader calls it, and asyncio removed the reader before the loss."""
    if transport is not None and getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = _no_read  # type: ignore[attr-defined]


def _source(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else ""


def unread_bytes(sock: socket.socket) -> int:
    """Bytes this side has written that the peer has not yet taken (the kernel's send queue)."""
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4), "little", signed=True)
    except OSError:
        return 0


class AdmissionSocket(socket.socket):
    """A listening socket that admits connections as the kernel hands them over: one beyond
    the cap or the per-source limit gets :data:`_REFUSAL` and is closed right there, so asyncio
    never sees it; and at most ``ACCEPT_BATCH`` are admitted per turn of the event loop."""

    admission: Admission

    @classmethod
    def wrap(cls, sock: socket.socket, admission: Admission) -> AdmissionSocket:
        wrapped = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        wrapped.admission = admission
        admission.at_accept = True
        wrapped._admitted = wrapped._refused = 0
        wrapped._turn_pending = False
        return wrapped

    def _next_turn(self) -> None:
        self._admitted = self._refused = 0
        self._turn_pending = False

    def accept(self) -> tuple[socket.socket, Any]:
        if not self._turn_pending:
            self._turn_pending = True
            asyncio.get_running_loop().call_soon(self._next_turn)
        while self._admitted < ACCEPT_BATCH and self._refused < REFUSE_BATCH:
            fd, address = self._accept()  # type: ignore[attr-defined]  # BlockingIOError: none left
            if self.admission.admit(_source(address)):
                self._admitted += 1
                admitted = socket.socket(self.family, self.type, self.proto, fileno=fd)
                if self.family in (socket.AF_INET, socket.AF_INET6):
                    # asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and a socket
                    # bound by uvicorn says 0: without it an answer written in two pieces waits
                    # for the peer's delayed ACK (about 40 ms) on a kept-alive connection.
                    with contextlib.suppress(OSError):
                        admitted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return admitted, address
            self._refused += 1
            refused = socket.socket(self.family, self.type, self.proto, fileno=fd)
            with contextlib.suppress(OSError):
                refused.send(_REFUSAL, socket.MSG_DONTWAIT)
            refused.close()
        raise BlockingIOError  # enough for this turn; the kernel keeps the rest


FULL_COLLECTION_SECONDS = 60.0
"""How often the relay runs a full garbage collection; the collector runs none by itself."""
NO_AUTOMATIC_FULL_COLLECTION = 1_000_000_000
"""The oldest generation's threshold while the relay runs: never reached."""
FREEZE_REFRESH_SECONDS = 600.0
"""How often :class:`SurvivorFreezer` unfreezes everything, so that a full collection looks at
all of it again."""


class SurvivorFreezer:
    """A garbage-collection policy for a process that holds many long-lived objects (a relay
    under a connection flood: about 20 objects per connection, 2,000 or more connections).

    A full collection that finds no garbage at all means that the oldest generation holds only
    live objects: they are frozen (``gc.freeze``), so later full collections leave them out and
    scan only what was promoted since, a pause of a few milliseconds instead of tens (about 70
    ms with a flood's connections held). Frozen objects that die are still freed by reference
    counting, and the relay's connections end without reference cycles
    (:func:`release_transport`). One that became cyclic garbage while frozen would never be
    collected, so every ``refresh_seconds`` everything is unfrozen once instead, and the next
    full collection looks at all of it; one that finds garbage freezes nothing.

    Installed as a ``gc`` callback; ``schedule`` runs the freeze or unfreeze soon after, outside
    the collector (the relay passes its loop's ``call_soon_threadsafe``), ``now`` is the clock.
    """

    def __init__(
        self,
        schedule: Callable[[Callable[[], None]], object],
        now: Callable[[], float],
        refresh_seconds: float = FREEZE_REFRESH_SECONDS,
    ) -> None:
        self._schedule = schedule
        self._now = now
        self.refresh_seconds = refresh_seconds
        self._since = now()
        self._due = False
        self.freezes = 0
        self.refreshes = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info.get("generation") != 2 or self._due:
            return
        if info.get("collected", 1) == 0 and info.get("uncollectable", 1) == 0:
            self._due = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do
                self._schedule(self._act)

    def _act(self) -> None:
        self._due = False
        now = self._now()
        if now - self._since >= self.refresh_seconds:
            self._since = now
            gc.unfreeze()
            self.refreshes += 1
        else:
            gc.freeze()
            self.freezes += 1

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


class RelayServer(uvicorn.Server):
    """uvicorn's server listening on an :class:`AdmissionSocket` (when it binds host and port
    itself, as ``run`` has it)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        if sockets is None and config.uds is None and config.fd is None:
            sockets = [AdmissionSocket.wrap(config.bind_socket(), _admission_of(config))]
        await super().startup(sockets=sockets)
        # What start-up made (the app, its routes and models, the imported modules: about 80,000
        # objects) lives as long as the process: leave it out of every later full collection,
        # whose pause, under a flood of connections, is what the honest clients wait for.
        gc.collect()
        gc.freeze()
        # And what lives on while connections come and go is frozen as it proves to be alive.
        loop = asyncio.get_running_loop()
        self.freezer = SurvivorFreezer(loop.call_soon_threadsafe, time.monotonic)
        self.freezer.install()
        # Full collections by the clock, not by allocations: under a connection flood the
        # collector's own count asks for one every few seconds, each a pause of tens of
        # milliseconds with the flood's connections held; one a minute bounds what they cost.
        self.gc_thresholds = gc.get_threshold()
        gc.set_threshold(self.gc_thresholds[0], self.gc_thresholds[1], NO_AUTOMATIC_FULL_COLLECTION)
        self.full_collections = 0
        self._full_collection = loop.call_later(self.full_collection_seconds, self._collect_fully)

    full_collection_seconds = FULL_COLLECTION_SECONDS

    def _collect_fully(self) -> None:
        gc.collect()
        self.full_collections += 1
        self._full_collection = asyncio.get_running_loop().call_later(
            self.full_collection_seconds, self._collect_fully
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        freezer: SurvivorFreezer | None = getattr(self, "freezer", None)
        if freezer is not None:
            freezer.uninstall()
        timer: asyncio.TimerHandle | None = getattr(self, "_full_collection", None)
        if timer is not None:
            timer.cancel()
            gc.set_threshold(*self.gc_thresholds)
        stop_holding()  # held long polls answer now, not when their waits run out
        await super().shutdown(sockets=sockets)


class HttpProtocol(H11Protocol):
    """uvicorn's h11 protocol with the relay's bounds: a connection cap, a deadline for request
    headers and one for the body, and a limit on how long the send buffer may stay full."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits_of(self.config)
        self._admission = _admission_of(self.config)
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_cycle: object = None
        self._stall: asyncio.TimerHandle | None = None
        self._held: asyncio.TimerHandle | None = None
        self._held_since = 0.0
        self.admitted_source: str | None = None
        """The address this connection is counted under (None: not counted, or handed on)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        source = _source(self.client)
        if not self._admission.at_accept and not self._admission.admit(source):
            transport.write(_REFUSAL)
            transport.close()
            return
        self.admitted_source = source
        self._arm(self._limits.header_timeout * (1.0 + HEADER_SPREAD * random.random()))

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self.admitted_source is not None:
            self._admission.release(self.admitted_source)
            self.admitted_source = None
        super().connection_lost(exc)
        release_transport(getattr(self, "transport", None))

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
            self._admission.close_soon(self.transport)

    def handle_events(self) -> None:
        if self._held is not None:
            return  # the next request waits until the peer reads what it was sent
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is not before and cycle is not None:
            # How much of its answers the peer has not taken (the app's task has not started);
            # through a weak reference, so that the connection ends without a reference cycle.
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[UNREAD_EXTENSION] = functools.partial(_unread_of, weakref.ref(self))
        if cycle is not before and cycle is not None and cycle.more_body and not self.transport.is_closing():
            self._arm(self._limits.body_timeout)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the WebSocket has its own idle limit
        super().handle_websocket_upgrade(event)
        successor = self.transport.get_protocol()
        if isinstance(successor, DeliveryProtocol):  # it releases the count when it ends
            successor.admitted_source, self.admitted_source = self.admitted_source, None

    def on_response_complete(self) -> None:
        if not self.transport.is_closing() and self._unread() > UNREAD_HOLD_BYTES:
            # A peer that does not read its answers gets no more of them: its next request
            # waits (and its further bytes stay in the kernel) until it reads, or the
            # write-stall limit drops it.
            self._held_since = self.loop.time()
            self._held = self.loop.call_later(UNREAD_CHECK_SECONDS, self._check_held)
            self.transport.pause_reading()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self._limits.header_timeout)
            if self._held is not None:
                # Not idle: a request waits. How long the peer may leave its answers unread is
                # the write-stall limit's business, not the header or keep-alive timeout's.
                self._disarm()
                if self.timeout_keep_alive_task is not None:
                    self.timeout_keep_alive_task.cancel()
                    self.timeout_keep_alive_task = None

    def _unread(self) -> int:
        sock = self.transport.get_extra_info("socket")
        return unread_bytes(sock) if sock is not None else 0

    def _check_held(self) -> None:
        self._held = None
        if self.transport.is_closing():
            return
        if self._unread() > UNREAD_HOLD_BYTES:
            if self.loop.time() - self._held_since >= self._limits.write_stall:
                self.transport.abort()
                return
            self._held = self.loop.call_later(UNREAD_CHECK_SECONDS, self._check_held)
            return
        self.transport.resume_reading()
        self._arm(self._limits.header_timeout)
        self.handle_events()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self._limits.write_stall, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None


def _unread_of(protocol: weakref.ref[HttpProtocol]) -> int:
    """:meth:`HttpProtocol._unread` of a connection that may have ended (then 0)."""
    held = protocol()
    return 0 if held is None or held.transport.is_closing() else held._unread()


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
    admitted_source: str | None = None
    """The address this connection is counted under, handed on by :class:`HttpProtocol`."""

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
        if self.admitted_source is not None:
            _admission_of(self.config).release(self.admitted_source)
            self.admitted_source = None
        super().connection_lost(exc)
        release_transport(getattr(self, "transport", None))

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        self.scope["extensions"][SEND_MANY] = {}

    async def send(self, message: ASGISendEvent) -> None:
        """uvicorn's ``send``, and :data:`SEND_MANY`: several text frames in one socket write."""
        if message["type"] != SEND_MANY:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected
        if self.close_sent or not self.handshake_complete:
            raise RuntimeError(f"{SEND_MANY} outside an open connection")
        conn = self.conn
        try:
            for text in message["texts"]:  # type: ignore[typeddict-item]
                conn.send_text(text.encode())
        except InvalidState:
            raise ClientDisconnected from None
        self.transport.write(b"".join(conn.data_to_send()))

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
    config: ServerConfig,
    *,
    observer: Observer | None = None,
    per_source: int | None = PER_SOURCE,
    **overrides: Any,
) -> uvicorn.Config:
    """uvicorn's settings for the relay (see the module's note); ``per_source``: connections one
    address may hold (``None``: no limit)."""
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
    app: ASGIApp = create_app(config, observer=observer)
    if config.gateway:  # idle unless a forwarder posts to it (docs/ohttp.md)
        key = load_gateway_key(config.data_dir)
        app = with_gateway(app, key, observer=observer, limit=config.rate_limits.forwarded)
    server_config = uvicorn.Config(app, **settings)
    cap = connection_cap(config, fd_limit, server_config.backlog)
    limits = ConnectionLimits.of(config, cap, per_source)
    server_config.sotto_limits = limits  # type: ignore[attr-defined]
    server_config.sotto_admission = Admission(limits)  # type: ignore[attr-defined]
    return server_config


def run(
    host: str = "127.0.0.1",
    port: int = 8787,
    data_dir: Path = Path("./data"),
    *,
    cadence_tick_seconds: int = DEFAULT_CADENCE_TICK_SECONDS,
    settings: dict[str, Any] | None = None,
    record_view: Path | None = None,
    per_source: int | None = PER_SOURCE,
    **overrides: Any,
) -> None:
    """Serve until interrupted: ``sotto server`` and ``python -m sotto.server`` call this.
    ``settings``: more :class:`ServerConfig` fields (quotas, checkpoint interval).
    ``record_view``: append the operator's view to this file (``docs/operator-view.md``; off
    unless given). ``per_source``: connections one address may hold (``None``: no limit)."""
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
    RelayServer(uvicorn_config(config, observer=observer, per_source=per_source, **overrides)).run()
