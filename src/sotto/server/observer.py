"""The operator's view, recorded by the relay process itself (``docs/operator-view.md``).

Whoever runs a relay sees every request and every frame that reaches it: when, from which
address and port, on which connection, with which credentials, how large, and which mailbox and
message ids it names. The relay keeps none of that (``docs/data-held.md``), but nothing stops an
operator from logging it; this module is that log, written down so that the leakage benchmark
attacks exactly what an operator could hold, and so that anyone can see what that is.

Recording is off unless asked for (``sotto server --record-view PATH``, or ``create_app(...,
observer=Observer(MemorySink()))``). Off, nothing here is installed: the app is the plain
:class:`~sotto.server.app.RelayApp`. On, :class:`ViewMiddleware` wraps the whole app, outside
every other layer (the body limit, the routing, the delivery socket's shortcut), so it sees
each request and frame as the ASGI server hands it over, including those the relay refuses.

Records (:data:`ViewRecord`), one per event, each with its time in µs from the relay's clock
(:class:`~sotto.server.clock.Clock`, injectable), a connection number, and the client's address
and port as the socket gives them:

- :class:`HttpExchange`: one request and its answer (method, path, query, every request header
  in full, body sizes, status, time to answer, ids named in path, bodies and credentials);
- :class:`WsOpen`, :class:`WsFrame` (each direction, its ``t``, size and ids), :class:`WsClose`.

**Connection numbers.** ASGI servers (uvicorn among them) give no connection id, only the
client's ``(address, port)``. While a TCP connection is open no other one has the same pair on
the same server socket, and a client's ports are not reused at once after a close (the closing
side holds the pair in TIME_WAIT), so the pair is a connection's name while it lives. A pair
gets a new number from a counter when it is first seen, after its WebSocket closed, or when
it was idle longer than the keep-alive limit (``keep_alive_seconds``, after which the relay has
closed the connection): requests on one keep-alive connection share a number. A request with
no address (one the Oblivious HTTP gateway opened, which came on no connection of its own) gets
a number of its own, shared with nothing.

What the view cannot hold: what never reaches the app (connections refused at the connection
cap, request heads uvicorn refuses as malformed, TLS handshakes at a reverse proxy).

The data directory is part of the view too: :func:`snapshot_data_dir` copies its files byte for
byte at a moment, and :func:`free_pages` lists the database's free pages from the raw bytes, as
an attacker holding the disk would read them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sotto.errors import DecodeError
from sotto.server.clock import Clock, SystemClock
from sotto.wire import auth as wire_auth
from sotto.wire import b64

Headers = tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class HttpExchange:
    """One HTTP request and its answer. ``status`` 0: no answer was sent (the client left)."""

    KIND: ClassVar[str] = "http"
    t_us: int
    conn: int
    addr: str | None
    port: int | None
    method: str
    path: str
    query: str
    headers: Headers
    """Every request header, names lowercased, values as sent (credentials in full)."""
    request_bytes: int
    status: int
    response_bytes: int
    duration_us: int
    mailboxes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    """Ids (base64url, as on the wire) named by the path, the request and answer bodies, and the
    device credentials (the account in ``Authorization``)."""
    handed: int = 0
    """Envelopes the answer hands out (a poll's ``envelopes``): the backlog it drains."""
    more: bool | None = None
    """A poll answer's ``more`` flag (more envelopes were pending than it handed out); None for
    any other answer."""


@dataclass(frozen=True, slots=True)
class WsOpen:
    """A client asks for a WebSocket (the handshake request)."""

    KIND: ClassVar[str] = "ws_open"
    t_us: int
    conn: int
    addr: str | None
    port: int | None
    path: str
    query: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class WsFrame:
    """One WebSocket message. ``direction`` is ``in`` (from the client) or ``out``; ``opcode``
    ``text``, ``binary``, or ``invalid_text`` (a text frame that is not UTF-8, size unknown: 0);
    ``type`` is the frame's ``t`` field, or None if it has none (not JSON, not an object)."""

    KIND: ClassVar[str] = "ws_frame"
    t_us: int
    conn: int
    addr: str | None
    port: int | None
    direction: str
    opcode: str
    type: str | None
    size: int
    mailboxes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WsClose:
    """The end of a WebSocket: ``direction`` ``in`` when the client closed or left, ``out`` when
    the relay closed it (with ``code``)."""

    KIND: ClassVar[str] = "ws_close"
    t_us: int
    conn: int
    addr: str | None
    port: int | None
    direction: str
    code: int


ViewRecord = HttpExchange | WsOpen | WsFrame | WsClose
_KINDS: dict[str, type[ViewRecord]] = {c.KIND: c for c in (HttpExchange, WsOpen, WsFrame, WsClose)}


def to_json(record: ViewRecord) -> bytes:
    """The record as one compact JSON object, ``kind`` first."""
    body: dict[str, Any] = {"kind": record.KIND}
    for f in fields(record):
        body[f.name] = getattr(record, f.name)
    return orjson.dumps(body)


def from_json(line: str | bytes) -> ViewRecord:
    obj = orjson.loads(line)
    cls = _KINDS[obj.pop("kind")]
    return cls(**{k: _tuples(v) for k, v in obj.items()})


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# --------------------------------------------------------------------------- sinks
class ViewSink(Protocol):
    """Where records go."""

    def write(self, record: ViewRecord) -> None: ...

    def close(self) -> None: ...


@dataclass
class MemorySink:
    """Records in a list, for tests and simulations."""

    records: list[ViewRecord] = field(default_factory=list)

    def write(self, record: ViewRecord) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


class FileSink:
    """Records appended to a file as JSON lines, each written through at once (so a reader sees
    every record up to the last event, even if the relay is killed). Opened on first write, in
    append mode: a restarted relay adds to the same file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None

    def write(self, record: ViewRecord) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self._file.write(to_json(record) + b"\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_view(path: Path) -> list[ViewRecord]:
    """The records of a file a :class:`FileSink` wrote (a torn last line is left out)."""
    records = []
    with Path(path).open("rb") as lines:
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                records.append(from_json(line))
    return records


# --------------------------------------------------------------------------- the recorder
class Observer:
    """What is recorded (every event), where to (``sink``), on which clock, and the connection
    numbering (see the module's note)."""

    BODY_KEPT = 1024 * 1024
    """Bytes of each body kept in memory to read ids from; sizes count everything."""

    def __init__(
        self,
        sink: ViewSink,
        *,
        clock: Clock | None = None,
        keep_alive_seconds: float = 10.0,
        data_dir: Path | None = None,
        snapshot_every_s: float | None = None,
    ) -> None:
        self.sink = sink
        self.clock = clock or SystemClock()
        self.keep_alive_us = int(keep_alive_seconds * 1_000_000)
        self._next_conn = 1
        self._conns: dict[tuple[Any, ...], list[int]] = {}  # pair -> [number, users, last µs]
        self.data_dir = data_dir
        """With ``snapshot_every_s``: the relay's data directory, copied into :attr:`snapshots`
        when a request arrives at least that long after the last copy (or the first request)."""
        self.snapshot_every_us = None if snapshot_every_s is None else round(snapshot_every_s * 1e6)
        self.snapshots: list[DataSnapshot] = []
        self._next_snapshot_us: int | None = None

    def snapshot_if_due(self, now_us: int) -> None:
        """Copy the data directory if a snapshot is due (see :attr:`data_dir`): taken as a
        request arrives, before the app sees it, so between two operations of the relay."""
        if self.data_dir is None or self.snapshot_every_us is None:
            return
        if self._next_snapshot_us is None:
            self._next_snapshot_us = now_us + self.snapshot_every_us
        elif now_us >= self._next_snapshot_us:
            self.snapshots.append(snapshot_data_dir(self.data_dir, now_us))
            self._next_snapshot_us = now_us + self.snapshot_every_us

    def now_us(self) -> int:
        return round(self.clock.now() * 1_000_000)

    def wrap(self, app: ASGIApp) -> ViewMiddleware:
        return ViewMiddleware(app, self)

    def open_conn(self, key: tuple[Any, ...] | None, now_us: int) -> int:
        """The connection number for ``key`` (None: a request with no address, which gets a
        number of its own and is not tracked)."""
        if key is None:
            self._next_conn += 1
            return self._next_conn - 1
        if self._next_conn % 4096 == 0:
            self._forget_idle(now_us)
        entry = self._conns.get(key)
        if entry is None or (entry[1] == 0 and now_us - entry[2] > self.keep_alive_us):
            entry = self._conns[key] = [self._next_conn, 0, now_us]
            self._next_conn += 1
        entry[1] += 1
        return entry[0]

    def _forget_idle(self, now_us: int) -> None:
        """Drop pairs whose connection the relay has closed, so the table stays as small as
        the set of open connections."""
        idle = [
            k
            for k, (_, users, last) in self._conns.items()
            if users == 0 and now_us - last > self.keep_alive_us
        ]
        for key in idle:
            del self._conns[key]

    @property
    def tracked(self) -> int:
        """Address and port pairs held for connection numbering."""
        return len(self._conns)

    def close_conn(self, key: tuple[Any, ...] | None, now_us: int, *, ended: bool) -> None:
        if key is None:
            return
        entry = self._conns.get(key)
        if entry is None:
            return
        entry[1] -= 1
        entry[2] = now_us
        if ended and entry[1] <= 0:
            del self._conns[key]  # the next connection from this pair is another one


class ViewMiddleware:
    """Pure ASGI middleware: records every HTTP exchange and every WebSocket event of ``app``
    to its observer's sink, and changes nothing it passes on."""

    def __init__(self, app: ASGIApp, observer: Observer) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        obs = self.observer
        addr, port, key = _peer(scope)
        headers = _headers(scope)  # now: an app may replace the scope's headers
        start = obs.now_us()
        obs.snapshot_if_due(start)
        conn = obs.open_conn(key, start)
        request, response = _Body(), _Body()
        status, head = 0, scope.get("method") == "HEAD"

        async def receive_recorded() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.add(message.get("body", b""))
            return message

        async def send_recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not head:  # a HEAD body is not sent
                response.add(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_recorded, send_recorded)
        finally:
            end = obs.now_us()
            obs.close_conn(key, end, ended=False)
            path = scope.get("path", "")
            reply = response.json()
            mailboxes, messages, accounts = _http_ids(path, headers, request.json(), reply)
            handed, more = _backlog(reply)
            obs.sink.write(
                HttpExchange(
                    t_us=start,
                    conn=conn,
                    addr=addr,
                    port=port,
                    method=scope.get("method", ""),
                    path=path,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    headers=headers,
                    request_bytes=request.size,
                    status=status,
                    response_bytes=response.size,
                    duration_us=end - start,
                    mailboxes=mailboxes,
                    messages=messages,
                    accounts=accounts,
                    handed=handed,
                    more=more,
                )
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        obs = self.observer
        addr, port, key = _peer(scope)
        headers = _headers(scope)
        conn = obs.open_conn(key, obs.now_us())
        sink, who = obs.sink, (conn, addr, port)

        async def receive_recorded() -> Message:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                sink.write(_frame(obs.now_us(), who, "in", message))
            elif kind == "websocket.connect":
                path, query = scope.get("path", ""), scope.get("query_string", b"").decode("latin-1")
                sink.write(WsOpen(obs.now_us(), conn, addr, port, path, query, headers))
            elif kind == "websocket.disconnect":
                sink.write(WsClose(obs.now_us(), conn, addr, port, "in", int(message.get("code", 1005))))
            return message

        async def send_recorded(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.send":
                sink.write(_frame(obs.now_us(), who, "out", message))
            elif kind == "websocket.close":
                sink.write(WsClose(obs.now_us(), conn, addr, port, "out", int(message.get("code", 1000))))
            await send(message)

        try:
            await self.app(scope, receive_recorded, send_recorded)
        finally:
            obs.close_conn(key, obs.now_us(), ended=True)


def _peer(scope: Scope) -> tuple[str | None, int | None, tuple[Any, ...] | None]:
    """The client's address and port, and the key its connection is numbered by (None: no
    address, so no connection to share)."""
    client = scope.get("client")
    if not client:
        return None, None, None
    addr, port = str(client[0]), int(client[1])
    server = scope.get("server")
    return addr, port, (addr, port, tuple(server) if server else None)


def _headers(scope: Scope) -> Headers:
    return tuple(
        (bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1")) for n, v in scope.get("headers", ())
    )


class _Body:
    """A body's size, and its first :attr:`Observer.BODY_KEPT` bytes to read ids from."""

    __slots__ = ("_chunks", "_kept", "size")

    def __init__(self) -> None:
        self.size = 0
        self._kept = 0
        self._chunks: list[bytes] = []

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if chunk and self._kept < Observer.BODY_KEPT:
            self._chunks.append(chunk)
            self._kept += len(chunk)

    def json(self) -> Any:
        if not self._chunks or self._kept > Observer.BODY_KEPT or self._kept != self.size:
            return None
        try:
            return orjson.loads(b"".join(self._chunks))
        except ValueError:
            return None


# --------------------------------------------------------------------------- ids
_PATH_IDS = (
    (re.compile(r"^/v1/mailboxes/([^/]+)"), "mailbox"),
    (re.compile(r"^/v1/accounts/(?!me/|me$)([^/]+)"), "account"),
)


def _http_ids(
    path: str, headers: Headers, request: Any, response: Any
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    mailboxes: list[str] = []
    messages: list[str] = []
    accounts: list[str] = []
    for pattern, what in _PATH_IDS:
        match = pattern.match(path)
        if match:
            (mailboxes if what == "mailbox" else accounts).append(match.group(1))
    if isinstance(request, dict):
        _add(mailboxes, request.get("mailbox_id"))
        _add(messages, request.get("message_id"))
        ack = request.get("ack")
        for item in ack if isinstance(ack, list) else ():
            _add(messages, item)
    for name, value in headers:
        if name == "authorization":
            with contextlib.suppress(DecodeError):
                accounts.append(b64.encode(wire_auth.decode_device_auth(value)[0]))
    if isinstance(response, dict):
        _add(accounts, response.get("account_id"))
        envelopes = response.get("envelopes")
        for item in envelopes if isinstance(envelopes, list) else ():
            if isinstance(item, dict):
                _add(messages, item.get("id"))
    return _unique(mailboxes), _unique(messages), _unique(accounts)


def _backlog(reply: Any) -> tuple[int, bool | None]:
    """How many envelopes an answer hands out, and its ``more`` flag (None: it has none)."""
    if not isinstance(reply, dict):
        return 0, None
    envelopes, more = reply.get("envelopes"), reply.get("more")
    return (len(envelopes) if isinstance(envelopes, list) else 0), (more if isinstance(more, bool) else None)


def _frame(now_us: int, who: tuple[int, str | None, int | None], direction: str, message: Message) -> WsFrame:
    text, data = message.get("text"), message.get("bytes")
    if isinstance(text, str):
        opcode, size = "text", (len(text) if text.isascii() else len(text.encode()))
        payload: str | bytes = text
    elif isinstance(data, bytes | bytearray):
        opcode, size, payload = "binary", len(data), bytes(data)
    else:
        opcode, size, payload = "invalid_text", 0, b""
    kind, mailboxes, messages = _frame_ids(payload)
    return WsFrame(now_us, *who, direction, opcode, kind, size, mailboxes, messages)


def _frame_ids(payload: str | bytes) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """The ``t`` of a frame and the mailbox and message ids it names, read leniently: a frame
    the relay refuses is recorded with whatever it holds."""
    try:
        obj = orjson.loads(payload)
    except ValueError:
        return None, (), ()
    if not isinstance(obj, dict):
        return None, (), ()
    kind = obj.get("t")
    mailboxes: list[str] = []
    messages: list[str] = []
    _add(mailboxes, obj.get("mailbox"))
    if kind in ("send", "sent", "send_failed", "envelope"):
        _add(messages, obj.get("id"))
    for key in ("mailboxes", "refused"):
        for item in _items(obj.get(key)):
            _add(mailboxes, item.get("id") if isinstance(item, dict) else item)
    for item in _items(obj.get("ids")):
        if isinstance(item, dict):
            _add(mailboxes, item.get("mailbox"))
            _add(messages, item.get("id"))
    return (kind[:64] if isinstance(kind, str) else None), _unique(mailboxes), _unique(messages)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _add(into: list[str], value: Any) -> None:
    if isinstance(value, str):
        into.append(value[:128])


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


# --------------------------------------------------------------------------- the data directory
@dataclass(frozen=True, slots=True)
class DataSnapshot:
    """Every file of the relay's data directory, byte for byte, as read at ``t_us``."""

    t_us: int
    files: dict[str, bytes]

    def free_pages(self, name: str = "relay.db") -> dict[int, bytes]:
        return free_pages(self.files.get(name, b""))

    def wal_frames(self, name: str = "relay.db-wal") -> list[WalFrame]:
        return wal_frames(self.files.get(name, b""))


def snapshot_data_dir(data_dir: Path, t_us: int = 0) -> DataSnapshot:
    """Copy each regular file of ``data_dir`` (the database, its ``-wal`` and ``-shm``, the
    server key). Files are read one after another, not under the relay's lock: take it while
    the relay is quiet (between a simulation's events) for one consistent moment. A file that
    vanishes meanwhile (the WAL at a stop) is left out."""
    files: dict[str, bytes] = {}
    for path in sorted(Path(data_dir).iterdir()):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            if path.is_file():
                files[path.name] = path.read_bytes()
    return DataSnapshot(t_us, files)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def free_pages(db: bytes) -> dict[int, bytes]:
    """The free pages of a SQLite database file, by page number, read from the raw bytes.

    The freelist is the chain of trunk pages starting at header offset 32, each listing leaf
    pages; both trunks and leaves are free. This reads the main file only: a newer page 1 in
    the WAL (not yet checkpointed) may list others."""
    if len(db) < 100 or not db.startswith(_SQLITE_MAGIC):
        return {}
    page_size = int.from_bytes(db[16:18], "big")
    page_size = 65_536 if page_size == 1 else page_size
    pages = len(db) // page_size
    found: dict[int, bytes] = {}
    for number in _freelist(db, page_size, pages):
        found[number] = db[(number - 1) * page_size : number * page_size]
    return found


def _freelist(db: bytes, page_size: int, pages: int) -> Iterator[int]:
    trunk = int.from_bytes(db[32:36], "big")
    seen: set[int] = set()
    while 1 <= trunk <= pages and trunk not in seen:
        seen.add(trunk)
        yield trunk
        page = db[(trunk - 1) * page_size : trunk * page_size]
        count = min(int.from_bytes(page[4:8], "big"), (page_size - 8) // 4)
        for i in range(count):
            leaf = int.from_bytes(page[8 + 4 * i : 12 + 4 * i], "big")
            if 1 <= leaf <= pages and leaf not in seen:
                seen.add(leaf)
                yield leaf
        trunk = int.from_bytes(page[0:4], "big")


@dataclass(frozen=True, slots=True)
class WalFrame:
    """One page image in a write-ahead log. ``current``: its salts match the log's header, so
    SQLite would read it; a frame left from before the log was last restarted is not current,
    but its bytes are still there. ``commit``: the database size in pages if this frame ends a
    transaction, else 0."""

    index: int
    page: int
    commit: int
    current: bool
    data: bytes


_WAL_MAGIC = (0x377F0682, 0x377F0683)


def wal_frames(wal: bytes) -> list[WalFrame]:
    """Every frame of a SQLite write-ahead log file, read from the raw bytes (header 32 bytes,
    then frames of a 24-byte header and one page). Checksums are not checked: an attacker reads
    what is there, valid or not."""
    if len(wal) < 32 or int.from_bytes(wal[0:4], "big") not in _WAL_MAGIC:
        return []
    page_size = int.from_bytes(wal[8:12], "big")
    if page_size < 512 or page_size & (page_size - 1) or page_size > 65_536:
        return []
    salts = wal[16:24]
    frames_: list[WalFrame] = []
    offset, step = 32, 24 + page_size
    while offset + step <= len(wal):
        head = wal[offset : offset + 24]
        frames_.append(
            WalFrame(
                index=len(frames_),
                page=int.from_bytes(head[0:4], "big"),
                commit=int.from_bytes(head[4:8], "big"),
                current=head[8:16] == salts,
                data=wal[offset + 24 : offset + step],
            )
        )
        offset += step
    return frames_
