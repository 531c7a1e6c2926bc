"""Schema 2: contacts keep the display name they announce; seals name the rows' links.

* A contact's sealed row gains the display name (schema 1 sealed five values, schema 2 six).
* A message's seal was bound to its row id only; it now also names the conversation (contact or
  group row), the sender and the direction, so relinking a message in clear columns is detected.
* A mailbox's seal was bound to its index value; it now also names the owning contact.

Every affected row is opened with its schema-1 binding and re-sealed with a fresh nonce. The
row-key formats are spelled out here, not imported: a later change to the backend must not change
what this step does.
"""

from __future__ import annotations

import sqlite3
import struct

from sotto.store import codec
from sotto.store.cipher import StoreCipher

_INT = struct.Struct(">q")
V1_CONTACT_FIELDS = 5


def _reseal(cipher: StoreCipher, table: str, old_key: bytes, new_key: bytes, sealed: bytes) -> bytes:
    return cipher.seal(table, "sealed", new_key, cipher.open(table, "sealed", old_key, sealed))


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    for contact_id, sealed in conn.execute("SELECT id, sealed FROM contacts").fetchall():
        row_key = _INT.pack(contact_id)
        values = codec.unpack(cipher.open("contacts", "sealed", row_key, sealed), V1_CONTACT_FIELDS)
        resealed = cipher.seal("contacts", "sealed", row_key, codec.pack([*values, ""]))
        conn.execute("UPDATE contacts SET sealed = ? WHERE id = ?", (resealed, contact_id))

    rows = conn.execute(
        "SELECT id, contact_id, group_row, sender_id, direction, sealed FROM messages"
    ).fetchall()
    for row_id, contact_id, group_row, sender_id, direction, sealed in rows:
        links = (row_id, contact_id or 0, group_row or 0, sender_id or 0)
        new_key = b"".join(_INT.pack(v) for v in links) + direction.encode()
        resealed = _reseal(cipher, "messages", _INT.pack(row_id), new_key, sealed)
        conn.execute("UPDATE messages SET sealed = ? WHERE id = ?", (resealed, row_id))

    for mailbox_ix, contact_id, sealed in conn.execute(
        "SELECT mailbox_ix, contact_id, sealed FROM our_mailboxes"
    ).fetchall():
        resealed = _reseal(cipher, "our_mailboxes", mailbox_ix, mailbox_ix + _INT.pack(contact_id), sealed)
        conn.execute("UPDATE our_mailboxes SET sealed = ? WHERE mailbox_ix = ?", (resealed, mailbox_ix))
