"""The data-held manifest against the real schema, the document, the exports and the stats line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
from pathlib import Path

import pytest

from sotto.server import manifest
from sotto.server.storage.base import MailboxId, MessageId
from sotto.server.storage.sqlite import SqliteStorage, read_schema
from sotto.wire import b64
from tests.server.conftest import (
    Mailbox,
    Relay,
    create_account,
    create_mailbox,
    kyber_key,
    payload,
    pre_key,
    send,
    signed_pre_key,
)
from tests.server.storage.conftest import DAY, mailbox, sha

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-held.md"


def _manifest_schema() -> dict[str, list[str]]:
    return {t.name: t.column_names() for t in manifest.TABLES}


def test_real_schema_matches_the_manifest(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path)
    try:
        conn = sqlite3.connect(store.path)
        schema = read_schema(conn)
        declared = {
            t: {c[1]: c[2].lower() for c in conn.execute(f"PRAGMA table_info('{t}')")} for t in schema
        }
        conn.close()
    finally:
        store.close_sync()
    listed = _manifest_schema()
    missing_tables = set(schema) - set(listed)
    assert not missing_tables, f"tables the manifest does not list: {missing_tables}"
    assert not set(listed) - set(schema), f"listed tables that do not exist: {set(listed) - set(schema)}"
    for table, columns in schema.items():
        assert sorted(columns) == sorted(listed[table]), (
            f"{table}: schema {columns} vs manifest {listed[table]}"
        )
        for column in manifest.table(table).columns:
            assert declared[table][column.name] == column.type, (table, column.name)


def test_schema_check_catches_an_unlisted_column(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path)
    store.close_sync()
    conn = sqlite3.connect(store.path)
    conn.execute("ALTER TABLE envelopes ADD COLUMN sender BLOB")
    schema = read_schema(conn)
    conn.close()
    assert schema["envelopes"] != _manifest_schema()["envelopes"]


def test_document_lists_exactly_the_manifest() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"(?m)^### ", text)[1:]
    documented: dict[str, list[str]] = {}
    for section in sections:
        name = re.match(r"`(\w+)`", section)
        assert name, section[:40]
        body = section.split("\n## ")[0]
        documented[name.group(1)] = re.findall(r"(?m)^\| `(\w+)` \|", body)
    assert documented == _manifest_schema()
    for table in manifest.TABLES:
        assert table.kept in text and table.why in text
    for field in manifest.LOG_FIELDS:
        assert f"| `{field.name}` |" in text
    for file in manifest.FILES:
        assert f"| `{file.name}` |" in text
    for own in manifest.SQLITE_TABLES:
        assert f"| `{own.name}` | {own.holds} |" in text


def test_sqlite_keeps_no_table_of_its_own_the_manifest_leaves_out(tmp_path: Path) -> None:
    """After traffic and a stop (when ``PRAGMA optimize`` used to write sqlite_stat1), SQLite's
    own tables in the file are only those the manifest lists."""
    store = SqliteStorage.in_dir(tmp_path)
    asyncio.run(_traffic(store))
    store.close_sync()
    conn = sqlite3.connect(tmp_path / "relay.db")
    try:
        own = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_%'")}
    finally:
        conn.close()
    listed = {t.name for t in manifest.SQLITE_TABLES}
    autoindexes = {name for name in own if name.startswith("sqlite_autoindex_")}  # of UNIQUE keys
    assert own - autoindexes <= listed, own - autoindexes - listed


async def _traffic(store: SqliteStorage) -> None:
    box = mailbox()
    await store.create_mailbox(box)
    for _ in range(50):
        await store.put_envelope(box.mailbox_id, sha(b"t" * 32), MessageId(os.urandom(16)), bytes(256), DAY)
    pending = await store.pending(MailboxId(box.mailbox_id), 100)
    await store.delete_envelopes([e.ref for e in pending[:40]])


def test_exports_cover_every_manifest_column(any_relay: Relay) -> None:
    client = any_relay.client
    account = create_account(client)
    upload = {
        "signed_pre_key": signed_pre_key(1),
        "kyber_last_resort": kyber_key(9),
        "one_time_pre_keys": [pre_key(1)],
        "kyber_pre_keys": [kyber_key(1)],
    }
    assert client.put("/v1/accounts/me/keys", json=upload, headers=account.headers).status_code == 204
    client.put("/v1/accounts/me/username", json={"username": "exported"}, headers=account.headers)
    client.put(
        "/v1/accounts/me/access-tokens",
        json={"token": b64.encode(os.urandom(32)), "expires_day": 99_999},
        headers=account.headers,
    )
    mailbox = create_mailbox(client)
    send(client, mailbox, os.urandom(16), payload())
    path = f"/v1/mailboxes/{mailbox.id}/export"
    exports = {
        "account": client.get("/v1/export", headers=account.headers).json(),
        "mailbox": client.get(
            path, headers=mailbox.auth_header("GET", path, int(any_relay.clock.now()))
        ).json(),
    }
    for table in manifest.TABLES:
        export = exports[table.scope]
        assert export["manifest_version"] == manifest.MANIFEST_VERSION
        rows = export["tables"][table.name]
        assert rows, f"{table.name}: no rows exported"
        for row in rows:
            assert sorted(row) == sorted(table.column_names()), table.name
            assert all(value is not None for value in row.values()), (table.name, row)
    assert set(exports["account"]["tables"]) == {t.name for t in manifest.TABLES if t.scope == "account"}
    assert set(exports["mailbox"]["tables"]) == {t.name for t in manifest.TABLES if t.scope == "mailbox"}


def test_stats_line_carries_only_listed_counters(relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    client = relay.client
    mailbox = create_mailbox(client)
    client.post("/v1/mailboxes", json=mailbox.create_body())
    message_id = os.urandom(16)
    send(client, mailbox, message_id, payload())
    send(client, mailbox, message_id, payload())
    send(client, Mailbox(), message_id, payload())
    client.get("/v1/accounts/me")
    with client.websocket_connect("/v1/ws") as ws:
        ws.receive_text()
        ws.send_text("garbage")
    with caplog.at_level(logging.INFO, logger="sotto.server"):
        relay.ctx.stats.flush()
    (line,) = [
        r.getMessage() for r in caplog.records if r.name == "sotto.server" and "stats" in r.getMessage()
    ]
    counters = json.loads(line.removeprefix("stats "))
    patterns = [re.compile(re.sub(r"<\w+>", r"\\d+", p) + "$") for p in manifest.STAT_COUNTERS]
    assert counters, line
    for name in counters:
        assert any(p.match(name) for p in patterns), f"counter {name!r} is not in the manifest"
    assert counters["envelopes_duplicate"] == 1 and counters["ws_close_4400"] == 1


def test_manifest_json_is_served(relay: Relay) -> None:
    served = relay.client.get("/v1/manifest").json()
    assert served == json.loads(json.dumps(manifest.as_json()))
