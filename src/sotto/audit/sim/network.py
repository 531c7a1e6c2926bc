"""An in-process network: the real client transport talking to the real relay's ASGI app.

Every simulated device gets :func:`device_network`, the product's own
:class:`~sotto.client.transport.HttpNetwork` with its relays' :class:`~sotto.client.transport.HttpRelay`
(so its requests are built and signed by the product's code, byte for byte, with the product's
options). Where the product hands those
requests to an ``httpx.AsyncClient``, here they go to :class:`AsgiHttp`, which turns each into
the ASGI request httpx's own ``ASGITransport`` would make of it (the same method, path, headers
in the same order, body, scheme and server) and hands it straight to the relay app, without
httpx's URL parsing, cookie jar, header models and streams: the relay, and an observer wrapped
around it (:mod:`sotto.server.observer`), see exactly what they would see through httpx; the
simulation pays only for what the product does. What it leaves out changes nothing the relay
sees: httpx's timeouts (its ASGI transport applies none either) and its cookie jar (the relay
sets no cookie; if it did, httpx would send it back and the test that runs a chat through both
paths, ``tests/audit/sim/test_network.py``, would see the difference). WebSockets are
:class:`AsgiWebSocket` sessions on the same app.

No socket is opened; each request and WebSocket reaches the app with an ASGI scope whose
``client`` is the device's address and the port of the connection it would have used:

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
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast

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
USER_AGENT = "sotto"
"""The ``user-agent`` the client's :class:`~sotto.client.transport.HttpNetwork` sets."""


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


# --------------------------------------------------------------------------- relays by origin
@dataclass(frozen=True, slots=True)
class _Origin:
    """One relay as a URL names it: what httpx would put in the scope and the ``host`` header."""

    origin: str
    """``scheme://netloc``, what request URLs start with."""
    scheme: str
    server: tuple[str, int | None]
    """``(host, port)``, the port None when it is the scheme's default (as httpx leaves it)."""
    host_header: bytes
    app: ASGIApp


def _origin(url: httpx.URL | str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


def _origins(relays: Mapping[str, ASGIApp]) -> dict[str, _Origin]:
    found = {}
    for url, app in relays.items():
        parsed = httpx.URL(url)
        origin = _origin(parsed)
        found[origin] = _Origin(origin, parsed.scheme, (parsed.host, parsed.port), parsed.netloc, app)
    return found


def _find(origins: Mapping[str, _Origin], url: str) -> tuple[_Origin, str] | None:
    """The relay ``url`` names and the rest of the URL (path and query), or None."""
    for origin, relay in origins.items():
        if url.startswith(origin) and url[len(origin) : len(origin) + 1] in ("/", "?", ""):
            return relay, url[len(origin) :]
    return None


# --------------------------------------------------------------------------- HTTP
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9_~.-]*)*/?")
"""A path httpx passes through unchanged: unreserved characters only (the client's paths are
words and base64url ids), no segment that starts with a dot, no query."""


