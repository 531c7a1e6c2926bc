"""The relay's SQLite schema: every table and column it writes (``docs/data-held.md`` lists each).

Tables are WITHOUT ROWID and keyed by random ids, so the file holds no insertion counter: a
rowid table would number every envelope in arrival order across all mailboxes, which tells
anyone holding the file which envelopes were sent together. Envelopes carry a per-mailbox
``seq`` instead, counted among that mailbox's pending envelopes only.

An envelope's id and payload are stored encrypted (AES-256-CTR) under a key of its own, held in
``envelope_keys``; deleting the envelope overwrites its key with zeros in place. SQLite's
``secure_delete`` zeroes a deleted row, but not the copies a row leaves behind when a page is
rebalanced or an overflow page is reused while it is pending; those copies are unreadable once
the key is gone. ``envelope_keys`` rows are never deleted and never change size, so SQLite
overwrites them where they are (no copy is left) and reuses their slots for new envelopes.

No row says when it was made (``storage.base`` says why): the b-trees order rows by their random
keys, and a ``VACUUM`` lays pages out in that order.
"""

from __future__ import annotations

SCHEMA_VERSION = 4
"""1: envelopes held their id and payload in clear (migrated at start, then vacuumed).
2: access tokens were stored as SHA-256(token), not bound to their account (rekeyed at start).
3: devices and mailboxes kept their creation day, mailbox and token expiries the day they were
set, accounts their creation day (dropped or coarsened at start, then vacuumed)."""

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    # A deleted row otherwise stays readable in the file's free pages.
    "PRAGMA secure_delete = ON",
    "PRAGMA foreign_keys = ON",
    # Temporary tables and indices in memory, never in a temp file.
    "PRAGMA temp_store = MEMORY",
)

TABLES = (
    """
    CREATE TABLE IF NOT EXISTS accounts (
        account_id    BLOB PRIMARY KEY,
        identity_key  BLOB NOT NULL,
        username_hash BLOB UNIQUE,
        created_day   INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS devices (
        account_id                  BLOB NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
        device_id                   INTEGER NOT NULL,
        registration_id             INTEGER NOT NULL,
        secret_hash                 BLOB NOT NULL,
        signed_pre_key_id           INTEGER,
        signed_pre_key              BLOB,
        signed_pre_key_signature    BLOB,
        kyber_last_resort_id        INTEGER,
        kyber_last_resort           BLOB,
        kyber_last_resort_signature BLOB,
        one_time_floor              INTEGER NOT NULL DEFAULT -1,
        kyber_floor                 INTEGER NOT NULL DEFAULT -1,
        PRIMARY KEY (account_id, device_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS one_time_pre_keys (
        account_id BLOB NOT NULL,
        device_id  INTEGER NOT NULL,
        key_id     INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id, key_id),
        FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS kyber_pre_keys (
        account_id BLOB NOT NULL,
        device_id  INTEGER NOT NULL,
        key_id     INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        signature  BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id, key_id),
        FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS access_tokens (
        token_hash  BLOB PRIMARY KEY,
        account_id  BLOB NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
        expires_day INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS access_tokens_by_account ON access_tokens (account_id)",
    """
    CREATE TABLE IF NOT EXISTS mailboxes (
        mailbox_id  BLOB PRIMARY KEY,
        auth_key    BLOB NOT NULL,
        token_hash  BLOB NOT NULL,
        ttl_days    INTEGER NOT NULL,
        expires_day INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS mailboxes_by_expiry ON mailboxes (expires_day)",
    """
    CREATE TABLE IF NOT EXISTS envelopes (
        mailbox_id   BLOB NOT NULL REFERENCES mailboxes (mailbox_id),
        seq          INTEGER NOT NULL,
        id_tag       BLOB NOT NULL,
        received_day INTEGER NOT NULL,
        key_slot     INTEGER NOT NULL,
        sealed       BLOB NOT NULL,
        PRIMARY KEY (mailbox_id, seq),
        UNIQUE (mailbox_id, id_tag)
    ) WITHOUT ROWID
    """,
    # A rowid table on purpose: slots are reused and only ever overwritten in place.
    """
    CREATE TABLE IF NOT EXISTS envelope_keys (
        slot INTEGER PRIMARY KEY,
        key  BLOB NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS envelopes_by_day ON envelopes (received_day)",
)
