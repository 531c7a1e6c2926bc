"""The SQLite store's threads: reads beside the writer, and what each thread's connection does."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

from sotto.errors import RelayStorageError
from sotto.server.storage import SqliteStorage
from sotto.server.storage.base import MailboxId, MessageId, PutOutcome
from tests.server.storage.conftest import DAY, mailbox, sha

TOKEN = b"t" * 32


def test_a_read_in_progress_does_not_hold_sends_back(tmp_path: Path) -> None:
    # Truncations wait for the read in progress (they hold the read lock): only the first one,
    # after the first commit, comes in this test.
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=3_600)
    box = mailbox(token=TOKEN)
    release = threading.Event()
    seen: list[str] = []

    def slow_read(conn: sqlite3.Connection) -> int:
        seen.append(threading.current_thread().name)
        release.wait(30)
        return int(conn.execute("SELECT count(*) FROM envelopes").fetchone()[0])

    async def scenario() -> None:
        await store.create_mailbox(box)
        for _ in range(3_000):
            if store.checkpoints:
                break
            await asyncio.sleep(0.01)
        assert store.checkpoints, "no first checkpoint"
        reading = store._read(slow_read)
        mid = MailboxId(box.mailbox_id)
        sending = store.put_envelope(mid, sha(TOKEN), MessageId(os.urandom(16)), b"x" * 256, DAY)
        sent = await asyncio.wait_for(sending, 30)
        assert sent.outcome is PutOutcome.STORED and not reading.done()
        release.set()
        # Its snapshot begins at its first statement, after the send committed.
        assert await asyncio.wait_for(reading, 30) == 1
        pending = await store.pending(mid, 10)
        assert [e.message_id for e in pending] == [sent.envelope.message_id]  # type: ignore[union-attr]

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        store.close_sync()
    assert seen == ["sotto-relay-db-read"]
    assert not store._reader.is_alive()


def test_the_reader_cannot_write(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path)

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM mailboxes")

    async def scenario() -> None:
        try:
            await store._read(write)
        except RelayStorageError:
            return
        raise AssertionError("a write on the reader's connection went through")

    try:
        asyncio.run(scenario())
    finally:
        store.close_sync()
