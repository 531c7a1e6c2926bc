"""What the PostgreSQL store does beyond the shared contract: the same tables and columns as
SQLite and the manifest, envelopes spread over hash partitions, no planner statistics, deleted
envelopes' keys gone, migrations, and several nodes sharing one database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest

from sotto.errors import RelayStorageError
from sotto.server import manifest
from sotto.server.config import Quotas
from sotto.server.storage import PostgresStorage, SqliteStorage
from sotto.server.storage.base import MailboxId, PutOutcome
from sotto.server.storage.postgres_schema import ENVELOPE_PARTITIONS, SCHEMA_VERSION
from tests.server.storage.conftest import DAY, mailbox, message_id, postgres_database, run, sha

TOKEN = sha(b"t" * 32)


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_database() as dsn:
        yield dsn


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStorage]:
    opened = PostgresStorage.open(dsn)
    try:
        yield opened
    finally:
        opened.close_sync()


def _query(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql.encode(), args)
        return cursor.fetchall() if cursor.description else []


def test_same_tables_and_columns_as_sqlite_and_the_manifest(store: PostgresStorage, tmp_path: Path) -> None:
    sqlite = SqliteStorage.in_dir(tmp_path)
    try:
        expected = sqlite.schema()
    finally:
        sqlite.close_sync()
    held = store.schema()
    assert held.pop("schema_version") == ["version"]
    assert held == expected
    assert held == {t.name: t.column_names() for t in manifest.TABLES}


def test_column_types_are_the_manifests(store: PostgresStorage, dsn: str) -> None:
    kinds = {"bytea": "blob", "integer": "integer", "bigint": "integer"}
    rows = _query(
        dsn,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name NOT LIKE 'envelopes_p%%'",
    )
    types = {(str(t), str(c)): kinds[str(d)] for t, c, d in rows if t != "schema_version"}
    assert types == {(t.name, c.name): c.type for t in manifest.TABLES for c in t.columns}


def test_envelopes_are_spread_over_hash_partitions(store: PostgresStorage, dsn: str) -> None:
    boxes = [mailbox() for _ in range(64)]

    async def fill() -> None:
        for box in boxes:
            await store.create_mailbox(box)
            for _ in range(3):
                await store.put_envelope(box.mailbox_id, TOKEN, message_id(), bytes(64), DAY)

    run(fill())
    partitions = _query(
        dsn,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'envelopes'::regclass",
    )
    assert len(partitions) == ENVELOPE_PARTITIONS
    per_mailbox = _query(
        dsn, "SELECT mailbox_id, count(DISTINCT tableoid) FROM envelopes GROUP BY mailbox_id"
    )
    assert len(per_mailbox) == 64 and all(n == 1 for _, n in per_mailbox)  # a mailbox stays in one
    used = _query(dsn, "SELECT count(DISTINCT tableoid) FROM envelopes")[0][0]
    assert isinstance(used, int) and used > ENVELOPE_PARTITIONS // 2


def test_no_planner_statistics_even_after_analyze(store: PostgresStorage, dsn: str) -> None:
    box = mailbox()

    async def fill() -> None:
        await store.create_mailbox(box)
        for _ in range(200):
            await store.put_envelope(box.mailbox_id, TOKEN, message_id(), bytes(64), DAY)

    run(fill())
    _query(dsn, "ANALYZE")
    assert _query(dsn, "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema()") == [(0,)]
    # It can fail: a table that keeps its statistics gets sample values at once.
    _query(dsn, "CREATE TABLE probe (v bytea)")
    _query(dsn, "INSERT INTO probe SELECT '\\x00'::bytea FROM generate_series(1, 10)")
    _query(dsn, "ANALYZE probe")
    assert _query(dsn, "SELECT count(*) FROM pg_stats WHERE tablename = 'probe'") == [(1,)]


def test_an_ack_deletes_the_envelope_and_its_key(store: PostgresStorage, dsn: str) -> None:
    box, mid, payload = mailbox(), message_id(), b"secret words " * 20

    async def send_and_ack() -> None:
        await store.create_mailbox(box)
        await store.put_envelope(box.mailbox_id, TOKEN, mid, payload, DAY)
        await store.put_envelope(box.mailbox_id, TOKEN, message_id(), payload, DAY)

    run(send_and_ack())
    sealed = _query(dsn, "SELECT sealed FROM envelopes")
    assert len(sealed) == 2 and all(isinstance(s, bytes) and payload not in s for (s,) in sealed)
    (slot,) = _query(dsn, "SELECT key_slot FROM envelopes WHERE seq = 1")[0]
    assert run(store.delete_envelopes([(box.mailbox_id, mid)])) == 1
    assert _query(dsn, "SELECT count(*) FROM envelope_keys WHERE slot = %s", slot) == [(0,)]
    assert _query(dsn, "SELECT count(*) FROM envelope_keys") == [(1,)]  # the other envelope's
    assert run(store.delete_mailbox(box.mailbox_id)) is None
    assert _query(dsn, "SELECT count(*) FROM envelope_keys") == [(0,)]


def test_reopening_keeps_the_data_and_the_version(dsn: str) -> None:
    box = mailbox()
    first = PostgresStorage.open(dsn)
    try:
        run(first.create_mailbox(box))
    finally:
        first.close_sync()
    again = PostgresStorage.open(dsn)
    try:
        assert box.mailbox_id in run(again.get_mailboxes([box.mailbox_id]))
    finally:
        again.close_sync()
    assert _query(dsn, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_newer_or_unversioned_schema_is_refused(store: PostgresStorage, dsn: str) -> None:
    _query(dsn, "UPDATE schema_version SET version = %s", SCHEMA_VERSION + 1)
    with pytest.raises(RelayStorageError):
        PostgresStorage.open(dsn)
    _query(dsn, "DROP TABLE schema_version")
    with pytest.raises(RelayStorageError):
        PostgresStorage.open(dsn)


def test_nodes_starting_together_create_the_schema_once(dsn: str) -> None:
    async def start() -> list[PostgresStorage]:
        return list(await asyncio.gather(*(asyncio.to_thread(PostgresStorage.open, dsn) for _ in range(4))))

    stores = run(start())
    for opened in stores:
        opened.close_sync()
    assert _query(dsn, "SELECT count(*) FROM schema_version") == [(1,)]


def test_two_nodes_sending_to_one_mailbox_share_its_order_and_quota(dsn: str) -> None:
    quotas = Quotas(mailbox_envelopes=30)
    nodes = [PostgresStorage.open(dsn, quotas=quotas) for _ in range(2)]
    box = mailbox()
    try:

        async def race() -> list[PutOutcome]:
            await nodes[0].create_mailbox(box)
            sends = [
                nodes[i % 2].put_envelope(box.mailbox_id, TOKEN, message_id(), bytes(32), DAY)
                for i in range(40)
            ]
            return [r.outcome for r in await asyncio.gather(*sends)]

        outcomes = run(race())
        assert outcomes.count(PutOutcome.STORED) == 30
        assert outcomes.count(PutOutcome.MAILBOX_FULL) == 10
        pending = run(nodes[1].pending(MailboxId(box.mailbox_id), 100))
        assert [e.seq for e in pending] == list(range(1, 31))
    finally:
        for node in nodes:
            node.close_sync()


def test_an_unreachable_server_is_a_storage_error() -> None:
    with pytest.raises(RelayStorageError):
        PostgresStorage.open("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")


def test_the_daily_rewrite_lays_rows_out_in_key_order(store: PostgresStorage, dsn: str) -> None:
    boxes = [mailbox() for _ in range(50)]

    async def fill() -> None:
        for box in boxes:
            await store.create_mailbox(box)
            await store.put_envelope(box.mailbox_id, TOKEN, message_id(), bytes(64), DAY)

    run(fill())
    made = [b.mailbox_id for b in boxes]

    def file_order(table: str, column: str) -> list[bytes]:
        sql = f"SELECT {column} FROM {table} ORDER BY tableoid, ctid"
        return [r[0] for r in _query(dsn, sql)]  # type: ignore[misc]

    assert file_order("mailboxes", "mailbox_id") == made  # it can fail: rows lie as they came
    for _ in range(2):
        run(store.sweep(DAY, 30))
    run(store.sweep(DAY + 1, 30))
    assert store.compactions == 2  # the first sweep of each day
    assert file_order("mailboxes", "mailbox_id") == sorted(made)
    slots = file_order("envelope_keys", "slot")
    assert slots == sorted(slots)
    for (oid,) in _query(dsn, "SELECT DISTINCT tableoid FROM envelopes"):
        rows = _query(dsn, "SELECT mailbox_id, seq FROM envelopes WHERE tableoid = %s ORDER BY ctid", oid)
        keys = [(cast(bytes, m), cast(int, q)) for m, q in rows]
        assert keys == sorted(keys)
    assert len(run(store.pending(MailboxId(made[0]), 10))) == 1  # nothing lost


def test_connections_the_server_ended_are_replaced(store: PostgresStorage, dsn: str) -> None:
    """As after a restart of PostgreSQL: an operation on a dead connection fails (a 503 for the
    client, who retries), and the next ones run on a new connection."""
    box = mailbox()
    run(store.create_mailbox(box))
    ended = _query(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert ended and all(r == (True,) for r in ended)

    async def until_it_answers() -> int:
        failures = 0
        for _ in range(20):
            try:
                await store.get_mailboxes([box.mailbox_id])
            except RelayStorageError:
                failures += 1
                continue
            return failures
        raise AssertionError("no answer")

    assert run(until_it_answers()) <= 4  # at most one failure per connection of the store
    assert box.mailbox_id in run(store.get_mailboxes([box.mailbox_id]))


def test_sends_queued_together_share_a_commit_and_keep_their_own_outcomes(store: PostgresStorage) -> None:
    box, other, mid = mailbox(), mailbox(), message_id()

    async def burst() -> list[PutOutcome]:
        await store.create_mailbox(box)
        await store.create_mailbox(other)
        commits = store.commits
        sends = [
            store.submit_envelope(box.mailbox_id, TOKEN, mid, bytes(32), DAY),
            store.submit_envelope(box.mailbox_id, TOKEN, mid, bytes(32), DAY),  # the same id
            store.submit_envelope(box.mailbox_id, sha(b"wrong"), message_id(), bytes(32), DAY),
            *(store.submit_envelope(box.mailbox_id, TOKEN, message_id(), bytes(32), DAY) for _ in range(20)),
        ]
        outcomes = [r.outcome for r in await asyncio.gather(*sends)]
        assert store.commits - commits < len(sends)  # it can fail: one commit per send
        return outcomes

    outcomes = run(burst())
    assert outcomes[:3] == [PutOutcome.STORED, PutOutcome.DUPLICATE, PutOutcome.NOT_FOUND]
    assert outcomes[3:] == [PutOutcome.STORED] * 20
    assert [e.seq for e in run(store.pending(box.mailbox_id, 100))] == list(range(1, 22))
