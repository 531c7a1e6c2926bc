"""An in-process network: the real client transport talking to the real relay's ASGI app.

Every simulated device gets :func:`device_network`: the client's own
:class:`~sotto.client.transport.HttpNetwork` (so its requests are built and signed by the
product's code, byte for byte), whose HTTP goes through :class:`DeviceTransport` into the relay
app and whose WebSockets are :class:`AsgiWebSocket` sessions on the same app. No socket is
opened; each request and WebSocket reaches the app with an ASGI scope whose ``client`` is the
device's address and the port of the connection it would have used:

* the device's pooled client keeps a connection (one port) per relay while it is reused within
  ``keep_alive_s`` (httpx's pool expiry, under the relay's own keep-alive timeout); concurrent
  requests use concurrent connections, as HTTP/1.1 does;
* requests the client makes on connections of their own (cadence mode's) get a fresh port each;
* each WebSocket is a connection of its own.

``latency_s`` delays each direction of each request and frame by that much virtual time (0: the
relay answers at the instant the client asks).

A :class:`Host` can lose its network (:meth:`Host.go_offline`, as a phone out of coverage or a
home line that drops): while it is offline every new request and WebSocket from it fails at once
(``httpx.ConnectError``, :class:`~sotto.errors.RelayUnavailableError`), as a connect without a
route does, and its open WebSockets are cut: the device's side fails at once, nothing more
passes either way, and the relay learns of it only by its own idle timeout. Pooled keep-alive
connections from before the outage are not reused.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets.http11
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from sotto.client.transport import HTTP_TIMEOUT_S, HttpNetwork, Socket
from sotto.crypto.random import Rng, system_rng
from sotto.errors import RelayUnavailableError

ASGIApp = Callable[..., Any]
"""An ASGI application (the relay's ``create_app()``)."""

FIRST_EPHEMERAL_PORT = 49_152
LAST_EPHEMERAL_PORT = 65_535
DEFAULT_KEEP_ALIVE_S = 5.0
"""How long httpx keeps an idle connection for reuse (its default ``keepalive_expiry``)."""


@dataclass
class Host:
    """One device's place on the network: its source address and the ports it connects from.

    Ports are handed out in sequence from a random start in the ephemeral range, as a client OS
    does for connections to one server. Devices of one household may share a :class:`Host`."""

    address: str
    rng: Rng = system_rng
    online: bool = True
    _next_port: int = field(init=False, default=0)
    epoch: int = field(init=False, default=0)
    """How many times the network went down: connections of an earlier epoch are dead."""
    _sockets: list[AsgiWebSocket] = field(init=False, default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        span = LAST_EPHEMERAL_PORT - FIRST_EPHEMERAL_PORT + 1
        self._next_port = FIRST_EPHEMERAL_PORT + int.from_bytes(self.rng(2)) % span

    def new_port(self) -> int:
        port = self._next_port
        self._next_port = port + 1 if port < LAST_EPHEMERAL_PORT else FIRST_EPHEMERAL_PORT
        return port

    def go_offline(self) -> None:
        """The network is gone (see the module docstring) until :meth:`go_online`."""
        self.online = False
        self.epoch += 1
        for socket in self._sockets:
            socket.cut()
        self._sockets.clear()

    def go_online(self) -> None:
        self.online = True

    def track(self, socket: AsgiWebSocket) -> None:
        """A WebSocket opened from this host: cut with the network."""
        self._sockets = [s for s in self._sockets if s.close_code is None]
        self._sockets.append(socket)


def _origin(url: httpx.URL | str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


@dataclass
class _Connection:
    transport: httpx.ASGITransport
    epoch: int
    idle_since: float = 0.0


class DeviceTransport(httpx.AsyncBaseTransport):
    """HTTP from one device into in-process relay apps (see the module docstring).

    ``keep_alive_s`` None: every request on a connection (a port) of its own."""

    def __init__(
        self,
        relays: Mapping[str, ASGIApp],
        host: Host,
        *,
        keep_alive_s: float | None = DEFAULT_KEEP_ALIVE_S,
        latency_s: float = 0.0,
    ) -> None:
        self._relays = {_origin(url): app for url, app in relays.items()}
        self._host = host
        self._keep_alive_s = keep_alive_s
        self._latency_s = latency_s
        self._idle: dict[str, list[_Connection]] = collections.defaultdict(list)

    def _app(self, origin: str) -> ASGIApp:
        app = self._relays.get(origin)
        if app is None:
            raise httpx.ConnectError(f"no relay at {origin} in this simulation")
        return app

    def _take(self, origin: str, now: float) -> _Connection:
        idle = self._idle[origin]
        while idle:
            connection = idle.pop()  # the most recently used, as httpx's pool does
            fresh = self._keep_alive_s is not None and now - connection.idle_since < self._keep_alive_s
            if fresh and connection.epoch == self._host.epoch:
                return connection
        client = (self._host.address, self._host.new_port())
        return _Connection(httpx.ASGITransport(self._app(origin), client=client), self._host.epoch)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._host.online:
            raise httpx.ConnectError("the network is unreachable")
        loop = asyncio.get_running_loop()
        origin = _origin(request.url)
        connection = self._take(origin, loop.time())
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        response = await connection.transport.handle_async_request(request)
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self._keep_alive_s is not None:
            connection.idle_since = loop.time()
            self._idle[origin].append(connection)
        return response

    async def aclose(self) -> None:
        self._idle.clear()


class _Pipe:
    """One direction of a connection: items reach ``sink`` in order, ``latency_s`` later."""

    def __init__(self, sink: Callable[[Any], None], latency_s: float) -> None:
        self._sink = sink
        self._latency_s = latency_s
        self._queue: collections.deque[tuple[float, Any]] = collections.deque()

    def put(self, item: Any) -> None:
        if not self._latency_s:
            self._sink(item)
            return
        loop = asyncio.get_running_loop()
        self._queue.append((loop.time() + self._latency_s, item))
        loop.call_later(self._latency_s, self._deliver)

    def _deliver(self) -> None:
        # Timers due at one instant may fire in any order: each delivers the prefix that is due.
        now = asyncio.get_running_loop().time()
        while self._queue and self._queue[0][0] <= now:
            self._sink(self._queue.popleft()[1])


_END = object()


class AsgiWebSocket:
    """A client WebSocket served by an ASGI app in the same process.

    What the client's drain and send connections use of ``websockets``' client connection:
    ``recv``, iteration, ``send``, ``close`` and ``close_code``, with the same exceptions
    (``ConnectionClosedOK`` / ``ConnectionClosedError``). The app sees a ``websocket`` scope with
    the headers ``websockets`` sends, and the ASGI messages a server would give it."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any], *, latency_s: float = 0.0) -> None:
        self._app = app
        self._scope = scope
        self._to_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._to_client: asyncio.Queue[Any] = asyncio.Queue()
        self._up = _Pipe(self._to_app.put_nowait, latency_s)
        self._down = _Pipe(self._to_client.put_nowait, latency_s)
        self._accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._cut = False
        self._close_code: int | None = None

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def client(self) -> tuple[str, int]:
        address, port = self._scope["client"]
        return str(address), int(port)

    async def open(self) -> None:
        """The opening handshake: RelayUnavailableError if the app does not accept."""
        self._up.put({"type": "websocket.connect"})
        self._task = asyncio.create_task(self._serve(), name="sim-websocket")
        if not await self._accepted:
            await self.close()
            raise RelayUnavailableError("connection failed: the relay refused the WebSocket")

    async def _serve(self) -> None:
        code = 1000
        try:
            await self._app(self._scope, self._receive, self._send)
        except Exception:
            code = 1011
        finally:
            self._end(code)

    async def _receive(self) -> MutableMapping[str, Any]:
        return await self._to_app.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            if not self._accepted.done():
                self._accepted.set_result(True)
        elif kind == "websocket.send":
            if self._cut:
                return  # written into a connection whose other end is gone: lost
            if self._closed:
                raise OSError("the client went away")
            text = message.get("text")
            self._down.put(text if text is not None else message.get("bytes"))
        elif kind == "websocket.close":
            if self._cut:
                self._to_app.put_nowait({"type": "websocket.disconnect", "code": 1006})
                return
            self._end(int(message.get("code", 1000)))

    def cut(self) -> None:
        """The network under the connection is gone: the client's side fails now (1006), and
        nothing more passes; the app learns only when it closes the connection itself."""
        if self._closed:
            return
        self._cut = self._closed = True
        self._close_code = 1006
        if not self._accepted.done():
            self._accepted.set_result(False)
        self._to_client.put_nowait(_END)

    def _end(self, code: int) -> None:
        """The connection is closed (by either side, or the app ended)."""
        if not self._accepted.done():
            self._accepted.set_result(False)
        if self._closed:
            return
        self._closed = True
        self._close_code = code
        self._down.put(_END)
        self._up.put({"type": "websocket.disconnect", "code": code})

    def _closed_error(self) -> Exception:
        if self._close_code in (1000, 1001):
            return ConnectionClosedOK(None, None)
        return ConnectionClosedError(None, None)

    async def recv(self) -> str | bytes:
        item = await self._to_client.get()
        if item is _END:
            self._to_client.put_nowait(_END)  # every later recv sees the end too
            raise self._closed_error()
        assert isinstance(item, str | bytes)
        return item

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    async def send(self, message: str) -> None:
        if self._closed:
            raise self._closed_error()
        self._up.put({"type": "websocket.receive", "text": message})

    async def close(self) -> None:
        self._end(1000)
        if self._cut:
            return  # the close cannot reach the app, and the app does not know to end
        if self._task is not None and self._task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), HTTP_TIMEOUT_S)


class WebSocketOpener:
    """Opens :class:`AsgiWebSocket` sessions from one host into in-process relay apps."""

    def __init__(self, relays: Mapping[str, ASGIApp], host: Host, *, latency_s: float = 0.0) -> None:
        self._relays = {_origin(url): app for url, app in relays.items()}
        self._host = host
        self._latency_s = latency_s
        self.opened: list[AsgiWebSocket] = []

    async def __call__(self, url: str) -> Socket:
        parsed = httpx.URL(url)
        app = self._relays.get(_origin(parsed))
        if app is None:
            raise RelayUnavailableError("connection failed: no such relay in this simulation")
        if not self._host.online:
            raise RelayUnavailableError("connection failed: the network is unreachable")
        secure = parsed.scheme == "https"
        port = parsed.port or (443 if secure else 80)
        host_header = parsed.netloc
        key = base64.b64encode(self._host.rng(16))
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if secure else "ws",
            "server": (parsed.host, port),
            "client": (self._host.address, self._host.new_port()),
            "root_path": "",
            "path": parsed.path.rstrip("/") + "/v1/ws",
            "raw_path": (parsed.path.rstrip("/") + "/v1/ws").encode(),
            "query_string": b"",
            "headers": [
                (b"host", host_header),
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-key", key),
                (b"sec-websocket-version", b"13"),
                (b"user-agent", websockets.http11.USER_AGENT.encode()),
            ],
            "subprotocols": [],
            "state": {},
        }
        if self._latency_s:
            await asyncio.sleep(self._latency_s)  # the handshake's request on its way
        socket = AsgiWebSocket(app, scope, latency_s=self._latency_s)
        await socket.open()
        self.opened.append(socket)
        self._host.track(socket)
        return socket


def device_network(
    relays: Mapping[str, ASGIApp],
    host: Host,
    *,
    clock_ms: Callable[[], int],
    keep_alive: bool = True,
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
    latency_s: float = 0.0,
) -> HttpNetwork:
    """The network of one simulated device: the client's real :class:`HttpNetwork`, its HTTP
    and WebSockets served in process by ``relays`` (URL → ASGI app), from ``host``.

    ``keep_alive``: as :class:`HttpNetwork` (False in cadence mode, as :class:`~sotto.client.sdk.Client`
    chooses); ``clock_ms``: the device's clock, the same the client gets."""
    return HttpNetwork(
        transport=DeviceTransport(relays, host, keep_alive_s=keep_alive_s, latency_s=latency_s),
        fresh_transport=DeviceTransport(relays, host, keep_alive_s=None, latency_s=latency_s),
        open_socket=WebSocketOpener(relays, host, latency_s=latency_s),
        keep_alive=keep_alive,
        clock_ms=clock_ms,
    )


__all__ = [
    "AsgiWebSocket",
    "DeviceTransport",
    "Host",
    "WebSocketOpener",
    "device_network",
]