def _client_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The headers httpx's client adds to every request, names lowercased: its defaults with
    the client's ``user-agent``, in httpx's order."""
    with httpx.Client(headers={"user-agent": USER_AGENT}) as client:
        return tuple((name.lower(), value) for name, value in client.headers.raw)


_CLIENT_HEADERS = _client_headers()
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def request_headers(
    method: str, host_header: bytes, headers: Mapping[str, str], content: bytes | None
) -> list[tuple[bytes, bytes]]:
    """The header list httpx sends for a request (``AsyncClient.build_request`` then
    ``ASGITransport``): ``host`` and, for an empty POST/PUT/PATCH, ``content-length: 0`` first;
    then the client's defaults less those the call sets itself, the call's own headers, and
    the body's ``content-length`` last."""
    own = [(name.lower().encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
    replaced = {name for name, _ in own}
    merged = [(name, value) for name, value in _CLIENT_HEADERS if name not in replaced] + own
    names = {name for name, _ in merged}
    if content and b"content-length" not in names and b"transfer-encoding" not in names:
        merged.append((b"content-length", str(len(content)).encode("ascii")))
        names.add(b"content-length")
    auto = [] if b"host" in names else [(b"host", host_header)]
    if method in _BODY_METHODS and b"content-length" not in names and b"transfer-encoding" not in names:
        auto.append((b"content-length", b"0"))
    return auto + merged


class ReplyHeaders:
    """A reply's headers as :class:`HttpRelay` reads them: ``get`` by name, any case; values
    of a repeated header joined by ``, `` (as httpx does)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower().encode("latin-1")
        values = [bytes(v).decode("latin-1") for n, v in self._raw if bytes(n).lower() == key]
        return ", ".join(values) if values else default


class Reply:
    """What :class:`HttpRelay` reads of an ``httpx.Response``: ``status_code``, ``headers``,
    ``content`` and ``json()``."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status_code
        self.headers = ReplyHeaders(headers)
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)  # what httpx's Response.json() does


class _Exchange:
    """One request handed to an app: its ``receive`` and ``send`` (as ``ASGITransport``'s)."""

    __slots__ = ("_body", "_done", "_head", "_sent", "body", "headers", "status")

    def __init__(self, content: bytes, head: bool) -> None:
        self._body = content
        self._sent = False
        self._head = head
        self._done: asyncio.Future[None] | None = None
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    @property
    def complete(self) -> bool:
        return self._done is not None and self._done.done()

    def _completion(self) -> asyncio.Future[None]:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return self._done

    async def receive(self) -> dict[str, Any]:
        if not self._sent:
            self._sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._completion()  # the client stays until the answer is whole, then leaves
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("the app started its response twice")
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif kind == "http.response.body":
            done = self._completion()
            if done.done():
                raise RuntimeError("the app sent a body after its response ended")
            body = message.get("body", b"")
            if body and not self._head:
                self.body.append(body)
            if not message.get("more_body", False):
                done.set_result(None)


class AsgiHttp:
    """HTTP from one device into in-process relay apps: the part of ``httpx.AsyncClient`` that
    :class:`HttpRelay` uses (``request`` and ``aclose``), see the module docstring.

    ``keep_alive_s`` None: every request on a connection (a port) of its own. An app's
    exception reaches the caller, as with ``ASGITransport``; an unknown relay is
    ``httpx.ConnectError``."""

    def __init__(
        self,
        relays: Mapping[str, ASGIApp],
        host: Host,
        *,
        keep_alive_s: float | None = DEFAULT_KEEP_ALIVE_S,
        latency_s: float = 0.0,
    ) -> None:
        self._origins = _origins(relays)
        self._host = host
        self._keep_alive_s = keep_alive_s
        self._latency_s = latency_s
        self._idle: dict[str, list[tuple[tuple[str, int], int, float]]] = {}
        """Per origin: idle connections (client address and port, the host's epoch, idle
        since), newest last."""

    def _take(self, origin: str, now: float) -> tuple[tuple[str, int], int]:
        """A connection for a request: the client's address and port, and its epoch."""
        epoch = self._host.epoch
        idle = self._idle.get(origin)
        while idle:
            client, opened_in, since = idle.pop()  # the most recently used, as httpx's pool does
            fresh = self._keep_alive_s is not None and now - since < self._keep_alive_s
            if fresh and opened_in == epoch:
                return client, opened_in
        return (self._host.address, self._host.new_port()), epoch

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        found = _find(self._origins, url)
        if found is None:
            raise httpx.ConnectError("no relay at this URL in this simulation")
        relay, rest = found
        if not self._host.online:
            raise httpx.ConnectError("the network is unreachable")
        if _PLAIN_PATH.fullmatch(rest) is None:  # escapes, dot segments, a query: as httpx parses
            parsed = httpx.URL(url)
            path, raw_path, query = parsed.path, parsed.raw_path.split(b"?")[0], parsed.query
        else:
            path = rest or "/"
            raw_path, query = path.encode("ascii"), b""
        method = method.upper()
        loop = asyncio.get_running_loop()
        client, epoch = self._take(relay.origin, loop.time())
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "headers": request_headers(method, relay.host_header, headers or {}, content),
            "scheme": relay.scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "server": relay.server,
            "client": client,
            "root_path": "",
        }
        exchange = _Exchange(content or b"", method == "HEAD")
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        await relay.app(scope, exchange.receive, exchange.send)
        if exchange.status is None or not exchange.complete:
            raise RuntimeError("the app returned without a whole response")
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self._keep_alive_s is not None:
            self._idle.setdefault(relay.origin, []).append((client, epoch, loop.time()))
        return Reply(exchange.status, exchange.headers, b"".join(exchange.body))

    async def aclose(self) -> None:
        self._idle.clear()


