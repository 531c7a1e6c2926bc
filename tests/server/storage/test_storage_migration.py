"""A version 3 database, which dated the making of contacts, opened by this relay: the creation
days are dropped, the expiries moved to whole weeks, and the file rewritten so none is left; and
the daily rewrite that keeps rows from lying in the order they were made."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sotto.server.storage.base import (
    EXPIRY_STEP_DAYS,
    AccountId,
    KeyUpload,
    MailboxId,
    creation_week,
    drained_expiry,
    token_expiry,
)
from sotto.server.storage.schema import SCHEMA_VERSION
from sotto.server.storage.sqlite import SqliteStorage
from tests.server.storage.conftest import DAY, mailbox, new_account, one_time, sha, signed

MARK = 0x5A_17_C3_9E_44_B1
"""A creation day no relay would write, whose 6 bytes are easy to find in the file."""
MORE = 400
"""Mailboxes besides the two looked at, so the table spans many pages."""


def _version_3(path: Path) -> tuple[AccountId, MailboxId, MailboxId]:
    """A database as version 3 left it: devices and mailboxes with a ``created_day``, a mailbox
    never drained (expiry = creation + ttl, on any weekday), a token and an account on any day."""
    store = SqliteStorage.in_dir(path)
    undrained, drained = mailbox(), mailbox()

    async def fill() -> AccountId:
        aid, _ = await new_account(store, DAY + 3)
        await store.upload_keys(aid, 1, KeyUpload(signed(1), one_time_pre_keys=(one_time(1), one_time(2))))
        await store.add_access_token(aid, sha(b"token"), DAY + 9)
        for box in (undrained, drained, *(mailbox() for _ in range(MORE))):
            await store.create_mailbox(box)
        await store.touch_mailboxes([drained.mailbox_id], DAY + 1)
        return aid

    aid = asyncio.run(fill())
    store.close_sync()
    conn = sqlite3.connect(path / "relay.db")
    for table in ("devices", "mailboxes"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN created_day INTEGER NOT NULL DEFAULT 0")
        conn.execute(f"UPDATE {table} SET created_day = ?", (MARK,))
    conn.execute(
        "UPDATE mailboxes SET expires_day = ? WHERE mailbox_id = ?", (DAY + 30, undrained.mailbox_id)
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    return aid, undrained.mailbox_id, drained.mailbox_id


def test_version_3_is_undated_and_rewritten(tmp_path: Path) -> None:
    aid, undrained, drained = _version_3(tmp_path)
    assert (tmp_path / "relay.db").read_bytes().count(MARK.to_bytes(6, "big")) >= MORE  # it can fail
    before = _drained_expiry(tmp_path, drained)
    store = SqliteStorage.in_dir(tmp_path)
    try:
        fresh = SqliteStorage.in_dir(tmp_path / "fresh")
        fresh.close_sync()
        assert store.schema() == fresh.schema()
        held = asyncio.run(store.get_mailboxes([undrained, drained]))
        assert held[undrained].expires_day == drained_expiry(undrained, DAY, 30)
        assert held[drained].expires_day == before  # already on its weekday: unchanged
        account = asyncio.run(store.export_account(aid))
        assert account["accounts"][0]["created_day"] == creation_week(DAY + 3)
        assert account["access_tokens"][0]["expires_day"] == token_expiry(DAY + 9)
        assert asyncio.run(store.key_counts(aid, 1)).one_time == 2  # the rest is untouched
    finally:
        store.close_sync()
    conn = sqlite3.connect(tmp_path / "relay.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    finally:
        conn.close()
    for name in ("relay.db", "relay.db-wal"):
        file = tmp_path / name
        assert not file.exists() or MARK.to_bytes(6, "big") not in file.read_bytes(), name


def _drained_expiry(path: Path, mailbox_id: MailboxId) -> int:
    conn = sqlite3.connect(path / "relay.db")
    try:
        row = conn.execute("SELECT expires_day FROM mailboxes WHERE mailbox_id = ?", (mailbox_id,)).fetchone()
    finally:
        conn.close()
    expires: int = row[0]
    assert expires % EXPIRY_STEP_DAYS == drained_expiry(mailbox_id, DAY + 1, 30) % EXPIRY_STEP_DAYS
    return expires


def test_the_file_is_rewritten_once_a_day_at_the_first_sweep(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path)
    try:
        for day in (DAY, DAY, DAY + 1, DAY + 1, DAY):
            asyncio.run(store.sweep(day, 30))
        asyncio.run(store.get_mailboxes([]))  # queued behind the last rewrite
        assert store.compactions == 2
    finally:
        store.close_sync()
