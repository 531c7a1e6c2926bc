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

``POST /v1/ohttp/hold`` is the same for requests the relay may hold before answering (long
polls, relay-protocol §6): bodies of at most ``max_held_body_bytes``, a timeout of
``held_timeout_seconds``, connections to the relay of their own (so held requests never keep
others waiting for a connection), and budgets of their own: ``max_held_per_source`` held from
one client network (429 ``too_many_held``) and ``max_held`` in all (503 ``busy``). Each held
request is one connection to the relay while it waits, so the relay must admit that many
connections from the forwarder's address (``sotto server --per-address``). The per-source
request rate is shared with ``/v1/ohttp``.

Nothing of the client goes on: the forwarder sends the body with its own ``content-type`` and
``user-agent`` only, over its own pooled keep-alive connections (``max_connections`` at most),
so many clients' requests share few connections and none carries a client's header or address.
Answers go back with only ``content-type``, ``content-length`` and ``retry-after``.
``GET /v1/ohttp/keys`` serves the relay's key configuration, fetched and cached for
``keys_cache_seconds``, the same bytes to everyone (clients should pin it: ``docs/ohttp.md``).

Nothing is logged per request; addresses live only as keyed hashes in the rate limiter's
memory (:func:`sotto.server.ratelimit.source_key`).

**Schedules** (:mod:`sotto.forwarder.schedule`): a client may leave sealed requests here to be
sent to the relay at set instants, and collect the sealed answers later, so its cadence goes on
while it is offline. ``CAP`` is the schedule's 32-byte capability, unpadded base64url; bodies
are JSON (``application/json``), ids 16 bytes base64url, instants unix milliseconds::

    POST   /v1/schedules/CAP/slots    {"slots": [{"id", "at", "request", "replaces"?}], "cancel": [id]}
                                      (or "clear_from": at instead of "cancel": every slot due then or later)
                                      200 {"held": [id], "late": [id], "released": [id], "slots": n}
    POST   /v1/schedules/CAP/collect  {"ack": [id]}  (the answers collected before, to forget)
                                      200 {"replies": [{"id", "status", "type", "body"}], "more", "slots"}
    DELETE /v1/schedules/CAP          204: its slots are not sent, its answers are gone