# --------------------------------------------------------------------------- WebSockets
class _Inbox:
    """A queue with no bound (what ``asyncio.Queue`` is used for here, with less work per item)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter  # every getter waits on one future and looks again when it is set
        return self._items.popleft()


class _Pipe:
    """One direction of a connection: items reach ``sink`` in order, ``latency_s`` later."""

    __slots__ = ("_latency_s", "_queue", "_sink")

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
        self._to_app = _Inbox()
        self._to_client = _Inbox()
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
        message: MutableMapping[str, Any] = await self._to_app.get()
        return message

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


_WS_USER_AGENT = websockets.http11.USER_AGENT.encode()


class WebSocketOpener:
    """Opens :class:`AsgiWebSocket` sessions from one host into in-process relay apps."""

    def __init__(self, relays: Mapping[str, ASGIApp], host: Host, *, latency_s: float = 0.0) -> None:
        self._origins = _origins(relays)
        self._host = host
        self._latency_s = latency_s

    async def __call__(self, url: str) -> Socket:
        found = _find(self._origins, url)
        if found is None:
            raise RelayUnavailableError("connection failed: no such relay in this simulation")
        if not self._host.online:
            raise RelayUnavailableError("connection failed: the network is unreachable")
        relay, rest = found
        secure = relay.scheme == "https"
        host, port = relay.server
        path = rest.partition("?")[0].rstrip("/") + "/v1/ws"
        key = base64.b64encode(self._host.rng(16))
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if secure else "ws",
            "server": (host, port or (443 if secure else 80)),
            "client": (self._host.address, self._host.new_port()),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [
                (b"host", relay.host_header),
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-key", key),
                (b"sec-websocket-version", b"13"),
                (b"user-agent", _WS_USER_AGENT),
            ],
            "subprotocols": [],
            "state": {},
        }
        if self._latency_s:
            await asyncio.sleep(self._latency_s)  # the handshake's request on its way
        socket = AsgiWebSocket(relay.app, scope, latency_s=self._latency_s)
        await socket.open()
        self._host.track(socket)
        return socket


# --------------------------------------------------------------------------- the device's network
class SimNetwork(HttpNetwork):
    """One device's :class:`~sotto.client.transport.Network`: the product's own
    :class:`~sotto.client.transport.HttpNetwork` (its :class:`HttpRelay` per relay URL, built
    with the same options), sending over :class:`AsgiHttp` and :class:`WebSocketOpener` where
    the product sends over httpx and ``websockets``."""

    def __init__(
        self,
        relays: Mapping[str, ASGIApp],
        host: Host,
        *,
        clock_ms: Callable[[], int],
        keep_alive: bool = True,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        latency_s: float = 0.0,
        **options: Any,
    ) -> None:
        """``options``: the rest of :class:`HttpNetwork`'s (``websocket_sends``,
        ``max_work_bits``), its defaults unless given."""
        self.host = host
        fresh = AsgiHttp(relays, host, keep_alive_s=None, latency_s=latency_s)
        pooled = (
            AsgiHttp(relays, host, keep_alive_s=keep_alive_s, latency_s=latency_s) if keep_alive else fresh
        )
        # HttpRelay calls only request() and aclose(), and reads only what Reply has.
        super().__init__(
            clients=(cast(httpx.AsyncClient, pooled), cast(httpx.AsyncClient, fresh)),
            keep_alive=keep_alive,
            clock_ms=clock_ms,
            open_socket=WebSocketOpener(relays, host, latency_s=latency_s),
            **options,
        )


def device_network(
    relays: Mapping[str, ASGIApp],
    host: Host,
    *,
    clock_ms: Callable[[], int],
    keep_alive: bool = True,
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
    latency_s: float = 0.0,
    **options: Any,
) -> SimNetwork:
    """The network of one simulated device: the client's real relay code, its HTTP and
    WebSockets served in process by ``relays`` (URL → ASGI app), from ``host``.

    ``keep_alive``: as :class:`~sotto.client.transport.HttpNetwork` (False in cadence mode, as
    :class:`~sotto.client.sdk.Client` chooses); ``clock_ms``: the device's clock, the same the
    client gets; ``options``: :class:`HttpNetwork`'s others."""
    return SimNetwork(
        relays,
        host,
        clock_ms=clock_ms,
        keep_alive=keep_alive,
        keep_alive_s=keep_alive_s,
        latency_s=latency_s,
        **options,
    )


__all__ = [
    "DEFAULT_KEEP_ALIVE_S",
    "USER_AGENT",
    "AsgiHttp",
    "AsgiWebSocket",
    "Host",
    "Reply",
    "SimNetwork",
    "WebSocketOpener",
    "device_network",
    "request_headers",
]
