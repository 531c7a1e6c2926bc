"""The SQLite store's blind word index: what it holds, when its rows go, and the schema-6 backfill."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import seeded_rng
from sotto.store.cipher import StoreCipher
from sotto.store.migrations import v006_message_search
from sotto.store.model import Conversation
from sotto.store.search import index_terms
from sotto.store.sqlite import SqliteStore
from sotto.store.sqlite.db import WORD_TOKEN_LENGTH, word_token
from tests.store.factories import NOW_MS
from tests.store.fixtures import store_v1 as v1
from tests.store.history import add_message
from tests.store.test_contract_people import add_contact

PASSPHRASE = "search index passphrase"
FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.db"


def _rows(path: Path, sql: str = "SELECT token, message_row FROM message_words") -> list[tuple[bytes, int]]:
    conn = sqlite3.connect(path)
    try:
        return [(bytes(t), int(r)) for t, r in conn.execute(sql)]
    finally:
        conn.close()


def test_index_rows_are_short_keyed_tokens_and_go_with_their_message(tmp_path: Path) -> None:
    rng = seeded_rng(61)
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, PASSPHRASE, kdf=Argon2Params.TESTING, rng=rng)
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        where = Conversation.direct(bob.contact_id)
        kept = add_message(tx, rng, where, "zebra crossing")
        dropped = add_message(tx, rng, where, "yak shaving")
        add_message(tx, rng, where, "xylophone lesson", expires_ms=NOW_MS + 5)
        edited = add_message(tx, rng, where, "walrus")
    store.close()
    rows = _rows(path)
    per_message = {r: sum(1 for _, m in rows if m == r) for _, r in rows}
    assert per_message[kept.row_id] == len(index_terms("zebra crossing"))
    assert all(len(token) == WORD_TOKEN_LENGTH for token, _ in rows)
    file_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))
    assert b"zebra" not in file_bytes and b"xylophone" not in file_bytes

    store = SqliteStore.open(path, PASSPHRASE, rng=rng)
    with store.transaction() as tx:
        assert tx.messages.delete(dropped.row_id)
        assert tx.messages.expire(NOW_MS + 5) == 1
        tx.messages.edit(edited.row_id, "walrus tusks", NOW_MS)
    store.close()
    left = {m for _, m in _rows(path)}
    assert left == {kept.row_id, edited.row_id}
    assert sum(1 for _, m in _rows(path) if m == edited.row_id) == len(index_terms("walrus tusks"))

    store = SqliteStore.open(path, PASSPHRASE, rng=rng)
    with store.transaction() as tx:
        tx.messages.delete_for_everyone(edited.row_id, NOW_MS)
        assert tx.contacts.delete(bob.contact_id)
    store.close()
    assert _rows(path) == []


def test_tokens_under_another_key_find_nothing(tmp_path: Path) -> None:
    rng = seeded_rng(62)
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, PASSPHRASE, kdf=Argon2Params.TESTING, rng=rng)
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        add_message(tx, rng, Conversation.direct(bob.contact_id), "secret meeting place")
        contact_id = bob.contact_id
    store.close()
    held = {t for t, _ in _rows(path)}
    other = StoreCipher(bytes(32), rng)
    guesses = {word_token(other, contact_id, None, t) for t in index_terms("secret meeting place")}
    assert guesses and not guesses & held
    # The same word in another conversation is another token.
    elsewhere = StoreCipher(bytes(32), rng)
    assert word_token(elsewhere, contact_id, None, "secret") != word_token(
        elsewhere, contact_id + 1, None, "secret"
    )
    assert word_token(elsewhere, contact_id, None, "secret") != word_token(
        elsewhere, None, contact_id, "secret"
    )


def test_schema_6_lists_the_messages_already_held(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, old)
    SqliteStore.open(old, v1.PASSPHRASE, migrate_to=5).close()
    assert _rows(old, "SELECT name, 0 FROM sqlite_master WHERE name = 'message_words'") == []
    store = SqliteStore.open(old, v1.PASSPHRASE)
    try:
        with store.transaction() as tx:
            bob = tx.contacts.by_name(v1.CONTACT_NAME)
            assert bob is not None
            (received,) = tx.messages.search(Conversation.direct(bob.contact_id), "incoming schema")
            assert received.text == v1.INCOMING_TEXT
            (sent,) = tx.messages.search(Conversation.group(v1.GROUP_ID), "outgo writ")
            assert sent.text == v1.OUTGOING_TEXT
            assert tx.messages.search(Conversation.direct(bob.contact_id), "outgoing") == []
    finally:
        store.close()


def test_opening_reports_the_backfill_and_only_when_it_runs(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, old)
    SqliteStore.open(old, v1.PASSPHRASE, migrate_to=5).close()
    heard: list[tuple[int, int, int]] = []
    SqliteStore.open(old, v1.PASSPHRASE, progress=lambda *p: heard.append(p)).close()
    assert heard == [(6, 2, 2)]  # the fixture's two messages, in one batch
    SqliteStore.open(old, v1.PASSPHRASE, progress=lambda *p: heard.append(p)).close()
    assert heard == [(6, 2, 2)]


def test_the_backfill_reports_progress_in_batches(tmp_path: Path) -> None:
    rng = seeded_rng(63)
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, PASSPHRASE, kdf=Argon2Params.TESTING, rng=rng)
    total = v006_message_search.BATCH + 3
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        where = Conversation.direct(bob.contact_id)
        for n in range(total):
            add_message(tx, rng, where, f"note {n}")
        cipher = tx._db.cipher  # type: ignore[attr-defined]
        conn = tx._db.conn  # type: ignore[attr-defined]
        conn.execute("DELETE FROM message_words")
        seen: list[tuple[int, int]] = []
        assert v006_message_search.backfill(conn, cipher, lambda done, of: seen.append((done, of))) == total
        assert seen == [(v006_message_search.BATCH, total), (total, total)]
        assert [m.text for m in tx.messages.search(where, "note 0")] == ["note 0"]
        assert [m.text for m in tx.messages.search(where, f"note {total - 1}")] == [f"note {total - 1}"]
    store.close()