Refusals (problem+json with a ``code``; nothing is changed): 400 ``malformed`` or
``bad_capability``, 405, 409 ``slot_exists`` / ``duplicate_slot``, 413 ``too_large`` /
``too_many_slots``, 415, 422 ``too_far_ahead``, 429 (the source's budget, shared with
forwarding), 507 ``schedule_full`` / ``forwarder_full``. Bounds are :class:`ScheduleLimits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from starlette.types import Receive, Scope, Send

from sotto.forwarder import schedule as sched
from sotto.forwarder.schedule import ScheduleBook, ScheduleLimits, ScheduleRefusal
from sotto.server.config import RateLimit
from sotto.server.ratelimit import RateLimiter, source_key
from sotto.wire.ohttp import KEYS_MEDIA_TYPE, MAX_ENCAPSULATED_BYTES, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE

__all__ = [
    "FORWARD_PATH",
    "HOLD_PATH",
    "KEYS_PATH",
    "LOGGER_NAME",
    "SCHEDULES_PATH",
    "Forwarder",
    "ForwarderConfig",
    "create_forwarder_app",
]

FORWARD_PATH: Final = "/v1/ohttp"
KEYS_PATH: Final = "/v1/ohttp/keys"
HOLD_PATH: Final = "/v1/ohttp/hold"
GATEWAY_PATH: Final = "/v1/gateway"
GATEWAY_KEYS_PATH: Final = "/v1/gateway/keys"
SCHEDULES_PATH: Final = "/v1/schedules/"
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
    max_held: int = 40
    """Requests on the hold path (long polls) carried at once, each on a connection to the relay
    of its own: with ``max_connections``, within the 64 connections a relay admits from one
    address by default."""
    max_held_per_source: int = 32
    """Requests on the hold path one client network may have carried at once (one per mailbox
    its devices hold)."""
    max_held_body_bytes: int = 16 * 1024
    """A long poll is small (acks and a signature): so the held requests' memory stays small."""
    held_timeout_seconds: float = 45.0
    """How long a held request may take at the relay: the longest hold (25 s) and a margin."""
    keys_cache_seconds: float = 300.0
    schedules: ScheduleLimits = field(default_factory=ScheduleLimits)
    """What the forwarder holds for clients' schedules (:mod:`sotto.forwarder.schedule`)."""
    max_releases_in_flight: int = 64
    """Scheduled requests on their way to the relay at once."""
    release_idle_seconds: float = 1.0
    """The longest the release loop sleeps (a new slot wakes it at once)."""


class Forwarder:
    """The forwarder as a pure ASGI app (see the module's note); ``transport`` replaces the
    network to the relay (tests), ``clock`` is monotonic seconds for the rate limits, ``wall``
    unix seconds for the schedules' instants."""

    def __init__(
        self,
        config: ForwarderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._relay = config.relay_url.rstrip("/")
        self._clock = clock
        self._wall = wall
        self.schedules = ScheduleBook(config.schedules)
        self._release_task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._release_slots = asyncio.Semaphore(config.max_releases_in_flight)
        self._wake = asyncio.Event()
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
        self._held_http = httpx.AsyncClient(
            timeout=config.held_timeout_seconds,
            transport=transport,
            limits=httpx.Limits(max_connections=config.max_held, max_keepalive_connections=config.max_held),
            follow_redirects=False,
            headers={"user-agent": "sotto-forwarder", "accept-encoding": "identity"},
        )
        self._keys: tuple[float, bytes] | None = None
        self._in_flight: dict[bytes, int] = {}
        self._total_in_flight = 0
        self._held: dict[bytes, int] = {}
        self._total_held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind != "http":
            await send({"type": "websocket.close", "code": 1008})
        elif scope["path"] == FORWARD_PATH:
            await self._forward(scope, receive, send)
        elif scope["path"] == HOLD_PATH:
            await self._forward(scope, receive, send, held=True)
        elif scope["path"] == KEYS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._serve_keys(send)
        elif scope["path"].startswith(SCHEDULES_PATH):
            await self._schedule(scope, receive, send)
        else:
            await _problem(send, 404, "not_found", "not a path of this forwarder")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_releasing()
                logger.info("event forwarder started")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                logger.info("event forwarder stopped")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        task, self._release_task = self._release_task, None
        pending = [t for t in (task, *self._releases) if t is not None]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._http.aclose()
        await self._held_http.aclose()

    # ------------------------------------------------------------------ schedules
    def start_releasing(self) -> None:
        """Start the loop that sends due slots to the relay (once; also on the first upload)."""
        if self._release_task is None:
            self._release_task = asyncio.get_running_loop().create_task(self._release_loop())

    async def release_due(self) -> int:
        """Send every slot due now to the relay, each answer kept for its client; how many."""
        due = self.schedules.due(self._wall())
        for key, slot_id, body in due:
            task = asyncio.get_running_loop().create_task(self._release(key, slot_id, body))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)
        return len(due)

    async def _release_loop(self) -> None:
        while True:
            try:
                await self.release_due()
                self.schedules.expire(self._wall())
            except Exception as e:  # the loop must outlive a bad moment
                logger.warning("error schedule %s", type(e).__name__)
            next_at = self.schedules.next_at()
            idle = self.config.release_idle_seconds
            wait = idle if next_at is None else min(max(next_at - self._wall(), 0.0), idle)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _release(self, key: bytes, slot_id: bytes, body: bytes) -> None:
        async with self._release_slots:
            status, media, content = await self._post_to_relay(body)
        self.schedules.answer(key, sched.Reply(slot_id, status, media, content, self._wall()))

    async def _post_to_relay(self, body: bytes) -> tuple[int, str, bytes]:
        try:
            answer = await self._http.post(
                self._relay + GATEWAY_PATH, content=body, headers={"content-type": REQUEST_MEDIA_TYPE}
            )
        except httpx.TimeoutException:
            return 504, "", b""
        except httpx.HTTPError as e:
            logger.warning("error relay %s", type(e).__name__)
            return 502, "", b""
        media = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        return answer.status_code, media if media in _PASSED_TYPES else "", answer.content

    async def _schedule(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, answer = await self._schedule_request(scope, receive)
        except ScheduleRefusal as refusal:
            await _problem(send, refusal.status, refusal.code, refusal.title)
            return
        except _Limited as limited:
            await _problem(send, 429, limited.code, limited.title, limited.retry_after)
            return
        if answer is None:
            await _respond(send, status, [], b"")
        else:
            await _respond(
                send, status, [(b"content-type", b"application/json")], json.dumps(answer).encode()
            )

    async def _schedule_request(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any] | None]:
        parts = scope["path"][len(SCHEDULES_PATH) :].split("/")
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("slots", "collect")):
            raise ScheduleRefusal(404, "not_found", "not a path of this forwarder")
        action = parts[1] if len(parts) == 2 else None
        method = scope["method"]
        if (action is None and method != "DELETE") or (action is not None and method != "POST"):
            raise ScheduleRefusal(405, "method_not_allowed", "use POST (DELETE for the schedule)")
        try:
            key = sched.parse_capability(parts[0])
        except ScheduleRefusal:
            raise ScheduleRefusal(400, "bad_capability", "the capability is 32 bytes, base64url") from None
        source = source_key(scope)
        now = self._clock()
        if not self._limits.allow(source, now):
            raise _Limited("rate_limited", "too many requests", self._limits.retry_after(source, now))
        if action is None:
            self.schedules.drop(key)
            return 204, None
        content_type = _header(scope, b"content-type")
        if content_type is None or content_type.split(b";")[0].strip().lower() != b"application/json":
            raise ScheduleRefusal(415, "unsupported_media_type", "send application/json")
        limits = self.config.schedules
        raw = await _read_body(scope, receive, limits.max_upload_bytes)
        if raw is None:
            raise ScheduleRefusal(413, "too_large", f"at most {limits.max_upload_bytes} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ScheduleRefusal(400, "malformed", "the body is not JSON") from None
        wall = self._wall()
        if action == "slots":
            slots, cancel = sched.parse_upload(body, limits, self.config.max_body_bytes)
            stored = self.schedules.store(key, slots, cancel, wall)
            self.start_releasing()
            self._wake.set()
            return 200, {
                "held": [sched.encode_id(i) for i in stored.held],
                "late": [sched.encode_id(i) for i in stored.late],
                "released": [sched.encode_id(i) for i in stored.released],
                "slots": stored.slots,
            }
        acks = sched.parse_collect(body, limits)
        collected = self.schedules.collect(key, acks, wall)
        return 200, {
            "replies": [
                {
                    "id": sched.encode_id(reply.slot_id),
                    "status": reply.status,
                    "type": reply.media_type,
                    "body": sched.encode_id(reply.body),
                }
                for reply in collected.replies
            ],
            "more": collected.more,
            "slots": collected.slots,
        }

    async def _forward(self, scope: Scope, receive: Receive, send: Send, *, held: bool = False) -> None:
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
        if held:
            await self._carry_held(key, scope, receive, send)
            return
        count = self._in_flight.get(key, 0)
        if count >= self.config.max_in_flight_per_source:
            await _problem(send, 429, "too_many_in_flight", "too many requests at once; retry in 1 s", 1)
            return
        if self._total_in_flight >= self.config.max_in_flight:
            await _problem(send, 503, "busy", "the forwarder is busy; retry in 1 s", 1)
            return
        self._in_flight[key] = count + 1
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

    async def _carry_held(self, key: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        """A request on the hold path, within its own budgets (see the module's note)."""
        count = self._held.get(key, 0)
        if count >= self.config.max_held_per_source:
            await _problem(send, 429, "too_many_held", "too many held requests at once; retry in 5 s", 5)
            return
        if self._total_held >= self.config.max_held:
            await _problem(send, 503, "busy", "the forwarder holds all it can; retry in 5 s", 5)
            return
        self._held[key] = count + 1
        self._total_held += 1
        try:
            await self._carry(scope, receive, send, held=True)
        finally:
            self._total_held -= 1
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]

    async def _carry(self, scope: Scope, receive: Receive, send: Send, *, held: bool = False) -> None:
        limit = self.config.max_held_body_bytes if held else self.config.max_body_bytes
        body = await _read_body(scope, receive, limit)
        if body is None:
            await _problem(send, 413, "too_large", f"at most {limit} bytes")
            return
        try:
            answer = await (self._held_http if held else self._http).post(
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


class _Limited(Exception):
    def __init__(self, code: str, title: str, retry_after: int) -> None:
        super().__init__(title)
        self.code = code
        self.title = f"{title}; retry in {retry_after} s"
        self.retry_after = retry_after


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
