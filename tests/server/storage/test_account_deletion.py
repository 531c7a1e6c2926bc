"""Deleting an account: every row about it goes in one transaction, on every backend; nothing
about another account does. The SQLite check enumerates the tables from ``sqlite_master``, so a
table added later that holds account ids is checked too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sotto.server.storage import SqliteStorage, Storage
from sotto.server.storage.base import AccountId, KeyUpload
from tests.server.storage.conftest import kyber, new_account, one_time, run, signed


def _upload() -> KeyUpload:
    return KeyUpload(
        signed_pre_key=signed(1),
        kyber_last_resort=kyber(100),
        one_time_pre_keys=(one_time(1), one_time(2)),
        kyber_pre_keys=(kyber(1), kyber(2)),
    )


async def _full_account(storage: Storage, username: bytes, token: bytes) -> tuple[AccountId, bytes]:
    aid, secret = await new_account(storage)
    assert await storage.set_username(aid, username) is not None
    assert (await storage.upload_keys(aid, 1, _upload())).value == "stored"
    assert await storage.add_access_token(aid, token, 30_000)
    return aid, secret


def test_delete_account_removes_every_row_and_frees_the_username(storage: Storage) -> None:
    async def body() -> None:
        alice, _ = await _full_account(storage, b"a" * 32, b"ta" * 16)
        bob, _ = await _full_account(storage, b"b" * 32, b"tb" * 16)
        before_bob = await storage.export_account(bob)

        assert await storage.delete_account(alice)

        assert await storage.get_account(alice) is None
        assert await storage.get_device(alice, 1) is None
        assert await storage.export_account(alice) == {}
        assert await storage.find_username(b"a" * 32) is None
        assert not await storage.has_access(alice, b"ta" * 16, 20_000)
        assert await storage.take_bundle(alice, b"ta" * 16, 20_000) is None
        # The name is free for anyone again; the other account is untouched.
        assert (await storage.set_username(bob, b"a" * 32)).value == "set"
        after_bob = await storage.export_account(bob)
        assert after_bob["devices"] == before_bob["devices"]
        assert after_bob["one_time_pre_keys"] == before_bob["one_time_pre_keys"]
        assert after_bob["access_tokens"] == before_bob["access_tokens"]

    run(body())


def test_delete_account_twice_or_unknown_is_false(storage: Storage) -> None:
    async def body() -> None:
        alice, _ = await new_account(storage)
        assert await storage.delete_account(alice)
        assert not await storage.delete_account(alice)
        assert await storage.get_account(alice) is None

    run(body())


def test_no_sqlite_table_holds_the_deleted_account(tmp_path: Path) -> None:
    """Every table of the file, listed from sqlite_master: none holds a row with the account's id
    in any column once it is deleted (the other account's rows are still there)."""
    directory = tmp_path
    storage = SqliteStorage.in_dir(directory)

    async def body() -> tuple[AccountId, AccountId]:
        alice, _ = await _full_account(storage, b"a" * 32, b"ta" * 16)
        bob, _ = await _full_account(storage, b"b" * 32, b"tb" * 16)
        assert await storage.delete_account(alice)
        return alice, bob

    try:
        alice, bob = run(body())
    finally:
        storage.close_sync()
    conn = sqlite3.connect(directory / "relay.db")
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert {"accounts", "devices", "one_time_pre_keys", "kyber_pre_keys", "access_tokens"} <= set(tables)
        held_by: dict[bytes, list[str]] = {alice: [], bob: []}
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                for account, found in held_by.items():
                    if any(isinstance(v, bytes) and account in v for v in row):
                        found.append(table)
        assert held_by[alice] == []
        assert {"accounts", "devices", "one_time_pre_keys", "kyber_pre_keys", "access_tokens"} <= set(
            held_by[bob]
        )
        # Nor in any byte of the file: the deleted rows were overwritten (secure_delete) and
        # the log was emptied by the checkpoint at close.
        raw = (directory / "relay.db").read_bytes()
        assert raw.find(alice) == -1
        assert raw.find(bob) >= 0
    finally:
        conn.close()
