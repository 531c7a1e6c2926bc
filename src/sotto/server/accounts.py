"""HTTP calls about accounts, devices, prekeys, usernames and access tokens (relay-protocol §1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import WithJsonSchema

from sotto.errors import DecodeError, RelayError
from sotto.server.auth import UNAUTHORIZED, access_token_key, authenticate_device, parse_token, token_hash
from sotto.server.challenge import WORK_STATUS, require_work
from sotto.server.context import RelayContext
from sotto.server.export import export_json
from sotto.server.ratelimit import RateLimitedError, source_key
from sotto.server.storage.base import (
    AccountId,
    AccountRecord,
    DeviceRecord,
    KeyUpload,
    OneTimePreKey,
    SignedKey,
    UploadOutcome,
    UsernameOutcome,
    creation_week,
    token_expiry,
)
from sotto.wire import api, b64
from sotto.wire.limits import ID_LENGTH
from sotto.wire.work import Purpose

FIRST_DEVICE_ID = 1


async def get_context(request: Request) -> RelayContext:
    """The app's context. Async on purpose: FastAPI runs a sync dependency in a worker thread,
    a hop per request for one attribute read."""
    ctx: RelayContext = request.app.state.relay
    return ctx


Ctx = Annotated[RelayContext, Depends(get_context)]


async def current_device(
    ctx: Ctx,
    authorization: Annotated[
        str | None, Header(description="Basic base64(<account b64url>.<device id>:<secret b64url>)")
    ] = None,
) -> DeviceRecord:
    return await authenticate_device(ctx.storage, authorization)


Device = Annotated[DeviceRecord, Depends(current_device)]


async def refuse_failing_source(ctx: RelayContext, source: bytes, now: float) -> None:
    """429 before any lookup for a source whose refused anonymous credentials used up its budget."""
    failures = ctx.limits.anonymous_failures
    if not await failures.apeek(source, now):
        raise RateLimitedError(await failures.aretry_after(source, now))


async def note_failure(ctx: RelayContext, source: bytes, now: float) -> None:
    """Count one refused anonymous credential against ``source``."""
    await ctx.limits.anonymous_failures.aallow(source, now)


COMMON_ERRORS = (400, 413, 422, 503)
"""Any call can meet these: malformed JSON, a body over the limit, invalid fields, storage down."""


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": api.ErrorBody} for status in sorted({*statuses, *COMMON_ERRORS})}


def refuse_when_full(ctx: RelayContext) -> None:
    """507 ``relay_full`` while free disk is below the floor (quotas, relay-protocol §7)."""
    if ctx.storage.low_on_disk():
        raise RelayError(507, "relay_full", "the relay is short of disk space; try again later")


def quota_exceeded(what: str) -> RelayError:
    return RelayError(507, "quota_exceeded", f"the account holds its quota of {what}")


ID_PATTERN = {"pattern": api.b64_pattern(ID_LENGTH), "contentEncoding": "base64url"}
TOKEN_PATTERN = {"pattern": api.b64_pattern(32), "contentEncoding": "base64url"}


router = APIRouter(tags=["accounts"])


WORK_SCHEMA = {"type": "string", "pattern": api.work_header_pattern()}
"""The ``Sotto-Work`` header: ``<challenge>.<nonce>``, both base64url (a string when sent)."""
WorkHeader = Annotated[
    str | None, Header(description="A solved challenge (relay-protocol §8)"), WithJsonSchema(WORK_SCHEMA)
]
WORK_REFUSED: dict[int | str, dict[str, Any]] = {
    WORK_STATUS: {"model": api.WorkRequired, "description": "Proof of work asked for (relay-protocol §8)"}
}


@router.post("/v1/accounts", status_code=201, responses={**_errors(413, 422, 429, 503, 507), **WORK_REFUSED})
async def create_account(
    body: api.CreateAccount, request: Request, ctx: Ctx, sotto_work: WorkHeader = None
) -> api.AccountCreated:
    """Register an account (no phone number): identity key, registration id, first device's secret.

    While the relay is busy with creations, it answers 428 with a challenge to solve first."""
    now = ctx.now()
    await ctx.limits.account_creation.acheck(source_key(request.scope), now)
    refuse_when_full(ctx)
    await require_work(ctx.work_gate, Purpose.ACCOUNT, sotto_work, now, ctx.rng)
    today = ctx.today()
    for _ in range(3):  # a 128-bit collision is not expected; retrying costs nothing
        account_id = AccountId(ctx.rng(ID_LENGTH))
        account = AccountRecord(account_id, body.identity_key, creation_week(today))
        device = DeviceRecord(
            account_id, FIRST_DEVICE_ID, body.registration_id, token_hash(body.device_secret)
        )
        if await ctx.storage.create_account(account, device):
            await ctx.work_gate.acreated(Purpose.ACCOUNT, ctx.now())
            ctx.stats.count("accounts_created")
            return api.AccountCreated(account_id=account_id, device_id=FIRST_DEVICE_ID)
    raise RelayError(503, "unavailable", "could not allocate an account id")


@router.get("/v1/accounts/me", responses=_errors(401))
async def get_me(device: Device, ctx: Ctx) -> api.AccountInfo:
    account = await ctx.storage.get_account(device.account_id)
    if account is None:
        raise UNAUTHORIZED
    return api.AccountInfo(
        account_id=account.account_id,
        device_id=device.device_id,
        identity_key=account.identity_key,
        created_day=account.created_day,
    )


@router.delete("/v1/accounts/me", status_code=204, responses=_errors(401))
async def delete_account(device: Device, ctx: Ctx) -> Response:
    """Delete the account and every row about it (devices, prekeys, access tokens, username) in
    one transaction; afterwards its credentials are refused like any others (401), and its export
    too. Mailboxes are not tied to accounts: their owner deletes each with its key (§2).

    No limiter of its own: it needs the device's secret and succeeds once per account, so what
    it can be made to cost is bounded by account creation (rate-limited, with proof of work)."""
    if not await ctx.storage.delete_account(device.account_id):
        raise UNAUTHORIZED  # deleted by a concurrent call: the credentials name nothing now
    return Response(status_code=204)


@router.put("/v1/accounts/me/username", status_code=204, responses=_errors(401, 409, 422, 429))
async def set_username(body: api.SetUsername, request: Request, device: Device, ctx: Ctx) -> Response:
    """Claim a username; the relay keeps only its keyed hash. Rate-limited per account and per
    source, as lookups are: a 409 says the name is taken."""
    now = ctx.now()
    await ctx.limits.username_claim.acheck(device.account_id, now)
    await ctx.limits.username_claim_per_source.acheck(source_key(request.scope), now)
    outcome = await ctx.storage.set_username(device.account_id, ctx.server_key.username_hash(body.username))
    if outcome is UsernameOutcome.TAKEN:
        raise RelayError(409, "username_taken", "that username is taken")
    return Response(status_code=204)


@router.delete("/v1/accounts/me/username", status_code=204, responses=_errors(401))
async def clear_username(device: Device, ctx: Ctx) -> Response:
    await ctx.storage.clear_username(device.account_id)
    return Response(status_code=204)


@router.get("/v1/usernames/{username}", tags=["usernames"], responses=_errors(404, 429))
async def find_username(username: str, request: Request, ctx: Ctx) -> api.AccountRef:
    """Look a username up (rate-limited per source, and per name for each source)."""
    now, source = ctx.now(), source_key(request.scope)
    await ctx.limits.username_lookup.acheck(source, now)
    try:
        name = api.SetUsername(username=username).username
    except ValueError:
        raise RelayError(404, "not_found", "no such username") from None
    name_hash = ctx.server_key.username_hash(name)
    await ctx.limits.username_lookup_per_name.acheck((source, name_hash), now)
    account_id = await ctx.storage.find_username(name_hash)
    if account_id is None:
        raise RelayError(404, "not_found", "no such username")
    return api.AccountRef(account_id=account_id)


@router.put("/v1/accounts/me/keys", status_code=204, responses=_errors(401, 409, 413, 422, 507))
async def upload_keys(body: api.UploadKeys, device: Device, ctx: Ctx) -> Response:
    """Add prekeys, idempotent per key id; the same id with other bytes is a conflict."""
    upload = KeyUpload(
        signed_pre_key=_signed(body.signed_pre_key),
        kyber_last_resort=_signed(body.kyber_last_resort),
        one_time_pre_keys=tuple(OneTimePreKey(k.id, k.public_key) for k in body.one_time_pre_keys),
        kyber_pre_keys=tuple(SignedKey(k.id, k.public_key, k.signature) for k in body.kyber_pre_keys),
    )
    refuse_when_full(ctx)
    outcome = await ctx.storage.upload_keys(device.account_id, device.device_id, upload)
    if outcome is UploadOutcome.CONFLICT:
        raise RelayError(409, "key_conflict", "a key id is already held with other key bytes")
    if outcome is UploadOutcome.OVER_QUOTA:
        raise quota_exceeded("one-time prekeys")
    return Response(status_code=204)


@router.get("/v1/accounts/me/keys", responses=_errors(401))
async def key_counts(device: Device, ctx: Ctx) -> api.KeyCounts:
    """How many one-time prekeys are left to hand out."""
    counts = await ctx.storage.key_counts(device.account_id, device.device_id)
    return api.KeyCounts(one_time=counts.one_time, kyber=counts.kyber)


@router.put("/v1/accounts/me/access-tokens", status_code=204, responses=_errors(401, 422, 507))
async def add_access_token(body: api.AddAccessToken, device: Device, ctx: Ctx) -> Response:
    """Register a token that lets its holder fetch this account's bundle. The relay keeps a hash
    bound to this account: the same token registered by another account opens nothing here and
    leaves this registration alone (the answer is the same 204 either way). The expiry is kept
    rounded up to a whole week, so the row does not date the invite it was made for."""
    refuse_when_full(ctx)
    key = access_token_key(device.account_id, token_hash(body.token))
    if not await ctx.storage.add_access_token(device.account_id, key, token_expiry(body.expires_day)):
        raise quota_exceeded("access tokens")
    return Response(status_code=204)


@router.delete("/v1/accounts/me/access-tokens/{token_hash}", status_code=204, responses=_errors(401, 422))
async def delete_access_token(
    token_hash: Annotated[str, Path(json_schema_extra=TOKEN_PATTERN)], device: Device, ctx: Ctx
) -> Response:
    """Retire a token by its SHA-256 (base64url); unknown hashes are fine."""
    try:
        digest = b64.decode(token_hash, length=32)
    except DecodeError:
        raise RelayError(422, "invalid_request", "token_hash must be 32 bytes of base64url") from None
    await ctx.storage.delete_access_token(device.account_id, access_token_key(device.account_id, digest))
    return Response(status_code=204)


@router.get("/v1/accounts/{account_id}/bundle", tags=["prekeys"], responses=_errors(401, 429))
async def fetch_bundle(
    account_id: Annotated[str, Path(json_schema_extra=ID_PATTERN)],
    request: Request,
    ctx: Ctx,
    sotto_access_token: Annotated[
        str | None, Header(description="The access token, base64url", json_schema_extra=TOKEN_PATTERN)
    ] = None,
) -> api.Bundle:
    """One prekey set per device, consuming one-time keys; a missing account and a wrong token are one 401."""
    source, now = source_key(request.scope), ctx.now()
    await refuse_failing_source(ctx, source, now)
    token = parse_token(sotto_access_token)
    try:
        target = AccountId(b64.decode(account_id, length=ID_LENGTH))
    except DecodeError:
        target = None
    if token is None or target is None:
        await note_failure(ctx, source, now)
        raise UNAUTHORIZED
    digest, today = access_token_key(target, token_hash(token)), ctx.today()
    if not await ctx.storage.has_access(target, digest, today):
        await note_failure(ctx, source, now)
        raise UNAUTHORIZED
    # Only fetches with a valid token make buckets, so strangers can neither starve an account
    # nor churn the table (and a full table never forgets a bucket that still holds a debt).
    await ctx.limits.bundle_fetch.acheck((target, digest), now)
    await ctx.limits.bundle_fetch_per_account.acheck(target, now)
    bundle = await ctx.storage.take_bundle(target, digest, today)
    if bundle is None:
        raise UNAUTHORIZED
    ctx.stats.count("bundles_fetched")
    return api.Bundle(
        identity_key=bundle.identity_key,
        devices=[
            api.DeviceBundle(
                device_id=d.device_id,
                registration_id=d.registration_id,
                signed_pre_key=api.SignedPreKey(
                    id=d.signed_pre_key.key_id,
                    public_key=d.signed_pre_key.public_key,
                    signature=d.signed_pre_key.signature,
                ),
                kyber_pre_key=api.KyberPreKey(
                    id=d.kyber_pre_key.key_id,
                    public_key=d.kyber_pre_key.public_key,
                    signature=d.kyber_pre_key.signature,
                ),
                pre_key=api.PreKey(id=d.pre_key.key_id, public_key=d.pre_key.public_key)
                if d.pre_key
                else None,
            )
            for d in bundle.devices
        ],
    )


@router.get("/v1/export", tags=["export"], responses=_errors(401))
async def export_account(device: Device, ctx: Ctx) -> dict[str, Any]:
    """Everything held about the account, table by table, in the manifest's schema."""
    return export_json(await ctx.storage.export_account(device.account_id), "account")


def _signed(key: api.SignedPreKey | api.KyberPreKey | None) -> SignedKey | None:
    return SignedKey(key.id, key.public_key, key.signature) if key is not None else None
