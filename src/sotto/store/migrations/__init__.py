"""The SQLite schema as an ordered list of migrations; ``PRAGMA user_version`` says how far a file is.

A migration runs inside the transaction that opens the store, together with the version bump,
so a crash mid-migration leaves the file at the old version. Steps get the store's cipher: a
change to what a sealed row holds re-seals the rows (see ``v002_bindings``). Never edit a released step;
append one. ``tests/store/fixtures`` holds a file frozen at version 1 that must keep migrating.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sotto.errors import StoreVersionError
from sotto.store.cipher import StoreCipher
from sotto.store.migrations import (
    v001_initial,
    v002_bindings,
    v003_contact_state,
    v004_send_log,
    v005_message_changes,
    v006_message_search,
    v007_message_attachments,
    v008_identity_changes,
)

Progress = Callable[[int, int, int], None]
"""``(version, done, total)``: how far a step that reads every row of a table has got."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sqlite3.Connection, StoreCipher], None]
    reporting: Callable[[sqlite3.Connection, StoreCipher, Callable[[int, int], None]], None] | None = None
    """The same step reporting ``(done, total)`` as it goes, for a step that reads every row."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", v001_initial.apply),
    Migration(2, "contact display names; seals name their rows' links", v002_bindings.apply),
    Migration(3, "blocked and removed contacts; unreported messages and events", v003_contact_state.apply),
    Migration(4, "the message send log, for resending after a session repair", v004_send_log.apply),
    Migration(
        5, "replies, edits, deletions, reactions and disappearing messages", v005_message_changes.apply
    ),
    Migration(
        6, "a blind word index for searching messages", v006_message_search.apply, v006_message_search.apply
    ),
    Migration(7, "a message's file kept beside it, going with it", v007_message_attachments.apply),
    Migration(8, 'a trusted identity keeps the "safety number changed" flag', v008_identity_changes.apply),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(
    conn: sqlite3.Connection,
    cipher: StoreCipher,
    target: int = SCHEMA_VERSION,
    progress: Progress | None = None,
) -> list[int]:
    """Apply the steps after the file's version up to ``target``; call inside a write transaction.

    Returns the versions applied. StoreVersionError if the file is newer than this code.
    ``progress`` hears how far the steps that read every message (schema 6) have got.
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreVersionError(
            f"store schema {current} is newer than this version of Sotto ({SCHEMA_VERSION})"
        )
    applied = []
    for step in MIGRATIONS:
        if current < step.version <= target:
            if progress is not None and step.reporting is not None:
                step.reporting(conn, cipher, partial(progress, step.version))
            else:
                step.apply(conn, cipher)
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
            applied.append(step.version)
    return applied
