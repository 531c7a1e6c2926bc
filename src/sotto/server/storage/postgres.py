"""The store for several relay nodes: PostgreSQL, through psycopg 3, from a few worker threads.

Every operation is a function of a connection, queued to one of a few threads that each own
one connection; a thread commits an operation's transaction and only then resolves the caller's
future on its event loop. A caller is answered after its write is durable (the server's
``synchronous_commit``), and the event loop never waits on the network. A mailbox's sends always
go to the same thread, and the sends a thread finds queued together share one transaction (one
WAL flush); every other operation runs in a transaction of its own, and PostgreSQL merges the WAL
flushes of concurrent transactions.

The worker threads spend their time waiting for the server's answers, so the busy paths wait as
few times as they can. A send is two statements, and the sends of a batch go out together in
psycopg's pipeline mode (``BEGIN`` and every send's statements, then one wait for all their
answers, then the ``COMMIT``): two round trips for the batch, where a statement at a time took
six per send. If any of them fails, the batch's transaction is rolled back and each send runs
again in a transaction of its own. An ack batch deletes each envelope and its key in one
statement, all of them sent before the first answer is read (two round trips, with ``BEGIN`` and
``COMMIT``, where it took one per envelope and three more); a read of what is pending is one
``SELECT``, a transaction of its own (autocommit) without the round trips of ``BEGIN`` and
``COMMIT``.

Several nodes may share one database, so nothing that a decision depends on is kept in the
process: a send locks its mailbox's row (``FOR NO KEY UPDATE``) and then reads the next sequence
number, the duplicate check and the quota from the table; a key upload locks its device, a token
its account. Two transactions that lock in opposite orders are told apart by PostgreSQL's
deadlock detector; the loser is run again (:data:`RETRIES`).

Deleted means gone, as far as PostgreSQL lets it: an envelope's id and payload are stored
encrypted (AES-256-CTR) under a key of its own, in ``envelope_keys`` under a random slot, and
an ack deletes the envelope and its key row in one transaction. PostgreSQL never overwrites a
row in place: a delete leaves a dead tuple, which ``VACUUM`` (autovacuum) marks as free space
for new rows without promising to zero it, and the WAL in ``pg_wal`` holds the rows as written
until the server recycles the segment. ``docs/data-held.md`` says what that leaves and what is
the operator's.

Order says nothing, once a day: PostgreSQL appends new rows where there is room, so the place of
a row in a table's file follows when it was made (a contact's two mailboxes, made together, lie
side by side). After the first sweep of each day the store rewrites every table in the order of
its random key (``CLUSTER``, see :meth:`PostgresStorage._compact`), as SQLite's ``VACUUM`` does.

The free space of the database server's disk cannot be read from here: :meth:`low_on_disk` is
always False, and the disk floor is the operator's (PostgreSQL refuses writes when it is full,
which a caller sees as a storage error).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import queue
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

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
    expiry_phase,
)
from sotto.server.storage.postgres_schema import (
    MIGRATION_LOCK,
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    create_statements,
)
from sotto.server.storage.sqlite import id_tag

__all__ = ["RETRIES", "WORKERS", "PostgresStorage", "read_schema"]

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]
Operation = Callable[[Connection], T]

WORKERS = 8
"""Connections (and threads) per store: concurrent transactions, whose commits PostgreSQL
flushes together (the server's ``max_connections``, 100 by default, bounds nodes times this)."""
BATCH_LIMIT = 256
"""Operations a worker takes off the queue at once; the sends among them share one transaction."""
RETRIES = 3
"""Times an operation is run again after a deadlock or a serialization failure."""
CONNECT_TIMEOUT_S = 5
KEY_BYTES = 32
_SLOT_LIMIT = 1 << 63

_TOUCH_SQL = (
    "UPDATE mailboxes SET expires_day = %(today)s + ttl_days"
    " + ((%(phase)s - (%(today)s + ttl_days)) %% %(step)s + %(step)s) %% %(step)s"
    " WHERE mailbox_id = %(mailbox)s AND expires_day < %(today)s + ttl_days"
    " + ((%(phase)s - (%(today)s + ttl_days)) %% %(step)s + %(step)s) %% %(step)s"
)
"""drained_expiry() in SQL (PostgreSQL's % keeps the sign of the dividend); rows whose expiry
would not move are not written, which is most drains of a week."""

_LOCK_SQL = "SELECT token_hash, expires_day FROM mailboxes WHERE mailbox_id = %s FOR NO KEY UPDATE"
"""A send's first statement: the mailbox's row lock orders sends to it across nodes."""

_STORE_SQL = """
WITH held AS (
    SELECT count(*) AS n, coalesce(sum(length(sealed)), 0) - count(*) * 16 AS size,
        coalesce(max(seq), 0) AS top, coalesce(bool_or(id_tag = %(tag)s), false) AS duplicate
    FROM envelopes WHERE mailbox_id = %(mailbox)s
), fits AS (
    SELECT top + 1 AS seq FROM held
    WHERE NOT duplicate AND size + %(length)s <= %(max_bytes)s AND n < %(max_envelopes)s
        AND EXISTS (
            SELECT FROM mailboxes WHERE mailbox_id = %(mailbox)s
                AND expires_day > %(today)s AND token_hash = %(token_hash)s
        )
), k AS (
    INSERT INTO envelope_keys (slot, key) SELECT %(slot)s, %(key)s FROM fits
    ON CONFLICT DO NOTHING RETURNING slot
), stored AS (
    INSERT INTO envelopes (mailbox_id, seq, id_tag, received_day, key_slot, sealed)
    SELECT %(mailbox)s, fits.seq, %(tag)s, %(today)s, k.slot, %(sealed)s FROM fits, k
    RETURNING seq
)
SELECT n, size, top, duplicate, (SELECT seq FROM stored) FROM held"""
"""A send's second statement, after the lock (READ COMMITTED reads the envelopes as of the start
of a statement, so this one sees every send committed before the lock was granted): what the
mailbox holds, and the envelope and its key stored if the mailbox, the duplicate check and the
quota let it (the same tests the caller makes from the answer), under a random key slot that
may be taken (then nothing is stored and the caller draws another)."""

_PENDING_SQL = """
WITH head AS (
    SELECT seq, length(sealed) - 16 AS size FROM envelopes
    WHERE mailbox_id = %(mailbox)s AND id_tag <> ALL(%(skip)s::bytea[]) ORDER BY seq LIMIT %(limit)s
), counted AS (
    SELECT seq, row_number() OVER w AS n, sum(size) OVER w - size AS before FROM head
    WINDOW w AS (ORDER BY seq)
)
SELECT e.seq, e.received_day, e.sealed, k.key FROM counted c
JOIN envelopes e ON e.mailbox_id = %(mailbox)s AND e.seq = c.seq
JOIN envelope_keys k ON k.slot = e.key_slot
WHERE c.n = 1 OR c.before <= %(max_bytes)s ORDER BY e.seq"""
"""Up to ``limit`` envelopes in order, leaving out the tags in ``skip``, until their payloads pass
``max_bytes`` (the one that passes it included): sizes first (``length()`` reads no payload),
then payloads and keys for the rows wanted, in one statement."""

_NO_BYTE_LIMIT = 1 << 62

_DELETE_SQL = (
    "WITH gone AS (DELETE FROM envelopes WHERE mailbox_id = %s AND id_tag = %s RETURNING key_slot), "
    "k AS (DELETE FROM envelope_keys WHERE slot = (SELECT key_slot FROM gone)) "
    "SELECT count(*) FROM gone"
)
"""An envelope named by its mailbox and tag, and its key; how many envelopes went (0 or 1)."""


class _Rollback(Exception):
    """Raised inside an operation to undo its writes and return ``result``."""

    def __init__(self, result: object) -> None:
        self.result = result


@dataclass(slots=True)
class _Job:
    operation: Operation[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    transaction: bool
    """False for an operation of one statement, which autocommit makes a transaction of its own
    (without the round trips of ``BEGIN`` and ``COMMIT``), and for ``CLUSTER`` of a partitioned
    table, which PostgreSQL runs only outside one."""
    mailbox: bytes | None = None
    """For a send: the mailbox whose row it locks. Its ``operation`` sends the statements and
    returns what reads their answers; sends share transactions (:meth:`_run_sends`)."""
    pipeline: bool = False
    """``BEGIN``, the operation's statements and ``COMMIT`` go out in pipeline mode: psycopg waits
    for the server only where the operation reads an answer, and for the commit (a send always)."""


class _Again(Exception):
    """A statement of a batch of sends failed; the batch was rolled back, to be run send by send."""


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class PostgresStorage:
    """Storage in a PostgreSQL database; use :meth:`open` to connect (creating the schema)."""

    def __init__(self, dsn: str, *, quotas: Quotas | None = None, workers: int = WORKERS) -> None:
        self.dsn = dsn
        self.quotas = quotas or Quotas()
        # One queue per worker: a mailbox's sends always go to the same one, so the workers of a
        # node never wait on each other's mailbox locks; other operations go round.
        self._queues: list[queue.SimpleQueue[_Job | None]] = [queue.SimpleQueue() for _ in range(workers)]
        self._next = itertools.count()
        self._threads = [
            threading.Thread(
                target=self._run, args=(self._queues[i],), name=f"sotto-relay-pg-{i}", daemon=True
            )
            for i in range(workers)
        ]
        self._closed = False
        self._compacted_day: int | None = None
        self._lock = threading.Lock()
        self.commits = 0
        """Transactions committed."""
        self.compactions = 0
        """Rewrites of every table in key order (``CLUSTER``), one a day at the first sweep of the day."""

    @classmethod
    def open(cls, dsn: str, **kwargs: Any) -> PostgresStorage:
        """Connect to ``dsn`` (a ``postgresql://`` URL or key=value string), create or migrate the
        schema, and start the worker threads; ``kwargs`` as for the constructor."""
        storage = cls(dsn, **kwargs)
        try:
            with storage._connect() as conn:
                migrate(conn)
        except psycopg.Error as exc:
            raise RelayStorageError(f"cannot open the database: {type(exc).__name__}") from None
        for thread in storage._threads:
            thread.start()
        return storage

    def _connect(self) -> Connection:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        if not self._closed:
            self._closed = True
            for jobs in self._queues:
                jobs.put(None)
            for thread in self._threads:
                if thread.is_alive():
                    thread.join()

    def low_on_disk(self) -> bool:
        return False

    # ------------------------------------------------------------------ the worker threads
    def _run(self, jobs_in: queue.SimpleQueue[_Job | None]) -> None:
        conn: Connection | None = None
        stop = False
        try:
            while not stop:
                first = jobs_in.get()
                if first is None:
                    break
                jobs = [first]
                while len(jobs) < BATCH_LIMIT:  # whatever else has queued up meanwhile
                    try:
                        job = jobs_in.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    jobs.append(job)
                if conn is None or conn.closed:
                    try:
                        conn = self._connect()
                    except psycopg.Error as exc:
                        conn = None
                        failed = RelayStorageError(f"database error: {type(exc).__name__}")
                        for job in jobs:
                            self._answer(job, None, failed)
                        continue
                sends = [job for job in jobs if job.mailbox is not None]
                if len(sends) > 1:
                    self._run_sends(conn, sends)
                    jobs = [job for job in jobs if job.mailbox is None]
                for job in jobs:
                    result, error = self._execute(conn, job)
                    self._answer(job, result, error)
        finally:
            if conn is not None:
                conn.close()

    def _run_sends(self, conn: Connection, sends: list[_Job]) -> None:
        """Several sends in one transaction (one commit, one WAL flush), in the order of their
        mailboxes: every node takes mailbox locks in that order, so two such transactions cannot
        wait on each other. If a statement fails (a deadlock the detector picks anyway, with a
        lock of another kind of operation), nothing of the batch is kept and each send runs
        again in a transaction of its own; if the commit fails, every send fails."""
        sends.sort(key=lambda job: job.mailbox or b"")
        try:
            results = self._sends_together(conn, sends)
        except _Again:
            for job in sends:
                result, error = self._execute(conn, job)
                self._answer(job, result, error)
            return
        except Exception as exc:  # the commit failed (or the connection did)
            failed = (
                exc
                if isinstance(exc, RelayStorageError)
                else RelayStorageError(f"database error: {type(exc).__name__}")
            )
            for job in sends:
                self._answer(job, None, failed)
            return
        with self._lock:
            self.commits += 1
        for job, result in zip(sends, results, strict=True):
            self._answer(job, result, None)

    @staticmethod
    def _sends_together(conn: Connection, sends: list[_Job]) -> list[object]:
        """``BEGIN`` and every send's statements without waiting, one wait for their answers
        (the server takes the mailbox locks one after another as it runs them), then the commit.
        Raises :class:`_Again` if a statement failed, the commit's error if the commit did."""

        def work() -> list[object]:
            try:
                answers = [job.operation(conn) for job in sends]
                return [answer() for answer in answers]
            except Exception as exc:
                raise _Again from exc

        return _pipelined(conn, work)

    def _execute(self, conn: Connection, job: _Job) -> tuple[object, BaseException | None]:
        for attempt in range(RETRIES + 1):
            try:
                if not job.transaction:
                    return job.operation(conn), None
                if job.pipeline:
                    result = _pipelined(conn, functools.partial(_operate, job, conn))
                    with self._lock:
                        self.commits += 1
                    return result, None
                with conn.transaction():
                    result = job.operation(conn)
                with self._lock:
                    self.commits += 1
                return result, None
            except _Rollback as undo:  # the transaction block rolled back on the way out
                return undo.result, None
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES:
                    return None, RelayStorageError(f"database error: {type(exc).__name__}")
            except psycopg.Error as exc:
                return None, RelayStorageError(f"database error: {type(exc).__name__}")
            except Exception as exc:
                return None, exc
        raise AssertionError("unreachable")

    @staticmethod
    def _answer(job: _Job, result: object, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)

    async def _call(self, operation: Operation[T], *, transaction: bool = True, pipeline: bool = False) -> T:
        return await self._submit(operation, transaction=transaction, pipeline=pipeline)

    def _submit(
        self,
        operation: Operation[T],
        *,
        transaction: bool = True,
        mailbox: bytes | None = None,
        pipeline: bool = False,
    ) -> asyncio.Future[T]:
        """Queue ``operation`` for a worker; the future resolves after its commit. ``mailbox``:
        the operation is a send to it, which may share a transaction with other sends."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:
            future.set_exception(RelayStorageError("storage is closed"))
        else:
            n = len(self._queues)
            index = next(self._next) % n if mailbox is None else int.from_bytes(mailbox[:4], "big") % n
            job = _Job(operation, loop, future, transaction, mailbox, pipeline or mailbox is not None)
            self._queues[index].put(job)
        return future

    # ------------------------------------------------------------------ accounts
    async def create_account(self, account: AccountRecord, device: DeviceRecord) -> bool:
        def op(conn: Connection) -> bool:
            inserted = conn.execute(
                "INSERT INTO accounts (account_id, identity_key, created_day) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (account.account_id, account.identity_key, account.created_day),
            ).rowcount
            if not inserted:
                return False
            conn.execute(
                "INSERT INTO devices (account_id, device_id, registration_id, secret_hash) "
                "VALUES (%s, %s, %s, %s)",
                (device.account_id, device.device_id, device.registration_id, device.secret_hash),
            )
            return True

        return await self._call(op)

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        def op(conn: Connection) -> AccountRecord | None:
            row = conn.execute(
                "SELECT identity_key, created_day FROM accounts WHERE account_id = %s", (account_id,)
            ).fetchone()
            return AccountRecord(account_id, row[0], row[1]) if row else None

        return await self._call(op)

    async def get_device(self, account_id: AccountId, device_id: int) -> DeviceRecord | None:
        def op(conn: Connection) -> DeviceRecord | None:
            row = conn.execute(
                "SELECT registration_id, secret_hash FROM devices WHERE account_id = %s AND device_id = %s",
                (account_id, device_id),
            ).fetchone()
            return DeviceRecord(account_id, device_id, row[0], row[1]) if row else None

        return await self._call(op)

    async def set_username(self, account_id: AccountId, username_hash: bytes) -> UsernameOutcome:
        def op(conn: Connection) -> UsernameOutcome:
            row = conn.execute(
                "SELECT account_id FROM accounts WHERE username_hash = %s", (username_hash,)
            ).fetchone()
            if row is not None and row[0] != account_id:
                return UsernameOutcome.TAKEN
            try:
                with conn.transaction():  # a savepoint: another node may take it meanwhile
                    conn.execute(
                        "UPDATE accounts SET username_hash = %s WHERE account_id = %s",
                        (username_hash, account_id),
                    )
            except pg_errors.UniqueViolation:
                return UsernameOutcome.TAKEN
            return UsernameOutcome.SET

        return await self._call(op)

    async def clear_username(self, account_id: AccountId) -> None:
        def op(conn: Connection) -> None:
            conn.execute("UPDATE accounts SET username_hash = NULL WHERE account_id = %s", (account_id,))

        await self._call(op)

    async def find_username(self, username_hash: bytes) -> AccountId | None:
        def op(conn: Connection) -> AccountId | None:
            row = conn.execute(
                "SELECT account_id FROM accounts WHERE username_hash = %s", (username_hash,)
            ).fetchone()
            return AccountId(row[0]) if row else None

        return await self._call(op)

    async def delete_account(self, account_id: AccountId) -> bool:
        def op(conn: Connection) -> bool:
            # Each table by name, as in SQLite: a later table without its cascade is not missed.
            conn.execute("DELETE FROM one_time_pre_keys WHERE account_id = %s", (account_id,))
            conn.execute("DELETE FROM kyber_pre_keys WHERE account_id = %s", (account_id,))
            conn.execute("DELETE FROM access_tokens WHERE account_id = %s", (account_id,))
            conn.execute("DELETE FROM devices WHERE account_id = %s", (account_id,))
            return conn.execute("DELETE FROM accounts WHERE account_id = %s", (account_id,)).rowcount > 0

        return bool(await self._call(op))

    # ------------------------------------------------------------------ prekeys
    async def upload_keys(self, account_id: AccountId, device_id: int, upload: KeyUpload) -> UploadOutcome:
        def op(conn: Connection) -> UploadOutcome:
            where = (account_id, device_id)
            device = conn.execute(
                "SELECT signed_pre_key_id, signed_pre_key, signed_pre_key_signature, kyber_last_resort_id, "
                "kyber_last_resort, kyber_last_resort_signature, one_time_floor, kyber_floor "
                "FROM devices WHERE account_id = %s AND device_id = %s FOR NO KEY UPDATE",
                where,
            ).fetchone()
            if device is None:
                raise RelayStorageError("no such device")
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
                    "UPDATE devices SET signed_pre_key_id = %s, signed_pre_key = %s, "
                    "signed_pre_key_signature = %s WHERE account_id = %s AND device_id = %s",
                    (spk.key_id, spk.public_key, spk.signature, *where),
                )
            if lr:
                conn.execute(
                    "UPDATE devices SET kyber_last_resort_id = %s, kyber_last_resort = %s, "
                    "kyber_last_resort_signature = %s WHERE account_id = %s AND device_id = %s",
                    (lr.key_id, lr.public_key, lr.signature, *where),
                )
            for key in upload.one_time_pre_keys:
                if key.key_id <= one_time_floor:
                    continue
                held = conn.execute(
                    "INSERT INTO one_time_pre_keys (account_id, device_id, key_id, public_key) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (account_id, device_id, key_id) "
                    "DO UPDATE SET public_key = one_time_pre_keys.public_key RETURNING public_key",
                    (*where, key.key_id, key.public_key),
                ).fetchone()
                if held is None or not bytes_equal(held[0], key.public_key):
                    raise _Rollback(UploadOutcome.CONFLICT)
            for kyber in upload.kyber_pre_keys:
                if kyber.key_id <= kyber_floor:
                    continue
                held = conn.execute(
                    "INSERT INTO kyber_pre_keys (account_id, device_id, key_id, public_key, signature) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account_id, device_id, key_id) "
                    "DO UPDATE SET public_key = kyber_pre_keys.public_key RETURNING public_key, signature",
                    (*where, kyber.key_id, kyber.public_key, kyber.signature),
                ).fetchone()
                if held is None or (held[0], held[1]) != (kyber.public_key, kyber.signature):
                    raise _Rollback(UploadOutcome.CONFLICT)
            for table, wrote, quota in (
                ("one_time_pre_keys", upload.one_time_pre_keys, self.quotas.device_one_time_pre_keys),
                ("kyber_pre_keys", upload.kyber_pre_keys, self.quotas.device_kyber_pre_keys),
            ):
                if wrote and _count(conn, table, "account_id = %s AND device_id = %s", *where) > quota:
                    raise _Rollback(UploadOutcome.OVER_QUOTA)
            return UploadOutcome.STORED

        return await self._call(op)

    async def key_counts(self, account_id: AccountId, device_id: int) -> KeyCounts:
        def op(conn: Connection) -> KeyCounts:
            where = "account_id = %s AND device_id = %s"
            return KeyCounts(
                one_time=_count(conn, "one_time_pre_keys", where, account_id, device_id),
                kyber=_count(conn, "kyber_pre_keys", where, account_id, device_id),
            )

        return await self._call(op)

    async def add_access_token(self, account_id: AccountId, token_hash: bytes, expires_day: int) -> bool:
        def op(conn: Connection) -> bool:
            # Tokens of one account are counted under its row's lock, so two nodes cannot both
            # add the last one the quota allows.
            conn.execute("SELECT 1 FROM accounts WHERE account_id = %s FOR NO KEY UPDATE", (account_id,))
            conn.execute(
                "INSERT INTO access_tokens (token_hash, account_id, expires_day) VALUES (%s, %s, %s) "
                "ON CONFLICT (token_hash) DO UPDATE SET account_id = excluded.account_id, "
                "expires_day = excluded.expires_day",
                (token_hash, account_id, expires_day),
            )
            if (
                _count(conn, "access_tokens", "account_id = %s", account_id)
                > self.quotas.account_access_tokens
            ):
                raise _Rollback(False)
            return True

        return await self._call(op)

    async def delete_access_token(self, account_id: AccountId, token_hash: bytes) -> None:
        def op(conn: Connection) -> None:
            conn.execute(
                "DELETE FROM access_tokens WHERE token_hash = %s AND account_id = %s",
                (token_hash, account_id),
            )

        await self._call(op)

    async def has_access(self, account_id: AccountId, token_hash: bytes, today: int) -> bool:
        def op(conn: Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM access_tokens WHERE token_hash = %s AND account_id = %s AND expires_day > %s",
                (token_hash, account_id, today),
            ).fetchone()
            return row is not None

        return await self._call(op)

    async def take_bundle(self, account_id: AccountId, token_hash: bytes, today: int) -> BundleRecord | None:
        def op(conn: Connection) -> BundleRecord | None:
            row = conn.execute(
                "SELECT a.identity_key FROM access_tokens t JOIN accounts a ON a.account_id = t.account_id "
                "WHERE t.token_hash = %s AND t.account_id = %s AND t.expires_day > %s",
                (token_hash, account_id, today),
            ).fetchone()
            if row is None:
                return None
            identity_key = row[0]
            devices = []
            rows = conn.execute(
                "SELECT device_id, registration_id, signed_pre_key_id, signed_pre_key, "
                "signed_pre_key_signature, kyber_last_resort_id, kyber_last_resort, "
                "kyber_last_resort_signature FROM devices "
                "WHERE account_id = %s AND signed_pre_key_id IS NOT NULL "
                "ORDER BY device_id FOR NO KEY UPDATE",
                (account_id,),
            ).fetchall()
            for device_id, registration_id, spk_id, spk, spk_sig, lr_id, lr, lr_sig in rows:
                where = (account_id, device_id)
                ec = conn.execute(
                    "SELECT key_id, public_key FROM one_time_pre_keys "
                    "WHERE account_id = %s AND device_id = %s ORDER BY key_id LIMIT 1",
                    where,
                ).fetchone()
                kyber_row = conn.execute(
                    "SELECT key_id, public_key, signature FROM kyber_pre_keys "
                    "WHERE account_id = %s AND device_id = %s ORDER BY key_id LIMIT 1",
                    where,
                ).fetchone()
                if kyber_row is None and lr_id is None:
                    continue
                pre_key = None
                if ec is not None:
                    pre_key = OneTimePreKey(ec[0], ec[1])
                    conn.execute(
                        "DELETE FROM one_time_pre_keys "
                        "WHERE account_id = %s AND device_id = %s AND key_id = %s",
                        (*where, ec[0]),
                    )
                    conn.execute(
                        "UPDATE devices SET one_time_floor = greatest(one_time_floor, %s) "
                        "WHERE account_id = %s AND device_id = %s",
                        (ec[0], *where),
                    )
                if kyber_row is not None:
                    kyber = SignedKey(kyber_row[0], kyber_row[1], kyber_row[2])
                    conn.execute(
                        "DELETE FROM kyber_pre_keys WHERE account_id = %s AND device_id = %s AND key_id = %s",
                        (*where, kyber.key_id),
                    )
                    conn.execute(
                        "UPDATE devices SET kyber_floor = greatest(kyber_floor, %s) "
                        "WHERE account_id = %s AND device_id = %s",
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
        def op(conn: Connection) -> Export:
            if conn.execute("SELECT 1 FROM accounts WHERE account_id = %s", (account_id,)).fetchone() is None:
                return {}
            return {
                table: _rows(conn, sql, account_id)
                for table, sql in (
                    ("accounts", "SELECT * FROM accounts WHERE account_id = %s"),
                    ("devices", "SELECT * FROM devices WHERE account_id = %s ORDER BY device_id"),
                    (
                        "one_time_pre_keys",
                        "SELECT * FROM one_time_pre_keys WHERE account_id = %s ORDER BY device_id, key_id",
                    ),
                    (
                        "kyber_pre_keys",
                        "SELECT * FROM kyber_pre_keys WHERE account_id = %s ORDER BY device_id, key_id",
                    ),
                    (
                        "access_tokens",
                        "SELECT * FROM access_tokens WHERE account_id = %s ORDER BY token_hash",
                    ),
                )
            }

        return await self._call(op)

    # ------------------------------------------------------------------ mailboxes
    async def create_mailbox(self, mailbox: MailboxRecord) -> CreateOutcome:
        def op(conn: Connection) -> CreateOutcome:
            inserted = conn.execute(
                "INSERT INTO mailboxes (mailbox_id, auth_key, token_hash, ttl_days, expires_day) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
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
        def op(conn: Connection) -> Mapping[MailboxId, MailboxRecord]:
            found = {}
            for mailbox_id in mailbox_ids:
                held = _mailbox(conn, mailbox_id)
                if held is not None:
                    found[mailbox_id] = held
            return found

        return await self._call(op)

    async def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId], today: int) -> None:
        def op(conn: Connection) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(
                    _TOUCH_SQL,
                    [
                        {"today": today, "phase": expiry_phase(m), "step": EXPIRY_STEP_DAYS, "mailbox": m}
                        for m in sorted(mailbox_ids)  # one lock order for every node
                    ],
                )

        await self._call(op)

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        def op(conn: Connection) -> None:
            _delete_envelopes_where(conn, "mailbox_id = %s", mailbox_id)
            conn.execute("DELETE FROM mailboxes WHERE mailbox_id = %s", (mailbox_id,))

        await self._call(op)

    async def put_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> PutResult:
        return await self.submit_envelope(mailbox_id, token_hash, message_id, payload, today)

    def submit_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> asyncio.Future[PutResult]:
        quotas = self.quotas
        tag = id_tag(mailbox_id, message_id)

        def op(conn: Connection) -> Callable[[], PutResult]:
            # Both statements go out without waiting for an answer (pipeline mode); the second
            # runs once the first holds the mailbox's lock. The store checks the mailbox's token
            # itself only so that a refused send writes nothing: the answer is decided here, from
            # the locked row, with a comparison in constant time.
            lock = conn.execute(_LOCK_SQL, (mailbox_id,))
            key = os.urandom(KEY_BYTES)
            params: dict[str, object] = {
                "mailbox": mailbox_id,
                "tag": tag,
                "length": len(payload),
                "max_bytes": quotas.mailbox_bytes,
                "max_envelopes": quotas.mailbox_envelopes,
                "today": today,
                "token_hash": token_hash,
                "slot": _draw_slot(),
                "key": key,
                "sealed": aes256_ctr_zero(key, message_id + payload),
            }
            store = conn.execute(_STORE_SQL, params)

            def answer() -> PutResult:
                row = lock.fetchone()
                found = row is not None and row[1] > today and bytes_equal(row[0], token_hash)
                cursor = store
                while True:
                    held = cursor.fetchone()
                    assert held is not None
                    count, size, top, duplicate, seq = held
                    if not found:
                        outcome = PutOutcome.NOT_FOUND
                    elif duplicate:
                        outcome = PutOutcome.DUPLICATE
                    elif size + len(payload) > quotas.mailbox_bytes or count >= quotas.mailbox_envelopes:
                        outcome = PutOutcome.MAILBOX_FULL
                    elif seq is None:  # the key slot drawn was taken: nothing stored, draw again
                        params["slot"] = _draw_slot()
                        cursor = conn.execute(_STORE_SQL, params)
                        continue
                    elif seq == top + 1:
                        stored = EnvelopeRecord(mailbox_id, message_id, seq, today, bytes(payload))
                        return PutResult(PutOutcome.STORED, stored)
                    else:
                        raise RelayStorageError("the store and its checks disagree")
                    if seq is not None:  # stored what was refused: roll it back
                        raise RelayStorageError("the store and its checks disagree")
                    return PutResult(outcome)

            return answer

        return cast("asyncio.Future[PutResult]", self._submit(op, mailbox=mailbox_id))

    async def pending(
        self,
        mailbox_id: MailboxId,
        limit: int,
        skip: frozenset[MessageId] = frozenset(),
        max_bytes: int | None = None,
    ) -> list[EnvelopeRecord]:
        def op(conn: Connection) -> list[EnvelopeRecord]:
            params = {
                "mailbox": mailbox_id,
                "skip": [id_tag(mailbox_id, m) for m in skip],
                "limit": max(limit, 0),
                "max_bytes": _NO_BYTE_LIMIT if max_bytes is None else max_bytes,
            }
            out = []
            for seq, day, sealed, key in conn.execute(_PENDING_SQL, params):
                opened = aes256_ctr_zero(key, sealed)
                out.append(EnvelopeRecord(mailbox_id, MessageId(opened[:16]), seq, day, opened[16:]))
            return out

        return await self._call(op, transaction=False)

    async def delete_envelopes(self, refs: Sequence[tuple[MailboxId, MessageId]]) -> int:
        def op(conn: Connection) -> int:
            # Every statement goes out before the first answer is read (pipeline mode), and the
            # server runs them in this order: one lock order for every node.
            answers = [
                conn.execute(_DELETE_SQL, (mailbox_id, id_tag(mailbox_id, message_id)))
                for mailbox_id, message_id in sorted(set(refs))
            ]
            deleted = 0
            for answer in answers:
                row = answer.fetchone()
                assert row is not None
                deleted += row[0]
            return deleted

        return await self._call(op, pipeline=True)

    async def export_mailbox(self, mailbox_id: MailboxId) -> Export:
        def op(conn: Connection) -> Export:
            mailbox = _rows(conn, "SELECT * FROM mailboxes WHERE mailbox_id = %s", mailbox_id)
            if not mailbox:
                return {}
            envelopes = _rows(
                conn,
                "SELECT mailbox_id, seq, id_tag, received_day, key_slot, sealed FROM envelopes "
                "WHERE mailbox_id = %s ORDER BY seq",
                mailbox_id,
            )
            keys = _rows(
                conn,
                "SELECT k.* FROM envelope_keys k JOIN envelopes e ON e.key_slot = k.slot "
                "WHERE e.mailbox_id = %s ORDER BY e.seq",
                mailbox_id,
            )
            return {"mailboxes": mailbox, "envelopes": envelopes, "envelope_keys": keys}

        return await self._call(op)

    async def sweep(self, today: int, envelope_ttl_days: int) -> SweepResult:
        def op(conn: Connection) -> SweepResult:
            expired = [
                r[0]
                for r in conn.execute(
                    "SELECT mailbox_id FROM mailboxes WHERE expires_day <= %s ORDER BY mailbox_id FOR UPDATE",
                    (today,),
                )
            ]
            envelopes = _delete_envelopes_where(conn, "mailbox_id = ANY(%s)", expired)
            conn.execute("DELETE FROM mailboxes WHERE mailbox_id = ANY(%s)", (expired,))
            envelopes += _delete_envelopes_where(conn, "received_day <= %s", today - envelope_ttl_days)
            tokens = conn.execute("DELETE FROM access_tokens WHERE expires_day <= %s", (today,)).rowcount
            return SweepResult(envelopes=envelopes, mailboxes=len(expired), access_tokens=tokens)

        result = await self._call(op)
        if self._compacted_day is None or today > self._compacted_day:
            self._compacted_day = today
            await self._call(self._compact, transaction=False)
        return result

    def _compact(self, conn: Connection) -> None:
        """Rewrite every table in the order of its primary key (``CLUSTER``): the keys are random,
        so afterwards the place of a row says nothing of when it was made, beyond the rows made
        since. Each table is locked while it is rewritten (writes on every node wait); the old
        files are unlinked, not overwritten, and their dead rows go with them."""
        for table in TABLES:
            conn.execute(f"CLUSTER {table} USING {table}_pkey".encode())
        with self._lock:
            self.compactions += 1

    # ------------------------------------------------------------------ inspection (tests, dumps)
    def schema(self) -> dict[str, list[str]]:
        """Table name -> column names, as PostgreSQL reports them (partitions under their parent)."""
        with self._connect() as conn:
            return read_schema(conn)


def _operate(job: _Job, conn: Connection) -> object:
    result = job.operation(conn)
    return result() if job.mailbox is not None else result  # a send returns what reads its answers


def _pipelined(conn: Connection, work: Callable[[], T]) -> T:
    """A transaction in pipeline mode: ``BEGIN``, the statements ``work`` sends and ``COMMIT`` go
    out without waiting, so the server is waited for where ``work`` reads an answer and once for
    the commit (psycopg's transaction blocks would wait at both ends as well). If ``work`` raises,
    the transaction is rolled back and the exception passed on; a failed commit raises its error.
    ``work`` reads the answer of every statement it sends, so that none fails unseen."""
    try:
        with conn.pipeline() as pipeline:
            conn.execute(b"BEGIN")
            try:
                result = work()
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    pipeline.sync()  # the end of what the server skipped after a failed statement
                raise
            commit = conn.execute(b"COMMIT")  # answered as the pipeline ends
        if commit.statusmessage != "COMMIT":  # what a failed transaction's COMMIT answers
            raise RelayStorageError("the transaction was rolled back")
        return result
    except BaseException:
        if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                # psycopg's rollback, which also forgets the statements it prepared (some were
                # skipped by the server after the failed one, and never prepared there).
                conn.rollback()
        raise


def migrate(conn: Connection) -> None:
    """Create the schema in an empty database, or bring an older one to :data:`SCHEMA_VERSION`;
    refuse a newer one. Several nodes starting at once take turns (an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            if conn.execute("SELECT to_regclass('accounts') IS NOT NULL").fetchone() == (True,):
                raise RelayStorageError("the database holds tables but no schema version")
            for statement in create_statements():
                conn.execute(statement.encode())
            return
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise RelayStorageError("database schema is newer than this server")
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise RelayStorageError(f"no migration from schema version {version}")
            step(conn)
            version += 1
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))


def read_schema(conn: Connection) -> dict[str, list[str]]:
    """Every table of the current schema (partitions left out: their parent stands for them) ->
    its columns in order."""
    rows = conn.execute(
        "SELECT c.relname, a.attname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname, a.attnum"
    ).fetchall()
    schema: dict[str, list[str]] = {}
    for table, column in rows:
        schema.setdefault(table, []).append(column)
    return schema


def _draw_slot() -> int:
    """A random key slot: random, so that slot numbers say nothing of the order envelopes arrived
    in (PostgreSQL rewrites a row on every update, so reusing slots, as SQLite does, would keep
    nothing in place). A slot taken already stores nothing, and the send draws another."""
    return 1 + secrets.randbelow(_SLOT_LIMIT - 1)


def _delete_keys(conn: Connection, slots: Sequence[int]) -> None:
    if slots:
        conn.execute("DELETE FROM envelope_keys WHERE slot = ANY(%s)", (list(slots),))


def _delete_envelopes_where(conn: Connection, where: str, value: object) -> int:
    """Delete the envelopes where ``where`` holds (ours, never input), and their keys."""
    sql = f"DELETE FROM envelopes WHERE {where} RETURNING key_slot"  # noqa: S608 (ours, not input)
    slots = [r[0] for r in conn.execute(sql.encode(), (value,))]
    _delete_keys(conn, slots)
    return len(slots)


def _mailbox(conn: Connection, mailbox_id: MailboxId) -> MailboxRecord | None:
    row = conn.execute(
        "SELECT auth_key, token_hash, ttl_days, expires_day FROM mailboxes WHERE mailbox_id = %s",
        (mailbox_id,),
    ).fetchone()
    return MailboxRecord(mailbox_id, row[0], row[1], row[2], row[3]) if row else None


def _count(conn: Connection, table: str, where: str, *args: object) -> int:
    """``count(*)`` of a table (a name of ours, never input) where ``where`` holds."""
    assert table in TABLES
    sql = f"SELECT count(*) FROM {table} WHERE {where}"  # noqa: S608 (ours, not input)
    row = conn.execute(sql.encode(), args).fetchone()
    assert row is not None
    count: int = row[0]
    return count


def _rows(conn: Connection, sql: str, *args: object) -> list[ExportRow]:
    cursor = conn.execute(sql.encode(), args)
    names = [d.name for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor]
