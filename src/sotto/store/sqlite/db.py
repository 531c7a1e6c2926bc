"""The connection as one transaction sees it: statements, sealing, index values, id counters, row keys."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from typing import Any

from sotto.errors import (
    MissingRecordError,
    SottoError,
    StoreConflictError,
    StoreCorruptedError,
    StoreError,
)
from sotto.store import codec
from sotto.store.cipher import StoreCipher
from sotto.store.codec import Value
from sotto.store.model import (
    ContactId,
)

_INT = struct.Struct(">q")


def id_key(value: int) -> bytes:
    return _INT.pack(value)


def mailbox_row_key(mailbox_ix: bytes, contact_id: int) -> bytes:
    """A mailbox's seal names its owner too: relinking the row to another contact breaks it."""
    return mailbox_ix + id_key(contact_id)


def message_row_key(
    row_id: int, contact_id: int | None, group_row: int | None, sender_id: int | None, direction: str
) -> bytes:
    """A message's seal names its conversation, sender and direction: moving it breaks it."""
    links = (row_id, contact_id or 0, group_row or 0, sender_id or 0)
    return b"".join(id_key(v) for v in links) + direction.encode()


WORD_TOKEN_LENGTH = 8
"""Bytes kept of a search token's HMAC: collisions only add candidates, which are checked on the
decrypted text, and a shorter row keeps the index small."""


def word_token(cipher: StoreCipher, contact_id: int | None, group_row: int | None, term: str) -> bytes:
    """The blind search token of ``term`` (a normalised word or word beginning) in one
    conversation: equal words in two conversations get unrelated tokens."""
    where = b"c" + id_key(contact_id) if contact_id is not None else b"g" + id_key(group_row or 0)
    return cipher.index("message word", where, term.encode())[:WORD_TOKEN_LENGTH]


def mismatch(what: str) -> StoreCorruptedError:
    return StoreCorruptedError(f"a {what} index points at another row")


def corrupted(what: str, error: SottoError) -> StoreCorruptedError:
    return StoreCorruptedError(f"stored {what} does not load ({type(error).__name__})")


def store_error(error: sqlite3.Error) -> StoreError:
    """SQLite's failure as the store's own error, so callers catch one tree."""
    text = str(error)
    if isinstance(error, sqlite3.IntegrityError):
        return StoreConflictError(f"constraint failed: {text}")
    if "decode" in text:
        # A text value where a sealed blob belongs fails while the row is fetched.
        return StoreCorruptedError("a stored value has the wrong type")
    if "malformed" in text or "not a database" in text:
        return StoreCorruptedError(f"the database file is damaged: {text}")
    return StoreError(f"database error: {text}")


class Db:
    """A transaction's view of the connection: statements, sealing and id counters."""

    __slots__ = ("cipher", "conn", "open")

    def __init__(self, conn: sqlite3.Connection, cipher: StoreCipher) -> None:
        self.conn = conn
        self.cipher = cipher
        self.open = True

    def check(self) -> None:
        if not self.open:
            raise StoreError("this transaction has ended")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self.check()
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise store_error(error) from None

    def row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.check()
        try:
            return self.conn.execute(sql, params).fetchone()
        except sqlite3.Error as error:
            raise store_error(error) from None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; returns the number of rows changed."""
        self.check()
        try:
            return self.conn.execute(sql, params).rowcount
        except sqlite3.Error as error:
            raise store_error(error) from None

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.check()
        try:
            self.conn.executemany(sql, params)
        except sqlite3.Error as error:
            raise store_error(error) from None

    def seal(self, table: str, row_key: bytes, values: Sequence[Value]) -> bytes:
        return self.cipher.seal(table, "sealed", row_key, codec.pack(values))

    def open_row(self, table: str, row_key: bytes, sealed: bytes, count: int) -> list[Value]:
        return codec.unpack(self.cipher.open(table, "sealed", row_key, sealed), count)

    def seal_raw(self, table: str, row_key: bytes, data: bytes) -> bytes:
        return self.cipher.seal(table, "sealed", row_key, data)

    def open_raw(self, table: str, row_key: bytes, sealed: bytes) -> bytes:
        return self.cipher.open(table, "sealed", row_key, sealed)

    def ix(self, domain: str, *parts: bytes) -> bytes:
        return self.cipher.index(domain, *parts)

    def next_id(self, counter: str, count: int = 1) -> int:
        """The first of ``count`` fresh ids from a never-decreasing counter."""
        found = self.row("SELECT value FROM counters WHERE name = ?", (counter,))
        first = (0 if found is None else int(found[0])) + 1
        self.run(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (counter, first + count - 1),
        )
        return first

    def peek_counter(self, counter: str) -> int:
        found = self.row("SELECT value FROM counters WHERE name = ?", (counter,))
        return 0 if found is None else int(found[0])


class Repo:
    __slots__ = ("db",)

    def __init__(self, db: Db) -> None:
        self.db = db


def need_contact(db: Db, contact_id: ContactId) -> None:
    if db.row("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)) is None:
        raise MissingRecordError("no such contact")
