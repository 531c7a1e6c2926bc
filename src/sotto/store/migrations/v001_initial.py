"""Schema 1. Every sensitive value lives in a ``sealed`` column (AES-256-GCM, bound to table, column
and row key); ``*_ix`` columns are HMAC-SHA256 index values; what stays in clear is local
numbering, flags, coarse days and retry times."""

from __future__ import annotations

import sqlite3

from sotto.store.cipher import StoreCipher

SQL = """
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sealed BLOB NOT NULL
);
CREATE TABLE settings (
    key_ix BLOB PRIMARY KEY,
    sealed BLOB NOT NULL
);
CREATE TABLE prekeys (
    kind TEXT NOT NULL CHECK (kind IN ('one_time', 'signed', 'kyber')),
    id INTEGER NOT NULL,
    uploaded INTEGER NOT NULL,
    last_resort INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE last_resort_uses (
    use_ix BLOB PRIMARY KEY,
    kyber_id INTEGER NOT NULL
);
CREATE INDEX last_resort_uses_kyber ON last_resort_uses (kyber_id);
CREATE TABLE sessions (
    address_ix BLOB PRIMARY KEY,
    name_ix BLOB NOT NULL,
    device_id INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX sessions_name ON sessions (name_ix);
CREATE TABLE identities (
    name_ix BLOB PRIMARY KEY,
    sealed BLOB NOT NULL
);
CREATE TABLE sender_keys (
    key_ix BLOB PRIMARY KEY,
    sealed BLOB NOT NULL
);
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    name_ix BLOB NOT NULL UNIQUE,
    account_ix BLOB NOT NULL UNIQUE,
    address_ix BLOB NOT NULL UNIQUE,
    sealed BLOB NOT NULL
);
CREATE TABLE our_mailboxes (
    mailbox_ix BLOB PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX our_mailboxes_contact ON our_mailboxes (contact_id);
CREATE TABLE their_mailboxes (
    contact_id INTEGER PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL
);
CREATE TABLE invites (
    id INTEGER PRIMARY KEY,
    mailbox_ix BLOB NOT NULL UNIQUE,
    used INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    group_ix BLOB NOT NULL UNIQUE,
    sealed BLOB NOT NULL
);
CREATE TABLE group_members (
    group_row INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    skdm_sent INTEGER NOT NULL,
    PRIMARY KEY (group_row, contact_id)
);
CREATE INDEX group_members_contact ON group_members (contact_id);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER REFERENCES contacts (id) ON DELETE CASCADE,
    group_row INTEGER REFERENCES groups (id) ON DELETE CASCADE,
    sender_id INTEGER REFERENCES contacts (id) ON DELETE CASCADE,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    state INTEGER NOT NULL,
    find_ix BLOB NOT NULL UNIQUE,
    sealed BLOB NOT NULL,
    CHECK ((contact_id IS NULL) != (group_row IS NULL))
);
CREATE INDEX messages_contact ON messages (contact_id, id);
CREATE INDEX messages_group ON messages (group_row, id);
CREATE INDEX messages_sender ON messages (sender_id);
CREATE TABLE receipts (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (message_row, contact_id, kind)
);
CREATE INDEX receipts_contact ON receipts (contact_id);
CREATE TABLE owed_receipts (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    PRIMARY KEY (message_row, kind)
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    message_row INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    dedupe_ix BLOB NOT NULL UNIQUE,
    sealed BLOB NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_ms, id);
CREATE INDEX outbox_message ON outbox (message_row);
CREATE TABLE seen (
    ix BLOB PRIMARY KEY,
    day INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_day ON seen (day);
"""


def apply(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    del cipher
    # executescript would COMMIT the open transaction; run the statements one by one instead.
    for statement in SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
