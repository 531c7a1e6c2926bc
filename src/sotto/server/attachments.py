"""HTTP calls for attachment blobs (relay-protocol, *Attachments*): a resumable upload in
chunks, and downloads, under a random 16-byte id linked to no account or mailbox.

    POST  /v1/attachments        an account reserves a blob: {"length", "recipients"} -> id, token
    HEAD  /v1/attachments/{id}   Sotto-Upload-Token: how far the upload got (Upload-Offset)
    PATCH /v1/attachments/{id}   Sotto-Upload-Token, Upload-Offset: the next chunk (raw bytes)
    GET   /v1/attachments/{id}   the complete blob (Range: bytes=N- resumes a download;
                                 bytes=N-M is a piece, for answers of bounded size)

Only creation is authenticated, by the account's device credentials, for the per-account
upload budget (token buckets in memory or in the nodes' shared state, never in the database).
The row written holds no account. A blob is deleted when it has been downloaded to its end as
many times as the uploader's ``recipients``, or 30 days after its upload began; an upload left
unfinished for two days is deleted too.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Header, Request, Response
from fastapi import Path as PathParam
from pydantic import Field, WithJsonSchema
from starlette.types import Receive, Scope, Send

from sotto.errors import DecodeError, RelayError
from sotto.server.accounts import ID_PATTERN, Ctx, Device, _errors
from sotto.server.attachment_store import (
    BLOB_ID_LENGTH,
    MAX_BLOB_BYTES,
    MAX_RECIPIENTS,
    READ_CHUNK,
    UPLOAD_TOKEN_LENGTH,
    BlobNotFoundError,
    BlobQuotaError,
    BlobReader,
    BlobStore,
    BlobTooLargeError,
    DiskLowError,
    IncompleteBlobError,
    OffsetMismatchError,
)
from sotto.server.config import RateLimit
from sotto.server.context import RelayContext
from sotto.server.shared_state import Limiter, SharedState
from sotto.wire import api, b64

QUOTA_BYTES: Final = 20 * 1024**3
"""What the store may hold in all (complete and reserved), unless set otherwise
(:data:`STORES`): 200 of the largest attachments."""

UPLOAD_BUDGET: Final = RateLimit(burst=2 * MAX_BLOB_BYTES, per_second=2 * MAX_BLOB_BYTES / 86_400)
"""Bytes an account may reserve: two of the largest blobs at once, then two a day on average."""

NOT_FOUND = RelayError(404, "not_found", "no such attachment")
OFFSET_HEADER = "Upload-Offset"
LENGTH_HEADER = "Upload-Length"
TOKEN_HEADER = "Sotto-Upload-Token"  # noqa: S105 (a header name)

router = APIRouter(tags=["attachments"])


class CreateAttachment(api.Model):
    length: Annotated[int, Field(ge=1, le=MAX_BLOB_BYTES)]
    """The blob's exact length in bytes."""
    recipients: Annotated[int, Field(ge=1, le=MAX_RECIPIENTS)]
    """Complete downloads after which the blob is deleted."""


class AttachmentCreated(api.Model):
    attachment_id: Annotated[str, Field(pattern=api.b64_pattern(BLOB_ID_LENGTH))]
    upload_token: Annotated[str, Field(pattern=api.b64_pattern(UPLOAD_TOKEN_LENGTH))]


STORES: dict[Path, BlobStore] = {}
"""The store of each data directory in this process, opened at its first use with the defaults
(:data:`QUOTA_BYTES`, the relay's free-disk floor) unless one was put here first."""
_BUDGETS: weakref.WeakKeyDictionary[SharedState, Limiter] = weakref.WeakKeyDictionary()


def store_of(ctx: RelayContext) -> BlobStore:
    directory = (ctx.config.data_dir / "attachments").resolve()
    store = STORES.get(directory)
    if store is None:
        store = STORES[directory] = BlobStore(
            directory, quota_bytes=QUOTA_BYTES, min_free_disk_bytes=ctx.config.quotas.min_free_disk_bytes
        )
    return store


