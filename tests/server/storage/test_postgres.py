"""What the PostgreSQL store does beyond the shared contract: the same tables and columns as
SQLite and the manifest, envelopes spread over hash partitions, no planner statistics, deleted
envelopes' keys gone, migrations, and several nodes sharing one database."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest

from sotto.errors import RelayStorageError
from sotto.server import manifest
from sotto.server.config import Quotas
from sotto.server.storage import PostgresStorage, SqliteStorage, postgres
from sotto.server.storage.base import MailboxId, MessageId, PutOutcome, PutResult
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


class _RoundTrips:
    """A TCP relay in front of PostgreSQL that counts round trips: the times the server answered
    after the client had sent something since its last answer (a client that sends several
    statements before it reads an answer waits once for all of them)."""

    def __init__(self, host: str, port: int) -> None:
        self.count = 0
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        client_spoke = False
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client:
                        client_spoke = True
                        server.sendall(data)
                    else:
                        if client_spoke:
                            with self._lock:
                                self.count += 1
                        client_spoke = False
                        client.sendall(data)

    def close(self) -> None:
        self._stopped = True
        self._listener.close()


def _through(dsn: str, port: int) -> str:
    url = urllib.parse.urlsplit(dsn)
    user = url.netloc.rpartition("@")[0]
    return url._replace(netloc=f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}").geturl()


async def _hold(store: PostgresStorage) -> tuple[threading.Event, asyncio.Future[None]]:
    """Keep the store's (one) worker busy until the event is set, so that what is submitted
    meanwhile is taken off its queue together."""
    gate, busy = threading.Event(), threading.Event()

    def wait(conn: object) -> None:
        busy.set()
        gate.wait(30)

    held = store._submit(wait, transaction=False)  # no statement of its own
    assert await asyncio.to_thread(busy.wait, 30)
    return gate, held


def test_a_batch_of_sends_an_ack_batch_and_a_read_wait_for_the_server_a_few_times(dsn: str) -> None:
    url = urllib.parse.urlsplit(dsn)
    assert url.hostname is not None and url.port is not None
    relay = _RoundTrips(url.hostname, url.port)
    store = PostgresStorage.open(_through(dsn, relay.port), workers=1)
    boxes = [mailbox() for _ in range(4)]
    ids = [message_id() for _ in range(20)]
    try:

        async def scenario() -> dict[str, int]:
            for box in boxes:
                await store.create_mailbox(box)
            trips = {}
            gate, held = await _hold(store)
            before = relay.count
            sends = [
                store.submit_envelope(boxes[i % 4].mailbox_id, TOKEN, mid, bytes(100), DAY)
                for i, mid in enumerate(ids)
            ]
            gate.set()
            await held
            outcomes = await asyncio.gather(*sends)
            trips["20 sends"] = relay.count - before
            assert [r.outcome for r in outcomes] == [PutOutcome.STORED] * 20
            before = relay.count
            got = await store.pending(boxes[0].mailbox_id, 10)
            trips["a read"] = relay.count - before
            assert [e.seq for e in got] == [1, 2, 3, 4, 5]
            before = relay.count
            deleted = await store.delete_envelopes(
                [(boxes[i % 4].mailbox_id, mid) for i, mid in enumerate(ids)]
            )
            trips["20 acks"] = relay.count - before
            assert deleted == 20
            return trips

        trips = run(scenario())
    finally:
        store.close_sync()
        relay.close()
    # A statement at a time took 126 for the sends (six each), 4 for the read and 24 for the acks.
    assert trips == {"20 sends": 2, "a read": 1, "20 acks": 2}


def test_a_failed_statement_in_a_batch_of_sends_costs_only_its_own_send(dsn: str) -> None:
    """Another connection holds one mailbox's row: that send's lock times out, the whole batch
    is rolled back, and every send runs again alone; the others are stored once each. The
    connection goes on working afterwards, with the statements psycopg prepares by then (a
    statement the server skipped after the failure was never prepared there)."""
    store = PostgresStorage.open(dsn + urllib.parse.quote(" -c lock_timeout=300"), workers=1)
    blocked, free = mailbox(), mailbox()
    try:
        run(store.create_mailbox(blocked))
        run(store.create_mailbox(free))
        with psycopg.connect(dsn) as other:
            other.execute("SELECT 1 FROM mailboxes WHERE mailbox_id = %s FOR UPDATE", (blocked.mailbox_id,))

            async def burst() -> list[object]:
                gate, held = await _hold(store)
                sends = [
                    store.submit_envelope(box.mailbox_id, TOKEN, message_id(), bytes(32), DAY)
                    for box in (free, blocked, free)
                ]
                gate.set()
                await held
                return list(await asyncio.gather(*sends, return_exceptions=True))

            first, second, third = run(burst())
            other.rollback()
        assert isinstance(second, RelayStorageError)
        assert isinstance(first, PutResult) and isinstance(third, PutResult)
        assert (first.outcome, third.outcome) == (PutOutcome.STORED, PutOutcome.STORED)
        assert [e.seq for e in run(store.pending(free.mailbox_id, 10))] == [1, 2]
        assert run(store.pending(blocked.mailbox_id, 10)) == []
        assert run(store.put_envelope(blocked.mailbox_id, TOKEN, message_id(), bytes(32), DAY)).outcome == (
            PutOutcome.STORED
        )
    finally:
        store.close_sync()


def test_quotas_of_envelopes_and_bytes_and_a_retry_when_full(dsn: str) -> None:
    """The checks the store statement repeats in SQL agree with the answers, at each edge: what
    was refused left nothing behind, not even a key."""
    store = PostgresStorage.open(dsn, quotas=Quotas(mailbox_envelopes=3, mailbox_bytes=1024))
    box, ids = mailbox(), [message_id() for _ in range(4)]

    def put(mid: MessageId, size: int) -> PutOutcome:
        return run(store.put_envelope(box.mailbox_id, TOKEN, mid, bytes(size), DAY)).outcome

    try:
        run(store.create_mailbox(box))
        assert put(ids[0], 512) is PutOutcome.STORED
        assert put(message_id(), 1024) is PutOutcome.MAILBOX_FULL
        assert put(ids[1], 512) is PutOutcome.STORED  # exactly the quota of bytes
        assert put(message_id(), 1) is PutOutcome.MAILBOX_FULL
        assert put(ids[0], 512) is PutOutcome.DUPLICATE  # a retry still learns it is stored
        assert run(store.delete_envelopes([(box.mailbox_id, ids[0]), (box.mailbox_id, ids[1])])) == 2
        assert [put(mid, 8) for mid in ids] == [PutOutcome.STORED] * 3 + [PutOutcome.MAILBOX_FULL]
        assert [e.seq for e in run(store.pending(box.mailbox_id, 10))] == [1, 2, 3]
        assert _query(dsn, "SELECT count(*) FROM envelope_keys") == [(3,)]
    finally:
        store.close_sync()


def test_a_key_slot_taken_already_is_drawn_again(
    store: PostgresStorage, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = mailbox()
    run(store.create_mailbox(box))
    run(store.put_envelope(box.mailbox_id, TOKEN, message_id(), bytes(32), DAY))
    ((taken,),) = _query(dsn, "SELECT slot FROM envelope_keys")
    draws = iter([taken, taken, 7])
    monkeypatch.setattr(postgres, "_draw_slot", lambda: next(draws))
    mid = message_id()
    result = run(store.put_envelope(box.mailbox_id, TOKEN, mid, b"second", DAY))
    assert result.outcome is PutOutcome.STORED and result.envelope is not None and result.envelope.seq == 2
    assert sorted(_query(dsn, "SELECT key_slot FROM envelopes")) == sorted([(taken,), (7,)])
    assert _query(dsn, "SELECT count(*) FROM envelope_keys") == [(2,)]
    (first, second) = run(store.pending(box.mailbox_id, 10))
    assert (first.payload, second.message_id, second.payload) == (bytes(32), mid, b"second")
