"""Schema 8: a trusted identity keeps the "safety number changed" flag.

A trusted identity's sealed row gains one value: when a message last came for that peer under
another identity key (the client refused it), or None. The flag stays until the user verifies
the contact again or acknowledges the change; before, the client only reported the event once.

Every identity row is opened (schema 7 sealed five values, schema 8 six) and re-sealed with a
fresh nonce, the flag cleared. The row key (the blind index of the peer's name) is unchanged.
"""

from __future__ import annotations

import sqlite3

from sotto.store import codec
from sotto.store.cipher import StoreCipher

V7_IDENTITY_FIELDS = 5


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    for name_ix, sealed in conn.execute("SELECT name_ix, sealed FROM identities").fetchall():
        values = codec.unpack(cipher.open("identities", "sealed", name_ix, sealed), V7_IDENTITY_FIELDS)
        resealed = cipher.seal("identities", "sealed", name_ix, codec.pack([*values, None]))
        conn.execute("UPDATE identities SET sealed = ? WHERE name_ix = ?", (resealed, name_ix))