def _budget(ctx: RelayContext) -> Limiter:
    assert ctx.shared is not None
    budget = _BUDGETS.get(ctx.shared)
    if budget is None:
        budget = _BUDGETS[ctx.shared] = ctx.shared.limiter("attachment_bytes", UPLOAD_BUDGET)
    return budget


async def sweep(ctx: RelayContext) -> None:
    """Delete expired blobs and abandoned uploads (the relay's periodic sweep calls this)."""
    directory = (ctx.config.data_dir / "attachments").resolve()
    if directory in STORES or directory.exists():  # a relay that never had one makes no store
        await asyncio.to_thread(store_of(ctx).sweep, ctx.today())


def _blob_id(text: str) -> bytes:
    try:
        return b64.decode(text, length=BLOB_ID_LENGTH)
    except DecodeError:
        raise NOT_FOUND from None


def _token(text: str | None) -> bytes:
    try:
        return b64.decode(text or "", length=UPLOAD_TOKEN_LENGTH)
    except DecodeError:
        raise NOT_FOUND from None


def _refusal(error: Exception) -> RelayError:
    match error:
        case BlobNotFoundError():
            return NOT_FOUND
        case BlobTooLargeError():
            return RelayError(413, "too_large", str(error) or "the attachment is too large")
        case BlobQuotaError():
            return RelayError(507, "quota_exceeded", "the relay holds its quota of attachments; try later")
        case DiskLowError():
            return RelayError(507, "relay_full", "the relay is short of disk space; try again later")
        case IncompleteBlobError():
            return RelayError(409, "upload_incomplete", "the attachment's upload has not ended")
    raise error


AttachmentIdText = Annotated[str, PathParam(json_schema_extra=ID_PATTERN)]
UploadToken = Annotated[
    str | None,
    Header(
        alias=TOKEN_HEADER,
        description="The upload token the creation returned (base64url)",
        json_schema_extra={"pattern": api.b64_pattern(UPLOAD_TOKEN_LENGTH)},
    ),
]


@router.post(
    "/v1/attachments",
    status_code=201,
    responses=_errors(401, 413, 429, 507),
    response_model=AttachmentCreated,
)
async def create_attachment(body: CreateAttachment, ctx: Ctx, device: Device) -> dict[str, str]:
    """Reserve a blob of ``length`` bytes; upload it with PATCH. The row holds no account."""
    await _budget(ctx).acheck(bytes(device.account_id), ctx.now(), cost=body.length)
    store = store_of(ctx)
    try:
        blob_id, token = await asyncio.to_thread(
            store.create, body.length, body.recipients, ctx.today(), ctx.rng
        )
    except (BlobQuotaError, DiskLowError, BlobTooLargeError) as refused:
        raise _refusal(refused) from None
    return {"attachment_id": b64.encode(blob_id), "upload_token": b64.encode(token)}


def _offset_headers(length: int, received: int) -> dict[str, str]:
    return {OFFSET_HEADER: str(received), LENGTH_HEADER: str(length), "Cache-Control": "no-store"}


@router.head("/v1/attachments/{attachment_id}", responses=_errors(404))
async def upload_status(attachment_id: AttachmentIdText, ctx: Ctx, token: UploadToken = None) -> Response:
    """How far the upload has got: ``Upload-Offset`` of ``Upload-Length`` bytes."""
    blob_id, secret = _blob_id(attachment_id), _token(token)
    try:
        status = await asyncio.to_thread(store_of(ctx).status, blob_id, secret)
    except BlobNotFoundError as refused:
        raise _refusal(refused) from None
    return Response(status_code=200, headers=_offset_headers(status.length, status.received))


