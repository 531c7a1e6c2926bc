"""A store copied for a backup, and a store made again from such a copy.

:func:`copy_for_backup` copies the SQLite file in one read transaction (SQLite's online backup,
so a running ``sotto listen`` may keep the store open and write meanwhile) and takes out of the
copy what a backup must never hold:

* every session (the Double Ratchet state) and every sender key (the groups' ratchets): an old
  copy of either, used again, would reuse message keys; a restored profile starts new sessions
  through the session repair (:mod:`sotto.client.flows.repair`);
* the private parts of one-time prekeys (EC and Kyber): each may be used once, and a restored
  copy could accept its second use; the signed prekey and the last-resort Kyber prekey stay
  (they are made to be used many times; the repair hands them to the contact), as do the
  triples of last-resort uses already seen, so a replay stays refused;
* the outbox: envelopes already sealed on the sessions left out;
* the key row (the copy keeps its values sealed under the store's data key, which travels
  inside the encrypted backup instead) and which group members were sent our sender key (they
  are sent the new one).

What stays, sealed as in the store: the account (its identity key, so contacts keep trusting us,
and its relay credentials), settings, contacts and the identity keys we trust for them, both
sides' mailboxes, invites, groups and their members, messages with their receipts, changes,
reactions, files kept beside them and search index, the envelopes already seen, the send log,
unreported events.

:func:`install_copy` makes such a copy a store again: a new key row wraps the data key under
the passphrase chosen for the restored store, then the store is opened (migrating a copy made
by an older Sotto) and its account read, so a copy that does not open is never installed.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, system_rng
from sotto.errors import StoreCorruptedError, StoreError, StoreVersionError
from sotto.store.cipher import DATA_KEY_LENGTH, unwrap_data_key, wrap_data_key
from sotto.store.migrations import SCHEMA_VERSION, schema_version
from sotto.store.sqlite.store import KDF_NAME, SqliteStore

LEFT_OUT = (
    "DELETE FROM sessions",
    "DELETE FROM sender_keys",
    "DELETE FROM prekeys WHERE kind = 'one_time' OR (kind = 'kyber' AND last_resort = 0)",
    "DELETE FROM outbox",
    "DELETE FROM keyring",
    "UPDATE group_members SET skdm_sent = 0",
)
"""What :func:`copy_for_backup` takes out of the copy (see the module's docstring)."""

COUNTED = ("contacts", "groups", "messages", "message_attachments")


@dataclass(frozen=True, slots=True, repr=False)
class Copy:
    """What a copy needs beside its file: the data key its values are sealed under, and counts."""

    data_key: bytes
    schema: int
    counts: dict[str, int]

    def __repr__(self) -> str:
        return f"Copy(schema={self.schema}, counts={self.counts}, <data key hidden>)"


def _private_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _data_key(conn: sqlite3.Connection, passphrase: str) -> bytes:
    try:
        row = conn.execute(
            "SELECT kdf, iterations, memory_kib, lanes, salt, wrapped_key FROM keyring WHERE id = 1"
        ).fetchone()
    except sqlite3.DatabaseError:
        raise StoreCorruptedError("not a Sotto store") from None
    if row is None or row[0] != KDF_NAME:
        raise StoreCorruptedError("the store has no usable key row")
    params = Argon2Params(int(row[1]), int(row[2]), int(row[3]))
    return unwrap_data_key(bytes(row[5]), passphrase, bytes(row[4]), params)


def copy_for_backup(store: Path, passphrase: str, into: Path) -> Copy:
    """Copy the store at ``store`` into the new file ``into`` (made readable by its owner only)
    without what a backup leaves out.

    WrongPassphraseError, StoreCorruptedError (not a store), StoreVersionError (newer than this
    Sotto), FileNotFoundError.
    """
    if not store.exists():
        raise FileNotFoundError(str(store))
    source = sqlite3.connect(store, isolation_level=None)
    try:
        data_key = _data_key(source, passphrase)
        _private_file(into)
        target = sqlite3.connect(into, isolation_level=None)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    conn = sqlite3.connect(into, isolation_level=None)
    try:
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreVersionError(f"store schema {version} is newer than this version of Sotto")
        # The copy is one file with no WAL, and what is deleted is zeroed, then the file compacted.
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")
        for statement in LEFT_OUT:
            conn.execute(statement)
        conn.execute("COMMIT")
        conn.execute("VACUUM")
        counts = {}
        for table in COUNTED:  # fixed names, not input
            counts[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    finally:
        conn.close()
    return Copy(data_key, version, counts)


def install_copy(
    copy: Path,
    data_key: bytes,
    passphrase: str,
    *,
    kdf: Argon2Params = Argon2Params.INTERACTIVE,
    rng: Rng = system_rng,
) -> None:
    """Make the copy at ``copy`` a store that ``passphrase`` opens, and check that it does.

    StoreCorruptedError if it is not such a copy or its values do not open with ``data_key``;
    StoreVersionError if a newer Sotto made it. The file is left closed, its WAL folded in.
    """
    if len(data_key) != DATA_KEY_LENGTH:
        raise StoreCorruptedError("the backup's data key is malformed")
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError:
            raise StoreCorruptedError("the backup does not hold a store") from None
        if check is None or check[0] != "ok" or not {"keyring", "account"} <= tables:
            raise StoreCorruptedError("the backup does not hold a store")
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"the backup's store schema {version} is newer than this version of Sotto"
            )
        salt, wrapped = wrap_data_key(data_key, passphrase, kdf, rng)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM keyring")
        conn.execute(
            "INSERT INTO keyring (id, kdf, iterations, memory_kib, lanes, salt, wrapped_key) "
            "VALUES (1, ?, ?, ?, ?, ?, ?)",
            (KDF_NAME, kdf.iterations, kdf.memory_kib, kdf.lanes, salt, wrapped),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    store = SqliteStore.open(copy, passphrase, rng=rng)
    try:
        with store.transaction() as tx:
            if tx.account.get() is None:
                raise StoreError("the backup holds no account")
        store.checkpoint()
    finally:
        store.close()
    Path(f"{copy}.lock").unlink(missing_ok=True)
