"""The embedded default: SQLite in WAL mode, driven by one writer thread with group commit.

Every operation is a function of a connection, queued to a dedicated thread that owns the only
connection. The thread takes whatever has queued up (at most ``batch_limit`` operations), runs
each inside its own SAVEPOINT of one transaction, commits once, and only then resolves the
callers' futures on their event loops: a caller is answered after its write is durable, many
writes share one commit, and the event loop never touches the disk.

Sends, the hottest path, skip the savepoint (each writes once, its insert) and share work within
a batch: a mailbox's row is read once for all the sends to it until another kind of operation
runs, and their envelope keys are written together (one ``executemany``) before the commit, or
before any other operation, which might read or zero those slots.

SQLite in WAL mode with ``synchronous=NORMAL`` keeps every committed transaction across a
process crash (only a power loss can cost the last commits).

Deleted means gone: ``secure_delete`` overwrites what a delete frees, in the table, its indexes
and free pages, but the write-ahead log still holds the page images written before the delete
(the envelope as it was stored). So whenever something was committed, at most every
``checkpoint_interval_s`` (2 s by default), the writer copies the log into the database and
truncates it to zero bytes (``wal_checkpoint(TRUNCATE)``): an acknowledged envelope's bytes are in
no file of the data directory a checkpoint interval after its delete commits, and the log, whose
frame order is the order of commits across all mailboxes, never holds more than that interval.

Order says nothing: tables are keyed by random ids, and after the first sweep of each day the
writer rewrites the file (``VACUUM``, see :meth:`SqliteStorage._compact`), so neither the order
of pages nor the place of a row in its page follows when rows were made, beyond the rows made
since that day's rewrite.

Quotas: the writer keeps, in memory, each mailbox's pending envelope count and bytes, and the
last ``seq`` it gave out (read from the table at start, kept by the operations that add and
delete envelopes), so a send's quota check and its ``seq`` cost no query; it also reads the
free space of the database's filesystem at most every ``DISK_CHECK_S`` while writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sotto.crypto.cipher import aes256_ctr_zero
from sotto.crypto.kdf import bytes_equal
from sotto.errors import RelayStorageError
from sotto.server.config import Quotas
from sotto.server.storage.base import (
    EXPIRY_STEP_DAYS,
    AccountId,
    AccountRecord,
    BundleRecord,
    CreateOutcome,
    DeviceBundleRecord,
    DeviceRecord,
    EnvelopeRecord,
    Export,
    ExportRow,
    KeyCounts,
    KeyUpload,
    MailboxId,
    MailboxRecord,
    MessageId,
    OneTimePreKey,
    PutOutcome,
    PutResult,
    SignedKey,
    SweepResult,
    UploadOutcome,
    UsernameOutcome,
    creation_week,
    drained_expiry,
    expiry_phase,
    token_expiry,
)
from sotto.server.storage.schema import PRAGMAS, SCHEMA_VERSION, TABLES

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

DB_FILENAME = "relay.db"


LINGER_S = 0.0002
"""How long the writer waits for a second operation when it is busy (group commit)."""
BUSY_S = 0.002
"""The writer counts as busy when its last batch ended less than this long ago."""
CHECKPOINT_S = 2.0
"""The default ``checkpoint_interval_s``."""
COPY_S = 0.25
"""How often the log copier copies committed pages from the log into the file."""
TRUNCATE_EARLY = 0.75
"""The log copier asks for the truncating checkpoint at this share of ``checkpoint_interval_s``
since the last one, just after a copy; the writer truncates by itself only if it was not asked."""
_TRUNCATE: Any = object()
"""In the writer's queue: empty the log now (put there by the log copier)."""
DISK_CHECK_S = 0.1
"""How stale the free-space reading may be while writes go on."""

_PENDING_SQL = (
    "SELECT mailbox_id, count(*), sum(length(sealed)) - count(*) * 16, max(seq) FROM envelopes "
    "GROUP BY mailbox_id"
)
KEY_BYTES = 32
SLOT_GROWTH = 64
"""Empty ``envelope_keys`` slots added at once when none is free, or as many as the table holds
(it doubles): the more slots a pick has to choose from, the less a slot says of when it was taken."""
_ZERO_KEY = bytes(KEY_BYTES)


def _draw_key() -> tuple[bytes, int]:
    """A fresh envelope key, and a random number to pick its slot with."""
    drawn = os.urandom(KEY_BYTES + _PICK_BYTES)
    return drawn[:KEY_BYTES], int.from_bytes(drawn[KEY_BYTES:], "big")


def id_tag(mailbox_id: bytes, message_id: bytes) -> bytes:
    """What the table keeps to find an envelope by id: a hash, so that a copy of a deleted row left
    in a page says nothing of its id to whoever does not already know it."""
    return hashlib.sha256(b"sotto-envelope-id" + mailbox_id + message_id).digest()[:16]


_TOUCH_SQL = (
    "UPDATE mailboxes SET expires_day = ?1 + ttl_days + ((?2 - (?1 + ttl_days)) % ?3 + ?3) % ?3"
    " WHERE mailbox_id = ?4 AND expires_day < ?1 + ttl_days + ((?2 - (?1 + ttl_days)) % ?3 + ?3) % ?3"
)
"""drained_expiry() in SQL (SQLite's % keeps the sign of the dividend, hence the + ?3); rows whose
expiry would not move are not written at all, which is most drains of a week."""


_PUT_LOOKUP_SQL = "SELECT token_hash, expires_day FROM mailboxes WHERE mailbox_id = ?"
"""A send's one read: the mailbox's token and expiry. The next sequence number is kept in memory
(``SqliteStorage._pending``), and a pending duplicate is found by the insert itself (or, when a
quota refuses the send, by :data:`_DUPLICATE_SQL`), so a missing mailbox and a wrong token cost
the same one-row lookup and one comparison."""
_KEY_SQL = "UPDATE envelope_keys SET key = ? WHERE slot = ?"
_DUPLICATE_SQL = "SELECT 1 FROM envelopes WHERE mailbox_id = ? AND id_tag = ?"
_INSERT_SQL = (
    "INSERT INTO envelopes (mailbox_id, seq, id_tag, received_day, key_slot, sealed) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mailbox_id, id_tag) DO NOTHING"
)
_NO_TOKEN_HASH = bytes(32)
"""Compared with when the mailbox is missing, so that both refusals do the same work."""
_PICK_BYTES = 8
"""Random bytes drawn with each envelope key to pick its slot (the bias of a 64-bit draw modulo
the number of free slots is below 2^-40 for any table this relay can hold)."""

