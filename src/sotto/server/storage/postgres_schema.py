"""The relay's PostgreSQL schema: the same tables and columns as SQLite's (``storage.schema``),
with PostgreSQL's types, and the migrations that bring a database to :data:`SCHEMA_VERSION`.

``envelopes`` is partitioned by a hash of ``mailbox_id`` (:data:`ENVELOPE_PARTITIONS` tables that
PostgreSQL routes rows to; a query names the parent only). One mailbox lives in one partition, so
a mailbox's reads, sends and acks touch one table and one index, and a partition can later move
to another tablespace or, with Citus, another server.

The planner's statistics are switched off for every column (``SET STATISTICS 0``): an
``ANALYZE``, which autovacuum runs on its own, would otherwise copy sample values of each column
(mailbox ids, tags, days: ``pg_statistic``, read as ``pg_stats``) into the catalogue, where they
outlive the rows they came from. SQLite's ``sqlite_stat1`` is never written for the same reason.

The schema version is kept in a one-row table, ``schema_version`` (SQLite keeps it in the file's
header, ``PRAGMA user_version``). There was no PostgreSQL store before version 4: the list of
migrations starts there, and a later version adds its step to :data:`MIGRATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable

from sotto.server.storage.schema import SCHEMA_VERSION

__all__ = [
    "ENVELOPE_PARTITIONS",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "SCHEMA_VERSION",
    "TABLES",
    "create_statements",
    "no_statistics",
]

ENVELOPE_PARTITIONS = 16
"""Hash partitions of ``envelopes`` (fixed when the database is created)."""

MIGRATION_LOCK = 0x536F74746F  # "Sotto"
"""The advisory lock several nodes starting at once take, so one of them creates or migrates."""

TABLES: dict[str, str] = {
    "accounts": """
        CREATE TABLE accounts (
            account_id    bytea PRIMARY KEY,
            identity_key  bytea NOT NULL,
            username_hash bytea UNIQUE,
            created_day   integer NOT NULL
        )""",
    "devices": """
        CREATE TABLE devices (
            account_id                  bytea NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
            device_id                   integer NOT NULL,
            registration_id             integer NOT NULL,
            secret_hash                 bytea NOT NULL,
            signed_pre_key_id           bigint,
            signed_pre_key              bytea,
            signed_pre_key_signature    bytea,
            kyber_last_resort_id        bigint,
            kyber_last_resort           bytea,
            kyber_last_resort_signature bytea,
            one_time_floor              bigint NOT NULL DEFAULT -1,
            kyber_floor                 bigint NOT NULL DEFAULT -1,
            PRIMARY KEY (account_id, device_id)
        )""",
    "one_time_pre_keys": """
        CREATE TABLE one_time_pre_keys (
            account_id bytea NOT NULL,
            device_id  integer NOT NULL,
            key_id     bigint NOT NULL,
            public_key bytea NOT NULL,
            PRIMARY KEY (account_id, device_id, key_id),
            FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
        )""",
    "kyber_pre_keys": """
        CREATE TABLE kyber_pre_keys (
            account_id bytea NOT NULL,
            device_id  integer NOT NULL,
            key_id     bigint NOT NULL,
            public_key bytea NOT NULL,
            signature  bytea NOT NULL,
            PRIMARY KEY (account_id, device_id, key_id),
            FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
        )""",
    "access_tokens": """
        CREATE TABLE access_tokens (
            token_hash  bytea PRIMARY KEY,
            account_id  bytea NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
            expires_day integer NOT NULL
        )""",
    "mailboxes": """
        CREATE TABLE mailboxes (
            mailbox_id  bytea PRIMARY KEY,
            auth_key    bytea NOT NULL,
            token_hash  bytea NOT NULL,
            ttl_days    integer NOT NULL,
            expires_day integer NOT NULL
        )""",
    "envelopes": """
        CREATE TABLE envelopes (
            mailbox_id   bytea NOT NULL REFERENCES mailboxes (mailbox_id),
            seq          integer NOT NULL,
            id_tag       bytea NOT NULL,
            received_day integer NOT NULL,
            key_slot     bigint NOT NULL,
            sealed       bytea NOT NULL,
            PRIMARY KEY (mailbox_id, seq),
            UNIQUE (mailbox_id, id_tag)
        ) PARTITION BY HASH (mailbox_id)""",
    "envelope_keys": """
        CREATE TABLE envelope_keys (
            slot bigint PRIMARY KEY,
            key  bytea NOT NULL
        )""",
}
"""Table name -> its CREATE statement, in an order that satisfies the foreign keys."""

_INDEXES = (
    "CREATE INDEX access_tokens_by_account ON access_tokens (account_id)",
    "CREATE INDEX mailboxes_by_expiry ON mailboxes (expires_day)",
    "CREATE INDEX envelopes_by_day ON envelopes (received_day)",
)

_COLUMNS = {
    "accounts": ("account_id", "identity_key", "username_hash", "created_day"),
    "devices": (
        "account_id",
        "device_id",
        "registration_id",
        "secret_hash",
        "signed_pre_key_id",
        "signed_pre_key",
        "signed_pre_key_signature",
        "kyber_last_resort_id",
        "kyber_last_resort",
        "kyber_last_resort_signature",
        "one_time_floor",
        "kyber_floor",
    ),
    "one_time_pre_keys": ("account_id", "device_id", "key_id", "public_key"),
    "kyber_pre_keys": ("account_id", "device_id", "key_id", "public_key", "signature"),
    "access_tokens": ("token_hash", "account_id", "expires_day"),
    "mailboxes": ("mailbox_id", "auth_key", "token_hash", "ttl_days", "expires_day"),
    "envelopes": ("mailbox_id", "seq", "id_tag", "received_day", "key_slot", "sealed"),
    "envelope_keys": ("slot", "key"),
    "schema_version": ("version",),
}


def no_statistics() -> list[str]:
    """``SET STATISTICS 0`` on every column (on ``envelopes`` it reaches each partition)."""
    return [
        f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS 0"
        for table, columns in _COLUMNS.items()
        for column in columns
    ]


def create_statements() -> list[str]:
    """Everything that makes a version-4 database from an empty one."""
    partitions = [
        f"CREATE TABLE envelopes_p{i} PARTITION OF envelopes "
        f"FOR VALUES WITH (MODULUS {ENVELOPE_PARTITIONS}, REMAINDER {i})"
        for i in range(ENVELOPE_PARTITIONS)
    ]
    return [
        *TABLES.values(),
        *partitions,
        *_INDEXES,
        "CREATE TABLE schema_version (version integer NOT NULL)",
        *no_statistics(),
        f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})",  # noqa: S608 (a constant)
    ]


MIGRATIONS: dict[int, Callable[[object], None]] = {}
"""Version -> the step that takes a database of that version to the next (none yet: 4 is the
first PostgreSQL version). A step gets the open connection, inside the migration transaction."""
