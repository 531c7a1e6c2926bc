"""Every storage test runs against each backend: the in-memory reference and SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sotto.server.storage import MemoryStorage, SqliteStorage, Storage
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


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
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
