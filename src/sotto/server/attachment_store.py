"""The relay's attachment blobs: files of their own in ``<data_dir>/attachments/``, and a small
SQLite database beside them (``attachments.db``) with one row per blob.

A blob is held under a random 16-byte id the relay draws; nothing links it to an account, a
device or a mailbox (the row has no such column, and uploads and downloads name only the id).
Each blob file is encrypted at rest with AES-256-CTR under a random key of its own, kept only
in its row. Deleting a blob deletes the row, which ``secure_delete`` overwrites, and then copies
the write-ahead log into the database and truncates it to zero bytes, so the key is in no file
any more; then the blob file is unlinked. The file system may keep the unlinked file's blocks
until it reuses them, but what they hold is ciphertext under a key that no longer exists.

Every call is synchronous and opens its own connection (the router runs them in a thread, one
at a time per store); there is nothing to close.

Errors: :class:`BlobNotFoundError` (no such blob, or a wrong upload token: one answer),
:class:`OffsetMismatchError` (a chunk not at the current end), :class:`BlobTooLargeError`,
:class:`BlobQuotaError` (the store holds its quota), :class:`DiskLowError` (free disk below the
floor), :class:`IncompleteBlobError` (a download before the upload ended).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sotto.crypto.kdf import bytes_equal
from sotto.crypto.random import Rng

BLOB_ID_LENGTH: Final = 16
UPLOAD_TOKEN_LENGTH: Final = 32
_KEY_LENGTH: Final = 32
_BLOCK: Final = 16

MAX_BLOB_BYTES: Final = 107_335_792
"""The blob of the largest attachment (100 MiB padded to its bucket, with IV and MAC):
``sotto.protocol.attachment.encrypted_size(MAX_ATTACHMENT_SIZE)``, which a test checks."""

MAX_RECIPIENTS: Final = 1_000
"""A blob is deleted once fetched this many times at most: a group's largest membership."""

TTL_DAYS: Final = 30
"""A complete blob is deleted 30 days after its upload began, fetched or not (Signal's CDN
keeps attachments 30 days too)."""

INCOMPLETE_TTL_DAYS: Final = 2
"""An upload that has not ended is deleted after this many days: long enough to resume after a
crash or a night offline, short enough that abandoned reservations do not hold the quota."""

READ_CHUNK: Final = 64 * 1024

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS blobs ("
    " id BLOB PRIMARY KEY,"
    " upload_hash BLOB NOT NULL,"
    " key BLOB NOT NULL,"
    " length INTEGER NOT NULL,"
    " received INTEGER NOT NULL,"
    " fetches_left INTEGER NOT NULL,"
    " day INTEGER NOT NULL"
    ") WITHOUT ROWID"
)
COLUMNS: Final = ("id", "upload_hash", "key", "length", "received", "fetches_left", "day")
"""The columns of ``blobs``, as ``docs/data-held.md`` lists them (a test compares)."""


class BlobStoreError(Exception):
    """A refusal of the attachment store."""


class BlobNotFoundError(BlobStoreError):
    """No blob with this id, or a wrong upload token: one answer, so neither can be probed."""


class OffsetMismatchError(BlobStoreError):
    """A chunk that does not start where the upload has got to; ``offset`` says where that is."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the upload is at offset {offset}")
        self.offset = offset


class BlobTooLargeError(BlobStoreError):
    """A blob longer than :data:`MAX_BLOB_BYTES`, or a chunk past the blob's announced length."""


class BlobQuotaError(BlobStoreError):
    """The store holds its quota of bytes (complete and reserved)."""


class DiskLowError(BlobStoreError):
    """Free disk would fall below the floor."""


class IncompleteBlobError(BlobStoreError):
    """The blob's upload has not ended."""


@dataclass(frozen=True, slots=True)
class BlobStatus:
    length: int
    received: int

    @property
    def complete(self) -> bool:
        return self.received == self.length


