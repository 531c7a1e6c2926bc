"""After a real run, each person's export shows exactly what the relay's database holds for them.

Three people on the real relay process connect by invite, text 1:1 and in a group, rotate
mailboxes, leave an invite open and leave texts undelivered (so every table has rows). Then
each one's :meth:`Client.export` (the account export plus one export per mailbox the client
holds) is compared with the database, row by row, in the manifest's columns: each export
equals the rows keyed by that account or mailbox, and together the exports cover every row of
every table: nothing is held that its owner cannot see.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sotto.server import manifest
from sotto.wire import b64
from tests.integration.harness import RelayProcess, befriend, collect, new_client, reopen, run, texts

Rows = list[dict[str, Any]]


def _value(value: object, column: manifest.Column) -> object:
    if isinstance(value, bytes):
        return len(value) if column.export == "size" else b64.encode(value)
    return value


def held(db: sqlite3.Connection, table: manifest.Table, key: str, value: bytes) -> Rows:
    """The rows of ``table`` whose ``key`` column is ``value``, as an export writes them."""
    names = table.column_names()
    if table.name == "envelope_keys":  # the keys of the mailbox's envelopes, by their slot
        columns = ", ".join(f"k.{n}" for n in names)
        sql = (
            f"SELECT {columns} FROM envelope_keys k JOIN envelopes e ON e.key_slot = k.slot WHERE e.{key} = ?"
        )
        cursor = db.execute(sql, (value,))
        return [{c.name: _value(v, c) for c, v in zip(table.columns, row, strict=True)} for row in cursor]
    cursor = db.execute(f"SELECT {', '.join(names)} FROM {table.name} WHERE {key} = ?", (value,))
    return [{c.name: _value(v, c) for c, v in zip(table.columns, row, strict=True)} for row in cursor]


def canonical(rows: Rows) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def test_each_export_is_what_the_database_holds_and_together_they_cover_it(tmp_path: Path) -> None:
    people = ("Alice", "Bob", "Carol")

    async def main() -> dict[str, dict[str, Any]]:
        with RelayProcess(tmp_path / "data", tmp_path / "relay.log") as relay:
            clients = {n: await new_client(relay.url, tmp_path, n) for n in people}
            alice, bob, carol = clients.values()
            await befriend(alice, bob)
            await befriend(alice, carol)
            await befriend(bob, carol)
            await alice.create_group("Export", ["Bob", "Carol"])
            await alice.send_text("Bob", "hello Bob")
            await collect([bob, carol], lambda _: bool(bob.groups() and carol.groups()))
            await alice.rotate_mailboxes()  # old mailboxes stay, draining, for a grace period
            await collect(list(clients.values()), lambda s: True)
            await carol.close()  # Carol goes offline: texts to her stay on the relay
            for sender in (alice, bob):
                for i in range(3):
                    await sender.send_text("Carol", f"pending {i}")
                assert await sender.flush() == 0
            await alice.create_invite()  # left open: its mailbox and access token are held
            await alice.close()
            await bob.close()
            exports = {}
            for name in people:
                async with await reopen(tmp_path, name) as client:
                    exports[name] = await client.export()
                    exports[name]["account_id"] = client.account_id
            db = sqlite3.connect(f"file:{relay.db_path}?mode=ro", uri=True)
            try:
                _compare(db, exports)
            finally:
                db.close()
            async with await reopen(tmp_path, "Carol") as carol:  # the pending texts were real
                seen = await collect([carol], lambda s: len(texts(s[carol])) >= 6)
                assert sorted(texts(seen[carol])) == sorted(f"pending {i}" for i in range(3) for _ in "ab")
            return exports

    run(main)


def _compare(db: sqlite3.Connection, exports: dict[str, dict[str, Any]]) -> None:
    covered: dict[str, int] = {t.name: 0 for t in manifest.TABLES}
    for name, export in exports.items():
        account = export["account"]
        assert account["manifest_version"] == manifest.MANIFEST_VERSION
        for table in manifest.TABLES:
            if table.scope != "account":
                continue
            rows = held(db, table, "account_id", export["account_id"])
            assert canonical(account["tables"][table.name]) == canonical(rows), (name, table.name)
            covered[table.name] += len(rows)
        assert export["mailboxes"], name
        for mailbox_b64, mailbox_export in export["mailboxes"].items():
            mailbox_id = b64.decode(mailbox_b64)
            for table in manifest.TABLES:
                if table.scope != "mailbox":
                    continue
                rows = held(db, table, "mailbox_id", mailbox_id)
                assert canonical(mailbox_export["tables"][table.name]) == canonical(rows), (name, table.name)
                covered[table.name] += len(rows)
    total = {t.name: db.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0] for t in manifest.TABLES}
    total["envelope_keys"] = db.execute("SELECT count(*) FROM envelopes").fetchone()[0]  # slots in use
    assert covered == total
    # The run left something in every table, so the comparison above compared something.
    assert all(total.values()), total
