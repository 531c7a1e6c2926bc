"""Backups of a real SQLite store: what goes in, what stays out, and restores that change nothing
unless everything checks out."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from sotto.client import history_export
from sotto.client.backup import ProfileExistsError, create_backup, restore_backup
from sotto.client.backup_format import (
    BackupCorruptedError,
    BackupPassphrase,
    RecoveryKey,
    WrongBackupKeyError,
)
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, seeded_rng
from sotto.errors import StoreLockedError, WrongPassphraseError
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.store.model import Conversation, GroupId, MailboxId, MessageId, PreKeyKind, ReceiptKind
from sotto.store.sqlite import SqliteStore
from tests.store import factories
from tests.store.factories import NOW_MS
from tests.store.history import add_message

STORE_PASSPHRASE = "the store's passphrase"
NEW_PASSPHRASE = "the restored store's passphrase"
FAST = Argon2Params.TESTING


def _fill(path: Path, rng: Rng, messages: int = 40) -> None:
    store = SqliteStore.create(path, STORE_PASSPHRASE, kdf=Argon2Params.TESTING, rng=rng)
    try:
        with store.transaction() as tx:
            account = factories.account(rng)
            tx.account.put(account)
            tx.settings.put("theme", b"dark")
            bob = tx.contacts.add(
                name="Bob", account_id=rng(16), address=factories.address(rng), now_ms=NOW_MS
            )
            carol = tx.contacts.add(
                name="Carol", account_id=rng(16), address=factories.address(rng), now_ms=NOW_MS
            )
            tx.identities.observe(bob.address.name, factories.account(rng).identity.public, NOW_MS)
            tx.sessions.put(bob.address, factories.session_record(rng, account.address, bob.address))
            tx.sender_keys.put(bob.address, factories.sender_key_record(rng))
            tx.prekeys.put_one_time(PreKeyRecord.generate(1, rng), uploaded=True)
            tx.prekeys.put_signed(
                SignedPreKeyRecord.generate(1, account.identity, NOW_MS, rng), uploaded=True
            )
            tx.prekeys.put_kyber(KyberPreKeyRecord.generate(1, account.identity, NOW_MS, rng), uploaded=True)
            tx.prekeys.put_kyber(
                KyberPreKeyRecord.generate(2, account.identity, NOW_MS, rng, last_resort=True), uploaded=True
            )
            group = tx.groups.create(
                group_id=GroupId(rng(32)),
                name="Climbing",
                distribution_id=uuid.UUID(bytes=rng(16)),
                created_ms=NOW_MS,
            )
            tx.groups.add_member(group.group_id, bob.contact_id)
            tx.groups.add_member(group.group_id, carol.contact_id)
            tx.groups.mark_skdm_sent(group.group_id, bob.contact_id)
            direct = Conversation.direct(bob.contact_id)
            in_group = Conversation.group(group.group_id)
            for n in range(messages):
                mine = add_message(tx, rng, direct, f"to Bob {n} ünïcödé 🎉")
                add_message(tx, rng, direct, f"from Bob {n}", sender=bob.contact_id)
                add_message(tx, rng, in_group, f"from Carol {n}", sender=carol.contact_id)
            tx.messages.add_receipt(mine.row_id, bob.contact_id, ReceiptKind.DELIVERED, NOW_MS + 5)
            tx.messages.react(mine.row_id, bob.contact_id, "👍", NOW_MS + 6)
            tx.messages.edit(mine.row_id, "edited", NOW_MS + 7)
            tx.messages.put_attachment(mine.row_id, b"\x00file bytes" * 100)
            tx.outbox.enqueue(
                server_url="http://127.0.0.1:1",
                mailbox_id=MailboxId(rng(16)),
                delivery_token=rng(32),
                message_id=MessageId(rng(16)),
                payload=rng(200),
                created_ms=NOW_MS,
                message_row=mine.row_id,
            )
    finally:
        store.close()


def _export(path: Path, passphrase: str) -> str:
    store = SqliteStore.open(path, passphrase)
    try:
        with store.transaction() as tx:
            account = tx.account.get()
            assert account is not None
            return history_export.to_json(history_export.collect(tx, account, NOW_MS))
    finally:
        store.close()


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path, RecoveryKey]:
    profile = tmp_path / "old"
    profile.mkdir()
    store = profile / "sotto.db"
    _fill(store, seeded_rng(1))
    key = RecoveryKey.generate(seeded_rng(2))
    backup = tmp_path / "profile.sottobackup"
    create_backup(store, STORE_PASSPHRASE, backup, key, chunk_size=4096, kdf=FAST)
    return store, backup, key


def test_restore_then_export_is_byte_identical(made: tuple[Path, Path, RecoveryKey], tmp_path: Path) -> None:
    store, backup, key = made
    before = _export(store, STORE_PASSPHRASE)
    assert '"edited"' in before and "👍" in before and "Climbing" in before
    target = tmp_path / "new" / "sotto.db"
    summary = restore_backup(backup, RecoveryKey.from_text(key.to_text()), target, NEW_PASSPHRASE, kdf=FAST)
    assert summary.counts["messages"] == 120 and summary.counts["contacts"] == 2
    assert _export(target, NEW_PASSPHRASE) == before
    with pytest.raises(WrongPassphraseError):
        SqliteStore.open(target, STORE_PASSPHRASE)


def test_a_restore_holds_no_ratchet_state_and_no_one_time_prekey(
    made: tuple[Path, Path, RecoveryKey], tmp_path: Path
) -> None:
    _, backup, key = made
    target = tmp_path / "new" / "sotto.db"
    restore_backup(backup, key, target, NEW_PASSPHRASE, kdf=FAST)
    store = SqliteStore.open(target, NEW_PASSPHRASE)
    try:
        with store.transaction() as tx:
            account = tx.account.get()
            assert account is not None and account.display_name == "Alice"
            bob = tx.contacts.by_name("Bob")
            assert bob is not None
            assert tx.sessions.get(bob.address) is None
            assert tx.identities.get(bob.address.name) is not None
            assert tx.prekeys.ids(PreKeyKind.ONE_TIME) == []
            assert tx.prekeys.ids(PreKeyKind.KYBER) == [2]
            assert tx.prekeys.get_signed(1) is not None
            assert tx.outbox.count() == 0
            assert tx.settings.get("theme") == b"dark"
            group = tx.groups.all()[0]
            assert not any(m.skdm_sent for m in tx.groups.members(group.group_id))
    finally:
        store.close()
    raw = sqlite3.connect(target)
    try:
        assert raw.execute("SELECT count(*) FROM sender_keys").fetchone()[0] == 0
    finally:
        raw.close()


def test_the_backup_file_shows_no_store(made: tuple[Path, Path, RecoveryKey]) -> None:
    _, backup, _ = made
    blob = backup.read_bytes()
    assert b"SQLite format" not in blob and b"CREATE TABLE" not in blob
    assert backup.stat().st_mode & 0o077 == 0


def test_wrong_key_refused_and_nothing_overwritten(
    made: tuple[Path, Path, RecoveryKey], tmp_path: Path
) -> None:
    store, backup, _ = made
    before = store.read_bytes()
    for wrong in (RecoveryKey.generate(seeded_rng(3)), BackupPassphrase("five words that are wrong")):
        with pytest.raises(WrongBackupKeyError):
            restore_backup(backup, wrong, store, NEW_PASSPHRASE, force=True, kdf=FAST)
        assert store.read_bytes() == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["sotto.db", "sotto.db.lock"]
    assert _export(store, STORE_PASSPHRASE)


def test_an_existing_store_is_kept_without_force_and_replaced_with_it(
    made: tuple[Path, Path, RecoveryKey], tmp_path: Path
) -> None:
    store, backup, key = made
    other = tmp_path / "other" / "sotto.db"
    other.parent.mkdir()
    _fill(other, seeded_rng(9), messages=1)
    before = other.read_bytes()
    with pytest.raises(ProfileExistsError):
        restore_backup(backup, key, other, NEW_PASSPHRASE, kdf=FAST)
    assert other.read_bytes() == before
    open_store = SqliteStore.open(other, STORE_PASSPHRASE)
    try:
        with pytest.raises(StoreLockedError):
            restore_backup(backup, key, other, NEW_PASSPHRASE, force=True, kdf=FAST)
    finally:
        open_store.close()
    assert other.read_bytes() == before
    restore_backup(backup, key, other, NEW_PASSPHRASE, force=True, kdf=FAST)
    assert _export(other, NEW_PASSPHRASE) == _export(store, STORE_PASSPHRASE)


@pytest.mark.parametrize("damage", ["truncate", "flip", "append"])
def test_a_damaged_backup_is_refused_and_nothing_is_written(
    made: tuple[Path, Path, RecoveryKey], tmp_path: Path, damage: str
) -> None:
    _, backup, key = made
    blob = bytearray(backup.read_bytes())
    if damage == "truncate":
        del blob[-100:]
    elif damage == "flip":
        blob[len(blob) // 2] ^= 0x01
    else:
        blob += b"\x00" * 16
    backup.write_bytes(bytes(blob))
    target = tmp_path / "new" / "sotto.db"
    with pytest.raises(BackupCorruptedError):
        restore_backup(backup, key, target, NEW_PASSPHRASE, kdf=FAST)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_a_passphrase_backup_round_trips(tmp_path: Path) -> None:
    store = tmp_path / "sotto.db"
    _fill(store, seeded_rng(4), messages=3)
    backup = tmp_path / "b"
    words = BackupPassphrase("orbit tulip gravel cactus mosaic")
    create_backup(store, STORE_PASSPHRASE, backup, words, kdf=FAST)
    with pytest.raises(WrongBackupKeyError):
        restore_backup(
            backup, BackupPassphrase("orbit tulip gravel cactus mosaik"), tmp_path / "n" / "s.db", "p"
        )
    restored = tmp_path / "new" / "sotto.db"
    restore_backup(backup, BackupPassphrase("orbit tulip gravel cactus mosaic"), restored, "p", kdf=FAST)
    assert _export(restored, "p") == _export(store, STORE_PASSPHRASE)


def test_a_backup_never_replaces_a_file(made: tuple[Path, Path, RecoveryKey]) -> None:
    store, backup, key = made
    before = backup.read_bytes()
    with pytest.raises(FileExistsError):
        create_backup(store, STORE_PASSPHRASE, backup, key, kdf=FAST)
    assert backup.read_bytes() == before


def test_a_wrong_store_passphrase_writes_no_backup(tmp_path: Path) -> None:
    store = tmp_path / "sotto.db"
    _fill(store, seeded_rng(5), messages=1)
    with pytest.raises(WrongPassphraseError):
        create_backup(store, "not it", tmp_path / "b", RecoveryKey.generate(seeded_rng(6)), kdf=FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sotto.db", "sotto.db.lock"]
