"""Deleted means gone: once a delete has committed and the next checkpoint has truncated the
write-ahead log, no file of the data directory holds an acknowledged envelope's bytes or id.

The wait is on the storage's own progress (``checkpointed_commits``), never a guessed time."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from pathlib import Path

from sotto.server.storage import SqliteStorage
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId, PutOutcome
from sotto.wire.padding import BUCKETS
from tests.server.storage.conftest import DAY, mailbox, sha

TOKEN = b"t" * 32
SAMPLE = 16
STRIDE = 512
"""Samples of a payload every STRIDE bytes (and its last bytes): any fragment of it longer than
STRIDE + SAMPLE bytes left anywhere contains one."""


def samples(data: bytes) -> list[bytes]:
    return [data[i : i + SAMPLE] for i in range(0, len(data) - SAMPLE, STRIDE)] + [data[-SAMPLE:]]


def files_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def found(envelope: EnvelopeRecord, files: dict[str, bytes]) -> list[str]:
    """Names of the files holding the envelope's id or any sample of its payload."""
    needles = [envelope.message_id, *samples(envelope.payload)]
    return [name for name, data in files.items() if any(n in data for n in needles)]


async def mixed_run(
    store: SqliteStorage, rng: random.Random
) -> tuple[list[EnvelopeRecord], list[EnvelopeRecord]]:
    """Sends to several mailboxes, interleaved with acknowledgements of most of what is pending:
    (acknowledged, still pending)."""
    boxes = [mailbox(token=TOKEN) for _ in range(5)]
    for box in boxes:
        await store.create_mailbox(box)
    pending: list[EnvelopeRecord] = []
    acked: list[EnvelopeRecord] = []
    sizes = [*BUCKETS[:5], BUCKETS[-1]]  # small ones, and 64 KiB ones that take overflow pages
    for _ in range(8):
        sends = [
            store.put_envelope(
                MailboxId(rng.choice(boxes).mailbox_id),
                sha(TOKEN),
                MessageId(os.urandom(16)),
                os.urandom(rng.choice(sizes)),
                DAY,
            )
            for _ in range(16)
        ]
        for result in await asyncio.gather(*sends):
            assert result.outcome is PutOutcome.STORED and result.envelope is not None
            pending.append(result.envelope)
        rng.shuffle(pending)
        cut = len(pending) * 2 // 3
        done, pending = pending[:cut], pending[cut:]
        assert await store.delete_envelopes([e.ref for e in done]) == len(done)
        acked.extend(done)
    return acked, pending


def wait_checkpointed(store: SqliteStorage, commits: int) -> None:
    deadline = time.monotonic() + 60
    while store.checkpointed_commits < commits:
        assert time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.01)


def test_acknowledged_envelopes_are_in_no_file_after_the_checkpoint(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=0.2)
    try:
        acked, kept = asyncio.run(mixed_run(store, random.Random(12)))
        wait_checkpointed(store, store.commits)
        files = files_bytes(tmp_path)
        assert {e.message_id for e in acked}.isdisjoint(e.message_id for e in kept)
        assert all(found(e, files) for e in kept), "the search finds what is still pending"
        where = {e.message_id.hex()[:8]: found(e, files) for e in acked}
        leftovers = {k: v for k, v in where.items() if v}
        assert not leftovers, f"acknowledged envelopes still readable: {leftovers}"
        assert files.get("relay.db-wal", b"") == b""
    finally:
        store.close_sync()
    after_close = files_bytes(tmp_path)
    assert not any(found(e, after_close) for e in acked)
    assert set(after_close) == {"relay.db"}, "the log and its index go when the relay stops"


def test_the_log_keeps_deleted_envelopes_until_it_is_truncated(tmp_path: Path) -> None:
    """Why the checkpoint is needed (and that the search above can fail): secure_delete zeroes the
    database's pages, but the log keeps the page images written before the delete."""
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=3_600)  # only the one at start
    try:
        acked, _ = asyncio.run(mixed_run(store, random.Random(13)))
        files = files_bytes(tmp_path)
        assert any("relay.db-wal" in found(e, files) for e in acked)
        assert not any("relay.db" in found(e, files) for e in acked)  # secure_delete: not in the database
    finally:
        store.close_sync()


def test_no_planner_statistics_are_written(tmp_path: Path) -> None:
    """``PRAGMA optimize`` or ANALYZE would write sqlite_stat1 (row counts per index); an older
    relay's one is dropped at start."""
    store = SqliteStorage.in_dir(tmp_path)
    asyncio.run(mixed_run(store, random.Random(14)))
    store.close_sync()
    conn = sqlite3.connect(tmp_path / "relay.db")
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchall() == []
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    SqliteStorage.in_dir(tmp_path).close_sync()
    conn = sqlite3.connect(tmp_path / "relay.db")
    try:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%'").fetchall() == []
    finally:
        conn.close()
