"""Deleted means gone: once a delete has committed and the next checkpoint has truncated the
write-ahead log, no file of the data directory holds an acknowledged envelope's key, so no copy
of it can be read; and no file ever holds an envelope's id or payload in clear.

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
from sotto.server.storage.schema import TABLES
from sotto.server.storage.sqlite import id_tag
from sotto.wire.padding import BUCKETS
from tests.server.storage.conftest import DAY, mailbox, sha

TOKEN = b"t" * 32
SAMPLE = 16
STRIDE = 512
"""Samples of a payload every STRIDE bytes (and its last bytes): any fragment of it longer than
STRIDE + SAMPLE bytes left anywhere contains one."""

Run = tuple[list[EnvelopeRecord], list[EnvelopeRecord], dict[bytes, bytes]]


def samples(data: bytes) -> list[bytes]:
    return [data[i : i + SAMPLE] for i in range(0, len(data) - SAMPLE, STRIDE)] + [data[-SAMPLE:]]


def files_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def in_clear(envelope: EnvelopeRecord, files: dict[str, bytes]) -> list[str]:
    """Names of the files holding the envelope's id or any sample of its payload."""
    needles = [envelope.message_id, *samples(envelope.payload)]
    return [name for name, data in files.items() if any(n in data for n in needles)]


def holding(key: bytes, files: dict[str, bytes]) -> list[str]:
    return [name for name, data in files.items() if key in data]


def keys_of(store: SqliteStorage, envelopes: list[EnvelopeRecord]) -> dict[bytes, bytes]:
    """Message id -> the key its envelope is stored under, read beside the writer."""
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        return {
            e.message_id: conn.execute(
                "SELECT k.key FROM envelopes e JOIN envelope_keys k ON k.slot = e.key_slot "
                "WHERE e.mailbox_id = ? AND e.id_tag = ?",
                (e.mailbox_id, id_tag(e.mailbox_id, e.message_id)),
            ).fetchone()[0]
            for e in envelopes
        }
    finally:
        conn.close()  # a reader left open would hold the checkpoint back


async def mixed_run(store: SqliteStorage, rng: random.Random) -> Run:
    """Sends to several mailboxes, interleaved with acknowledgements of most of what is pending:
    (acknowledged, still pending, every envelope's key by message id)."""
    boxes = [mailbox(token=TOKEN) for _ in range(5)]
    for box in boxes:
        await store.create_mailbox(box)
    pending: list[EnvelopeRecord] = []
    acked: list[EnvelopeRecord] = []
    keys: dict[bytes, bytes] = {}
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
        stored = []
        for result in await asyncio.gather(*sends):
            assert result.outcome is PutOutcome.STORED and result.envelope is not None
            stored.append(result.envelope)
        keys.update(keys_of(store, stored))
        pending.extend(stored)
        rng.shuffle(pending)
        cut = len(pending) * 2 // 3
        done, pending = pending[:cut], pending[cut:]
        assert await store.delete_envelopes([e.ref for e in done]) == len(done)
        acked.extend(done)
    return acked, pending, keys


def wait_checkpointed(store: SqliteStorage, commits: int) -> None:
    deadline = time.monotonic() + 60
    while store.checkpointed_commits < commits:
        assert time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.01)


def test_acknowledged_envelopes_are_unreadable_in_every_file_after_the_checkpoint(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=0.2)
    try:
        acked, kept, keys = asyncio.run(mixed_run(store, random.Random(12)))
        wait_checkpointed(store, store.commits)
        files = files_bytes(tmp_path)
        assert not [e for e in acked + kept if in_clear(e, files)], "an id or payload stored in clear"
        assert all(holding(keys[e.message_id], files) for e in kept), "the search finds pending keys"
        where = {e.message_id.hex()[:8]: holding(keys[e.message_id], files) for e in acked}
        leftovers = {k: v for k, v in where.items() if v}
        assert not leftovers, f"keys of acknowledged envelopes still held: {leftovers}"
        assert files.get("relay.db-wal", b"") == b""
        # What is pending still reads back whole.
        pending = asyncio.run(store.pending(kept[0].mailbox_id, 1_000))
        assert {(e.message_id, e.payload) for e in pending} <= {(e.message_id, e.payload) for e in kept}
    finally:
        store.close_sync()
    after_close = files_bytes(tmp_path)
    assert not any(holding(keys[e.message_id], after_close) for e in acked)
    assert set(after_close) == {"relay.db"}, "the log and its index go when the relay stops"