def _ctr(key: bytes, offset: int) -> Cipher[modes.CTR]:
    return Cipher(algorithms.AES256(key), modes.CTR((offset // _BLOCK).to_bytes(_BLOCK, "big")))


def _crypt_at(key: bytes, offset: int, data: bytes) -> bytes:
    """AES-256-CTR of ``data`` lying at ``offset`` of the blob (encrypts and decrypts)."""
    context = _ctr(key, offset).encryptor()
    skip = offset % _BLOCK
    if skip:
        context.update(bytes(skip))
    return context.update(data) + context.finalize()


def _upload_hash(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class BlobStore:
    """The blobs under ``directory``, with a quota and a free-disk floor."""

    def __init__(self, directory: Path, *, quota_bytes: int, min_free_disk_bytes: int) -> None:
        self.directory = directory
        self.quota_bytes = quota_bytes
        self.min_free_disk_bytes = min_free_disk_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / "attachments.db"
        if not self.path.exists():  # created 0600 before SQLite opens it
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        setup = sqlite3.connect(self.path, isolation_level=None)
        try:
            setup.execute("PRAGMA journal_mode = WAL")
            setup.execute(_SCHEMA)
        finally:
            setup.close()

    def _connection(self) -> _Connection:
        return _Connection(self.path)

    def _file(self, blob_id: bytes) -> Path:
        # Named by a hash of the id: a directory listing does not hand out download ids.
        return self.directory / hashlib.sha256(b"sotto blob file\x00" + blob_id).hexdigest()[:32]

    def free_disk(self) -> int:
        fs = os.statvfs(self.directory)
        return fs.f_bavail * fs.f_frsize

    # ------------------------------------------------------------------ uploads
    def create(self, length: int, fetches: int, day: int, rng: Rng) -> tuple[bytes, bytes]:
        """Reserve a blob of ``length`` bytes, deleted after ``fetches`` complete downloads;
        returns ``(blob_id, upload_token)``."""
        if not 0 < length <= MAX_BLOB_BYTES:
            raise BlobTooLargeError(f"a blob holds 1 to {MAX_BLOB_BYTES} bytes")
        if not 0 < fetches <= MAX_RECIPIENTS:
            raise ValueError(f"1 to {MAX_RECIPIENTS} recipients")
        with self._lock, self._connection() as conn:
            held = conn.execute("SELECT coalesce(sum(length), 0) FROM blobs").fetchone()[0]
            if held + length > self.quota_bytes:
                raise BlobQuotaError
            unwritten = conn.execute("SELECT coalesce(sum(length - received), 0) FROM blobs").fetchone()[0]
            if self.free_disk() - unwritten - length < self.min_free_disk_bytes:
                raise DiskLowError
            blob_id, token, key = rng(BLOB_ID_LENGTH), rng(UPLOAD_TOKEN_LENGTH), rng(_KEY_LENGTH)
            conn.execute(
                "INSERT INTO blobs (id, upload_hash, key, length, received, fetches_left, day) "
                "VALUES (?, ?, ?, ?, 0, ?, ?)",
                (blob_id, _upload_hash(token), key, length, fetches, day),
            )
            fd = os.open(self._file(blob_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        return blob_id, token

    def _row(self, conn: sqlite3.Connection, blob_id: bytes) -> tuple[bytes, bytes, int, int] | None:
        row = conn.execute(
            "SELECT upload_hash, key, length, received FROM blobs WHERE id = ?", (blob_id,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]), int(row[2]), int(row[3]))

    def _uploading(self, conn: sqlite3.Connection, blob_id: bytes, token: bytes) -> tuple[bytes, int, int]:
        row = self._row(conn, blob_id)
        presented = _upload_hash(token)
        held = row[0] if row is not None else bytes(32)
        if not bytes_equal(held, presented) or row is None:
            raise BlobNotFoundError
        return row[1], row[2], row[3]

    def status(self, blob_id: bytes, token: bytes) -> BlobStatus:
        """How far the upload has got (for resuming it)."""
        with self._lock, self._connection() as conn:
            _, length, received = self._uploading(conn, blob_id, token)
        return BlobStatus(length, received)

    def append(self, blob_id: bytes, token: bytes, offset: int, data: bytes) -> BlobStatus:
        """Write ``data`` at ``offset``, which must be where the upload has got to. The bytes are
        on disk (fsync) before the row records them, so after a crash the upload resumes from
        the last chunk recorded, and the chunk after it is simply written again."""
        with self._lock, self._connection() as conn:
            key, length, received = self._uploading(conn, blob_id, token)
            if offset != received:
                raise OffsetMismatchError(received)
            if received + len(data) > length:
                raise BlobTooLargeError("the chunk runs past the blob's length")
            fd = os.open(self._file(blob_id), os.O_WRONLY)
            try:
                sealed, written = _crypt_at(key, offset, data), 0
                while written < len(sealed):  # pwrite may write less than asked
                    written += os.pwrite(fd, sealed[written:], offset + written)
                os.fsync(fd)
            finally:
                os.close(fd)
            received += len(data)
            conn.execute("UPDATE blobs SET received = ? WHERE id = ?", (received, blob_id))
        return BlobStatus(length, received)

    # ------------------------------------------------------------------ downloads
    def open_blob(self, blob_id: bytes) -> BlobReader:
        """A reader of a complete blob (close it when done)."""
        with self._lock, self._connection() as conn:
            row = self._row(conn, blob_id)
        if row is None:
            raise BlobNotFoundError
        if row[3] != row[2]:
            raise IncompleteBlobError
        return BlobReader(self._file(blob_id), row[1], row[2])

    def fetched(self, blob_id: bytes) -> bool:
        """Count one complete download; delete the blob after the last. True if deleted."""
        with self._lock, self._connection() as conn:
            conn.execute("UPDATE blobs SET fetches_left = fetches_left - 1 WHERE id = ?", (blob_id,))
            row = conn.execute("SELECT fetches_left FROM blobs WHERE id = ?", (blob_id,)).fetchone()
            if row is None or row[0] > 0:
                return False
            self._delete(conn, [blob_id])
        return True

    # ------------------------------------------------------------------ deletion
    def sweep(self, today: int) -> int:
        """Delete blobs older than :data:`TTL_DAYS` and uploads left unfinished for
        :data:`INCOMPLETE_TTL_DAYS`; returns how many."""
        with self._lock, self._connection() as conn:
            ids = [
                bytes(r[0])
                for r in conn.execute(
                    "SELECT id FROM blobs WHERE day <= ? OR (received < length AND day <= ?)",
                    (today - TTL_DAYS, today - INCOMPLETE_TTL_DAYS),
                )
            ]
            if ids:
                self._delete(conn, ids)
        return len(ids)

    def _delete(self, conn: sqlite3.Connection, ids: list[bytes]) -> None:
        conn.executemany("DELETE FROM blobs WHERE id = ?", [(i,) for i in ids])
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for blob_id in ids:
            self._file(blob_id).unlink(missing_ok=True)

    def held_bytes(self) -> int:
        with self._lock, self._connection() as conn:
            return int(conn.execute("SELECT coalesce(sum(length), 0) FROM blobs").fetchone()[0])


class BlobReader:
    """An open, complete blob: reads decrypt what is at rest. The file stays readable to this
    reader even if the blob is deleted meanwhile."""

    def __init__(self, path: Path, key: bytes, length: int) -> None:
        self.length = length
        self._key = key
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``."""
        size = max(0, min(size, self.length - offset))
        self._file.seek(offset)
        return _crypt_at(self._key, offset, self._file.read(size))

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"BlobReader(length={self.length}, key=<hidden>)"


class _Connection:
    """One connection for one call: secure_delete on, committed on success, always closed."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("BEGIN IMMEDIATE")

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.conn.close()
