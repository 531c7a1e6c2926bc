"""The SQLite store: one file (plus its WAL), every sensitive value sealed, one process at a time.

Opening derives the key-encryption key from the passphrase (Argon2id, ~0.3 s by default), unwraps
the data key, takes an exclusive lock file and runs pending migrations. Connections are set up
for crash safety and for leaving nothing readable behind:

* ``journal_mode=WAL`` and ``synchronous=FULL``: a committed transaction survives a process kill
  and a power cut, which is what "commit, then acknowledge" needs;
* ``secure_delete=ON``: deleted rows are zeroed, not left in free pages;
* ``foreign_keys=ON``: deleting a contact removes what hangs off it, in the same transaction;
* ``temp_store=MEMORY``: sorts and temporary tables do not spill to temp files.

What the file shows without the passphrase. Sealed (AES-256-GCM under the data key): every key,
record, token, secret, name, account id, address, mailbox id, group id, text, payload and
timestamp of a message. As HMAC-SHA256 index values: what lookups match (names, account ids,
addresses, mailbox ids, group ids, message ids, seen envelope ids, last-resort triples). In
clear: local row numbers and the links between them (which messages belong to which local
contact or group row, group membership), prekey ids and upload flags, message states and
directions, receipt kinds, outbox retry counts and times, the day number of a seen id, and
row counts and sizes.

The search index (schema 6, :mod:`sotto.store.search`) adds, per message, one row per distinct
normalised word and word beginning: an 8-byte HMAC token keyed per conversation and the
message's row number. Without the key no token can be turned back into a word, and a word
guessed cannot be checked. What the rows do show: how many distinct words and beginnings each
message has (roughly its length in words), and within one conversation which messages share a
word or a beginning and how often each token occurs, so frequency analysis against a known
language (or a message whose text someone knows) can suggest which tokens are common words.
Tokens of two conversations cannot be linked (the conversation is part of the HMAC input).
Truncating to 8 bytes saves room and does not hide any of this: tokens stay distinct in
practice (a collision only adds a candidate, which is checked on the decrypted text). The rows
go with their message, zeroed like it by ``secure_delete``.

What it protects against someone who can also write the file: a sealed value altered, or moved
to another row, column or table, fails to open (StoreCorruptedError), and an index value pointed
at another row is caught when the row is read. Messages and mailboxes seal their links too. Not
covered: deleting rows, rolling the whole file back to an older copy, or changing clear columns
that are not sealed (membership, flags, retry times).

See :mod:`sotto.store.cipher` for the encryption and :mod:`sotto.store.migrations` for the schema.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, system_rng
from sotto.errors import (
    StoreConflictError,
    StoreCorruptedError,
    StoreError,
    StoreLockedError,
)
from sotto.store.cipher import DATA_KEY_LENGTH, StoreCipher, unwrap_data_key, wrap_data_key
from sotto.store.gate import TransactionGate
from sotto.store.interfaces import Transaction
from sotto.store.migrations import SCHEMA_VERSION, Progress, migrate, schema_version
from sotto.store.sqlite.db import Db, store_error
from sotto.store.sqlite.keys import (
    AccountRepo,
    IdentityRepo,
    PreKeyRepo,
    SenderKeyRepo,
    SessionRepo,
    SettingsRepo,
)
from sotto.store.sqlite.messages import MessageRepo, OutboxRepo, SeenRepo, UnreportedEventRepo
from sotto.store.sqlite.people import ContactRepo, GroupRepo, InviteRepo, MailboxRepo, TheirMailboxRepo
from sotto.store.sqlite.send_log import SendLogRepo

KDF_NAME = "argon2id"
KEYRING_SQL = """
CREATE TABLE keyring (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    kdf TEXT NOT NULL,
    iterations INTEGER NOT NULL,
    memory_kib INTEGER NOT NULL,
    lanes INTEGER NOT NULL,
    salt BLOB NOT NULL,
    wrapped_key BLOB NOT NULL
)
"""


class SqliteTransaction:
    """A unit of work over a :class:`SqliteStore` (``BEGIN IMMEDIATE`` … ``COMMIT``)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._account = AccountRepo(db)
        self._settings = SettingsRepo(db)
        self._prekeys = PreKeyRepo(db)
        self._sessions = SessionRepo(db)
        self._identities = IdentityRepo(db)
        self._sender_keys = SenderKeyRepo(db)
        self._contacts = ContactRepo(db)
        self._mailboxes = MailboxRepo(db)
        self._their_mailboxes = TheirMailboxRepo(db)
        self._invites = InviteRepo(db)
        self._groups = GroupRepo(db)
        self._messages = MessageRepo(db)
        self._outbox = OutboxRepo(db)
        self._seen = SeenRepo(db)
        self._unreported_events = UnreportedEventRepo(db)
        self._send_log = SendLogRepo(db)

    @property
    def account(self) -> AccountRepo:
        return self._account

    @property
    def settings(self) -> SettingsRepo:
        return self._settings

    @property
    def prekeys(self) -> PreKeyRepo:
        return self._prekeys

    @property
    def sessions(self) -> SessionRepo:
        return self._sessions

    @property
    def identities(self) -> IdentityRepo:
        return self._identities

    @property
    def sender_keys(self) -> SenderKeyRepo:
        return self._sender_keys

    @property
    def contacts(self) -> ContactRepo:
        return self._contacts

    @property
    def mailboxes(self) -> MailboxRepo:
        return self._mailboxes

    @property
    def their_mailboxes(self) -> TheirMailboxRepo:
        return self._their_mailboxes

    @property
    def invites(self) -> InviteRepo:
        return self._invites

    @property
    def groups(self) -> GroupRepo:
        return self._groups

    @property
    def messages(self) -> MessageRepo:
        return self._messages

    @property
    def outbox(self) -> OutboxRepo:
        return self._outbox

    @property
    def seen(self) -> SeenRepo:
        return self._seen

    @property
    def unreported_events(self) -> UnreportedEventRepo:
        return self._unreported_events

    @property
    def send_log(self) -> SendLogRepo:
        return self._send_log

    def __repr__(self) -> str:
        return "SqliteTransaction(<open>)" if self._db.open else "SqliteTransaction(<ended>)"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError("the store's file system does not support WAL")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as error:
        conn.close()
        raise StoreCorruptedError(f"not a Sotto store ({error})") from None
    return conn


