"""Remnants: what the files hold besides the live rows, and its controls.

Positive controls: a table of mailbox rows written pair by pair and then deleted with SQLite's
``secure_delete`` off leaves the rows' bytes in the page, in the order they came, and the attack
pairs them; with the relay's pragmas (``secure_delete`` on) but a write-ahead log not yet
checkpointed, the log's old page images hold them. Negative controls: ``secure_delete`` on and
the log checkpointed (what the relay does within two seconds) leaves nothing; the answer of a
positive control with its ids dealt out again scores at chance.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from sotto.audit.leakage.attacks import remnants, score
from sotto.server.observer import ViewRecord, snapshot_data_dir
from sotto.server.storage.schema import TABLES
from sotto.wire import b64
from tests.audit.attacks.pairs import Pairs, pairs
from tests.audit.attacks.records import create, http, poll

PAIRS = 20


def _view(world: Pairs) -> list[ViewRecord]:
    """The creations the view saw: the operator knows every mailbox id."""
    ids = [world.named(m) for pair in world.mailboxes for m in pair]
    return [create(i, m) for i, m in enumerate(ids)]


def _written_then_deleted(directory: Path, world: Pairs, *, secure: bool, wal: bool) -> sqlite3.Connection:
    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(directory / "relay.db", isolation_level=None)
    conn.execute(f"PRAGMA secure_delete = {'ON' if secure else 'OFF'}")
    for statement in TABLES:
        conn.execute(statement)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    rng = random.Random(1)
    for a, b in world.mailboxes:
        for m in (a, b):
            conn.execute(
                "INSERT INTO mailboxes VALUES (?, ?, ?, 30, 20000)", (m, rng.randbytes(32), rng.randbytes(32))
            )
    conn.execute("DELETE FROM mailboxes")
    return conn


def test_positive_control_deleted_rows_left_in_the_page_pair_contacts(tmp_path: Path) -> None:
    world = pairs(PAIRS)
    _written_then_deleted(tmp_path, world, secure=False, wal=False).close()
    snapshot = snapshot_data_dir(tmp_path)
    view = _view(world)
    held = remnants.holdings([snapshot], view, live=())
    assert held.deleted_mailboxes == 2 * PAIRS
    found = score.score_contacts(remnants.attack([snapshot], view), world.truth)
    assert found.top1 >= 0.4, found  # each row lies between its contact's and the next pair's
    assert found.top1 >= 10 * found.chance_people
    dealt = score.shuffle_ranking(remnants.attack([snapshot], view), seed=1)
    assert score.score_contacts(dealt, world.truth).top1 <= found.chance_people + 0.15


def test_positive_control_a_log_not_yet_checkpointed_holds_deleted_rows(tmp_path: Path) -> None:
    world = pairs(PAIRS)
    conn = _written_then_deleted(tmp_path, world, secure=True, wal=True)
    snapshot = snapshot_data_dir(tmp_path)  # before any checkpoint
    conn.close()
    assert snapshot.files["relay.db-wal"]
    held = remnants.holdings([snapshot], _view(world), live=())
    assert held.deleted_mailboxes == 2 * PAIRS
    assert held.nonzero_bytes["wal"] > 0


def test_negative_control_secure_delete_and_a_checkpoint_leave_nothing(tmp_path: Path) -> None:
    world = pairs(PAIRS)
    conn = _written_then_deleted(tmp_path, world, secure=True, wal=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    snapshot = snapshot_data_dir(tmp_path)
    held = remnants.holdings([snapshot], _view(world), live=())
    assert held.deleted_mailboxes == 0
    assert held.wal_bytes == 0
    assert remnants.attack([snapshot], _view(world)) == {}


def test_acknowledged_envelopes_are_known_by_their_tag() -> None:
    mailbox, message = b64.encode(bytes(range(16))), b64.encode(bytes(range(16, 32)))
    view = [
        http(1, "POST", f"/v1/mailboxes/{mailbox}/messages", mailboxes=(mailbox,), messages=(message,)),
        poll(2, mailbox, envelopes=(message,)),
    ]
    mailboxes, tags = remnants.known_ids(view)
    assert len(mailboxes) == 1
    assert len(tags) == 1
