"""The Oblivious HTTP gateway (RFC 9458): requests that arrive through a forwarder, opened here.

A client seals its request to the relay (binary HTTP, RFC 9292, inside an Encapsulated Request)
and hands it to a forwarder that someone else runs; the forwarder POSTs the sealed bytes to
``POST /v1/gateway``. This layer opens them with the relay's gateway key, runs the request
through the relay app as if it had arrived alone, with **no client address and no connection**
(``scope["client"]`` is None, ``scope["server"]`` is None), and seals the app's answer back
(``message/ohttp-res``). The relay thus sees who asks nothing but the forwarder, and no two
requests share anything but that forwarder. ``GET /v1/gateway/keys`` publishes the key
configuration (``application/ohttp-keys``). Everything else passes to the app untouched.

Wrap an app with :func:`with_gateway`; the key is derived from the relay's ``server.key``
(:func:`gateway_key`, :func:`load_gateway_key`), so nothing new is stored.

Order of checks on ``POST /v1/gateway``; a refusal never reaches the app::

    405  not POST (GET or HEAD for the keys)                        plain problem
    429  the forwarder's budget (RateLimits.forwarded) is spent     plain problem, Retry-After
    415  content type is not message/ohttp-req                      plain problem
    413  body over MAX_ENCAPSULATED_BYTES (Content-Length, or read)  plain problem
    400  a request seen within the replay window (same bytes)      plain problem "replayed"
    503  the shared replay window cannot be reached                 plain problem, Retry-After
    400  malformed header, unknown key id, unsupported algorithm     plain problem, type ohttp-key
         (RFC 9458 §5.3) for the key and algorithm cases
    400  the ciphertext does not open                               plain problem
    503  the replay window is full                                  plain problem, Retry-After
    400  inner Date before the shared replay window's memory began   sealed problem, type date,
         (plus the window: see below)                               with the earliest Date that passes
    400  inner message is not binary HTTP, or names the gateway     sealed problem
    400  inner Date missing or outside ±window (RFC 9458 §6.5.2)   sealed problem, type date,
                                                                    with the gateway's Date

Replay protection (RFC 9458 §6.5): every inner request must carry a ``Date`` within
:data:`DATE_WINDOW_SECONDS` of the gateway's clock, and the digest of every accepted
Encapsulated Request is remembered for twice that (:class:`ReplayWindow`), so a copy is refused
while its date would still pass, and forgotten after. Memory is bounded by ``max_entries``;
when it is full the gateway refuses (503) rather than let a replay through. The ``Date`` is
dropped before the app sees the request: a client's clock error would mark its requests.

When the relay's protective state is shared between nodes (``--shared-state``), the gateway in
front of the relay app uses it (:meth:`GatewayMiddleware.bind_shared`): the replay window and
the budget per forwarder then hold across every node, so a copy sent to another node is refused
too. If the shared state cannot be reached, the gateway refuses (503) rather than skip the
replay check; the budget per forwarder falls back to this node's own. A Redis that restarts
empty forgets the digests, so the shared window keeps the epoch rule of the signed requests: a
request whose ``Date`` is earlier than the memory's epoch plus the window (it could have been
accepted before the restart) is refused, sealed, with that earliest ``Date`` as the answer's, so
a client that takes its clock from the gateway's ``Date`` passes on its next try. For one window
(:data:`DATE_WINDOW_SECONDS`) after such a restart every request through the gateway takes that
extra round. The in-process window has no such rule: a restarted node forgets its digests.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sotto.crypto.random import Rng, system_rng
from sotto.errors import SottoError
from sotto.server.clock import Clock, SystemClock
from sotto.server.config import RateLimit, RateLimits
from sotto.server.logging import logger
from sotto.server.observer import Observer
from sotto.server.ratelimit import FORWARDED_BY, RateLimiter, source_key
from sotto.server.server_key import ServerKey, load_or_create
from sotto.server.shared_state import Claim, Limiter, SharedState, SharedStateUnavailableError, SingleUse
from sotto.wire import bhttp, ohttp

__all__ = [
    "DATE_PROBLEM",
    "DATE_WINDOW_SECONDS",
    "GATEWAY_PATH",
    "KEYS_PATH",
    "OHTTP_KEY_PROBLEM",
    "GatewayCore",
    "GatewayMiddleware",
    "GatewayRefusal",
    "ReplayWindow",
    "gateway_key",
    "inner_scope",
    "load_gateway_key",
    "with_gateway",
]

GATEWAY_PATH: Final = "/v1/gateway"
KEYS_PATH: Final = "/v1/gateway/keys"
OHTTP_KEY_PROBLEM: Final = "https://iana.org/assignments/http-problem-types#ohttp-key"
"""RFC 9458 §5.3: the key id or the algorithms of an Encapsulated Request are not the gateway's."""
DATE_PROBLEM: Final = "https://iana.org/assignments/http-problem-types#date"
"""RFC 9458 §6.5.2: the inner request's Date is outside the gateway's window."""
DATE_WINDOW_SECONDS: Final = 60
"""How far an inner request's Date may be from the gateway's clock, either way."""
MAX_REPLAY_ENTRIES: Final = 200_000
"""Digests the replay window holds at most (about 100 bytes each): 1,600 requests a second
sustained over the 120-second memory."""
MAX_INNER_RESPONSE_BYTES: Final = bhttp.DEFAULT_LIMITS.max_content
GATEWAY_KEY_ID: Final = 1
_KEY_INFO: Final = b"sotto ohttp gateway key v1"
_PROBLEM_TYPE: Final = "application/problem+json"
_FORWARDED: Final = RateLimits().forwarded
_DROPPED_REQUEST_FIELDS: Final = frozenset(
    {b"date", b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"upgrade"}
)
_DROPPED_RESPONSE_FIELDS: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date", b"server"}
)