def _lock(path: Path) -> TextIO:
    """An exclusive advisory lock beside the database, held for the store's lifetime.

    A separate file, because closing any descriptor of the database itself would drop SQLite's own
    POSIX locks in this process.
    """
    handle = open(f"{path}.lock", "a")  # noqa: SIM115
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreLockedError("the store is already open (another process or another handle)") from None
    return handle


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite gives -wal/-shm the same mode)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class SqliteStore:
    """The encrypted SQLite store; build one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, cipher: StoreCipher, lock: TextIO) -> None:
        self._path = path
        self._conn = conn
        self._cipher = cipher
        self._lock_handle = lock
        self._gate = TransactionGate()

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        kdf: Argon2Params = Argon2Params.INTERACTIVE,
        rng: Rng = system_rng,
    ) -> SqliteStore:
        """A new, empty store at ``path``; StoreConflictError if a file is already there."""
        target = Path(path)
        lock = _lock(target)
        try:
            try:
                _create_private_file(target)
            except FileExistsError:
                raise StoreConflictError("a store already exists at this path") from None
            try:
                conn = _connect(target)
            except BaseException:
                _remove_files(target)
                raise
            try:
                data_key = rng(DATA_KEY_LENGTH)
                salt, wrapped = wrap_data_key(data_key, passphrase, kdf, rng)
                cipher = StoreCipher(data_key, rng)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(KEYRING_SQL)
                conn.execute(
                    "INSERT INTO keyring (id, kdf, iterations, memory_kib, lanes, salt, wrapped_key) "
                    "VALUES (1, ?, ?, ?, ?, ?, ?)",
                    (KDF_NAME, kdf.iterations, kdf.memory_kib, kdf.lanes, salt, wrapped),
                )
                migrate(conn, cipher)
                conn.execute("COMMIT")
            except BaseException:
                conn.close()
                # A half-made store would block the next attempt and never open: leave no file.
                _remove_files(target)
                raise
        except BaseException:
            lock.close()
            raise
        return cls(target, conn, cipher, lock)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        rng: Rng = system_rng,
        migrate_to: int = SCHEMA_VERSION,
        progress: Progress | None = None,
    ) -> SqliteStore:
        """Open an existing store, migrating it to the current schema.

        WrongPassphraseError, StoreLockedError, StoreVersionError, StoreCorruptedError (not a store),
        FileNotFoundError. ``migrate_to`` exists for migration tests. ``progress(version, done,
        total)`` hears how far a migration that reads every message has got (schema 6 lists
        each message in the search index: 14 s for 100,000 on a shared 2-vCPU machine).
        """
        target = Path(path)
        if not target.exists():
            raise FileNotFoundError(str(target))
        lock = _lock(target)
        try:
            conn = _connect(target)
            try:
                cipher = StoreCipher(_unlock(conn, passphrase), rng)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    migrate(conn, cipher, migrate_to, progress)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.close()
            raise
        return cls(target, conn, cipher, lock)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        self._gate.enter()
        db: Db | None = None
        try:  # from here on, whatever is raised (a Ctrl-C included) leaves the gate
            db = Db(self._conn, self._cipher)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise store_error(error) from None
            try:
                yield SqliteTransaction(db)
            except BaseException:
                db.open = False
                # SQLite may have rolled back already (e.g. disk full); keep the original error.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            db.open = False
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"commit failed: {error}") from None
        finally:
            if db is not None:
                db.open = False
            self._gate.leave()

    def change_passphrase(self, new_passphrase: str, *, kdf: Argon2Params = Argon2Params.INTERACTIVE) -> None:
        """Rewrap the data key under a new passphrase (nothing else is re-encrypted)."""
        self._gate.enter()
        try:
            salt, wrapped = self._cipher.wrap(new_passphrase, kdf)
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "UPDATE keyring SET kdf = ?, iterations = ?, memory_kib = ?, lanes = ?, salt = ?, "
                "wrapped_key = ? WHERE id = 1",
                (KDF_NAME, kdf.iterations, kdf.memory_kib, kdf.lanes, salt, wrapped),
            )
            self._conn.execute("COMMIT")
        finally:
            self._gate.leave()

    def schema_version(self) -> int:
        return schema_version(self._conn)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result ("ok" when sound)."""
        self._gate.enter()
        try:
            return "\n".join(str(r[0]) for r in self._conn.execute("PRAGMA integrity_check").fetchall())
        finally:
            self._gate.leave()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (e.g. before a backup)."""
        self._gate.enter()
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._gate.leave()

    def close(self) -> None:
        if self._gate.close():
            self._conn.close()
            self._lock_handle.close()

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStore({'closed' if self._gate.closed else 'open'})"


def _keyring(conn: sqlite3.Connection) -> tuple[Argon2Params, bytes, bytes]:
    try:
        row = conn.execute(
            "SELECT kdf, iterations, memory_kib, lanes, salt, wrapped_key FROM keyring WHERE id = 1"
        ).fetchone()
    except sqlite3.DatabaseError:
        raise StoreCorruptedError("not a Sotto store") from None
    if row is None or row[0] != KDF_NAME:
        raise StoreCorruptedError("the store has no usable key row")
    return Argon2Params(int(row[1]), int(row[2]), int(row[3])), bytes(row[4]), bytes(row[5])


def _unlock(conn: sqlite3.Connection, passphrase: str) -> bytes:
    params, salt, wrapped = _keyring(conn)
    return unwrap_data_key(wrapped, passphrase, salt, params)
