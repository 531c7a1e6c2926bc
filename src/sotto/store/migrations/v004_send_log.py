"""Schema 4: the message send log, what we sent each contact 1:1 lately.

* ``send_log``: one row per content message sent to a contact, kept so that it can be sent again
  on a new session when the contact's device could not decrypt it (a retry receipt). A row goes
  when a delivery receipt names its text (``message_ix``, the HMAC index of the text's id; NULL
  for content without receipts) or when it expires (``sent_ms``, in clear like the outbox's
  retry times, so that expiry needs no key). The envelope id, the text's id, the content and
  the time are sealed, and the seal names the row's contact.
"""

from __future__ import annotations

import sqlite3

from sotto.store.cipher import StoreCipher

SQL = """
CREATE TABLE send_log (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    sent_ms INTEGER NOT NULL,
    message_ix BLOB,
    sealed BLOB NOT NULL
);
CREATE INDEX send_log_contact ON send_log (contact_id);
CREATE INDEX send_log_message ON send_log (message_ix);
CREATE INDEX send_log_sent ON send_log (sent_ms);
"""


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    del cipher
    for statement in SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