# ---------------------------------------------------------------------------------------- keys
def gateway_key(server_key: ServerKey) -> ohttp.GatewayKey:
    """The relay's gateway key: X25519 from the server key by HKDF (its own ``info``), key id 1."""
    return ohttp.GatewayKey(GATEWAY_KEY_ID, server_key.derive(_KEY_INFO))


def load_gateway_key(data_dir: Path) -> ohttp.GatewayKey:
    """:func:`gateway_key` of ``data_dir/server.key`` (created on first start, as the app does)."""
    return gateway_key(load_or_create(Path(data_dir)))


# ---------------------------------------------------------------------------------------- core
class GatewayRefusal(SottoError):
    """A request the gateway does not pass on. ``context`` set: the answer is sealed to the
    client (it opened, but what is inside is refused); None: a plain problem to the forwarder."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        *,
        problem_type: str = "about:blank",
        context: ohttp.ResponseContext | None = None,
        retry_after: int | None = None,
        date: float | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.code = code
        self.title = title
        self.problem_type = problem_type
        self.context = context
        self.retry_after = retry_after
        self.date = date
        """The Date of a sealed refusal, if not the gateway's clock (unix seconds)."""

    def problem(self) -> bytes:
        """The RFC 9457 problem details, with the relay's stable ``code`` beside them."""
        body = {"type": self.problem_type, "title": self.title, "status": self.status, "code": self.code}
        return json.dumps(body).encode()