@router.patch(
    "/v1/attachments/{attachment_id}",
    status_code=204,
    responses={
        204: {"description": "Written; Upload-Offset says where the upload is now"},
        **_errors(404, 409, 413),
    },
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        }
    },
)
async def upload_chunk(
    attachment_id: AttachmentIdText,
    request: Request,
    ctx: Ctx,
    upload_offset: Annotated[
        str, Header(alias=OFFSET_HEADER, description="Where this chunk starts", pattern=r"^[0-9]{1,10}$")
    ],
    token: UploadToken = None,
) -> Response:
    """Append the body at ``Upload-Offset``, which must be where the upload has got to (409
    ``offset_mismatch`` naming that offset otherwise; HEAD says it too). A chunk is at most the
    relay's body limit."""
    blob_id, secret = _blob_id(attachment_id), _token(token)
    data = await request.body()
    try:
        status = await asyncio.to_thread(store_of(ctx).append, blob_id, secret, int(upload_offset), data)
    except OffsetMismatchError as mismatch:
        raise RelayError(409, "offset_mismatch", f"the upload is at offset {mismatch.offset}") from None
    except (BlobNotFoundError, BlobTooLargeError) as refused:
        raise _refusal(refused) from None
    return Response(status_code=204, headers=_offset_headers(status.length, status.received))


_RANGE = re.compile(r"bytes=([0-9]{1,10})-([0-9]{1,10})?")
RangeHeader = Annotated[
    str | None,
    Header(
        alias="Range",
        description="bytes=N- to resume a download, bytes=N-M for a piece (any other form is ignored)",
    ),
    WithJsonSchema({"type": "string"}),
]


@router.get(
    "/v1/attachments/{attachment_id}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The whole blob"},
        206: {"content": {"application/octet-stream": {}}, "description": "The Range's bytes of the blob"},
        **_errors(404, 409, 416),
    },
)
async def download(
    attachment_id: AttachmentIdText,
    ctx: Ctx,
    range_header: RangeHeader = None,
) -> Response:
    """The complete blob, streamed. A download that reaches the blob's end counts as one of the
    recipients' fetches; after the last, the blob is deleted. A piece (``bytes=N-M``, for a
    client whose answers are bounded in size: through a forwarder) counts when it ends at the
    blob's end."""
    blob_id = _blob_id(attachment_id)
    store = store_of(ctx)
    start, last = 0, None
    if range_header is not None:
        # One range of the forms a download needs; any other is ignored, as HTTP allows.
        match = _RANGE.fullmatch(range_header.strip())
        if match is not None:
            start = int(match.group(1))
            last = None if match.group(2) is None else int(match.group(2))
    if last is not None and last < start:
        raise RelayError(416, "bad_range", "the range ends before it starts")
    try:
        reader = await asyncio.to_thread(store.open_blob, blob_id)
    except (BlobNotFoundError, IncompleteBlobError) as refused:
        raise _refusal(refused) from None
    if start >= reader.length:
        reader.close()
        raise RelayError(416, "bad_range", f"the blob is {reader.length} bytes")
    end = reader.length if last is None else min(last + 1, reader.length)

    headers = {"Content-Length": str(end - start), "Cache-Control": "no-store"}
    whole = start == 0 and last is None
    if not whole:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{reader.length}"
    fetched = (lambda: store.fetched(blob_id)) if end == reader.length else (lambda: None)
    return BlobResponse(reader, (start, end), fetched, 200 if whole else 206, headers)


class BlobResponse(Response):
    """A blob's bytes from ``start`` to ``end``, read and sent a chunk at a time. Once the
    answer's last bytes are handed to the server, ``fetched`` runs (in a thread) and runs to
    its end: a client that closes its connection as soon as it has every byte still counts as a
    fetch. A send that fails (the client went away before the end) counts nothing.

    (Starlette's streaming answer stops its sending task when the client disconnects, and a
    disconnect right after the last byte could stop it before the count: the blob then stayed
    until its 30 days were up.)"""

    media_type = "application/octet-stream"

    def __init__(
        self,
        reader: BlobReader,
        span: tuple[int, int],
        fetched: Callable[[], object],
        status: int,
        headers: dict[str, str],
    ) -> None:
        super().__init__(status_code=status, headers=headers, media_type=self.media_type)
        self._reader, (self._start, self._end), self._fetched = reader, span, fetched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = self._reader
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            offset, end = self._start, self._end
            while offset < end:
                chunk = await asyncio.to_thread(reader.read, offset, min(READ_CHUNK, end - offset))
                offset += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": offset < end})
        finally:
            reader.close()
        # Every byte was handed on.
        await asyncio.shield(asyncio.to_thread(self._fetched))