_ACCOUNT_TABLES = ("one_time_pre_keys", "kyber_pre_keys", "access_tokens", "devices")
"""The tables beside ``accounts`` that hold rows keyed by an account id, deleted with it."""

_DELETE_CHUNK = 64
"""Most ids (or key slots) one delete statement names."""


def _in_size(count: int) -> int:
    """The size of the ``IN`` list for ``count`` values: a power of two, so that a handful of
    statement texts serve every batch (each text is prepared once and cached)."""
    return 1 << max(0, count - 1).bit_length()


def _padded(values: Sequence[T]) -> list[T]:
    """``values`` filled up to :func:`_in_size` by repeating the last (``IN`` ignores repeats)."""
    return [*values, *[values[-1]] * (_in_size(len(values)) - len(values))]


@functools.cache
def _delete_sql(count: int) -> str:
    marks = ", ".join("?" * _in_size(count))
    return (
        f"DELETE FROM envelopes WHERE mailbox_id = ? AND id_tag IN ({marks}) "  # noqa: S608 (marks only)
        "RETURNING key_slot, length(sealed) - 16"
    )


@functools.cache
def _zero_sql(count: int) -> str:
    marks = ", ".join("?" * _in_size(count))
    return f"UPDATE envelope_keys SET key = ? WHERE slot IN ({marks})"  # noqa: S608 (marks only)


_READ_SQL = (
    "SELECT e.seq, e.received_day, e.sealed, k.key FROM envelopes e "
    "JOIN envelope_keys k ON k.slot = e.key_slot WHERE e.mailbox_id = ? AND e.seq = ?"
)


class _Rollback(Exception):
    """Raised inside an operation to undo its writes and return ``result``."""

    def __init__(self, result: object) -> None:
        self.result = result


