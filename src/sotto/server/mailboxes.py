"""HTTP calls about mailboxes, sending and cadence-mode polls (relay-protocol §2, §3, §6).

An unknown mailbox, an expired one, a wrong delivery token and a wrong or stale mailbox
signature all get the same 404: a stranger cannot learn whether a mailbox id exists.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Request, Response
from starlette.types import Receive, Scope, Send

from sotto.errors import DecodeError, RelayError
from sotto.server.accounts import (
    ID_PATTERN,
    TOKEN_PATTERN,
    WORK_REFUSED,
    Ctx,
    WorkHeader,
    _errors,
    note_failure,
    refuse_failing_source,
    refuse_when_full,
)
from sotto.server.answering import UNREAD_EXTENSION, Claim, answers_in_flight
from sotto.server.auth import (
    MAILBOX_NOT_FOUND,
    MailboxVerdict,
    amailbox_request_auth,
    parse_token,
    token_hash,
)
from sotto.server.challenge import require_work
from sotto.server.context import RelayContext
from sotto.server.delivery import deliver
from sotto.server.export import export_json
from sotto.server.longpoll import held_polls
from sotto.server.ratelimit import source_key
from sotto.server.storage.base import (
    CreateOutcome,
    EnvelopeRecord,
    MailboxId,
    MailboxRecord,
    MessageId,
    PutOutcome,
    drained_expiry,
)
from sotto.server.turns import answer_turns
from sotto.wire import api, b64
from sotto.wire import auth as wire_auth
from sotto.wire.limits import ID_LENGTH
from sotto.wire.work import Purpose

router = APIRouter(tags=["mailboxes"])

MailboxIdText = Annotated[str, Path(json_schema_extra=ID_PATTERN)]
MAILBOX_AUTH_PATTERN = (
    r"^[0-9]{1,15}\."
    + api.b64_pattern(wire_auth.HTTP_NONCE_LENGTH)[1:-1]
    + r"\."
    + api.b64_pattern(api.SIGNATURE_LENGTH)[1:-1]
    + "$"
)
"""Exactly the headers :func:`sotto.wire.auth.decode_mailbox_auth` reads."""
MailboxAuth = Annotated[
    str | None,
    Header(
        description="<unix ms>.<nonce b64url>.<Ed25519 signature b64url> over the time, nonce, "
        "SHA-256 of the body, method and path (relay-protocol §2)",
        json_schema_extra={"pattern": MAILBOX_AUTH_PATTERN},
    ),
]


def _mailbox_id(text: str) -> MailboxId:
    try:
        return MailboxId(b64.decode(text, length=ID_LENGTH))
    except DecodeError:
        raise MAILBOX_NOT_FOUND from None


async def _owned(ctx: RelayContext, request: Request, mailbox_id: str, header: str | None) -> MailboxId:
    """The mailbox id if ``header`` proves ownership of it; the one 404 otherwise (and 429 for
    a source whose refused signatures used up its budget)."""
    source, now = source_key(request.scope), ctx.now()
    await refuse_failing_source(ctx, source, now)
    try:
        mid = _mailbox_id(mailbox_id)
        mailbox = (await ctx.storage.get_mailboxes([mid])).get(mid)
        body, guard = await request.body(), ctx.replay_guard
        verdict = await amailbox_request_auth(
            mailbox, header, request.method, request.url.path, body, guard=guard, now=now, today=ctx.today()
        )
        if verdict is MailboxVerdict.STALE:
            # A genuine signature used already, or out of its window: nothing happens, and the
            # answer names a time that a fresh signature would be accepted with.
            raise HTTPException(
                401,
                "that signature was used already or is out of its window",
                headers={wire_auth.SIGN_TIME_HEADER: str(guard.sign_time(now))},
            )
        if verdict is not MailboxVerdict.OK:
            raise MAILBOX_NOT_FOUND
    except RelayError as refused:
        if refused.status in (401, 404):
            await note_failure(ctx, source, now)
        raise
    return mid


@router.post(
    "/v1/mailboxes",
    status_code=201,
    response_class=Response,
    responses={
        201: {"description": "Created (no body)"},
        200: {"description": "The same mailbox existed already (no body)"},
        **_errors(409, 429, 507),
        **WORK_REFUSED,
    },
)
async def create_mailbox(
    body: api.CreateMailbox, request: Request, ctx: Ctx, sotto_work: WorkHeader = None
) -> Response:
    """Create an anonymous mailbox; the same body again is 200, the same id with other keys 409.
    While the relay is busy with mailbox creations, it answers 428 with a challenge to solve first."""
    now = ctx.now()
    await ctx.limits.mailbox_creation.acheck(source_key(request.scope), now)
    refuse_when_full(ctx)
    await require_work(ctx.work_gate, Purpose.MAILBOX, sotto_work, now, ctx.rng)
    # The expiry a drain today would give, and no creation day: nothing on the row dates it
    # closer than the week, so a contact's two mailboxes, made the same day, do not pair.
    mid = MailboxId(body.mailbox_id)
    expires_day = drained_expiry(mid, ctx.today(), body.ttl_days)
    record = MailboxRecord(mid, body.auth_key, token_hash(body.delivery_token), body.ttl_days, expires_day)
    outcome = await ctx.storage.create_mailbox(record)
    if outcome is CreateOutcome.CONFLICT:
        raise RelayError(409, "mailbox_conflict", "that mailbox id is taken")
    if outcome is CreateOutcome.CREATED:
        await ctx.work_gate.acreated(Purpose.MAILBOX, ctx.now())
    ctx.stats.count(f"mailboxes_{outcome.value}")
    return Response(status_code=201 if outcome is CreateOutcome.CREATED else 200)


@router.delete("/v1/mailboxes/{mailbox_id}", status_code=204, responses=_errors(401, 404, 429))
async def delete_mailbox(
    mailbox_id: MailboxIdText, request: Request, ctx: Ctx, sotto_mailbox_auth: MailboxAuth = None
) -> Response:
    """Delete the mailbox and every envelope in it (signed by the mailbox key)."""
    mid = await _owned(ctx, request, mailbox_id, sotto_mailbox_auth)
    await ctx.storage.delete_mailbox(mid)
    return Response(status_code=204)


@router.get("/v1/mailboxes/{mailbox_id}/export", tags=["export"], responses=_errors(401, 404, 429))
async def export_mailbox(
    mailbox_id: MailboxIdText, request: Request, ctx: Ctx, sotto_mailbox_auth: MailboxAuth = None
) -> dict[str, Any]:
    """The mailbox row and its pending envelopes (payload sizes, not payloads), manifest schema."""
    mid = await _owned(ctx, request, mailbox_id, sotto_mailbox_auth)
    return export_json(await ctx.storage.export_mailbox(mid), "mailbox")


@router.post(
    "/v1/mailboxes/{mailbox_id}/messages", status_code=202, responses=_errors(404, 413, 422, 429, 503, 507)
)
async def send_message(
    mailbox_id: MailboxIdText,
    body: api.SendMessage,
    request: Request,
    ctx: Ctx,
    sotto_delivery_token: Annotated[
        str | None,
        Header(description="The mailbox's delivery token, base64url", json_schema_extra=TOKEN_PATTERN),
    ] = None,
) -> api.SendResult:
    """Store an envelope; answered after the commit. A repeated message id is ``duplicate: true``."""
    if not body.payload_is_bucket():
        raise RelayError(422, "payload_not_bucket", "payload length must be a padding bucket")
    source, now = source_key(request.scope), ctx.now()
    await refuse_failing_source(ctx, source, now)
    token = parse_token(sotto_delivery_token)
    try:
        mid = _mailbox_id(mailbox_id)
    except RelayError:
        token = None
    if token is None:
        await note_failure(ctx, source, now)
        raise MAILBOX_NOT_FOUND
    outcome = await deliver(ctx, mid, token, body.message_id, body.payload)
    if outcome is PutOutcome.NOT_FOUND:
        await note_failure(ctx, source, now)
        raise MAILBOX_NOT_FOUND
    if outcome is PutOutcome.MAILBOX_FULL:
        raise RelayError(507, "mailbox_full", "the mailbox holds its quota of pending envelopes")
    if outcome is PutOutcome.RELAY_FULL:
        raise RelayError(507, "relay_full", "the relay is short of disk space; try again later")
    return api.SendResult(duplicate=outcome is PutOutcome.DUPLICATE)


@router.post(
    "/v1/mailboxes/{mailbox_id}/poll",
    tags=["cadence"],
    response_model=api.PollResult,
    responses=_errors(401, 404, 413, 422, 429, 503),
)
async def poll_mailbox(
    mailbox_id: MailboxIdText,
    body: api.Poll,
    request: Request,
    ctx: Ctx,
    sotto_mailbox_auth: MailboxAuth = None,
) -> Response:
    """Drain one mailbox (signed by the mailbox key): delete the acknowledged envelopes of this
    mailbox, then hand out up to ``limit`` pending ones; moves the expiry as a subscription does.
    Nothing handed out is deleted until a later poll (or the WebSocket) acks it.

    With ``wait_ms`` (a long poll) and nothing pending, the answer waits until an envelope is
    committed to the mailbox or ``wait_ms`` pass, then says what is pending then (maybe nothing).
    One long poll per mailbox is held: a newer one answers the older at once. Past the relay's
    cap of held polls, 503 ``polls_busy`` with Retry-After (:mod:`sotto.server.longpoll`)."""
    mid = await _owned(ctx, request, mailbox_id, sotto_mailbox_auth)
    await ctx.limits.poll_per_mailbox.acheck(mid, ctx.now())
    in_flight = answers_in_flight(request.app.state)
    claim: Claim | None = await in_flight.claim(mid)  # before anything is read or deleted
    try:
        acked = list(dict.fromkeys(body.ack))
        if acked:
            deleted = await ctx.storage.delete_envelopes([(mid, MessageId(i)) for i in acked])
            ctx.stats.count("envelopes_acked", deleted)
        await ctx.storage.touch_mailboxes([mid], ctx.today())
        max_bytes = ctx.config.poll_reply_max_bytes
        turns = answer_turns(request.app.state)

        def read() -> Awaitable[list[EnvelopeRecord]]:
            return ctx.storage.pending(mid, body.limit + 1, max_bytes=max_bytes)

        if body.wait_ms:
            # Listening before the read: an envelope committed between the two still wakes us.
            hold = held_polls(request.app.state, ctx).hold(mid)
            try:
                envelopes = await turns.run(read)
                if not envelopes:
                    in_flight.release(claim)  # a wait is no answer in flight
                    claim = None
                    if await hold.wait(body.wait_ms / 1000, _client_gone(request)):
                        # Another poll's answer out meanwhile: this one says "nothing yet".
                        claim = in_flight.try_claim(mid)
                        if claim is not None:
                            envelopes = await turns.run(read)
            finally:
                hold.release()
        else:
            # One more than asked for says whether there is more, without a count query.
            envelopes = await turns.run(read)
        ctx.stats.count("polls")
        handed = _within(envelopes[: body.limit], max_bytes)
        ctx.stats.count("envelopes_polled", len(handed))
        length, pieces = api.poll_result_parts(
            [(e.message_id, e.received_day, e.payload) for e in handed], more=len(envelopes) > len(handed)
        )
    except BaseException:
        in_flight.release(claim)
        raise
    unread = request.scope.get("extensions", {}).get(UNREAD_EXTENSION)
    return PieceByPiece(
        length, turns.pieces(pieces), done=lambda: in_flight.release_when_taken(claim, unread)
    )


class PieceByPiece(Response):
    """A JSON answer of known length sent in pieces, each made as the one before is handed to
    the server: under uvicorn, a send waits while the socket's buffer is full, so the making
    stops there too (see :func:`sotto.wire.api.poll_result_parts`); each piece is made in a
    turn (:mod:`sotto.server.turns`)."""

    media_type = "application/json"

    def __init__(
        self, length: int, pieces: AsyncGenerator[bytes, None], done: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.raw_headers = [(b"content-length", b"%d" % length), (b"content-type", b"application/json")]
        self._pieces = pieces
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            try:
                async for piece in self._pieces:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            finally:
                await self._pieces.aclose()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if self._done is not None:
                self._done()


async def _client_gone(request: Request) -> None:
    """Returns once the client that sent ``request`` disconnected (a direct one: a request
    through the gateway has no connection of its own, and its wait simply runs out)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _within(envelopes: list[EnvelopeRecord], max_bytes: int) -> list[EnvelopeRecord]:
    """The first envelopes whose payloads fit in ``max_bytes`` (always at least one), so one
    answer, and what a client that never reads it pins, stays bounded."""
    total = 0
    for count, envelope in enumerate(envelopes):
        total += len(envelope.payload)
        if total > max_bytes and count:
            return envelopes[:count]
    return envelopes