class ReplayWindow:
    """Digests of accepted Encapsulated Requests, each kept ``memory_seconds`` (RFC 9458 §6.5).

    Pure bookkeeping: the caller passes the time. Oldest first, so forgetting is a walk from the
    front; at most ``max_entries`` are held, and :meth:`remember` says False when there is no room.
    """

    def __init__(self, memory_seconds: float, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self.memory_seconds = memory_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def _forget(self, now: float) -> None:
        horizon = now - self.memory_seconds
        while self._seen:
            digest, at = next(iter(self._seen.items()))
            if at > horizon:
                break
            del self._seen[digest]

    def seen(self, digest: bytes, now: float) -> bool:
        self._forget(now)
        return digest in self._seen

    def remember(self, digest: bytes, now: float) -> bool:
        """Hold ``digest`` for ``memory_seconds``; False (nothing held) if the window is full."""
        self._forget(now)
        if len(self._seen) >= self.max_entries:
            return False
        self._seen[digest] = now
        return True

    def claim(self, key: bytes, expires: float, now: float, *, dated: float | None = None) -> Claim:
        """:meth:`remember` as a :class:`~sotto.server.shared_state.SingleUse` claim (each is
        held ``memory_seconds`` whatever ``expires`` says)."""
        if self.seen(key, now):
            return Claim.SEEN
        return Claim.FIRST if self.remember(key, now) else Claim.FULL

    @property
    def epoch(self) -> float:
        return -math.inf

    async def aseen(self, key: bytes, now: float) -> bool:
        return self.seen(key, now)

    async def aclaim(self, key: bytes, expires: float, now: float, *, dated: float | None = None) -> Claim:
        return self.claim(key, expires, now, dated=dated)

    def __len__(self) -> int:
        return len(self._seen)


def _replayed() -> GatewayRefusal:
    return GatewayRefusal(400, "replayed", "this encapsulated request was seen before")


_SHARED_UNAVAILABLE = GatewayRefusal(
    503,
    "shared_state_unavailable",
    "the gateway cannot check for replays across relay nodes now; retry shortly",
    retry_after=1,
)


@dataclass(frozen=True, slots=True)
class Opened:
    """An Encapsulated Request the gateway accepted: the inner request and its response context."""

    request: bhttp.Request
    context: ohttp.ResponseContext


class GatewayCore:
    """The gateway's rules, sans I/O: sealed bytes and the time in, an inner request or a
    :class:`GatewayRefusal` out; an inner response in, sealed bytes out."""

    def __init__(
        self,
        keys: ohttp.GatewayKey | Iterable[ohttp.GatewayKey],
        *,
        rng: Rng = system_rng,
        window_seconds: float = DATE_WINDOW_SECONDS,
        max_replay_entries: int = MAX_REPLAY_ENTRIES,
    ) -> None:
        self.keys = (keys,) if isinstance(keys, ohttp.GatewayKey) else tuple(keys)
        if not self.keys:
            raise ValueError("a gateway needs at least one key")
        self.rng = rng
        self.window_seconds = window_seconds
        self.replay_capacity = max_replay_entries
        self.replay: ReplayWindow | SingleUse = ReplayWindow(2 * window_seconds, max_replay_entries)
        """Digests of accepted requests: in this process, or shared (:meth:`share_replay`)."""

    def share_replay(self, memory: SingleUse) -> None:
        """Keep the replay window in ``memory``, which every relay node shares."""
        self.replay = memory

    def key_configs(self) -> bytes:
        """``application/ohttp-keys``: every key's configuration."""
        return ohttp.encode_key_configs(k.config for k in self.keys)

    async def aopen(self, enc_request: bytes, now: float) -> Opened:
        """Check and open one Encapsulated Request (the order is the module's table), awaiting
        the replay window (a round trip each for the early check and the claim when shared)."""
        digest = hashlib.sha256(enc_request).digest()[:16]
        try:
            seen = await self.replay.aseen(digest, now)
        except SharedStateUnavailableError:
            raise _SHARED_UNAVAILABLE from None
        if seen:
            raise _replayed()
        plain, context = self._decapsulate(enc_request)
        request, dated = self._inner(plain)
        # Remembered once it opened (a forger cannot fill the window with noise), before the
        # app sees it; the shared window decides between copies in one atomic step.
        try:
            claim = await self.replay.aclaim(digest, now + 2 * self.window_seconds, now, dated=dated)
        except SharedStateUnavailableError:
            raise _SHARED_UNAVAILABLE from None
        return self._admit(claim, request, context, now)

    def open(self, enc_request: bytes, now: float) -> Opened:
        """:meth:`aopen` for a gateway whose replay window is in this process."""
        replay = self.replay
        if not isinstance(replay, ReplayWindow):
            raise TypeError("a gateway on shared state opens with aopen")
        digest = hashlib.sha256(enc_request).digest()[:16]
        if replay.seen(digest, now):
            raise _replayed()
        plain, context = self._decapsulate(enc_request)
        request, dated = self._inner(plain)
        # Remembered before anything awaits, so two copies arriving together cannot both pass.
        claim = replay.claim(digest, now + 2 * self.window_seconds, now, dated=dated)
        return self._admit(claim, request, context, now)

    def _decapsulate(self, enc_request: bytes) -> tuple[bytes, ohttp.ResponseContext]:
        try:
            return ohttp.decapsulate_request(self.keys, enc_request)
        except ohttp.MessageTooLargeError:
            raise GatewayRefusal(413, "too_large", "encapsulated request too large") from None
        except (ohttp.UnknownKeyIdError, ohttp.UnsupportedAlgorithmError):
            raise GatewayRefusal(
                400, "ohttp_key", "unknown key id or algorithm", problem_type=OHTTP_KEY_PROBLEM
            ) from None
        except ohttp.MalformedEncapsulationError:
            raise GatewayRefusal(400, "malformed", "not an encapsulated request") from None
        except ohttp.ObliviousHttpError:
            raise GatewayRefusal(400, "decryption_failed", "the encapsulated request does not open") from None

    def _inner(self, plain: bytes) -> tuple[bhttp.Request | None, float | None]:
        """The inner request (None if it is not binary HTTP) and the time the replay window
        dates it by: its Date less the window, the earliest moment it could have been accepted
        at (None without a Date: refused below anyway)."""
        try:
            request = bhttp.decode_request(plain)
        except bhttp.BinaryHttpError:
            return None, None
        date = _date_of(request)
        return request, None if date is None else date - self.window_seconds

    def _admit(
        self, claim: Claim, request: bhttp.Request | None, context: ohttp.ResponseContext, now: float
    ) -> Opened:
        if claim is Claim.SEEN:
            raise _replayed()
        if claim is Claim.BEFORE_EPOCH:
            # The shared memory began after this Date could have been accepted (a Redis restart
            # forgot what came before): name the earliest Date that passes.
            earliest = math.ceil(self.replay.epoch + self.window_seconds)
            raise GatewayRefusal(
                400,
                "date",
                "Date before the replay window's memory began; use this answer's Date",
                problem_type=DATE_PROBLEM,
                context=context,
                date=max(earliest, now),
            )
        if claim is not Claim.FIRST:
            raise GatewayRefusal(503, "busy", "replay window full; retry later", retry_after=1)
        if request is None:
            raise GatewayRefusal(400, "malformed", "not a binary HTTP request", context=context)
        if not request.path.startswith(b"/") or request.path.split(b"?")[0].startswith(GATEWAY_PATH.encode()):
            raise GatewayRefusal(400, "bad_path", "not a path the gateway serves", context=context)
        date = _date_of(request)
        if date is None or abs(date - now) > self.window_seconds:
            raise GatewayRefusal(
                400, "date", "Date missing or outside the window", problem_type=DATE_PROBLEM, context=context
            )
        return Opened(request, context)

    def seal(self, context: ohttp.ResponseContext, response: bhttp.Response) -> bytes:
        return ohttp.encapsulate_response(context, bhttp.encode_response(response), self.rng)

    def seal_refusal(self, refusal: GatewayRefusal, now: float) -> bytes:
        """A sealed refusal (``refusal.context`` must be set), with the gateway's Date (§6.5.2)."""
        assert refusal.context is not None
        date = _http_date(now if refusal.date is None else refusal.date)
        fields = ((b"content-type", _PROBLEM_TYPE.encode()), (b"date", date.encode()))
        return self.seal(refusal.context, bhttp.Response(refusal.status, fields, refusal.problem()))


def _date_of(request: bhttp.Request) -> float | None:
    values = [v for n, v in request.headers if n.lower() == b"date"]
    if len(values) != 1:
        return None
    try:
        return email.utils.parsedate_to_datetime(values[0].decode("ascii")).timestamp()
    except (ValueError, TypeError, UnicodeDecodeError, IndexError):
        return None


def _http_date(unix_seconds: float) -> str:
    return email.utils.formatdate(unix_seconds, usegmt=True)


# ---------------------------------------------------------------------------------------- ASGI
class GatewayMiddleware:
    """Pure ASGI: serves :data:`GATEWAY_PATH` and :data:`KEYS_PATH`, passes the rest to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        core: GatewayCore,
        *,
        clock: Clock | None = None,
        observer: Observer | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        self.app = app
        self.core = core
        self.clock = clock or SystemClock()
        self.limit = limit
        self.limiter: Limiter | None = None if limit is None else RateLimiter(limit, max_keys=10_000)
        """Requests per forwarder (by its network); None: no limit here."""
        self._bound = False
        self._keys = core.key_configs()
        # The forwarder's requests go into the operator's view too, beside the inner ones.
        self._serve: ASGIApp = self._gateway if observer is None else observer.wrap(self._gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in (GATEWAY_PATH, KEYS_PATH):
            await self._serve(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _gateway(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["path"] == KEYS_PATH:
            if method not in ("GET", "HEAD"):
                await _plain(send, GatewayRefusal(405, "method_not_allowed", "use GET"))
                return
            await _answer(send, 200, ohttp.KEYS_MEDIA_TYPE, self._keys, cache="max-age=3600")
            return
        if method != "POST":
            await _plain(send, GatewayRefusal(405, "method_not_allowed", "use POST"))
            return
        if not self._bound:
            self._bind_from_app()
        if self.limiter is not None:
            source, now = source_key(scope), self.clock.now()
            if not await self.limiter.aallow(source, now):
                retry = await self.limiter.aretry_after(source, now)
                refusal = GatewayRefusal(429, "rate_limited", "too many requests", retry_after=retry)
                await _plain(send, refusal)
                return
        try:
            body = await self._body(scope, receive)
            opened = await self.core.aopen(body, self.clock.now())
        except GatewayRefusal as refusal:
            if refusal.context is None:
                await _plain(send, refusal)
            else:
                sealed = self.core.seal_refusal(refusal, self.clock.now())
                await _answer(send, 200, ohttp.RESPONSE_MEDIA_TYPE, sealed)
            return
        response = await _run_inner(self.app, scope, opened.request)
        try:
            sealed = self.core.seal(opened.context, response)
        except (ohttp.ObliviousHttpError, bhttp.BinaryHttpError):
            logger.error("error gateway_seal")
            sealed = self.core.seal(opened.context, bhttp.Response(502))
        await _answer(send, 200, ohttp.RESPONSE_MEDIA_TYPE, sealed)

    def bind_shared(self, shared: SharedState) -> None:
        """Keep the replay window and the budget per forwarder in ``shared`` (if it is shared
        between nodes; in-process state stays this gateway's own)."""
        self._bound = True
        if not shared.shared:
            return
        self.core.share_replay(shared.single_use("gateway", capacity=self.core.replay_capacity))
        if self.limit is not None:
            self.limiter = shared.limiter("forwarded", self.limit, max_keys=10_000)

    def _bind_from_app(self) -> None:
        """Use the shared state of the relay app behind, once it has started."""
        relay = getattr(getattr(self.app, "state", None), "relay", None)
        shared = getattr(relay, "shared", None)
        if isinstance(shared, SharedState):
            self.bind_shared(shared)

    @staticmethod
    async def _body(scope: Scope, receive: Receive) -> bytes:
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != ohttp.REQUEST_MEDIA_TYPE.encode():
            raise GatewayRefusal(415, "unsupported_media_type", f"send {ohttp.REQUEST_MEDIA_TYPE}")
        limit = ohttp.MAX_ENCAPSULATED_BYTES
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise GatewayRefusal(413, "too_large", f"encapsulated requests are at most {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise GatewayRefusal(400, "incomplete", "the request ended early")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise GatewayRefusal(413, "too_large", f"encapsulated requests are at most {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


async def _answer(
    send: Send, status: int, content_type: str, body: bytes, *, cache: str = "no-store"
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, refusal: GatewayRefusal) -> None:
    body = refusal.problem()
    headers = [(b"content-type", _PROBLEM_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def inner_scope(outer: Scope, request: bhttp.Request) -> dict[str, Any]:
    """The ASGI scope of an inner request: its own method, path and fields, and nothing of the
    connection it came on (no client, no server, no outer header)."""
    raw_path, _, query = request.path.partition(b"?")
    headers = [(b"host", request.authority)] if request.authority else []
    headers += [(n.lower(), v) for n, v in request.headers if n.lower() not in _DROPPED_REQUEST_FIELDS]
    if request.content:
        headers.append((b"content-length", str(len(request.content)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.decode("ascii"),
        "scheme": request.scheme.decode("ascii") or "https",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": None,
        "server": None,
        # Budgets per source count the request by its forwarder (ratelimit.ForwarderSource).
        FORWARDED_BY: source_key(outer),
    }
    if "state" in outer:
        scope["state"] = dict(outer["state"])
    return scope


class _AnswerTooLargeError(Exception):
    """Raised into the app by the send that takes its answer past the limit, to stop it there."""


async def _run_inner(app: ASGIApp, outer: Scope, request: bhttp.Request) -> bhttp.Response:
    """Run ``request`` through ``app``; its answer as a binary HTTP response (502 if it sent
    none, or more than :data:`MAX_INNER_RESPONSE_BYTES`: the send that goes past it fails, so
    an answer with an effect at its end, such as a blob's fetch count, does not have it)."""
    delivered = False
    done = asyncio.Event()
    status = 0
    fields: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    size = 0

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.content, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers", ()):
                lowered = bytes(name).lower()
                if lowered not in _DROPPED_RESPONSE_FIELDS:
                    fields.append((lowered, bytes(value)))
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_INNER_RESPONSE_BYTES:
                raise _AnswerTooLargeError
            chunks.append(chunk)

    try:
        await app(inner_scope(outer, request), receive, send)
    except _AnswerTooLargeError:
        return bhttp.Response(502)
    finally:
        done.set()
    if status == 0 or size > MAX_INNER_RESPONSE_BYTES:
        return bhttp.Response(502)
    return bhttp.Response(status, tuple(fields), b"".join(chunks))


def with_gateway(
    app: ASGIApp,
    key: ohttp.GatewayKey | Iterable[ohttp.GatewayKey],
    *,
    clock: Clock | None = None,
    rng: Rng = system_rng,
    observer: Observer | None = None,
    window_seconds: float = DATE_WINDOW_SECONDS,
    max_replay_entries: int = MAX_REPLAY_ENTRIES,
    limit: RateLimit | None = _FORWARDED,
) -> GatewayMiddleware:
    """``app`` behind the gateway: ``POST /v1/gateway`` and ``GET /v1/gateway/keys`` are served
    here, every other request and the lifespan go to ``app`` as before. ``observer``: record the
    forwarder's requests in the operator's view too (the app records the inner ones itself).
    ``limit``: requests through the gateway per forwarder (``RateLimits.forwarded``; None: no
    limit), refused with 429 before anything is opened."""
    core = GatewayCore(key, rng=rng, window_seconds=window_seconds, max_replay_entries=max_replay_entries)
    return GatewayMiddleware(app, core, clock=clock, observer=observer, limit=limit)