@dataclass(slots=True)
class _Job:
    operation: Operation[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    own_savepoint: bool
    """False for an operation that writes at most once, in its last statement, and raises nothing
    after it: if that statement fails SQLite undoes it alone, so the savepoint would only cost two
    statements on the hottest path."""
    send: bool = False
    """A send (:meth:`SqliteStorage.submit_envelope`): it may use the mailbox rows read earlier in
    the batch, and leave its key to be written with the others of the batch. Any other operation
    first has the keys written and the rows forgotten."""


_Read = tuple[Operation[Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
"""A read for the reader thread: the operation, and the loop and future to answer on."""


_Answers = list[tuple["asyncio.Future[Any]", object, BaseException | None]]


def _settle(batch: _Answers) -> None:
    for future, result, error in batch:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class SqliteStorage:
    """Storage in one SQLite file; use :meth:`open` to create it."""

    def __init__(
        self,
        path: Path,
        *,
        batch_limit: int = 512,
        linger_s: float = LINGER_S,
        quotas: Quotas | None = None,
        checkpoint_interval_s: float = CHECKPOINT_S,
    ) -> None:
        self.path = path
        self._batch_limit = batch_limit
        self._linger_s = linger_s
        self.quotas = quotas or Quotas()
        self._checkpoint_interval_s = checkpoint_interval_s
        # Owned by the writer thread: mailbox id -> [pending envelopes, their payload bytes, the
        # highest seq given out since the mailbox last had none pending].
        self._pending: dict[bytes, list[int]] = {}
        # Owned by the writer thread: envelope_keys slots holding no key, and the highest slot.
        self._free_slots: list[int] = []
        self._top_slot = 0
        # Owned by the writer thread, for the batch under way: (key, slot) of the sends stored so
        # far, written together before anything else reads or writes keys; and the mailbox rows
        # the sends have read (None for a missing mailbox).
        self._key_writes: list[tuple[bytes, int]] = []
        self._batch_mailboxes: dict[bytes, tuple[bytes, int] | None] = {}
        self._disk_low = False
        self._disk_checked = -float("inf")
        self._dirty = False
        """Commits since the last checkpoint."""
        self._checkpointed_at = -float("inf")
        self._compacted_day: int | None = None
        self._compact_due = False
        self.compactions = 0
        """Rewrites of the whole file (``VACUUM``), one a day at the first sweep of the day."""
        self.checkpoints = 0
        """Checkpoints that truncated the log."""
        self.checkpointed_commits = 0
        """``commits`` as it was at the last truncating checkpoint: every commit up to it is out of
        the log (tests wait on this instead of a guessed time)."""
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closed = False
        self.commits = 0
        """Transactions committed: fewer than operations when group commit is at work."""
        self._thread = threading.Thread(target=self._run, name="sotto-relay-db", daemon=True)
        self._copier = threading.Thread(target=self._copy_log, name="sotto-relay-db-log", daemon=True)
        self._copier_stop = threading.Event()
        self._reads: queue.SimpleQueue[
            tuple[Operation[Any], asyncio.AbstractEventLoop, asyncio.Future[Any]] | None
        ]
        self._reads = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read_loop, name="sotto-relay-db-read", daemon=True)
        self._read_lock = threading.Lock()
        """Held by the reader through each read, and by the writer through a truncating
        checkpoint: the truncation waits for one read at most, and no read starts during it."""
        self._truncate_asked = False
        self.log_copies = 0
        """Passive checkpoints the log copier made (copied pages, writer not held up)."""
        self.truncations_asked = 0
        """Truncating checkpoints the log copier asked the writer for."""

    @classmethod
    def open(cls, path: Path, **kwargs: Any) -> SqliteStorage:
        """Open (creating if needed) the database at ``path`` and start its writer thread;
        ``kwargs`` as for the constructor."""
        storage = cls(path, **kwargs)
        storage._thread.start()
        storage._ready.wait()
        if storage._startup_error is not None:
            raise RelayStorageError(f"cannot open the database: {type(storage._startup_error).__name__}")
        storage._copier.start()
        storage._reader.start()
        return storage

    @classmethod
    def in_dir(cls, data_dir: Path, **kwargs: Any) -> SqliteStorage:
        return cls.open(data_dir / DB_FILENAME, **kwargs)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._stop_threads)

    def close_sync(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop_threads()

    def _stop_threads(self) -> None:
        self._copier_stop.set()
        if self._copier.is_alive():
            self._copier.join()
        if self._reader.is_alive():
            self._reads.put(None)
            self._reader.join()
        self._jobs.put(None)
        self._thread.join()

    # ------------------------------------------------------------------ the reader thread
    def _read(self, operation: Operation[T]) -> asyncio.Future[T]:
        """Run ``operation`` (reads only) on the reader thread's connection, in a read
        transaction of its own: it sees what was committed when it starts, and the writer's
        queue does not wait for it (a poll's half a megabyte, or sixty of them, once held every
        send back). Without the reader (a store driven inline), as any other operation."""
        if not self._reader.is_alive():
            return self._submit(operation, savepoint=False)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:
            future.set_exception(RelayStorageError("storage is closed"))
        else:
            self._reads.put((operation, loop, future))
        return future

    def _read_loop(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.Error as exc:
            failed: BaseException = RelayStorageError(f"database error: {type(exc).__name__}")
            while (item := self._reads.get()) is not None:
                answer: list[tuple[asyncio.Future[Any], object, BaseException | None]] = [
                    (item[2], None, failed)
                ]
                with contextlib.suppress(RuntimeError):
                    item[1].call_soon_threadsafe(_settle, answer)
            return
        try:
            while (item := self._reads.get()) is not None:
                operation, loop, future = item
                result: object = None
                error: BaseException | None = None
                with self._read_lock:
                    try:
                        conn.execute("BEGIN")
                        try:
                            result = operation(conn)
                        finally:
                            conn.execute("COMMIT")
                    except Exception as exc:
                        error = _as_storage_error(exc)
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(_settle, [(future, result, error)])
        finally:
            conn.close()

    # ------------------------------------------------------------------ the log copier thread
    def _copy_log(self) -> None:
        """Copy committed pages from the log into the file every :data:`COPY_S`, on a connection
        of its own (a passive checkpoint: the writer goes on meanwhile). The writer's truncating
        checkpoint, which holds it up while it runs, then has little left to copy. The writer
        keeps SQLite's automatic checkpoint on commit (at 1,000 pages of log): only a checkpoint
        that finds nothing committed after it lets the next write start the log from its
        beginning again, and the copier, running beside the writer, never does; without it the
        log grew to 62 MB between truncations instead of 4 MB."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True, timeout=0)
        except sqlite3.Error:
            return  # the writer's own checkpoints still empty the log
        try:
            copied = self.commits
            while not self._copier_stop.wait(COPY_S):
                commits = self.commits
                if commits != copied:
                    with contextlib.suppress(sqlite3.Error):  # busy: the writer is checkpointing
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        copied = commits
                        self.log_copies += 1
                # The truncating checkpoint a little before the writer's own is due, right after a
                # copy, so it finds little left to copy.
                due = self._checkpointed_at + TRUNCATE_EARLY * self._checkpoint_interval_s
                if self._dirty and not self._truncate_asked and time.monotonic() >= due:
                    self._truncate_asked = True
                    self.truncations_asked += 1
                    self._jobs.put(_TRUNCATE)
        finally:
            conn.close()

    # ------------------------------------------------------------------ the writer thread
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        if fresh:  # created 0600 before SQLite opens it, so it never exists world-readable
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        if conn.execute("PRAGMA secure_delete").fetchone()[0] != 1:
            raise RuntimeError("SQLite refused secure_delete")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError("database schema is newer than this server")
        conn.execute("BEGIN IMMEDIATE")
        migrate = 0 < version < 2
        if migrate:
            conn.execute("ALTER TABLE envelopes RENAME TO envelopes_v1")
        for statement in TABLES:
            conn.execute(statement)
        if migrate:
            self._migrate_v1(conn)
            for statement in TABLES:  # the indexes went with the old table
                conn.execute(statement)
        if 0 < version < 3:
            _rekey_access_tokens(conn)
        undate = 0 < version < 4
        if undate:
            _undate(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # Planner statistics (row counts per index) from an older relay's ANALYZE: never needed,
        # every query is a key lookup, and they are data about the data.
        conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
        conn.execute("COMMIT")
        if migrate or undate:
            # The v1 rows held ids and payloads in clear, the v3 rows creation days: rewrite the
            # whole file, so no old row is left in a free page or a page's unused space.
            conn.execute("VACUUM")
        self._load_pending(conn)
        self._load_slots(conn)
        self._check_disk(time.monotonic())
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return conn

    def _migrate_v1(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            "SELECT mailbox_id, seq, message_id, received_day, payload FROM envelopes_v1"
        ).fetchall()
        self._load_slots(conn)
        for mailbox_id, seq, message_id, day, payload in rows:
            key, pick = _draw_key()
            conn.execute(
                "INSERT INTO envelopes (mailbox_id, seq, id_tag, received_day, key_slot, sealed) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    mailbox_id,
                    seq,
                    id_tag(mailbox_id, message_id),
                    day,
                    slot := self._take_slot(conn, pick),
                    aes256_ctr_zero(key, message_id + payload),
                ),
            )
            conn.execute(_KEY_SQL, (key, slot))
        conn.execute("DROP TABLE envelopes_v1")

    def _load_slots(self, conn: sqlite3.Connection) -> None:
        self._top_slot = conn.execute("SELECT coalesce(max(slot), 0) FROM envelope_keys").fetchone()[0]
        used = {r[0] for r in conn.execute("SELECT key_slot FROM envelopes")}
        self._free_slots = [
            r[0]
            for r in conn.execute("SELECT slot FROM envelope_keys ORDER BY slot DESC")
            if r[0] not in used
        ]

    def _take_slot(self, conn: sqlite3.Connection, pick: int) -> int:
        """Take a free slot chosen at random for a new key (the caller writes the key).

        At random, so that slot numbers do not follow the order envelopes arrived in (the next
        slot up, or the one freed last, would put envelopes stored one after the other, such as a
        contact request and its answer, side by side). With no slot free, the table first doubles
        with empty slots (zero keys), of which one is picked like any other; so while the table
        grows, a slot still says roughly how large it was when taken. ``pick`` is a uniformly
        random 64-bit number (drawn with the key, :func:`_draw_key`: one system call for both)."""
        free = self._free_slots
        if not free:
            first, count = self._top_slot + 1, max(SLOT_GROWTH, self._top_slot)
            new = range(first, first + count)
            conn.executemany(
                "INSERT INTO envelope_keys (slot, key) VALUES (?, ?)", [(s, _ZERO_KEY) for s in new]
            )
            self._top_slot = first + count - 1
            free.extend(new)
        pick %= len(free)
        free[pick], free[-1] = free[-1], free[pick]
        return free.pop()

    def _write_keys(self, conn: sqlite3.Connection) -> None:
        """Write the keys of the batch's sends so far into their slots (same size, in place)."""
        keys = self._key_writes
        if keys:
            self._key_writes = []
            conn.executemany(_KEY_SQL, keys)

    def _zero_slots(self, conn: sqlite3.Connection, slots: Sequence[int]) -> None:
        """Overwrite the keys of deleted envelopes in place (same size: SQLite leaves no copy)."""
        for start in range(0, len(slots), _DELETE_CHUNK):
            chunk = slots[start : start + _DELETE_CHUNK]
            conn.execute(_zero_sql(len(chunk)), (_ZERO_KEY, *_padded(chunk)))

    # ------------------------------------------------------------------ writer-thread bookkeeping
    def _load_pending(self, conn: sqlite3.Connection) -> None:
        self._pending = {bytes(m): [n, size, top] for m, n, size, top in conn.execute(_PENDING_SQL)}

    def _forget(self, mailbox_id: bytes, count: int, size: int) -> None:
        held = self._pending.get(mailbox_id)
        if held is not None:
            held[0] -= count
            held[1] -= size
            if held[0] <= 0:
                del self._pending[mailbox_id]

    def _check_disk(self, now: float) -> None:
        self._disk_checked = now
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return
        self._disk_low = fs.f_bavail * fs.f_frsize < self.quotas.min_free_disk_bytes

    def _idle_timeout(self) -> float | None:
        """How long the writer may wait for work before the log is due for a checkpoint."""
        if not self._dirty:
            return None
        return max(0.0, self._checkpointed_at + self._checkpoint_interval_s - time.monotonic())

    def _maintain(self, conn: sqlite3.Connection) -> None:
        """Between batches: rewrite the file when due, truncate the log when due, refresh the
        free-space reading."""
        if self._compact_due:
            self._compact(conn)
        now = time.monotonic()
        if self._dirty and now - self._checkpointed_at >= self._checkpoint_interval_s:
            self._truncate_log(conn, now)
        if now - self._disk_checked >= DISK_CHECK_S:
            self._check_disk(now)

    def _truncate_log(self, conn: sqlite3.Connection, now: float) -> None:
        """Empty the log (a truncating checkpoint; writes wait until it is done)."""
        self._checkpointed_at = now
        self._truncate_asked = False
        commits = self.commits
        try:
            with self._read_lock:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        if not busy:  # else a reader held an old snapshot: retried next interval
            self._dirty = False
            self.checkpoints += 1
            self.checkpointed_commits = commits

    def _compact(self, conn: sqlite3.Connection) -> None:
        """Rewrite the whole file in key order (``VACUUM``), then empty the log.

        SQLite fills a page's cells from its end towards its start in the order rows arrive, and
        keeps them there until the page is rebalanced: in the live file, the rows of one page lie
        in the order they were made, and a contact's two mailboxes, made minutes apart, lie side
        by side. A rewrite lays every page out in key order, and keys are random, so once a day
        that order is gone; rows made since the last rewrite still lie in the order they came.
        Skipped when short of disk (a rewrite needs the file's size again, in the log)."""
        self._compact_due = False
        if self._disk_low:
            return
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            return
        self.compactions += 1

    def low_on_disk(self) -> bool:
        return self._disk_low

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported by open()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stop = False
            finished = 0.0
            while not stop:
                try:
                    first = self._jobs.get(timeout=self._idle_timeout())
                except queue.Empty:
                    self._maintain(conn)
                    continue
                if first is None:
                    break
                if first is _TRUNCATE:
                    self._truncate_log(conn, time.monotonic())
                    continue
                jobs = [first]
                # Busy (the last batch ended moments ago): wait a little for company, so one
                # commit and one wake-up of the event loop serve several operations.
                linger = self._linger_s if time.monotonic() - finished < BUSY_S else 0.0
                while len(jobs) < self._batch_limit:
                    try:
                        job = (
                            self._jobs.get(timeout=linger)
                            if linger and len(jobs) == 1
                            else self._jobs.get_nowait()
                        )
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    if job is _TRUNCATE:  # after this batch
                        self._checkpointed_at = -float("inf")
                        break
                    jobs.append(job)
                self._run_batch(conn, jobs)
                self._maintain(conn)
                finished = time.monotonic()
        finally:
            # No PRAGMA optimize: it would write sqlite_stat1 (row counts) into the file.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        outcomes: list[tuple[_Job, object, BaseException | None]] = []
        self._batch_mailboxes.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if not job.send:
                    self._write_keys(conn)
                    self._batch_mailboxes.clear()
                if not job.own_savepoint:
                    try:
                        outcomes.append((job, job.operation(conn), None))
                    except Exception as exc:
                        if isinstance(exc, sqlite3.Error) and not conn.in_transaction:
                            raise  # SQLite gave up the whole transaction: the batch fails
                        outcomes.append((job, None, _as_storage_error(exc)))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    result = job.operation(conn)
                except _Rollback as undo:
                    conn.execute("ROLLBACK TO op")
                    outcomes.append((job, undo.result, None))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    outcomes.append((job, None, _as_storage_error(exc)))
                else:
                    outcomes.append((job, result, None))
                conn.execute("RELEASE op")
            self._write_keys(conn)
            conn.execute("COMMIT")
            self.commits += 1
            self._dirty = True
        except sqlite3.Error as exc:
            self._key_writes = []
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):  # the operations' bookkeeping was undone too
                self._load_pending(conn)
                self._load_slots(conn)
            failed = RelayStorageError(f"database error: {type(exc).__name__}")
            outcomes = [(job, None, failed) for job in jobs]
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object, BaseException | None]]
        ]
        by_loop = {}
        for job, result, error in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, result, error))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, batch)

    async def _call(self, operation: Operation[T], *, savepoint: bool = True) -> T:
        return await self._submit(operation, savepoint=savepoint)

    def _submit(
        self, operation: Operation[T], *, savepoint: bool = True, send: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``operation`` for the writer thread; the future resolves after its commit.
        ``savepoint=False`` only for an operation that writes at most once, in its last statement
        (see :attr:`_Job.own_savepoint`); ``send`` only for a send (:attr:`_Job.send`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:
            future.set_exception(RelayStorageError("storage is closed"))
        else:
            self._jobs.put(_Job(operation, loop, future, savepoint, send))
        return future

    # ------------------------------------------------------------------ accounts
    async def create_account(self, account: AccountRecord, device: DeviceRecord) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            inserted = conn.execute(
                "INSERT INTO accounts (account_id, identity_key, created_day) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (account.account_id, account.identity_key, account.created_day),
            ).rowcount
            if not inserted:
                return False
            conn.execute(
                "INSERT INTO devices (account_id, device_id, registration_id, secret_hash) "
                "VALUES (?, ?, ?, ?)",
                (device.account_id, device.device_id, device.registration_id, device.secret_hash),
            )
            return True

        return await self._call(op)

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        def op(conn: sqlite3.Connection) -> AccountRecord | None:
            row = conn.execute(
                "SELECT identity_key, created_day FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
            return AccountRecord(account_id, row[0], row[1]) if row else None

        return await self._call(op)

    async def get_device(self, account_id: AccountId, device_id: int) -> DeviceRecord | None:
        def op(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                "SELECT registration_id, secret_hash FROM devices WHERE account_id = ? AND device_id = ?",
                (account_id, device_id),
            ).fetchone()
            return DeviceRecord(account_id, device_id, row[0], row[1]) if row else None

        return await self._call(op)

    async def set_username(self, account_id: AccountId, username_hash: bytes) -> UsernameOutcome:
        def op(conn: sqlite3.Connection) -> UsernameOutcome:
            owner = conn.execute("SELECT account_id FROM accounts WHERE username_hash = ?", (username_hash,))
            row = owner.fetchone()
            if row is not None and row[0] != account_id:
                return UsernameOutcome.TAKEN
            conn.execute(
                "UPDATE accounts SET username_hash = ? WHERE account_id = ?", (username_hash, account_id)
            )
            return UsernameOutcome.SET

        return await self._call(op)

    async def clear_username(self, account_id: AccountId) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE accounts SET username_hash = NULL WHERE account_id = ?", (account_id,))

        await self._call(op)

    async def find_username(self, username_hash: bytes) -> AccountId | None:
        def op(conn: sqlite3.Connection) -> AccountId | None:
            row = conn.execute(
                "SELECT account_id FROM accounts WHERE username_hash = ?", (username_hash,)
            ).fetchone()
            return AccountId(row[0]) if row else None

        return await self._call(op)

    async def delete_account(self, account_id: AccountId) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            # Each table by name rather than through the cascades alone, so that a table added
            # later without its cascade is not silently left holding rows.
            for table in _ACCOUNT_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))  # noqa: S608
            return conn.execute("DELETE FROM accounts WHERE account_id = ?", (account_id,)).rowcount > 0

        return await self._call(op)

    # ------------------------------------------------------------------ prekeys
    async def upload_keys(self, account_id: AccountId, device_id: int, upload: KeyUpload) -> UploadOutcome:
        def op(conn: sqlite3.Connection) -> UploadOutcome:
            where = (account_id, device_id)
            device = conn.execute(
                "SELECT signed_pre_key_id, signed_pre_key, signed_pre_key_signature, kyber_last_resort_id, "
                "kyber_last_resort, kyber_last_resort_signature, one_time_floor, kyber_floor "
                "FROM devices WHERE account_id = ? AND device_id = ?",
                where,
            ).fetchone()
            held_spk = SignedKey(device[0], device[1], device[2]) if device[0] is not None else None
            held_lr = SignedKey(device[3], device[4], device[5]) if device[3] is not None else None
            one_time_floor, kyber_floor = device[6], device[7]
            spk, lr = upload.signed_pre_key, upload.kyber_last_resort
            if (spk and held_spk and spk.key_id == held_spk.key_id and spk != held_spk) or (
                lr and held_lr and lr.key_id == held_lr.key_id and lr != held_lr
            ):
                return UploadOutcome.CONFLICT
            if spk:
                conn.execute(
                    "UPDATE devices SET signed_pre_key_id = ?, signed_pre_key = ?, "
                    "signed_pre_key_signature = ? "
                    "WHERE account_id = ? AND device_id = ?",
                    (spk.key_id, spk.public_key, spk.signature, *where),
                )
            if lr:
                conn.execute(
                    "UPDATE devices SET kyber_last_resort_id = ?, kyber_last_resort = ?, "
                    "kyber_last_resort_signature = ? WHERE account_id = ? AND device_id = ?",
                    (lr.key_id, lr.public_key, lr.signature, *where),
                )
            for key in upload.one_time_pre_keys:
                if key.key_id <= one_time_floor:
                    continue
                conn.execute(
                    "INSERT INTO one_time_pre_keys (account_id, device_id, key_id, public_key) "
                    "VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (*where, key.key_id, key.public_key),
                )
                held = conn.execute(
                    "SELECT public_key FROM one_time_pre_keys "
                    "WHERE account_id = ? AND device_id = ? AND key_id = ?",
                    (*where, key.key_id),
                ).fetchone()
                if not bytes_equal(held[0], key.public_key):
                    raise _Rollback(UploadOutcome.CONFLICT)
            for kyber in upload.kyber_pre_keys:
                if kyber.key_id <= kyber_floor:
                    continue
                conn.execute(
                    "INSERT INTO kyber_pre_keys (account_id, device_id, key_id, public_key, signature) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (*where, kyber.key_id, kyber.public_key, kyber.signature),
                )
                held = conn.execute(
                    "SELECT public_key, signature FROM kyber_pre_keys "
                    "WHERE account_id = ? AND device_id = ? AND key_id = ?",
                    (*where, kyber.key_id),
                ).fetchone()
                if (held[0], held[1]) != (kyber.public_key, kyber.signature):
                    raise _Rollback(UploadOutcome.CONFLICT)
            for table, wrote, quota in (
                ("one_time_pre_keys", upload.one_time_pre_keys, self.quotas.device_one_time_pre_keys),
                ("kyber_pre_keys", upload.kyber_pre_keys, self.quotas.device_kyber_pre_keys),
            ):
                if wrote and _count(conn, table, "account_id = ? AND device_id = ?", *where) > quota:
                    raise _Rollback(UploadOutcome.OVER_QUOTA)
            return UploadOutcome.STORED

        return await self._call(op)

    async def key_counts(self, account_id: AccountId, device_id: int) -> KeyCounts:
        def op(conn: sqlite3.Connection) -> KeyCounts:
            where = (account_id, device_id)
            ec = conn.execute(
                "SELECT count(*) FROM one_time_pre_keys WHERE account_id = ? AND device_id = ?", where
            ).fetchone()[0]
            kyber = conn.execute(
                "SELECT count(*) FROM kyber_pre_keys WHERE account_id = ? AND device_id = ?", where
            ).fetchone()[0]
            return KeyCounts(one_time=ec, kyber=kyber)

        return await self._call(op)

    async def add_access_token(self, account_id: AccountId, token_hash: bytes, expires_day: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO access_tokens (token_hash, account_id, expires_day) VALUES (?, ?, ?) "
                "ON CONFLICT (token_hash) DO UPDATE SET account_id = excluded.account_id, "
                "expires_day = excluded.expires_day",
                (token_hash, account_id, expires_day),
            )
            if (
                _count(conn, "access_tokens", "account_id = ?", account_id)
                > self.quotas.account_access_tokens
            ):
                raise _Rollback(False)
            return True

        return await self._call(op)

    async def delete_access_token(self, account_id: AccountId, token_hash: bytes) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM access_tokens WHERE token_hash = ? AND account_id = ?", (token_hash, account_id)
            )

        await self._call(op)

    async def has_access(self, account_id: AccountId, token_hash: bytes, today: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM access_tokens WHERE token_hash = ? AND account_id = ? AND expires_day > ?",
                (token_hash, account_id, today),
            ).fetchone()
            return row is not None

        return await self._call(op)

    async def take_bundle(self, account_id: AccountId, token_hash: bytes, today: int) -> BundleRecord | None:
        def op(conn: sqlite3.Connection) -> BundleRecord | None:
            row = conn.execute(
                "SELECT a.identity_key FROM access_tokens t JOIN accounts a ON a.account_id = t.account_id "
                "WHERE t.token_hash = ? AND t.account_id = ? AND t.expires_day > ?",
                (token_hash, account_id, today),
            ).fetchone()
            if row is None:
                return None
            identity_key = row[0]
            devices = []
            rows = conn.execute(
                "SELECT device_id, registration_id, signed_pre_key_id, signed_pre_key, "
                "signed_pre_key_signature, "
                "kyber_last_resort_id, kyber_last_resort, kyber_last_resort_signature FROM devices "
                "WHERE account_id = ? AND signed_pre_key_id IS NOT NULL ORDER BY device_id",
                (account_id,),
            ).fetchall()
            for device_id, registration_id, spk_id, spk, spk_sig, lr_id, lr, lr_sig in rows:
                where = (account_id, device_id)
                ec = conn.execute(
                    "SELECT key_id, public_key FROM one_time_pre_keys WHERE account_id = ? AND device_id = ? "
                    "ORDER BY key_id LIMIT 1",
                    where,
                ).fetchone()
                kyber_row = conn.execute(
                    "SELECT key_id, public_key, signature FROM kyber_pre_keys "
                    "WHERE account_id = ? AND device_id = ? ORDER BY key_id LIMIT 1",
                    where,
                ).fetchone()
                if kyber_row is None and lr_id is None:
                    continue
                pre_key = None
                if ec is not None:
                    pre_key = OneTimePreKey(ec[0], ec[1])
                    conn.execute(
                        "DELETE FROM one_time_pre_keys WHERE account_id = ? AND device_id = ? AND key_id = ?",
                        (*where, ec[0]),
                    )
                    conn.execute(
                        "UPDATE devices SET one_time_floor = max(one_time_floor, ?) "
                        "WHERE account_id = ? AND device_id = ?",
                        (ec[0], *where),
                    )
                if kyber_row is not None:
                    kyber = SignedKey(kyber_row[0], kyber_row[1], kyber_row[2])
                    conn.execute(
                        "DELETE FROM kyber_pre_keys WHERE account_id = ? AND device_id = ? AND key_id = ?",
                        (*where, kyber.key_id),
                    )
                    conn.execute(
                        "UPDATE devices SET kyber_floor = max(kyber_floor, ?) "
                        "WHERE account_id = ? AND device_id = ?",
                        (kyber.key_id, *where),
                    )
                else:
                    kyber = SignedKey(lr_id, lr, lr_sig)
                devices.append(
                    DeviceBundleRecord(
                        device_id, registration_id, SignedKey(spk_id, spk, spk_sig), kyber, pre_key
                    )
                )
            return BundleRecord(identity_key, tuple(devices))

        return await self._call(op)

    async def export_account(self, account_id: AccountId) -> Export:
        def op(conn: sqlite3.Connection) -> Export:
            if conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone() is None:
                return {}
            return {
                "accounts": _rows(conn, "SELECT * FROM accounts WHERE account_id = ?", account_id),
                "devices": _rows(
                    conn, "SELECT * FROM devices WHERE account_id = ? ORDER BY device_id", account_id
                ),
                "one_time_pre_keys": _rows(
                    conn,
                    "SELECT * FROM one_time_pre_keys WHERE account_id = ? ORDER BY device_id, key_id",
                    account_id,
                ),
                "kyber_pre_keys": _rows(
                    conn,
                    "SELECT * FROM kyber_pre_keys WHERE account_id = ? ORDER BY device_id, key_id",
                    account_id,
                ),
                "access_tokens": _rows(
                    conn, "SELECT * FROM access_tokens WHERE account_id = ? ORDER BY token_hash", account_id
                ),
            }

        return await self._call(op)

    # ------------------------------------------------------------------ mailboxes
    async def create_mailbox(self, mailbox: MailboxRecord) -> CreateOutcome:
        def op(conn: sqlite3.Connection) -> CreateOutcome:
            inserted = conn.execute(
                "INSERT INTO mailboxes (mailbox_id, auth_key, token_hash, ttl_days, expires_day) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    mailbox.mailbox_id,
                    mailbox.auth_key,
                    mailbox.token_hash,
                    mailbox.ttl_days,
                    mailbox.expires_day,
                ),
            ).rowcount
            if inserted:
                return CreateOutcome.CREATED
            held = _mailbox(conn, mailbox.mailbox_id)
            return (
                CreateOutcome.EXISTS
                if held is not None and held.same_keys(mailbox)
                else CreateOutcome.CONFLICT
            )

        return await self._call(op)

    async def get_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> Mapping[MailboxId, MailboxRecord]:
        def op(conn: sqlite3.Connection) -> Mapping[MailboxId, MailboxRecord]:
            found = {}
            for mailbox_id in mailbox_ids:
                held = _mailbox(conn, mailbox_id)
                if held is not None:
                    found[mailbox_id] = held
            return found

        return await self._call(op)

    async def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId], today: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_TOUCH_SQL, [(today, expiry_phase(m), EXPIRY_STEP_DAYS, m) for m in mailbox_ids])

        await self._call(op)

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        def op(conn: sqlite3.Connection) -> None:
            slots = self._delete_where(conn, "mailbox_id = ?", mailbox_id)
            conn.execute("DELETE FROM mailboxes WHERE mailbox_id = ?", (mailbox_id,))
            self._free_slots.extend(slots)
            self._pending.pop(mailbox_id, None)

        await self._call(op)

    async def put_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> PutResult:
        return await self.submit_envelope(mailbox_id, token_hash, message_id, payload, today)

    def submit_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> asyncio.Future[PutResult]:
        def op(conn: sqlite3.Connection) -> PutResult:
            mailboxes = self._batch_mailboxes
            if mailbox_id in mailboxes:
                row = mailboxes[mailbox_id]
            else:
                row = mailboxes[mailbox_id] = conn.execute(_PUT_LOOKUP_SQL, (mailbox_id,)).fetchone()
            matches = bytes_equal(_NO_TOKEN_HASH if row is None else row[0], token_hash)
            if row is None or row[1] <= today or not matches:
                return PutResult(PutOutcome.NOT_FOUND)
            tag = id_tag(mailbox_id, message_id)
            held = self._pending.get(mailbox_id)
            refused = (
                PutOutcome.RELAY_FULL
                if self._disk_low
                else PutOutcome.MAILBOX_FULL
                if (0 if held is None else held[1]) + len(payload) > self.quotas.mailbox_bytes
                or (held is not None and held[0] >= self.quotas.mailbox_envelopes)
                else None
            )
            if refused is not None:
                # A retry of what is already stored is answered as such, full or not.
                if conn.execute(_DUPLICATE_SQL, (mailbox_id, tag)).fetchone() is not None:
                    return PutResult(PutOutcome.DUPLICATE)
                return PutResult(refused)
            seq = 1 if held is None else held[2] + 1
            key, pick = _draw_key()
            sealed = aes256_ctr_zero(key, message_id + payload)
            slot = self._take_slot(conn, pick)
            try:
                stored = conn.execute(_INSERT_SQL, (mailbox_id, seq, tag, today, slot, sealed)).rowcount
            except BaseException:
                self._free_slots.append(slot)
                raise
            if not stored:  # the id is pending already
                self._free_slots.append(slot)
                return PutResult(PutOutcome.DUPLICATE)
            self._key_writes.append((key, slot))
            if held is None:
                self._pending[mailbox_id] = [1, len(payload), seq]
            else:
                held[0] += 1
                held[1] += len(payload)
                held[2] = seq
            return PutResult(
                PutOutcome.STORED, EnvelopeRecord(mailbox_id, message_id, seq, today, bytes(payload))
            )

        return self._submit(op, savepoint=False, send=True)

    async def pending(
        self,
        mailbox_id: MailboxId,
        limit: int,
        skip: frozenset[MessageId] = frozenset(),
        max_bytes: int | None = None,
    ) -> list[EnvelopeRecord]:
        def op(conn: sqlite3.Connection) -> list[EnvelopeRecord]:
            # Tags and sizes first (length() reads no payload), then payloads for the ones wanted.
            skipped = {id_tag(mailbox_id, m) for m in skip}
            wanted: list[int] = []
            total = 0
            for seq, tag, size in conn.execute(
                "SELECT seq, id_tag, length(sealed) - 16 FROM envelopes WHERE mailbox_id = ? "
                "ORDER BY seq LIMIT ?",
                (mailbox_id, limit + len(skip)),
            ):
                if tag not in skipped:
                    wanted.append(seq)
                    total += size
                    if len(wanted) == limit or (max_bytes is not None and total > max_bytes):
                        break
            out = []
            for seq in wanted:
                _, day, sealed, key = conn.execute(_READ_SQL, (mailbox_id, seq)).fetchone()
                opened = aes256_ctr_zero(key, sealed)
                out.append(EnvelopeRecord(mailbox_id, MessageId(opened[:16]), seq, day, opened[16:]))
            return out

        return await self._read(op)

    async def delete_envelopes(self, refs: Sequence[tuple[MailboxId, MessageId]]) -> int:
        by_mailbox: dict[bytes, dict[bytes, None]] = {}
        for mailbox_id, message_id in refs:
            by_mailbox.setdefault(mailbox_id, {})[id_tag(mailbox_id, message_id)] = None

        def op(conn: sqlite3.Connection) -> int:
            # One statement per mailbox and up to _DELETE_CHUNK ids, not one per id: an ack batch
            # holds many envelopes of few mailboxes.
            gone: list[tuple[bytes, int, int]] = []
            for mailbox_id, tags in by_mailbox.items():
                ordered = list(tags)
                for start in range(0, len(ordered), _DELETE_CHUNK):
                    chunk = ordered[start : start + _DELETE_CHUNK]
                    rows = conn.execute(_delete_sql(len(chunk)), (mailbox_id, *_padded(chunk))).fetchall()
                    gone += [(mailbox_id, slot, size) for slot, size in rows]
            self._zero_slots(conn, [slot for _, slot, _ in gone])
            for mailbox_id, slot, size in gone:  # after every statement went through
                self._forget(mailbox_id, 1, size)
                self._free_slots.append(slot)
            return len(gone)

        return await self._call(op)

    async def export_mailbox(self, mailbox_id: MailboxId) -> Export:
        def op(conn: sqlite3.Connection) -> Export:
            mailbox = _rows(conn, "SELECT * FROM mailboxes WHERE mailbox_id = ?", mailbox_id)
            if not mailbox:
                return {}
            envelopes = _rows(conn, "SELECT * FROM envelopes WHERE mailbox_id = ? ORDER BY seq", mailbox_id)
            keys = _rows(
                conn,
                "SELECT k.* FROM envelope_keys k JOIN envelopes e ON e.key_slot = k.slot "
                "WHERE e.mailbox_id = ? ORDER BY e.seq",
                mailbox_id,
            )
            return {"mailboxes": mailbox, "envelopes": envelopes, "envelope_keys": keys}

        return await self._call(op)

    async def sweep(self, today: int, envelope_ttl_days: int) -> SweepResult:
        def op(conn: sqlite3.Connection) -> SweepResult:
            expired = [
                r[0]
                for r in conn.execute("SELECT mailbox_id FROM mailboxes WHERE expires_day <= ?", (today,))
            ]
            slots: list[int] = []
            for mailbox_id in expired:
                slots += self._delete_where(conn, "mailbox_id = ?", mailbox_id)
                conn.execute("DELETE FROM mailboxes WHERE mailbox_id = ?", (mailbox_id,))
            slots += self._delete_where(conn, "received_day <= ?", today - envelope_ttl_days)
            envelopes = len(slots)
            self._free_slots.extend(slots)
            tokens = conn.execute("DELETE FROM access_tokens WHERE expires_day <= ?", (today,)).rowcount
            self._load_pending(conn)
            if self._compacted_day is None or today > self._compacted_day:
                self._compacted_day, self._compact_due = today, True
            return SweepResult(envelopes=envelopes, mailboxes=len(expired), access_tokens=tokens)

        return await self._call(op)

    def _delete_where(self, conn: sqlite3.Connection, where: str, value: object) -> list[int]:
        """Delete the envelopes where ``where`` holds and zero their keys; their slots, to be freed
        once the operation has gone through."""
        sql = f"DELETE FROM envelopes WHERE {where} RETURNING key_slot"  # noqa: S608 (ours, not input)
        slots = [r[0] for r in conn.execute(sql, (value,)).fetchall()]
        self._zero_slots(conn, slots)
        return slots

    # ------------------------------------------------------------------ inspection (tests, dumps)
    def schema(self) -> dict[str, list[str]]:
        """Table name -> column names, as SQLite reports them (read on a fresh connection)."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return read_schema(conn)
        finally:
            conn.close()


def read_schema(conn: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {t: [c[1] for c in conn.execute(f"PRAGMA table_info('{t}')")] for t in sorted(tables)}


def _mailbox(conn: sqlite3.Connection, mailbox_id: MailboxId) -> MailboxRecord | None:
    row = conn.execute(
        "SELECT auth_key, token_hash, ttl_days, expires_day FROM mailboxes WHERE mailbox_id = ?",
        (mailbox_id,),
    ).fetchone()
    return MailboxRecord(mailbox_id, row[0], row[1], row[2], row[3]) if row else None


def _count(conn: sqlite3.Connection, table: str, where: str, *args: object) -> int:
    """``count(*)`` of a table (a name of ours, never input) where ``where`` holds."""
    count: int = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", args).fetchone()[0]  # noqa: S608
    return count


def _rows(conn: sqlite3.Connection, sql: str, *args: object) -> list[ExportRow]:
    cursor = conn.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _as_storage_error(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return RelayStorageError(f"database error: {type(exc).__name__}")
    return exc


def _rekey_access_tokens(conn: sqlite3.Connection) -> None:
    """Versions 1 and 2 stored an access token as SHA-256(token); since 3 its hash is bound to
    the account (``server.auth.access_token_key``), which each row has what it takes to compute."""
    # Imported here: sotto.server.auth imports this package.
    from sotto.server.auth import access_token_key  # noqa: PLC0415

    rows = conn.execute("SELECT token_hash, account_id FROM access_tokens").fetchall()
    for digest, account_id in rows:
        conn.execute(
            "UPDATE access_tokens SET token_hash = ? WHERE token_hash = ?",
            (access_token_key(account_id, digest), digest),
        )


def _undate(conn: sqlite3.Connection) -> None:
    """Version 3 kept what dates the making of contacts (``storage.base`` says why it must not):
    drop the creation days of devices and mailboxes, move each mailbox's expiry onto its weekday
    (:func:`~sotto.server.storage.base.drained_expiry`; a mailbox never drained still held
    creation day + ttl), round access-token expiries up to whole weeks and account creation days
    down to theirs. The caller vacuums after the commit, so the dropped values leave the file."""
    for table in ("devices", "mailboxes"):
        columns = {c[1] for c in conn.execute(f"PRAGMA table_info('{table}')")}
        if "created_day" in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN created_day")
    conn.executemany(
        "UPDATE mailboxes SET expires_day = ?1 WHERE mailbox_id = ?2 AND expires_day <> ?1",
        [
            (drained_expiry(m, expires - ttl, ttl), m)
            for m, ttl, expires in conn.execute("SELECT mailbox_id, ttl_days, expires_day FROM mailboxes")
        ],
    )
    conn.executemany(
        "UPDATE access_tokens SET expires_day = ? WHERE token_hash = ?",
        [
            (token_expiry(day), t)
            for t, day in conn.execute("SELECT token_hash, expires_day FROM access_tokens")
        ],
    )
    conn.executemany(
        "UPDATE accounts SET created_day = ? WHERE account_id = ?",
        [(creation_week(day), a) for a, day in conn.execute("SELECT account_id, created_day FROM accounts")],
    )
