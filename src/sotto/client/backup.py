"""Making a backup file of a profile's store, and a store again from one (the I/O around
:mod:`sotto.client.backup_format` and :mod:`sotto.store.sqlite.snapshot`).

A backup is written like an atomic file: into a hidden file beside the target, synced, then
linked into place, never over an existing file. A restore decrypts into a hidden directory
beside the store, checks every chunk and that the store opens, and only then renames the store
into place: a wrong key, a damaged file or a crash leaves what was there untouched. An existing
store is replaced only when asked (``force``), and never while another process has it open.
What a backup holds and leaves out: :mod:`sotto.store.sqlite.snapshot`; the user's view:
``docs/backup.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sotto.client.backup_format import (
    DEFAULT_CHUNK_SIZE,
    HEADER_LENGTH,
    BackupCorruptedError,
    BackupError,
    BackupKey,
    BackupOpener,
    BackupSealer,
    Prologue,
    decode_header,
    decode_prologue,
    encode_prologue,
)
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, system_rng
from sotto.errors import StoreLockedError
from sotto.store.sqlite.snapshot import copy_for_backup, install_copy

READ_SIZE = 1 << 20
SNAPSHOT_FORMAT = "sotto-store-copy"
COMPANIONS = ("-wal", "-shm", "-journal")


class ProfileExistsError(BackupError):
    """A restore onto a store that exists, without ``force``."""


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What a backup holds, by count (no names, no content)."""

    schema: int
    counts: dict[str, int]
    size: int


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_through(source: BinaryIO, step: int, transform: BackupSealer | BackupOpener, out: BinaryIO) -> None:
    while chunk := source.read(step):
        out.write(transform.seal(chunk) if isinstance(transform, BackupSealer) else transform.open(chunk))


def create_backup(
    store: Path,
    passphrase: str,
    output: Path,
    key: BackupKey,
    *,
    rng: Rng = system_rng,
    kdf: Argon2Params = Argon2Params.INTERACTIVE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> BackupSummary:
    """Write an encrypted backup of the store at ``store`` (opened with ``passphrase``) to
    ``output``, a new file readable by its owner only, under ``key``.

    FileExistsError if ``output`` exists; the store's errors (WrongPassphraseError, …).
    """
    if output.exists():
        raise FileExistsError(str(output))
    work = Path(tempfile.mkdtemp(prefix=".backup-", dir=store.parent))
    try:
        copy = copy_for_backup(store, passphrase, work / "store.db")
        sealer = BackupSealer(key, rng, chunk_size=chunk_size, kdf=kdf)
        meta = {"format": SNAPSHOT_FORMAT, "schema": copy.schema, "counts": copy.counts}
        fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(work / "store.db", "rb") as source:
                out.write(sealer.header)
                out.write(sealer.seal(encode_prologue(Prologue(meta, copy.data_key))))
                _copy_through(source, READ_SIZE, sealer, out)
                out.write(sealer.finish())
                out.flush()
                os.fsync(out.fileno())
            os.link(partial, output)  # never over a file that appeared meanwhile
        finally:
            os.unlink(partial)
        _sync_directory(output.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupSummary(copy.schema, copy.counts, output.stat().st_size)


@contextlib.contextmanager
def _held(store: Path) -> Iterator[None]:
    """The store's lock file (the one an open store holds), or StoreLockedError."""
    with open(f"{store}.lock", "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLockedError("the store is open in another process") from None
        yield


def read_backup(backup: Path, key: BackupKey, into: Path) -> Prologue:
    """Decrypt ``backup`` under ``key``, writing its store copy to the new file ``into``; every
    chunk is checked before this returns. WrongBackupKeyError (before anything is written),
    BackupCorruptedError."""
    with open(backup, "rb") as source:
        opener = BackupOpener(decode_header(source.read(HEADER_LENGTH)), key)
        fd = os.open(into, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as out:
            pending = bytearray()
            prologue: Prologue | None = None
            while True:
                data = source.read(READ_SIZE)
                plain = opener.open(data) if data else opener.finish()
                if prologue is None:
                    pending += plain
                    found = decode_prologue(pending)
                    if found is not None:
                        prologue, end = found
                        out.write(pending[end:])
                        pending.clear()
                else:
                    out.write(plain)
                if not data:
                    break
            out.flush()
            os.fsync(out.fileno())
    if prologue is None:
        raise BackupCorruptedError("the backup holds no store")
    if prologue.meta.get("format") != SNAPSHOT_FORMAT:
        raise BackupCorruptedError("the backup holds something other than a Sotto store")
    return prologue


def restore_backup(
    backup: Path,
    key: BackupKey,
    store: Path,
    passphrase: str,
    *,
    force: bool = False,
    rng: Rng = system_rng,
    kdf: Argon2Params = Argon2Params.INTERACTIVE,
) -> BackupSummary:
    """Make the store at ``store`` (protected by ``passphrase`` from now on) from ``backup``.

    ProfileExistsError if a store is there and not ``force``; StoreLockedError if it is open;
    WrongBackupKeyError, BackupCorruptedError; nothing at ``store`` changes on any error.
    """
    if store.exists() and not force:
        raise ProfileExistsError(f"there is already a store at {store}")
    store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=store.parent))
    try:
        built = work / store.name
        prologue = read_backup(backup, key, built)
        install_copy(built, prologue.data_key, passphrase, kdf=kdf, rng=rng)
        with _held(store):
            if store.exists() and not force:  # appeared while we worked
                raise ProfileExistsError(f"there is already a store at {store}")
            for suffix in COMPANIONS:  # nothing of the old store may pair with the new one
                Path(f"{store}{suffix}").unlink(missing_ok=True)
            os.replace(built, store)
            _sync_directory(store.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    counts = prologue.meta.get("counts")
    return BackupSummary(
        int(prologue.meta.get("schema", 0)),
        dict(counts) if isinstance(counts, dict) else {},
        backup.stat().st_size,
    )
