"""Schema 7: what opens a message's file (its pointer, key and digest) kept beside the message.

``message_attachments`` holds at most one row per message, sealed to the message's row. It goes
with the message (``ON DELETE CASCADE``: expiry, a deleted message, a removed contact or group)
and with a deletion for everyone; ``secure_delete`` zeroes it.

Until schema 6 the client kept these in the settings, under ``attachment:<row>:<message id>``,
where nothing deleted them with their message. The step moves each one whose message is still
held (and not deleted for everyone) into the new table, as the client keeps them there (the
encoded content and the time the file was saved, none yet), and deletes every such setting.
"""

from __future__ import annotations

import sqlite3

from sotto.store import codec
from sotto.store.cipher import StoreCipher
from sotto.store.codec import as_bytes, as_str

SQL = """
CREATE TABLE message_attachments (
    message_row INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL
);
"""

_OLD_PREFIX = "attachment:"


def _move_settings(conn: sqlite3.Connection, cipher: StoreCipher) -> int:
    """Move the settings' attachment entries into ``message_attachments``; how many moved."""
    # Imported here: the SQLite package imports the migrations when it loads.
    from sotto.store.sqlite.db import message_row_key  # noqa: PLC0415

    moved = 0
    for key_ix, sealed in conn.execute("SELECT key_ix, sealed FROM settings").fetchall():
        key, value = codec.unpack(cipher.open("settings", "sealed", key_ix, sealed), 2)
        name = as_str(key)
        if not name.startswith(_OLD_PREFIX):
            continue
        conn.execute("DELETE FROM settings WHERE key_ix = ?", (key_ix,))
        row_text, _, message_hex = name.removeprefix(_OLD_PREFIX).partition(":")
        if not row_text.isdigit():
            continue
        row_id = int(row_text)
        found = conn.execute(
            "SELECT m.contact_id, m.group_row, m.sender_id, m.direction, m.sealed, x.sealed "
            "FROM messages m LEFT JOIN message_extras x ON x.message_row = m.id WHERE m.id = ?",
            (row_id,),
        ).fetchone()
        if found is None:
            continue
        contact_id, group_row, sender_id, direction, message_sealed, extras = found
        row_key = message_row_key(row_id, contact_id, group_row, sender_id, direction)
        message_id = as_bytes(codec.unpack(cipher.open("messages", "sealed", row_key, message_sealed), 4)[0])
        if message_id.hex() != message_hex:
            continue
        if (
            extras is not None
            and codec.unpack(cipher.open("message_extras", "sealed", row_key, extras), 7)[3]
        ):
            continue  # deleted for everyone: its file goes
        conn.execute(
            "INSERT INTO message_attachments (message_row, sealed) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (
                row_id,
                cipher.seal("message_attachments", "sealed", row_key, codec.pack([as_bytes(value), None])),
            ),
        )
        moved += 1
    return moved


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    for statement in SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
    _move_settings(conn, cipher)
