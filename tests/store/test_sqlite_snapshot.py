"""The store copy a backup is made of: taken while the store is open, and what it leaves out is
gone from the file's bytes, not only from its tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng
from sotto.errors import WrongPassphraseError
from sotto.protocol.bundle import PreKeyRecord
from sotto.store.model import Conversation
from sotto.store.sqlite import SqliteStore
from sotto.store.sqlite.snapshot import copy_for_backup, install_copy
from tests.store import factories
from tests.store.conftest import PASSPHRASE
from tests.store.factories import NOW_MS
from tests.store.history import add_message


def _raw(path: Path, sql: str) -> list[bytes]:
    conn = sqlite3.connect(path)
    try:
        return [bytes(row[0]) for row in conn.execute(sql)]
    finally:
        conn.close()


def test_a_copy_of_an_open_store_has_what_was_committed_and_none_of_the_left_out_bytes(
    tmp_path: Path, rng: Rng
) -> None:
    path = tmp_path / "sotto.db"
    store = SqliteStore.create(path, PASSPHRASE, kdf=Argon2Params.TESTING, rng=rng)
    try:
        with store.transaction() as tx:
            account = factories.account(rng)
            tx.account.put(account)
            bob = tx.contacts.add(
                name="Bob", account_id=rng(16), address=factories.address(rng), now_ms=NOW_MS
            )
            tx.sessions.put(bob.address, factories.session_record(rng, account.address, bob.address))
            tx.sender_keys.put(bob.address, factories.sender_key_record(rng))
            tx.prekeys.put_one_time(PreKeyRecord.generate(7, rng))
            add_message(tx, rng, Conversation.direct(bob.contact_id), "kept")
        # Another process would hold the store open like this (a running `sotto listen`).
        secrets = [
            *_raw(path, "SELECT sealed FROM sessions"),
            *_raw(path, "SELECT sealed FROM sender_keys"),
            *_raw(path, "SELECT sealed FROM prekeys WHERE kind = 'one_time'"),
            *_raw(path, "SELECT wrapped_key FROM keyring"),
        ]
        assert len(secrets) == 4
        copy = copy_for_backup(path, PASSPHRASE, tmp_path / "copy.db")
        with store.transaction() as tx:
            add_message(tx, rng, Conversation.direct(bob.contact_id), "after the copy")
    finally:
        store.close()

    assert copy.counts["messages"] == 1 and copy.counts["contacts"] == 1
    data = (tmp_path / "copy.db").read_bytes()
    for secret in secrets:
        assert secret not in data
    assert not list(tmp_path.glob("copy.db-*"))
    assert (tmp_path / "copy.db").stat().st_mode & 0o077 == 0

    install_copy(tmp_path / "copy.db", copy.data_key, "new", kdf=Argon2Params.TESTING)
    restored = SqliteStore.open(tmp_path / "copy.db", "new")
    try:
        with restored.transaction() as tx:
            found = tx.contacts.by_name("Bob")
            assert found is not None
            texts = [
                m.text for m in tx.messages.conversation(Conversation.direct(found.contact_id), limit=10)
            ]
            assert texts == ["kept"]
            assert tx.sessions.get(found.address) is None
    finally:
        restored.close()


def test_a_wrong_passphrase_makes_no_copy(tmp_path: Path, rng: Rng) -> None:
    path = tmp_path / "sotto.db"
    SqliteStore.create(path, PASSPHRASE, kdf=Argon2Params.TESTING, rng=rng).close()
    with pytest.raises(WrongPassphraseError):
        copy_for_backup(path, "not it", tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
