"""The dump attack: a database file read both ways, and its controls.

Positive controls: a ``mailboxes`` table with a creation time put back (what ``created_day``
was, only finer) pairs each contact's two mailboxes by that column; rows written pair by pair
and never rewritten pair them by where they lie in the page. Negative controls: the relay's own
schema, rows written in random order and the file rewritten (``VACUUM``, as the relay does each
day), scores at chance; and the answers of the positive controls with their ids dealt out again
(:func:`~sotto.audit.leakage.attacks.score.shuffle_ranking`) do too.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from sotto.audit.leakage.attacks import dump, score
from sotto.server.observer import DataSnapshot, snapshot_data_dir
from sotto.server.storage.schema import TABLES
from tests.audit.attacks.pairs import Pairs, pairs

PAIRS = 30


def _relay_db(directory: Path, *, created: bool = False) -> sqlite3.Connection:
    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(directory / dump.DB, isolation_level=None)
    conn.execute("PRAGMA secure_delete = ON")
    for statement in TABLES:
        conn.execute(statement)
    if created:
        conn.execute("ALTER TABLE mailboxes ADD COLUMN created_us INTEGER")
    return conn


def _insert(
    conn: sqlite3.Connection, mailbox: bytes, rng: random.Random, created_us: int | None = None
) -> None:
    values = [mailbox, rng.randbytes(32), rng.randbytes(32), 30, 20_000 + rng.randrange(7)]
    if created_us is None:
        conn.execute("INSERT INTO mailboxes VALUES (?, ?, ?, ?, ?)", values)
    else:
        conn.execute("INSERT INTO mailboxes VALUES (?, ?, ?, ?, ?, ?)", [*values, created_us])


def _snapshot(directory: Path, conn: sqlite3.Connection) -> DataSnapshot:
    conn.close()
    return snapshot_data_dir(directory)


def _top1(ranking: dict[str, list[tuple[str, float]]], world: Pairs) -> tuple[float, float]:
    found = score.score_contacts(ranking, world.truth)
    return found.top1, found.chance_people


def test_the_reader_finds_every_table_its_rows_and_where_they_lie(tmp_path: Path) -> None:
    world, rng = pairs(PAIRS), random.Random(2)
    conn = _relay_db(tmp_path)
    for a, b in world.mailboxes:
        _insert(conn, a, rng)
        _insert(conn, b, rng)
    read = dump.read(_snapshot(tmp_path, conn))
    assert read is not None
    assert {"mailboxes", "envelopes", "accounts", "sqlite_schema", "mailboxes_by_expiry"} <= set(read.tables)
    mailboxes = read.tables["mailboxes"]
    assert mailboxes.columns[:2] == ["mailbox_id", "auth_key"]
    assert len(mailboxes.rows) == 2 * PAIRS
    assert len(mailboxes.cells) == 2 * PAIRS  # every row's cell found in the raw pages
    assert {c.values[0] for c in mailboxes.cells} == {m for pair in world.mailboxes for m in pair}
    assert len(read.mailboxes) == 2 * PAIRS


def test_positive_control_a_creation_time_put_back_pairs_contacts(tmp_path: Path) -> None:
    world, rng = pairs(PAIRS), random.Random(3)
    conn = _relay_db(tmp_path, created=True)
    rows = []
    for i, (a, b) in enumerate(world.mailboxes):
        t = i * 3_600_000_000 + rng.randrange(1_000_000_000)
        rows += [(a, t), (b, t + rng.randrange(60_000_000))]
    rng.shuffle(rows)
    for mailbox, t in rows:
        _insert(conn, mailbox, rng, t)
    conn.execute("VACUUM")  # the rows' order in the file says nothing: only the column does
    snapshot = _snapshot(tmp_path, conn)
    top1, chance = _top1(dump.attack([snapshot], features=[dump.COLUMNS]), world)
    assert top1 >= 0.9, top1
    assert _top1(dump.attack([snapshot], features=[dump.ROW_ORDER]), world)[0] <= chance + 0.15
    shuffled = score.shuffle_ranking(dump.attack([snapshot]), seed=1)
    assert _top1(shuffled, world)[0] <= chance + 0.15


def test_positive_control_rows_written_pair_by_pair_lie_side_by_side(tmp_path: Path) -> None:
    world, rng = pairs(PAIRS), random.Random(4)
    conn = _relay_db(tmp_path)
    for a, b in world.mailboxes:
        _insert(conn, a, rng)
        _insert(conn, b, rng)
    snapshot = _snapshot(tmp_path, conn)
    top1, chance = _top1(dump.attack([snapshot], features=[dump.ROW_ORDER]), world)
    # Each row lies between its contact's and the next pair's: half the first guesses are right,
    # against a chance of 1 in 59.
    assert top1 >= 0.4, top1
    assert top1 >= 10 * chance
    shuffled = score.shuffle_ranking(dump.attack([snapshot], features=[dump.ROW_ORDER]), seed=1)
    assert _top1(shuffled, world)[0] <= chance + 0.15


def test_negative_control_the_relays_schema_rewritten_pairs_nothing(tmp_path: Path) -> None:
    world, rng = pairs(PAIRS), random.Random(5)
    conn = _relay_db(tmp_path)
    for a, b in world.mailboxes:
        _insert(conn, a, rng)
        _insert(conn, b, rng)
    conn.execute("VACUUM")  # what the relay does after the first sweep of each day
    top1, chance = _top1(dump.attack([_snapshot(tmp_path, conn)]), world)
    assert top1 <= chance + 0.15, (top1, chance)


def test_the_write_ahead_log_is_read_as_sqlite_would(tmp_path: Path) -> None:
    world, rng = pairs(4), random.Random(6)
    conn = _relay_db(tmp_path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    for a, b in world.mailboxes:
        _insert(conn, a, rng)
        _insert(conn, b, rng)
    snapshot = snapshot_data_dir(tmp_path)  # the connection still open: the rows are in the log
    conn.close()
    assert snapshot.files[dump.DB + "-wal"]
    read = dump.read(snapshot)
    assert read is not None
    assert len(read.tables["mailboxes"].rows) == 8
    assert len(read.tables["mailboxes"].cells) == 8


def test_a_snapshot_without_a_database_reads_as_nothing() -> None:
    assert dump.read(DataSnapshot(0, {})) is None
    assert dump.attack([DataSnapshot(0, {"relay.db": b"not a database"})]) == {}


@pytest.mark.parametrize("value", [0, 1, 127, 128, 16_383, 16_384, 2**40, 2**63 - 1])
def test_varints_read_back(value: int) -> None:
    conn = sqlite3.connect(":memory:")
    # SQLite writes a record's header sizes as varints; a blob of ``value % 5000`` bytes exercises them.
    n = value % 5_000
    conn.execute("CREATE TABLE t (x BLOB, y INTEGER)")
    conn.execute("INSERT INTO t VALUES (?, ?)", (bytes(n), value))
    raw = conn.serialize()
    conn.close()
    page_size = dump.page_size_of(raw)
    cells = dump.leaf_cells(raw[page_size : 2 * page_size], 2, page_size, page_size)
    assert cells[0].values[1] == value
    local = cells[0].values[0]
    assert local is None or local == bytes(n)
