"""Schema 2: a contact's sealed row gains the display name they announce for themselves.

Schema 1 sealed (name, account id, address name, device id, created); schema 2 appends the
display name. Each row is opened with its old binding and re-sealed with a fresh nonce.
"""

from __future__ import annotations

import sqlite3
import struct

from sotto.store import codec
from sotto.store.cipher import StoreCipher

V1_FIELDS = 5


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    rows = conn.execute("SELECT id, sealed FROM contacts").fetchall()
    for contact_id, sealed in rows:
        row_key = struct.pack(">q", contact_id)
        values = codec.unpack(cipher.open("contacts", "sealed", row_key, sealed), V1_FIELDS)
        resealed = cipher.seal("contacts", "sealed", row_key, codec.pack([*values, ""]))
        conn.execute("UPDATE contacts SET sealed = ? WHERE id = ?", (resealed, contact_id))
