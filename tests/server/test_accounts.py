"""Accounts, devices, usernames, prekeys and access tokens over HTTP, with their bad inputs."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sotto.server.auth import access_token_key
from sotto.server.config import RateLimit
from sotto.server.storage.base import token_expiry
from sotto.wire import auth, b64
from tests.server.conftest import (
    DAY,
    GENEROUS,
    Relay,
    create_account,
    ec_key,
    kyber_key,
    make_relay,
    pre_key,
    signed_pre_key,
)


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str), body


# ---------------------------------------------------------------------------- accounts
def test_create_account_and_me(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    assert len(account.account_id) == 16 and account.device_id == 1
    me = client.get("/v1/accounts/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json() == {
        "account_id": account.id,
        "device_id": 1,
        "identity_key": account.identity_key,
        "created_day": DAY - DAY % 7,  # the week, not the day
    }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"identity_key": "AAAA", "registration_id": 1, "device_secret": b64.encode(bytes(32))},
        {
            "identity_key": b64.encode(b"\x08" + bytes(32)),
            "registration_id": 1,
            "device_secret": b64.encode(bytes(32)),
        },
        {
            "identity_key": b64.encode(b"\x05" + bytes(32)),
            "registration_id": 0,
            "device_secret": b64.encode(bytes(32)),
        },
        {
            "identity_key": b64.encode(b"\x05" + bytes(32)),
            "registration_id": 1,
            "device_secret": b64.encode(bytes(31)),
        },
        {"identity_key": b64.encode(b"\x05" + bytes(32)) + "=", "registration_id": 1, "device_secret": "x"},
        {
            "identity_key": b64.encode(b"\x05" + bytes(32)),
            "registration_id": 1,
            "device_secret": b64.encode(bytes(32)),
            "x": 1,
        },
        [1, 2],
        "text",
    ],
)
def test_create_account_refuses_bad_bodies(relay: Relay, body: Any) -> None:
    _error(relay.client.post("/v1/accounts", json=body), 422, "invalid_request")


def test_malformed_json_is_400(relay: Relay) -> None:
    response = relay.client.post(
        "/v1/accounts", content=b'{"identity_key": ', headers={"Content-Type": "application/json"}
    )
    _error(response, 400, "malformed_json")


def test_validation_errors_do_not_echo_secrets(relay: Relay) -> None:
    secret = b64.encode(b"S" * 31)
    response = relay.client.post(
        "/v1/accounts", json={"identity_key": ec_key(), "registration_id": 1, "device_secret": secret}
    )
    assert response.status_code == 422 and secret not in response.text


def test_oversized_body_is_413_before_parsing(relay: Relay) -> None:
    big = b"{" + b" " * (256 * 1024) + b"}"
    _error(
        relay.client.post("/v1/accounts", content=big, headers={"Content-Type": "application/json"}),
        413,
        "too_large",
    )

    def chunks() -> Any:  # no Content-Length: counted while streaming
        for _ in range(300):
            yield b" " * 1024

    _error(relay.client.post("/v1/accounts", content=chunks()), 413, "too_large")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"AAAA.1:" + b64.encode(bytes(32)).encode()).decode(),
    ],
)
def test_bad_device_credentials_are_401(relay: Relay, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    _error(relay.client.get("/v1/accounts/me", headers=headers), 401, "unauthorized")


def test_wrong_secret_unknown_account_and_unknown_device_look_alike(relay: Relay) -> None:
    account = create_account(relay.client)
    answers = []
    for account_id, device_id, secret in [
        (account.account_id, 1, os.urandom(32)),
        (os.urandom(16), 1, account.secret),
        (account.account_id, 2, account.secret),
    ]:
        response = relay.client.get(
            "/v1/accounts/me",
            headers={"Authorization": auth.encode_device_auth(account_id, device_id, secret)},
        )
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401


# ---------------------------------------------------------------------------- usernames
def test_usernames_are_stored_as_keyed_hashes(any_relay: Relay) -> None:
    client = any_relay.client
    alice, bob = create_account(client), create_account(client)
    assert (
        client.put(
            "/v1/accounts/me/username", json={"username": "Alice_1"}, headers=alice.headers
        ).status_code
        == 204
    )
    _error(
        client.put("/v1/accounts/me/username", json={"username": "alice_1"}, headers=bob.headers),
        409,
        "username_taken",
    )
    found = client.get("/v1/usernames/ALICE_1")
    assert found.status_code == 200 and found.json() == {"account_id": alice.id}
    export = client.get("/v1/export", headers=alice.headers).json()
    held = export["tables"]["accounts"][0]["username_hash"]
    assert held == b64.encode(any_relay.ctx.server_key.username_hash("alice_1"))
    assert held != b64.encode(hashlib.sha256(b"alice_1").digest())
    assert client.delete("/v1/accounts/me/username", headers=alice.headers).status_code == 204
    _error(client.get("/v1/usernames/alice_1"), 404, "not_found")


@pytest.mark.parametrize("name", ["ab", "x" * 33, "has space", "émile", "a/b"])
def test_bad_usernames(relay: Relay, name: str) -> None:
    account = create_account(relay.client)
    _error(
        relay.client.put("/v1/accounts/me/username", json={"username": name}, headers=account.headers),
        422,
        "invalid_request",
    )
    assert relay.client.get(f"/v1/usernames/{name}").status_code == 404


# ---------------------------------------------------------------------------- prekeys
def _upload(ec: int = 2, kyber: int = 2, start: int = 1) -> dict[str, Any]:
    return {
        "signed_pre_key": signed_pre_key(1),
        "kyber_last_resort": kyber_key(900),
        "one_time_pre_keys": [pre_key(start + i) for i in range(ec)],
        "kyber_pre_keys": [kyber_key(start + i) for i in range(kyber)],
    }


def _token(client: Any, account: Any, expires_day: int = DAY + 7) -> bytes:
    token = os.urandom(32)
    response = client.put(
        "/v1/accounts/me/access-tokens",
        json={"token": b64.encode(token), "expires_day": expires_day},
        headers=account.headers,
    )
    assert response.status_code == 204, response.text
    return token


def _bundle(client: Any, account_id: str, token: bytes | None) -> Any:
    headers = {"Sotto-Access-Token": b64.encode(token)} if token is not None else {}
    return client.get(f"/v1/accounts/{account_id}/bundle", headers=headers)


def test_prekeys_upload_fetch_and_last_resort(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    upload = _upload()
    assert client.put("/v1/accounts/me/keys", json=upload, headers=account.headers).status_code == 204
    assert client.put("/v1/accounts/me/keys", json=upload, headers=account.headers).status_code == 204
    assert client.get("/v1/accounts/me/keys", headers=account.headers).json() == {"one_time": 2, "kyber": 2}
    token = _token(client, account)
    bundles = [_bundle(client, account.id, token).json() for _ in range(3)]
    devices = [b["devices"][0] for b in bundles]
    assert [d.get("pre_key") for d in devices] == [*upload["one_time_pre_keys"], None]
    assert [d["kyber_pre_key"] for d in devices] == [*upload["kyber_pre_keys"], upload["kyber_last_resort"]]
    assert devices[0]["signed_pre_key"] == upload["signed_pre_key"]
    assert devices[0]["registration_id"] == 4321 and devices[0]["device_id"] == 1
    assert bundles[0]["identity_key"] == account.identity_key
    assert client.get("/v1/accounts/me/keys", headers=account.headers).json() == {"one_time": 0, "kyber": 0}


def test_a_maximal_upload_fits_the_body_limit(relay: Relay) -> None:
    account = create_account(relay.client)
    response = relay.client.put("/v1/accounts/me/keys", json=_upload(100, 100), headers=account.headers)
    assert response.status_code == 204, response.text
    _error(
        relay.client.put("/v1/accounts/me/keys", json=_upload(101, 0), headers=account.headers),
        422,
        "invalid_request",
    )


def test_same_key_id_with_other_bytes_is_409(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    upload = _upload()
    client.put("/v1/accounts/me/keys", json=upload, headers=account.headers)
    changed = {**upload, "one_time_pre_keys": [pre_key(2), pre_key(3)]}
    _error(client.put("/v1/accounts/me/keys", json=changed, headers=account.headers), 409, "key_conflict")
    assert client.get("/v1/accounts/me/keys", headers=account.headers).json() == {"one_time": 2, "kyber": 2}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda u: u["one_time_pre_keys"][0].update(public_key=b64.encode(b"\x08" + bytes(32))),
        lambda u: u["one_time_pre_keys"][0].update(public_key=b64.encode(b"\x05" + bytes(31))),
        lambda u: u["kyber_pre_keys"][0].update(public_key=b64.encode(b"\x05" + bytes(1568))),
        lambda u: u["kyber_pre_keys"][0].update(signature=b64.encode(bytes(63))),
        lambda u: u["signed_pre_key"].update(id=-1),
        lambda u: u["signed_pre_key"].update(id=2**24),
        lambda u: u.update(extra=1),
        lambda u: u.update(one_time_pre_keys="nope"),
    ],
)
def test_upload_refuses_wrong_lengths_and_type_bytes(relay: Relay, mutate: Any) -> None:
    account = create_account(relay.client)
    upload = _upload()
    mutate(upload)
    _error(
        relay.client.put("/v1/accounts/me/keys", json=upload, headers=account.headers), 422, "invalid_request"
    )
    assert relay.client.get("/v1/accounts/me/keys", headers=account.headers).json() == {
        "one_time": 0,
        "kyber": 0,
    }


def test_missing_account_and_wrong_token_are_the_same_401(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    client.put("/v1/accounts/me/keys", json=_upload(), headers=account.headers)
    token = _token(client, account)
    answers = [
        _bundle(client, account.id, os.urandom(32)),
        _bundle(client, b64.encode(os.urandom(16)), token),
        _bundle(client, account.id, None),
        _bundle(client, "not-an-id", token),
        client.get(f"/v1/accounts/{account.id}/bundle", headers={"Sotto-Access-Token": "short"}),
    ]
    assert {(a.status_code, a.text) for a in answers} == {(answers[0].status_code, answers[0].text)}
    assert answers[0].status_code == 401
    assert client.get("/v1/accounts/me/keys", headers=account.headers).json() == {"one_time": 2, "kyber": 2}


def test_access_tokens_expire_and_can_be_deleted(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    client.put("/v1/accounts/me/keys", json=_upload(), headers=account.headers)
    token = _token(client, account, expires_day=DAY + 1)
    assert _bundle(client, account.id, token).status_code == 200
    any_relay.clock.advance_days(token_expiry(DAY + 1) - DAY - 1)  # kept to the whole week
    assert _bundle(client, account.id, token).status_code == 200
    any_relay.clock.advance_days(1)
    assert _bundle(client, account.id, token).status_code == 401
    other = _token(client, account)
    digest = b64.encode(hashlib.sha256(other).digest())
    assert (
        client.delete(f"/v1/accounts/me/access-tokens/{digest}", headers=account.headers).status_code == 204
    )
    assert _bundle(client, account.id, other).status_code == 401
    _error(
        client.delete("/v1/accounts/me/access-tokens/xyz", headers=account.headers), 422, "invalid_request"
    )


def test_account_export_holds_everything_about_the_account(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    client.put("/v1/accounts/me/keys", json=_upload(), headers=account.headers)
    token = _token(client, account)
    export = client.get("/v1/export", headers=account.headers).json()
    tables = export["tables"]
    assert tables["accounts"][0]["account_id"] == account.id
    device = tables["devices"][0]
    assert device["secret_hash"] == b64.encode(hashlib.sha256(account.secret).digest())
    assert b64.encode(account.secret) not in str(export)
    assert len(tables["one_time_pre_keys"]) == 2 and len(tables["kyber_pre_keys"]) == 2
    held = access_token_key(account.account_id, hashlib.sha256(token).digest())
    assert tables["access_tokens"][0]["token_hash"] == b64.encode(held)
    _error(client.get("/v1/export"), 401, "unauthorized")


# ---------------------------------------------------------------------------- rate limits
def _limited(tmp_path: Path, **limits: RateLimit) -> Iterator[Relay]:
    return make_relay(tmp_path, limits=dataclasses.replace(GENEROUS, **limits))


def test_bundle_fetches_are_limited_per_target_and_token(tmp_path: Path) -> None:
    for relay in _limited(
        tmp_path, bundle_fetch=RateLimit(2, 0.0001), bundle_fetch_per_account=RateLimit(3, 0.0001)
    ):
        client = relay.client
        account = create_account(client)
        client.put("/v1/accounts/me/keys", json=_upload(10, 10), headers=account.headers)
        first, second = _token(client, account), _token(client, account)
        assert [_bundle(client, account.id, first).status_code for _ in range(2)] == [200, 200]
        refused = _bundle(client, account.id, first)
        _error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) > 0
        # Wrong tokens neither pass nor use up the account's budget.
        for _ in range(5):
            assert _bundle(client, account.id, os.urandom(32)).status_code == 401
        assert _bundle(client, account.id, second).status_code == 200
        _error(_bundle(client, account.id, second), 429, "rate_limited")  # the account's budget: 3
        assert client.get("/v1/accounts/me/keys", headers=account.headers).json() == {
            "one_time": 7,
            "kyber": 7,
        }


def test_username_lookups_are_limited_in_total_and_per_name(tmp_path: Path) -> None:
    for relay in _limited(
        tmp_path, username_lookup=RateLimit(5, 0.0001), username_lookup_per_name=RateLimit(2, 0.0001)
    ):
        client = relay.client
        account = create_account(client)
        client.put("/v1/accounts/me/username", json={"username": "target"}, headers=account.headers)
        assert [client.get("/v1/usernames/target").status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/v1/usernames/Target").status_code == 429  # one name, whatever the case
        assert client.get("/v1/usernames/other").status_code == 404
        _error(client.get("/v1/usernames/third"), 429, "rate_limited")  # 5 in total


def test_account_creation_is_limited(tmp_path: Path) -> None:
    for relay in _limited(tmp_path, account_creation=RateLimit(1, 0.0001)):
        create_account(relay.client)
        body = {"identity_key": ec_key(), "registration_id": 1, "device_secret": b64.encode(os.urandom(32))}
        _error(relay.client.post("/v1/accounts", json=body), 429, "rate_limited")
