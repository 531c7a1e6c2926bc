"""Requests that cannot be replayed or forged: one-time mailbox signatures over the body, access
tokens bound to the account that registered them, and the relay's memory of signatures."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.errors import DecodeError, RelayError
from sotto.server.auth import (
    MailboxVerdict,
    ReplayGuard,
    access_token_key,
    drain_ok,
    mailbox_request_auth,
)
from sotto.server.mailboxes import MAILBOX_AUTH_PATTERN
from sotto.server.storage import SqliteStorage
from sotto.server.storage.base import AccountId, AccountRecord, DeviceRecord, MailboxId, MailboxRecord
from sotto.wire import auth, b64
from tests.server.conftest import (
    DAY,
    Mailbox,
    Relay,
    create_account,
    create_mailbox,
    kyber_key,
    payload,
    pre_key,
    send,
    signed_pre_key,
)

NOW = DAY * 86_400.0 + 43_200.0
JSON = {"content-type": "application/json"}


# ------------------------------------------------------------------- signed mailbox requests
def _poll_body(ack: list[bytes], limit: int = 8) -> bytes:
    return json.dumps({"ack": [b64.encode(i) for i in ack], "limit": limit}).encode()


def _pending(relay: Relay, mailbox: Mailbox) -> list[bytes]:
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = _poll_body([], 256)
    headers = {**mailbox.auth_header("POST", path, relay.clock.now(), body), **JSON}
    response = relay.client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return [b64.decode(e["id"]) for e in response.json()["envelopes"]]


def test_a_captured_poll_replayed_with_every_pending_id_acked_deletes_nothing(any_relay: Relay) -> None:
    """The attack that used to delete every pending envelope: capture one signed poll, learn the
    pending ids from its answer, replay its header over a body acknowledging all of them."""
    client = any_relay.client
    mailbox = create_mailbox(client)
    ids = [os.urandom(16) for _ in range(4)]
    for message_id in ids:
        assert send(client, mailbox, message_id, payload()).status_code == 202
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = _poll_body([])
    captured = {**mailbox.auth_header("POST", path, any_relay.clock.now(), body), **JSON}
    answer = client.post(path, content=body, headers=captured)
    assert answer.status_code == 200
    listed = [b64.decode(e["id"]) for e in answer.json()["envelopes"]]
    assert sorted(listed) == sorted(ids)

    replayed = client.post(path, content=body, headers=captured)  # byte for byte
    assert replayed.status_code == 401 and replayed.json()["code"] == "unauthorized"
    assert int(replayed.headers["sotto-sign-time"]) >= int(any_relay.clock.now() * 1000)
    ack_all = client.post(path, content=_poll_body(listed), headers=captured)  # another body
    assert ack_all.status_code == 404 and ack_all.json()["code"] == "not_found"
    # Nor does the signature carry over to another call of the same mailbox.
    delete = client.delete(f"/v1/mailboxes/{mailbox.id}", headers=captured)
    assert delete.status_code == 404
    assert sorted(_pending(any_relay, mailbox)) == sorted(ids)
    assert any_relay.ctx.stats.snapshot().get("envelopes_acked", 0) == 0


def test_a_replayed_delete_or_export_changes_nothing(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    export_path = f"/v1/mailboxes/{mailbox.id}/export"
    export = mailbox.auth_header("GET", export_path, any_relay.clock.now())
    assert client.get(export_path, headers=export).status_code == 200
    assert client.get(export_path, headers=export).status_code == 401
    path = f"/v1/mailboxes/{mailbox.id}"
    delete = mailbox.auth_header("DELETE", path, any_relay.clock.now())
    assert client.delete(path, headers=delete).status_code == 204
    create_mailbox(client, mailbox)  # the owner creates it again
    assert client.delete(path, headers=delete).status_code == 401
    assert send(client, mailbox, os.urandom(16), payload()).status_code == 202  # still there


def test_a_signature_covers_the_exact_body(relay: Relay) -> None:
    mailbox = create_mailbox(relay.client)
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = _poll_body([])
    spaced = body.replace(b",", b", ")  # the same JSON, other bytes
    headers = {**mailbox.auth_header("POST", path, relay.clock.now(), body), **JSON}
    assert relay.client.post(path, content=spaced, headers=headers).status_code == 404
    assert relay.client.post(path, content=body, headers=headers).status_code == 200


def test_a_restarted_relay_refuses_what_the_previous_one_accepted(relay: Relay) -> None:
    """The remembered signatures live in memory only; a restart refuses every time before it,
    so a request the previous process accepted cannot be replayed to the new one."""
    mailbox = create_mailbox(relay.client)
    send(relay.client, mailbox, os.urandom(16), payload())
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = _poll_body([])
    captured = {**mailbox.auth_header("POST", path, relay.clock.now(), body), **JSON}
    assert relay.client.post(path, content=body, headers=captured).status_code == 200
    # A quarter of a second later the relay restarts: its memory of signatures is gone.
    relay.clock.seconds += 0.25
    relay.ctx.replay_guard = ReplayGuard(relay.clock.now())
    replayed = relay.client.post(path, content=body, headers=captured)
    assert replayed.status_code == 401
    # An honest client signs again with the time the relay names, and is served.
    named = auth.decode_sign_time(replayed.headers["sotto-sign-time"])
    assert named is not None
    ms, nonce = named, os.urandom(auth.HTTP_NONCE_LENGTH)
    signature = mailbox.key.sign(auth.http_message("POST", path, ms, nonce, body))
    fresh = {"Sotto-Mailbox-Auth": auth.encode_mailbox_auth(ms, signature, nonce), **JSON}
    assert relay.client.post(path, content=body, headers=fresh).status_code == 200


# ------------------------------------------------------------------------- the replay guard
def test_the_guard_accepts_each_nonce_once_within_the_window() -> None:
    guard = ReplayGuard(NOW - 3_600)
    now_ms = int(NOW * 1000)
    box, nonce = bytes(16), bytes(range(16))
    assert guard.fresh(now_ms, NOW) and guard.fresh(now_ms - 300_000, NOW)
    assert not guard.fresh(now_ms - 300_001, NOW)
    assert not guard.fresh(now_ms + 1, NOW)  # no times ahead of the relay's clock
    restarted = ReplayGuard(NOW - 10)
    assert not restarted.fresh(int((NOW - 10) * 1000) - 1, NOW)  # before the start
    assert restarted.fresh(int((NOW - 10) * 1000), NOW)
    assert guard.accept(box, nonce, now_ms, NOW)
    assert not guard.accept(box, nonce, now_ms, NOW)
    assert guard.accept(bytes([1]) * 16, nonce, now_ms, NOW)  # the nonce of another mailbox
    assert len(guard) == 2
    # Once their time has left the window they are forgotten (and refused by fresh() anyway).
    later = NOW + 301
    assert guard.accept(box, bytes(16), int(later * 1000), later)
    assert len(guard) == 1


def test_a_full_guard_refuses_rather_than_forgets() -> None:
    guard = ReplayGuard(NOW - 10, capacity=3)
    now_ms = int(NOW * 1000)
    for i in range(3):
        assert guard.accept(bytes(16), bytes([i]) * 16, now_ms, NOW)
    with pytest.raises(RelayError) as full:
        guard.accept(bytes(16), bytes([9]) * 16, now_ms, NOW)
    assert full.value.status == 503
    assert not guard.accept(bytes(16), bytes([0]) * 16, now_ms, NOW)  # still remembered


def test_the_verdicts() -> None:
    from sotto.crypto.ed25519 import SigningKey

    key = SigningKey(bytes(range(32)))
    record = MailboxRecord(MailboxId(bytes(16)), key.public.raw, bytes(32), 30, DAY + 30)
    ms, nonce = int(NOW * 1000), os.urandom(16)
    header = auth.encode_mailbox_auth(ms, key.sign(auth.http_message("GET", "/x", ms, nonce, b"")), nonce)

    def verdict(mailbox: MailboxRecord | None, head: str | None, today: int = DAY) -> MailboxVerdict:
        guard = ReplayGuard(NOW - 10)
        return mailbox_request_auth(mailbox, head, "GET", "/x", b"", guard=guard, now=NOW, today=today)

    assert verdict(record, header) is MailboxVerdict.OK
    assert verdict(None, header) is MailboxVerdict.NOT_FOUND
    assert verdict(record, None) is MailboxVerdict.NOT_FOUND
    assert verdict(record, header, today=DAY + 30) is MailboxVerdict.NOT_FOUND  # expired
    assert verdict(record, header.replace(".", "x", 1)) is MailboxVerdict.NOT_FOUND
    other = SigningKey(bytes(32))
    forged = auth.encode_mailbox_auth(ms, other.sign(auth.http_message("GET", "/x", ms, nonce, b"")), nonce)
    assert verdict(record, forged) is MailboxVerdict.NOT_FOUND


def test_drain_proofs_for_missing_mailboxes_are_refused() -> None:
    from sotto.crypto.ed25519 import SigningKey

    key = SigningKey(bytes(range(32)))
    record = MailboxRecord(MailboxId(bytes(16)), key.public.raw, bytes(32), 30, DAY + 30)
    nonce = os.urandom(32)
    proof = key.sign(auth.drain_message(nonce, bytes(16)))
    assert drain_ok(record, nonce, proof, DAY)
    assert not drain_ok(None, nonce, proof, DAY)
    assert not drain_ok(record, nonce, proof, DAY + 30)
    assert not drain_ok(record, os.urandom(32), proof, DAY)


# --------------------------------------------------------------------------- access tokens
def _register(client: Any, account: Any, token: bytes) -> None:
    response = client.put(
        "/v1/accounts/me/access-tokens",
        json={"token": b64.encode(token), "expires_day": DAY + 7},
        headers=account.headers,
    )
    assert response.status_code == 204, response.text


def _bundle_status(client: Any, account: Any, token: bytes) -> int:
    headers = {"Sotto-Access-Token": b64.encode(token)}
    status: int = client.get(f"/v1/accounts/{account.id}/bundle", headers=headers).status_code
    return status


def _with_keys(client: Any) -> Any:
    account = create_account(client)
    keys = {
        "signed_pre_key": signed_pre_key(1),
        "kyber_last_resort": kyber_key(900),
        "one_time_pre_keys": [pre_key(i) for i in range(1, 4)],
    }
    assert client.put("/v1/accounts/me/keys", json=keys, headers=account.headers).status_code == 204
    return account


@pytest.fixture
def accounts(any_relay: Relay) -> Iterator[tuple[Relay, Any, Any]]:
    yield any_relay, _with_keys(any_relay.client), _with_keys(any_relay.client)


def test_an_invite_token_registered_by_someone_else_changes_nothing(accounts: tuple[Relay, Any, Any]) -> None:
    """Finding: whoever held an invite link could register its token under their own account
    and so move it away from the inviter (the inviter's bundle fetch went from 200 to 401)."""
    relay, inviter, attacker = accounts
    client = relay.client
    token = os.urandom(32)
    _register(client, inviter, token)
    assert _bundle_status(client, inviter, token) == 200
    _register(client, attacker, token)  # the same 204: it reveals nothing
    assert _bundle_status(client, inviter, token) == 200
    # Deleting it by its hash from the attacker's account touches only the attacker's row.
    digest = b64.encode(hashlib.sha256(token).digest())
    deleted = client.delete(f"/v1/accounts/me/access-tokens/{digest}", headers=attacker.headers)
    assert deleted.status_code == 204
    assert _bundle_status(client, inviter, token) == 200
    # The inviter's own delete still works.
    assert (
        client.delete(f"/v1/accounts/me/access-tokens/{digest}", headers=inviter.headers).status_code == 204
    )
    assert _bundle_status(client, inviter, token) == 401


def test_registering_a_token_first_does_not_block_its_inviter(accounts: tuple[Relay, Any, Any]) -> None:
    relay, inviter, squatter = accounts
    token = os.urandom(32)
    _register(relay.client, squatter, token)
    _register(relay.client, inviter, token)
    assert _bundle_status(relay.client, inviter, token) == 200
    assert _bundle_status(relay.client, squatter, token) == 200  # opens only the squatter's own


def test_the_stored_token_hash_is_bound_to_the_account() -> None:
    digest = hashlib.sha256(bytes(32)).digest()
    a, b = access_token_key(bytes(16), digest), access_token_key(bytes([1]) * 16, digest)
    assert a != b and len(a) == 32 and digest not in (a, b)


# ---------------------------------------------------------------------------- strict bodies
@pytest.mark.parametrize("expires_day", [False, True, "20007", 20007.5])
def test_a_loose_expiry_day_is_refused_not_stored_as_day_0(relay: Relay, expires_day: object) -> None:
    account = create_account(relay.client)
    body = {"token": b64.encode(os.urandom(32)), "expires_day": expires_day}
    response = relay.client.put("/v1/accounts/me/access-tokens", json=body, headers=account.headers)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    assert relay.client.get("/v1/export", headers=account.headers).json()["tables"]["access_tokens"] == []


@pytest.mark.parametrize("key_id", [True, "2"])
def test_a_loose_key_id_is_refused(relay: Relay, key_id: object) -> None:
    account = create_account(relay.client)
    body = {"one_time_pre_keys": [{**pre_key(1), "id": key_id}]}
    response = relay.client.put("/v1/accounts/me/keys", json=body, headers=account.headers)
    assert response.status_code == 422
    assert relay.client.get("/v1/accounts/me/keys", headers=account.headers).json()["one_time"] == 0


def test_tokens_an_older_relay_stored_are_rekeyed_at_start(tmp_path: Path) -> None:
    """Version 2 kept SHA-256(token) as the key: a relay opening such a file binds each row to
    its account, so invites made before the upgrade still open their bundle."""
    account, token = AccountId(os.urandom(16)), os.urandom(32)
    digest = hashlib.sha256(token).digest()
    store = SqliteStorage.in_dir(tmp_path)
    device = DeviceRecord(account, 1, 7, os.urandom(32))
    asyncio.run(store.create_account(AccountRecord(account, b"\x05" + bytes(32), DAY), device))
    asyncio.run(store.add_access_token(account, digest, DAY + 7))  # as version 2 stored it
    store.close_sync()
    conn = sqlite3.connect(tmp_path / "relay.db")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    store = SqliteStorage.in_dir(tmp_path)
    try:
        assert asyncio.run(store.has_access(account, access_token_key(account, digest), DAY))
        assert not asyncio.run(store.has_access(account, digest, DAY))
    finally:
        store.close_sync()


@given(
    st.from_regex(MAILBOX_AUTH_PATTERN, fullmatch=True)
    | st.text(alphabet="0123456789.AQgw-_xyz=", max_size=120)
    | st.builds(
        auth.encode_mailbox_auth,
        st.integers(0, 10**15 - 1),
        st.binary(min_size=64, max_size=64),
        st.binary(min_size=16, max_size=16),
    )
)
def test_the_openapi_header_pattern_is_what_the_decoder_reads(header: str) -> None:
    try:
        auth.decode_mailbox_auth(header)
        decodes = True
    except DecodeError:
        decodes = False
    assert bool(re.fullmatch(MAILBOX_AUTH_PATTERN, header)) == decodes
