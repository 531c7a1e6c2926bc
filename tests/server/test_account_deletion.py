"""``DELETE /v1/accounts/me``: the account and every row about it go; its mailboxes go by their
own signed deletes (nothing on the relay ties them to the account). Afterwards the credentials,
the export and the bundle are refused like any unknown account's, a send to a deleted mailbox
gets the one 404 an unknown mailbox gets, and no table of the file holds the account's id or its
mailboxes' ids."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sotto.wire import b64
from tests.server.conftest import (
    Account,
    Mailbox,
    Relay,
    create_account,
    create_mailbox,
    kyber_key,
    make_relay,
    payload,
    pre_key,
    send,
    signed_pre_key,
)


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.json()


def _full_account(relay: Relay, name: str) -> tuple[Account, bytes, Mailbox]:
    """An account with a username, prekeys, an access token, and a mailbox holding envelopes."""
    client = relay.client
    account = create_account(client)
    assert (
        client.put("/v1/accounts/me/username", json={"username": name}, headers=account.headers).status_code
        == 204
    )
    keys = {
        "signed_pre_key": signed_pre_key(1),
        "kyber_last_resort": kyber_key(900),
        "one_time_pre_keys": [pre_key(i) for i in range(1, 4)],
        "kyber_pre_keys": [kyber_key(i) for i in range(1, 4)],
    }
    assert client.put("/v1/accounts/me/keys", json=keys, headers=account.headers).status_code == 204
    token = os.urandom(32)
    response = client.put(
        "/v1/accounts/me/access-tokens",
        json={"token": b64.encode(token), "expires_day": 20_030},
        headers=account.headers,
    )
    assert response.status_code == 204
    mailbox = create_mailbox(client)
    for fill in range(3):
        assert send(client, mailbox, os.urandom(16), payload(fill=fill)).status_code == 202
    return account, token, mailbox


def _delete_mailbox(relay: Relay, mailbox: Mailbox) -> Any:
    path = f"/v1/mailboxes/{mailbox.id}"
    return relay.client.delete(path, headers=mailbox.auth_header("DELETE", path, relay.clock.now()))


def _bundle(relay: Relay, account: Account, token: bytes) -> Any:
    return relay.client.get(
        f"/v1/accounts/{account.id}/bundle", headers={"Sotto-Access-Token": b64.encode(token)}
    )


def test_deleted_account_is_gone_and_its_export_says_so(any_relay: Relay) -> None:
    client = any_relay.client
    alice, alice_token, alice_box = _full_account(any_relay, "alice_1")
    bob, bob_token, bob_box = _full_account(any_relay, "bob_1")
    bob_export = client.get("/v1/export", headers=bob.headers).json()
    assert _bundle(any_relay, alice, alice_token).status_code == 200

    assert _delete_mailbox(any_relay, alice_box).status_code == 204
    assert client.delete("/v1/accounts/me", headers=alice.headers).status_code == 204

    # Her credentials now name nothing: the same 401 as a wrong secret or an unknown account.
    _error(client.get("/v1/export", headers=alice.headers), 401, "unauthorized")
    _error(client.get("/v1/accounts/me", headers=alice.headers), 401, "unauthorized")
    _error(client.delete("/v1/accounts/me", headers=alice.headers), 401, "unauthorized")
    _error(_bundle(any_relay, alice, alice_token), 401, "unauthorized")
    assert client.get("/v1/usernames/alice_1").status_code == 404
    # A contact writing to her mailbox meets the one answer for an unknown mailbox.
    _error(send(client, alice_box, os.urandom(16), payload()), 404, "not_found")
    unknown = Mailbox()
    _error(send(client, unknown, os.urandom(16), payload()), 404, "not_found")
    # Her name is free again; Bob is untouched.
    assert (
        client.put("/v1/accounts/me/username", json={"username": "alice_1"}, headers=bob.headers).status_code
        == 204
    )
    after = client.get("/v1/export", headers=bob.headers).json()
    for table in ("devices", "one_time_pre_keys", "kyber_pre_keys", "access_tokens"):
        assert after["tables"][table] == bob_export["tables"][table]
    assert _bundle(any_relay, bob, bob_token).status_code == 200
    assert send(client, bob_box, os.urandom(16), payload()).status_code == 202


def test_delete_needs_the_device_secret(any_relay: Relay) -> None:
    client = any_relay.client
    alice = create_account(client)
    wrong = Account(alice.account_id, alice.device_id, os.urandom(32), alice.identity_key)
    for headers in ({}, wrong.headers, {"Authorization": "Basic garbage"}):
        _error(client.delete("/v1/accounts/me", headers=headers), 401, "unauthorized")
    assert client.get("/v1/accounts/me", headers=alice.headers).status_code == 200


@pytest.fixture
def sqlite_relay(tmp_path: Path) -> Iterator[Relay]:
    yield from make_relay(tmp_path, "sqlite")


def test_no_table_of_the_file_holds_the_deleted_account(sqlite_relay: Relay, tmp_path: Path) -> None:
    """Every table SQLite lists (so a table added later is checked too): no row holds the
    account's id or its mailbox's id in any column, while Bob's rows are all there."""
    alice, _, alice_box = _full_account(sqlite_relay, "alice_1")
    bob, _, bob_box = _full_account(sqlite_relay, "bob_1")
    assert _delete_mailbox(sqlite_relay, alice_box).status_code == 204
    assert sqlite_relay.client.delete("/v1/accounts/me", headers=alice.headers).status_code == 204

    conn = sqlite3.connect(tmp_path / "data" / "relay.db")
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert {"accounts", "devices", "access_tokens", "mailboxes", "envelopes"} <= set(tables)

        def holding(needle: bytes) -> dict[str, int]:
            found: dict[str, int] = {}
            for table in tables:
                for row in conn.execute(f"SELECT * FROM {table}"):
                    if any(isinstance(v, bytes) and needle in v for v in row):
                        found[table] = found.get(table, 0) + 1
            return found

        assert holding(alice.account_id) == {}
        assert holding(alice_box.mailbox_id) == {}
        assert set(holding(bob.account_id)) >= {"accounts", "devices", "one_time_pre_keys", "kyber_pre_keys"}
        assert holding(bob_box.mailbox_id) == {"mailboxes": 1, "envelopes": 3}
    finally:
        conn.close()
