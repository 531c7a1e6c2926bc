"""Every storage test runs against each backend: the in-memory reference, SQLite and PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (``SOTTO_TEST_POSTGRES`` names another): each test
gets a database of its own under a random name, dropped when the test ends, passed or not.
Statements and lock waits are bounded (``statement_timeout``, ``lock_timeout``), so a test that
hangs on the database fails instead."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from sotto.server.storage import MemoryStorage, PostgresStorage, SqliteStorage, Storage
from sotto.server.storage.base import (
    AccountId,
    AccountRecord,
    DeviceRecord,
    MailboxId,
    MailboxRecord,
    MessageId,
    OneTimePreKey,
    SignedKey,
)

T = TypeVar("T")
DAY = 20_000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


POSTGRES = os.environ.get("SOTTO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
"""The server (no database name): tests make their own databases on it."""
TIMEOUTS = "-c statement_timeout=20000 -c lock_timeout=10000"


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database under a random name; its ``postgresql://`` URL. Dropped on the way out, whatever
    happened (``WITH (FORCE)`` ends connections a failed test left open)."""
    name = f"sotto_test_{secrets.token_hex(8)}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield f"{POSTGRES}/{name}?options={urllib.parse.quote(TIMEOUTS)}"
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    if request.param == "postgresql":
        with postgres_database() as dsn:
            pg = PostgresStorage.open(dsn)
            try:
                yield pg
            finally:
                pg.close_sync()
        return
    store = SqliteStorage.in_dir(tmp_path)
    yield store
    store.close_sync()


def account_id() -> AccountId:
    return AccountId(os.urandom(16))


def mailbox_id() -> MailboxId:
    return MailboxId(os.urandom(16))


def message_id() -> MessageId:
    return MessageId(os.urandom(16))


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ec_key(n: int) -> bytes:
    return b"\x05" + n.to_bytes(4, "big") * 8


def kem_key(n: int) -> bytes:
    return b"\x08" + n.to_bytes(4, "big") * 392


def signature(n: int) -> bytes:
    return n.to_bytes(4, "big") * 16


def one_time(n: int) -> OneTimePreKey:
    return OneTimePreKey(n, ec_key(n))


def kyber(n: int) -> SignedKey:
    return SignedKey(n, kem_key(n), signature(n))


def signed(n: int) -> SignedKey:
    return SignedKey(n, ec_key(1000 + n), signature(n))


async def new_account(storage: Storage, day: int = DAY) -> tuple[AccountId, bytes]:
    aid = account_id()
    secret = os.urandom(32)
    assert await storage.create_account(
        AccountRecord(aid, ec_key(7), day), DeviceRecord(aid, 1, 1234, sha(secret))
    )
    return aid, secret


def mailbox(
    mid: MailboxId | None = None, token: bytes = b"t" * 32, day: int = DAY, ttl: int = 30
) -> MailboxRecord:
    return MailboxRecord(mid or mailbox_id(), b"k" * 32, sha(token), ttl, day + ttl)


Factory = Callable[[], Storage]
