"""Schema 3: blocked and removed contacts; received messages and events not yet reported.

* ``contacts.blocked``: envelopes from the contact are dropped (no receipts, no events).
* ``contacts.removed``: the contact was removed (session, mailboxes and trust gone); the row stays
  so the history keeps naming its sender, and a later invite from or to the account revives it.
* ``messages.unreported``: an incoming message is stored with the mark set, in the transaction
  that stores its plaintext, and cleared once the app has taken its event; a client opening the
  store reports every marked message again (same message id).
* ``unreported_events``: the other events that change what the app shows (a contact added or
  accepted, a group update, an identity change), kept the same way until the app took them. The
  kind and its flag are sealed; the links are local numbers, as elsewhere.

Existing rows get the defaults: nothing blocked or removed, everything already reported.
"""

from __future__ import annotations

import sqlite3

from sotto.store.cipher import StoreCipher

SQL = """
ALTER TABLE contacts ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN unreported INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_unreported ON messages (id) WHERE unreported = 1;
CREATE TABLE unreported_events (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    group_row INTEGER REFERENCES groups (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL
);
CREATE INDEX unreported_events_contact ON unreported_events (contact_id);
CREATE INDEX unreported_events_group ON unreported_events (group_row);
"""


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    del cipher
    for statement in SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
