"""The forwarder: carries sealed requests (``message/ohttp-req``) from clients to one relay's
gateway, and the sealed answers back (RFC 9458's "relay resource"; ``docs/ohttp.md``).

It is run by someone other than the relay's operator. It sees each client's address, the time
and the size of what it carries, and nothing inside: the bytes are sealed to the relay's
gateway key, and this package imports no code that could read a mailbox, an account or a
message (``tests/test_layering.py`` holds it to that). The relay sees only the forwarder.

Per request (``POST /v1/ohttp``)::

    405  not POST                           415  content type is not message/ohttp-req
    429  the source's budget is spent, or it has max_in_flight_per_source requests held
    503  max_in_flight requests held in all (both with Retry-After)
    413  body over max_body_bytes           502  the relay could not be reached
    504  the relay did not answer in time
    else the relay's status and body, with its content type if it is one of the gateway's

Nothing of the client goes on: the forwarder sends the body with its own ``content-type`` and
``user-agent`` only, over its own pooled keep-alive connections (``max_connections`` at most),
so many clients' requests share few connections and none carries a client's header or address.
Answers go back with only ``content-type``, ``content-length`` and ``retry-after``.
``GET /v1/ohttp/keys`` serves the relay's key configuration, fetched and cached for
``keys_cache_seconds``, the same bytes to everyone (clients should pin it: ``docs/ohttp.md``).

Nothing is logged per request; addresses live only as keyed hashes in the rate limiter's
memory (:func:`sotto.server.ratelimit.source_key`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from starlette.types import Receive, Scope, Send

from sotto.server.config import RateLimit
from sotto.server.ratelimit import RateLimiter, source_key
from sotto.wire.ohttp import KEYS_MEDIA_TYPE, MAX_ENCAPSULATED_BYTES, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE

__all__ = [
    "FORWARD_PATH",
    "KEYS_PATH",
    "LOGGER_NAME",
    "Forwarder",
    "ForwarderConfig",
    "create_forwarder_app",
]

FORWARD_PATH: Final = "/v1/ohttp"
KEYS_PATH: Final = "/v1/ohttp/keys"
GATEWAY_PATH: Final = "/v1/gateway"
GATEWAY_KEYS_PATH: Final = "/v1/gateway/keys"
LOGGER_NAME: Final = "sotto.forwarder"
logger = logging.getLogger(LOGGER_NAME)

_PROBLEM: Final = "application/problem+json"
_PASSED_TYPES: Final = frozenset({RESPONSE_MEDIA_TYPE, _PROBLEM})


@dataclass(frozen=True, slots=True)
class ForwarderConfig:
    """What a forwarder carries, to where, and how much."""

    relay_url: str
    """The relay whose gateway gets every request (``http(s)://host:port``)."""
    max_body_bytes: int = MAX_ENCAPSULATED_BYTES
    per_source: RateLimit = field(default_factory=lambda: RateLimit(burst=600, per_second=20))
    """Requests per client network (an IPv4 address, an IPv6 /64)."""
    max_connections: int = 16
    """Connections to the relay, kept alive and shared by every client."""
    max_in_flight: int = 512
    """Requests held at once (each up to ``max_body_bytes``): bounds the forwarder's memory."""
    max_in_flight_per_source: int = 32
    """Requests one client network may have held at once."""
    timeout_seconds: float = 30.0
    keys_cache_seconds: float = 300.0


class Forwarder:
    """The forwarder as a pure ASGI app (see the module's note); ``transport`` replaces the
    network to the relay (tests), ``clock`` is monotonic seconds for the rate limits."""

    def __init__(
        self,
        config: ForwarderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._relay = config.relay_url.rstrip("/")
        self._clock = clock
        self._limits = RateLimiter(config.per_source)
        self._http = httpx.AsyncClient(
            timeout=config.timeout_seconds,
            transport=transport,
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
            follow_redirects=False,
            headers={"user-agent": "sotto-forwarder", "accept-encoding": "identity"},
        )
        self._keys: tuple[float, bytes] | None = None
        self._in_flight: dict[bytes, int] = {}
        self._total_in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind != "http":
            await send({"type": "websocket.close", "code": 1008})
        elif scope["path"] == FORWARD_PATH:
            await self._forward(scope, receive, send)
        elif scope["path"] == KEYS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._serve_keys(send)
        else:
            await _problem(send, 404, "not_found", "not a path of this forwarder")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                logger.info("event forwarder started")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                logger.info("event forwarder stopped")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _problem(send, 405, "method_not_allowed", "use POST")
            return
        content_type = _header(scope, b"content-type")
        if content_type is None or content_type.split(b";")[0].strip().lower() != REQUEST_MEDIA_TYPE.encode():
            await _problem(send, 415, "unsupported_media_type", f"send {REQUEST_MEDIA_TYPE}")
            return
        key = source_key(scope)
        now = self._clock()
        if not self._limits.allow(key, now):
            retry = self._limits.retry_after(key, now)
            await _problem(send, 429, "rate_limited", f"too many requests; retry in {retry} s", retry)
            return
        held = self._in_flight.get(key, 0)
        if held >= self.config.max_in_flight_per_source:
            await _problem(send, 429, "too_many_in_flight", "too many requests at once; retry in 1 s", 1)
            return
        if self._total_in_flight >= self.config.max_in_flight:
            await _problem(send, 503, "busy", "the forwarder is busy; retry in 1 s", 1)
            return
        self._in_flight[key] = held + 1
        self._total_in_flight += 1
        try:
            await self._carry(scope, receive, send)
        finally:
            self._total_in_flight -= 1
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]

    async def _carry(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(scope, receive, self.config.max_body_bytes)
        if body is None:
            await _problem(send, 413, "too_large", f"at most {self.config.max_body_bytes} bytes")
            return
        try:
            answer = await self._http.post(
                self._relay + GATEWAY_PATH, content=body, headers={"content-type": REQUEST_MEDIA_TYPE}
            )
        except httpx.TimeoutException:
            await _problem(send, 504, "relay_timeout", "the relay did not answer in time")
            return
        except httpx.HTTPError as e:
            logger.warning("error relay %s", type(e).__name__)
            await _problem(send, 502, "relay_unreachable", "the relay could not be reached")
            return
        media = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        headers: list[tuple[bytes, bytes]] = []
        if media in _PASSED_TYPES:
            headers.append((b"content-type", media.encode()))
        retry_after = answer.headers.get("retry-after")
        if retry_after is not None and retry_after.isdigit():
            headers.append((b"retry-after", retry_after.encode()))
        await _respond(send, answer.status_code, headers, answer.content)

    async def _serve_keys(self, send: Send) -> None:
        now = self._clock()
        if self._keys is None or now - self._keys[0] > self.config.keys_cache_seconds:
            try:
                answer = await self._http.get(self._relay + GATEWAY_KEYS_PATH)
            except httpx.HTTPError as e:
                logger.warning("error relay %s", type(e).__name__)
                await _problem(send, 502, "relay_unreachable", "the relay could not be reached")
                return
            if answer.status_code != 200 or answer.headers.get("content-type") != KEYS_MEDIA_TYPE:
                await _problem(send, 502, "relay_keys", "the relay served no key configuration")
                return
            self._keys = (now, answer.content)
        await _respond(send, 200, [(b"content-type", KEYS_MEDIA_TYPE.encode())], self._keys[1])


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it is over ``limit`` (by Content-Length or as read)."""
    declared = _header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    with contextlib.suppress(OSError):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _problem(send: Send, status: int, code: str, title: str, retry_after: int | None = None) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "code": code}).encode()
    headers = [(b"content-type", _PROBLEM.encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await _respond(send, status, headers, body)


def create_forwarder_app(config: ForwarderConfig, **options: Any) -> Forwarder:
    """The forwarder for ``config``; ``options`` go to :class:`Forwarder`."""
    return Forwarder(config, **options)
