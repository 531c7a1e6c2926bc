"""An old store file keeps opening: the frozen schema-1 fixture migrates, atomically, with its data."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from sotto.errors import StoreVersionError
from sotto.store import migrations
from sotto.store.migrations import SCHEMA_VERSION, Migration
from sotto.store.model import ContactId, Conversation, Direction, MessageId, MessageState, PreKeyKind
from sotto.store.sqlite import SqliteStore
from tests.store.fixtures import store_v1 as v1

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.db"


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    target = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, target)
    return target


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_the_fixture_is_a_schema_1_file() -> None:
    assert _version(FIXTURE) == 1
    assert SCHEMA_VERSION > 1
    assert [m.version for m in migrations.MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def test_schema_1_store_migrates_with_everything_in_it(old_file: Path) -> None:
    store = SqliteStore.open(old_file, v1.PASSPHRASE)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.integrity_check() == "ok"
        with store.transaction() as tx:
            account = tx.account.get()
            assert account is not None and account.display_name == "Alice"
            assert tx.settings.get(v1.SETTING[0]) == v1.SETTING[1]

            bob = tx.contacts.by_name(v1.CONTACT_NAME)
            assert bob is not None and bob.contact_id == v1.CONTACT_ID
            assert bob.display_name == ""  # added by schema 2
            assert not bob.blocked and not bob.removed  # added by schema 3
            assert tx.contacts.by_address_name(bob.address.name) == bob
            trusted = tx.identities.get(bob.address.name)
            assert trusted is not None and trusted.identity_key == account.identity.public
            session = tx.sessions.get(bob.address)
            assert session is not None and session.current is not None

            assert tx.prekeys.ids(PreKeyKind.ONE_TIME) == list(v1.PREKEY_IDS)
            assert tx.prekeys.pending_upload().one_time == ()
            last_resort = tx.prekeys.latest_last_resort()
            signed = tx.prekeys.latest_signed()
            assert last_resort is not None and signed is not None
            assert (last_resort.id, signed.id, b"\x05" + b"\x09" * 32) in tx.prekeys.last_resort_uses()
            assert list(tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, 1)) == [len(v1.PREKEY_IDS) + 1]

            mailbox = tx.mailboxes.get(v1.MAILBOX_ID)
            assert mailbox is not None and mailbox.contact_id == bob.contact_id
            assert tx.mailboxes.current(bob.contact_id) == mailbox
            theirs = tx.their_mailboxes.get(bob.contact_id)
            assert theirs is not None and theirs.mailbox_id == v1.THEIR_MAILBOX_ID
            assert len(tx.invites.all()) == 1

            group = tx.groups.get(v1.GROUP_ID)
            assert group is not None and group.name == v1.GROUP_NAME
            assert group.distribution_id == v1.DISTRIBUTION_ID
            assert [m.contact_id for m in tx.groups.members(v1.GROUP_ID)] == [bob.contact_id]
            assert tx.sender_keys.get(account.address, v1.DISTRIBUTION_ID) is not None

            (received,) = tx.messages.conversation(Conversation.direct(bob.contact_id))
            assert (received.text, received.direction, received.state) == (
                v1.INCOMING_TEXT,
                Direction.INCOMING,
                MessageState.RECEIVED,
            )
            assert tx.messages.find(bob.contact_id, v1.INCOMING_ID) == received
            (sent,) = tx.messages.conversation(Conversation.group(v1.GROUP_ID))
            assert sent.text == v1.OUTGOING_TEXT and sent.message_id == v1.OUTGOING_ID
            assert [p.message_id for p in tx.messages.pending_receipts()] == [v1.INCOMING_ID]
            (item,) = tx.outbox.all()
            assert item.message_row == sent.row_id and len(item.payload) == 256
            assert tx.seen.contains(v1.SEEN[0], v1.SEEN[1])
            assert tx.messages.unreported() == []  # schema 3: what was there counts as reported
            assert tx.unreported_events.all() == []
            assert tx.send_log.for_contact(bob.contact_id) == []  # schema 4: an empty send log
    finally:
        store.close()
    # Opening again changes nothing.
    digest = hashlib.sha256(old_file.read_bytes()).hexdigest()
    SqliteStore.open(old_file, v1.PASSPHRASE).close()
    assert _version(old_file) == SCHEMA_VERSION
    assert hashlib.sha256(old_file.read_bytes()).hexdigest() == digest


def test_partial_migration_can_stop_at_a_version(old_file: Path) -> None:
    SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=1).close()
    assert _version(old_file) == 1


def test_a_failing_migration_leaves_the_old_version(old_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrations.MIGRATIONS[1]

    def apply_then_crash(conn: sqlite3.Connection, cipher: object) -> None:
        real.apply(conn, cipher)  # type: ignore[arg-type]
        raise OSError("disk vanished mid-migration")

    monkeypatch.setattr(
        migrations, "MIGRATIONS", (migrations.MIGRATIONS[0], Migration(2, real.description, apply_then_crash))
    )
    with pytest.raises(OSError, match="mid-migration"):
        SqliteStore.open(old_file, v1.PASSPHRASE)
    assert _version(old_file) == 1
    monkeypatch.undo()
    store = SqliteStore.open(old_file, v1.PASSPHRASE)
    try:
        with store.transaction() as tx:
            bob = tx.contacts.by_name(v1.CONTACT_NAME)
            assert bob is not None and bob.display_name == ""
    finally:
        store.close()


def test_a_newer_file_is_refused(old_file: Path) -> None:
    conn = sqlite3.connect(old_file)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError):
        SqliteStore.open(old_file, v1.PASSPHRASE)
    assert _version(old_file) == SCHEMA_VERSION + 1


def test_schema_3_adds_contact_state_and_unreported_marks_with_defaults(old_file: Path) -> None:
    SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=2).close()
    assert _version(old_file) == 2
    SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=3).close()
    assert _version(old_file) == 3
    conn = sqlite3.connect(old_file)
    try:
        assert conn.execute("SELECT blocked, removed FROM contacts").fetchall() == [(0, 0)]
        assert conn.execute("SELECT unreported FROM messages").fetchall() == [(0,), (0,)]
        assert conn.execute("SELECT count(*) FROM unreported_events").fetchone() == (0,)
    finally:
        conn.close()


def test_schema_4_adds_an_empty_send_log_that_takes_entries(old_file: Path) -> None:
    SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=3).close()
    conn = sqlite3.connect(old_file)
    try:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'send_log'").fetchall() == []
    finally:
        conn.close()
    store = SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=4)
    try:
        assert store.schema_version() == 4
        with store.transaction() as tx:
            tx.send_log.add(
                contact_id=ContactId(v1.CONTACT_ID),
                envelope_id=MessageId(bytes(16)),
                message_id=None,
                content=b"x",
                sent_ms=1,
            )
        with store.transaction() as tx:
            assert tx.send_log.count() == 1
    finally:
        store.close()


def test_schema_5_keeps_old_messages_plain_and_takes_changes(old_file: Path) -> None:
    SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=4).close()
    store = SqliteStore.open(old_file, v1.PASSPHRASE)  # schema 5 and on: the code needs the latest
    try:
        with store.transaction() as tx:
            (received,) = tx.messages.conversation(Conversation.direct(ContactId(v1.CONTACT_ID)))
            assert received.expires_ms is None and received.quote is None and received.reactions == ()
            assert not received.deleted and received.edited_ms is None and received.timer_s is None
            assert tx.messages.next_expiry() is None
            tx.messages.react(received.row_id, None, "👍", 1)
            edited = tx.messages.edit(received.row_id, "edited after the migration", 2)
        with store.transaction() as tx:
            assert tx.messages.get(received.row_id) == edited
            assert [r.emoji for r in edited.reactions] == ["👍"]
    finally:
        store.close()
    conn = sqlite3.connect(old_file)
    try:
        assert conn.execute("SELECT count(*) FROM message_extras").fetchone() == (1,)
        assert conn.execute("SELECT expires_ms FROM messages").fetchall() == [(None,), (None,)]
    finally:
        conn.close()


def test_schema_8_keeps_trust_and_flags_no_safety_number_change(old_file: Path) -> None:
    SqliteStore.open(old_file, v1.PASSPHRASE, migrate_to=7).close()
    conn = sqlite3.connect(old_file)
    try:
        (before,) = conn.execute("SELECT sealed FROM identities").fetchall()
    finally:
        conn.close()
    store = SqliteStore.open(old_file, v1.PASSPHRASE)
    try:
        assert store.schema_version() == 8
        with store.transaction() as tx:
            account = tx.account.get()
            bob = tx.contacts.by_name(v1.CONTACT_NAME)
            assert account is not None and bob is not None
            trusted = tx.identities.get(bob.address.name)
            assert trusted is not None and trusted.identity_key == account.identity.public
            assert trusted.changed_ms is None and not trusted.verified
            tx.identities.set_changed(bob.address.name, 1234)
        with store.transaction() as tx:
            flagged = tx.identities.get(bob.address.name)
            assert flagged is not None and flagged.changed_ms == 1234
            assert flagged.identity_key == trusted.identity_key
    finally:
        store.close()
    conn = sqlite3.connect(old_file)
    try:
        (after,) = conn.execute("SELECT sealed FROM identities").fetchall()
    finally:
        conn.close()
    assert after != before  # re-sealed with one more value
