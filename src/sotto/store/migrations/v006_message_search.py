"""Schema 6: a blind word index for searching messages, encrypted at rest like every ``*_ix``.

``message_words`` lists each message under keyed tokens (HMAC-SHA256 under the store's index
key, truncated to 8 bytes; see :func:`sotto.store.sqlite.db.word_token`) of its normalised words
and their beginnings (:mod:`sotto.store.search`), one row per (token, message). A token names its
conversation too, so the same word in two conversations gives unrelated tokens. The rows go with
their message (``ON DELETE CASCADE``: deletion, expiry, a removed contact or group), and an edit
lists the message again.

The step lists the messages already held (every row is opened once), in batches of
:data:`BATCH` so that ``progress(done, total)`` can report how far it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sotto.store import codec
from sotto.store.cipher import StoreCipher
from sotto.store.codec import as_str
from sotto.store.search import index_terms

SQL = """
CREATE TABLE message_words (
    token BLOB NOT NULL,
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (token, message_row)
) WITHOUT ROWID;
CREATE INDEX message_words_row ON message_words (message_row);
"""

BATCH = 2000


def backfill(
    conn: sqlite3.Connection, cipher: StoreCipher, progress: Callable[[int, int], None] | None = None
) -> int:
    """List every message held in ``message_words``; how many were read."""
    # Imported here: the SQLite package imports the migrations when it loads.
    from sotto.store.sqlite.db import message_row_key, word_token  # noqa: PLC0415

    total = int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    done = 0
    last = -1
    while True:
        rows = conn.execute(
            "SELECT id, contact_id, group_row, sender_id, direction, sealed FROM messages "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (last, BATCH),
        ).fetchall()
        if not rows:
            break
        entries: list[tuple[bytes, int]] = []
        for row_id, contact_id, group_row, sender_id, direction, sealed in rows:
            row_key = message_row_key(row_id, contact_id, group_row, sender_id, direction)
            text = as_str(codec.unpack(cipher.open("messages", "sealed", row_key, sealed), 4)[1])
            entries += [(word_token(cipher, contact_id, group_row, t), row_id) for t in index_terms(text)]
        conn.executemany(
            "INSERT INTO message_words (token, message_row) VALUES (?, ?) ON CONFLICT DO NOTHING", entries
        )
        done += len(rows)
        last = int(rows[-1][0])
        if progress is not None:
            progress(done, total)
    return done


def apply(
    conn: sqlite3.Connection, cipher: StoreCipher, progress: Callable[[int, int], None] | None = None
) -> None:
    for statement in SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
    backfill(conn, cipher, progress)