def test_the_log_keeps_deleted_keys_until_it_is_truncated(tmp_path: Path) -> None:
    """Why the checkpoint is needed (and that the search above can fail): the database overwrites
    a deleted envelope's key in place, but the log keeps the page images written before."""
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=3_600)  # only the one at start
    try:
        # Without the log copier: it copies page images into relay.db four times a second, so the
        # file may hold a key deleted since its last copy until the next one.
        store._copier_stop.set()
        store._copier.join(30)
        acked, _, keys = asyncio.run(mixed_run(store, random.Random(13)))
        files = files_bytes(tmp_path)
        assert any("relay.db-wal" in holding(keys[e.message_id], files) for e in acked)
        assert not any("relay.db" in holding(keys[e.message_id], files) for e in acked)
    finally:
        store.close_sync()


def test_a_version_1_database_is_sealed_and_vacuumed(tmp_path: Path) -> None:
    """Envelopes an older relay stored in clear are encrypted at start and the file rewritten."""
    box = mailbox(token=TOKEN)
    clear, gone = os.urandom(1024), os.urandom(1024)
    conn = sqlite3.connect(tmp_path / "relay.db")
    conn.executescript(
        "CREATE TABLE envelopes (mailbox_id BLOB NOT NULL, seq INTEGER NOT NULL, message_id BLOB NOT NULL,"
        " received_day INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (mailbox_id, seq),"
        " UNIQUE (mailbox_id, message_id)) WITHOUT ROWID; PRAGMA user_version = 1;"
    )
    conn.execute(next(t for t in TABLES if "TABLE IF NOT EXISTS mailboxes" in t))
    conn.execute(
        "INSERT INTO mailboxes VALUES (?, ?, ?, ?, ?)",
        (box.mailbox_id, box.auth_key, box.token_hash, box.ttl_days, box.expires_day),
    )
    conn.execute("CREATE INDEX envelopes_by_day ON envelopes (received_day)")
    conn.execute("INSERT INTO envelopes VALUES (?, 1, ?, ?, ?)", (box.mailbox_id, b"i" * 16, DAY, gone))
    conn.execute("DELETE FROM envelopes")
    conn.execute("INSERT INTO envelopes VALUES (?, 2, ?, ?, ?)", (box.mailbox_id, b"j" * 16, DAY, clear))
    conn.commit()
    conn.close()
    store = SqliteStorage.in_dir(tmp_path)
    try:
        (envelope,) = asyncio.run(store.pending(MailboxId(box.mailbox_id), 10))
        assert (envelope.message_id, envelope.payload) == (b"j" * 16, clear)
        fresh = SqliteStorage.in_dir(tmp_path / "fresh")
        fresh.close_sync()
        assert store.schema() == fresh.schema()
    finally:
        store.close_sync()
    data = (tmp_path / "relay.db").read_bytes()
    assert clear[:64] not in data and gone[:64] not in data
    conn = sqlite3.connect(tmp_path / "relay.db")
    try:
        index = conn.execute("SELECT tbl_name FROM sqlite_master WHERE name = 'envelopes_by_day'").fetchone()
    finally:
        conn.close()
    assert index == ("envelopes",)


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


def test_the_log_copier_copies_and_asks_for_the_truncation(tmp_path: Path) -> None:
    """Pages are copied out of the log beside the writer (its own checkpoints on commit are
    off), and the truncating checkpoint comes at the copier's request, before the writer's own
    timer would make it."""
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=1.0)
    try:
        conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()
        asyncio.run(mixed_run(store, random.Random(3)))
        wait_checkpointed(store, store.commits)
        assert store.log_copies >= 1
        assert store.checkpoints >= 1 and (tmp_path / "relay.db-wal").stat().st_size == 0
        # Asked early: the copier asks at 3/4 of the interval, the writer's timer is at all of it.
        assert store.truncations_asked >= 1
    finally:
        store.close_sync()
    assert not store._copier.is_alive() and not store._thread.is_alive()


def test_the_writer_empties_the_log_by_itself_without_the_copier(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path, checkpoint_interval_s=0.2)
    try:
        store._copier_stop.set()
        store._copier.join(30)
        asked = store.truncations_asked
        acked, _, keys = asyncio.run(mixed_run(store, random.Random(4)))
        wait_checkpointed(store, store.commits)
        files = files_bytes(tmp_path)
        assert files.get("relay.db-wal", b"") == b""
        assert not any(holding(keys[e.message_id], files) for e in acked)
        assert store.truncations_asked == asked and store.checkpoints >= 1
    finally:
        store.close_sync()
