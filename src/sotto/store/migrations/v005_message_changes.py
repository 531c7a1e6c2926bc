"""Schema 5: replies, edits, deletions for everyone, reactions and disappearing messages.

* ``messages.expires_ms``: when the row is to be deleted (NULL: kept), in clear like the
  outbox's retry times, so that expiry needs no key and can run in one indexed DELETE.
* ``message_extras``: at most one row per message, for a message that has any of: the message
  it replies to, an edit time, the deleted-for-everyone mark, a disappearing-timer notice, its
  reactions. All sealed, and the seal names the message's row. It goes with the message
  (``ON DELETE CASCADE``); ``secure_delete`` zeroes both.
"""

from __future__ import annotations

import sqlite3

from sotto.store.cipher import StoreCipher

SQL = """
ALTER TABLE messages ADD COLUMN expires_ms INTEGER;
CREATE INDEX messages_expiry ON messages (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE message_extras (
    message_row INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL
);
"""


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    del cipher
    for statement in SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
