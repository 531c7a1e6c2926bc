"""The relay as an ASGI app: routes, error answers, body limits, and background sweeping.

Every refusal is a JSON ``{"code", "message"}`` with a 4xx status (503 when storage fails); a
bug answers 500 with ``{"code": "internal"}`` and logs only the exception's type. Bodies larger
than ``max_body_bytes`` are refused with 413 before anything parses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sotto.crypto.random import Rng, system_rng
from sotto.errors import RelayError
from sotto.server import accounts, attachments, mailboxes, manifest, ws
from sotto.server.challenge import WorkRefusedError, work_refused_answer
from sotto.server.clock import Clock, SystemClock
from sotto.server.config import ServerConfig
from sotto.server.context import RelayContext
from sotto.server.fanout import Fanout, LocalFanout
from sotto.server.logging import Stats, logger
from sotto.server.observer import Observer, ViewMiddleware
from sotto.server.ratelimit import RateLimitedError
from sotto.server.server_key import ServerKey, load_or_create
from sotto.server.storage.base import MailboxId, Storage
from sotto.server.storage.postgres import PostgresStorage
from sotto.server.storage.sqlite import SqliteStorage
from sotto.wire import api

if TYPE_CHECKING:
    from sotto.server.doorbell import BusFanout

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class GuardMiddleware:
    """Outermost layer: refuse oversized bodies before parsing, and never leak a traceback.

    The body is read here (at most ``max_body_bytes``) and replayed to the app, so no route
    ever sees more. An exception that escapes the app becomes a 500 JSON answer, logged as its
    type name only: exception messages can carry request data.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            replay = await self._read_body(scope, receive)
            if replay is None:
                await _error(413, "too_large", f"body larger than {self.max_body_bytes} bytes")(
                    scope, receive, send_tracking
                )
                return
            await self.app(scope, replay, send_tracking)
        except Exception as exc:
            logger.error("error %s", type(exc).__name__)
            if not started:
                await _error(500, "internal", "internal error")(scope, receive, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _replaying(message)  # the client left: hand the app the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _replaying(message: Message) -> Receive:
    async def receive() -> Message:
        return message

    return receive


async def _relay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RelayError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimitedError) else None
    _count(request, exc.status)
    return _error(exc.status, exc.code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    _count(request, 422)
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(400, "malformed_json", "the body is not valid JSON")
    # Location and reason only: never echo the input, which can hold secrets.
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"[:300])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    _count(request, exc.status_code)
    code = _STATUS_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route matching the path; list every method it has.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return _error(exc.status_code, code, str(exc.detail)[:200], headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _count(request: Request, status: int) -> None:
    relay: RelayContext | None = getattr(request.app.state, "relay", None)
    if relay is not None:
        relay.stats.count(f"http_{status}")


class RelayApp(FastAPI):
    """FastAPI, except that delivery sockets go straight to their handler.

    The relay holds many idle WebSockets; skipping the middleware and routing layers (each of
    which keeps a frame alive for the whole connection) and Starlette's ``WebSocket`` wrapper
    makes each one cheaper.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == ws.PATH:
            scope["app"] = self
            await ws.delivery_socket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class ObservedRelayApp(RelayApp):
    """The relay with the operator's view recorded around everything (:mod:`.observer`); only
    made when recording is on, so a relay that does not record runs no wrapper at all."""

    view: ViewMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.view(scope, receive, send)


def create_app(
    config: ServerConfig | None = None,
    *,
    storage: Storage | None = None,
    fanout: Fanout | None = None,
    clock: Clock | None = None,
    rng: Rng = system_rng,
    server_key: ServerKey | None = None,
    observer: Observer | None = None,
) -> FastAPI:
    """The relay app. Without ``storage`` it opens ``config.store`` (PostgreSQL) or else SQLite in
    ``config.data_dir`` at start-up; without ``fanout``, it rings other nodes over ``config.bus``
    if set (:class:`~sotto.server.doorbell.BusFanout`), else delivers within this process.
    With ``observer``, every request and frame is recorded to its sink (``docs/operator-view.md``)."""
    config = config or ServerConfig()
    owned_storage = storage is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        key = server_key
        if key is None:
            key = await asyncio.to_thread(load_or_create, config.data_dir)
        store: Storage
        if storage is not None:
            store = storage
        elif config.store is not None:
            store = await asyncio.to_thread(PostgresStorage.open, config.store, quotas=config.quotas)
        else:
            store = await asyncio.to_thread(
                SqliteStorage.in_dir,
                config.data_dir,
                quotas=config.quotas,
                checkpoint_interval_s=config.checkpoint_interval_seconds,
            )
        stats = Stats()
        live: Fanout
        across_nodes: BusFanout | None = None
        if fanout is not None:
            live = fanout
        elif config.bus is not None:
            from sotto.server.doorbell import BusFanout  # noqa: PLC0415 (the bus clients load only for --bus)

            async def has_pending(mailbox_id: MailboxId) -> bool:
                return bool(await store.pending(mailbox_id, 1))

            live = across_nodes = BusFanout.for_url(config.bus, stats, has_pending=has_pending)
        else:
            live = LocalFanout()
        ctx = RelayContext(
            config=config,
            storage=store,
            fanout=live,
            server_key=key,
            clock=clock or SystemClock(),
            rng=rng,
            stats=stats,
        )
        app.state.relay = ctx
        await ctx.start()  # dates the shared single-use memory from this start (best effort)
        if across_nodes is not None:  # on the fallback (store checks) if the bus is unreachable
            await across_nodes.start()
        with contextlib.suppress(RelayError):  # catch up after downtime; retried on schedule
            await _sweep(ctx)
        logger.info("event relay started")
        tasks = [
            asyncio.create_task(_every(config.sweep_interval_seconds, lambda: _sweep(ctx))),
            asyncio.create_task(_every(config.stats_interval_seconds, lambda: _flush(ctx))),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if across_nodes is not None:
                await across_nodes.close()
            ctx.stats.flush()
            await ctx.stop()
            if owned_storage:
                await store.close()
            if observer is not None:
                observer.sink.close()
            logger.info("event relay stopped")

    app = (RelayApp if observer is None else ObservedRelayApp)(
        title="Sotto relay",
        version="1",
        summary="Stores and forwards sealed, padded envelopes between anonymous mailboxes.",
        description="The contract is docs/relay-protocol.md; what is stored is docs/data-held.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(RelayError, _relay_error)
    app.add_exception_handler(WorkRefusedError, work_refused_answer)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(accounts.router)
    app.include_router(mailboxes.router)
    app.include_router(attachments.router)

    @app.get("/v1/manifest", tags=["meta"])
    async def get_manifest() -> dict[str, Any]:
        """Every table, column, log field and file the relay writes, with why and for how long."""
        return manifest.as_json()

    @app.get("/v1/health", tags=["meta"], responses={503: {"model": api.ErrorBody}})
    async def health(request: Request) -> dict[str, str]:
        ctx: RelayContext = request.app.state.relay
        await ctx.storage.get_mailboxes([])
        return {"status": "ok"}

    @app.get("/v1/cadence", tags=["cadence"])
    async def get_cadence(request: Request) -> api.Cadence:
        """The tick every cadence-mode client follows (relay-protocol §6)."""
        ctx: RelayContext = request.app.state.relay
        return api.Cadence(tick_seconds=ctx.config.cadence_tick_seconds)

    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes)
    if isinstance(app, ObservedRelayApp) and observer is not None:
        app.view = observer.wrap(super(ObservedRelayApp, app).__call__)
    return app


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception as exc:  # a failed sweep is retried next time
            logger.error("error %s", type(exc).__name__)


async def _sweep(ctx: RelayContext) -> None:
    result = await ctx.storage.sweep(ctx.today(), ctx.config.envelope_ttl_days)
    ctx.stats.count("swept_envelopes", result.envelopes)
    ctx.stats.count("swept_mailboxes", result.mailboxes)
    ctx.stats.count("swept_access_tokens", result.access_tokens)
    await attachments.sweep(ctx)


async def _flush(ctx: RelayContext) -> None:
    ctx.stats.flush()


def openapi_json(app: FastAPI) -> str:
    return json.dumps(app.openapi(), indent=2, sort_keys=True)
