"""What the SQLite file shows to someone who has it but not the passphrase: nothing sensitive.

Canary values go into every kind of sensitive field; then the raw bytes of the database, its WAL
and shared-memory files are searched for each canary as text, hex and base64 (every alignment).
Also: the wrong passphrase, values moved between rows, tampered indexes, and the file's mode.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, seeded_rng
from sotto.errors import (
    StoreConflictError,
    StoreCorruptedError,
    StoreLockedError,
    WrongPassphraseError,
)
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.store.model import (
    Conversation,
    Direction,
    GroupId,
    MailboxId,
    MessageId,
    MessageState,
    OurMailbox,
    TheirMailbox,
)
from sotto.store.sqlite import SqliteStore
from tests.store import factories
from tests.store.factories import NOW_MS

PASSPHRASE = "hunter2 but longer"
KDF = Argon2Params.TESTING


def forms(canary: bytes) -> set[bytes]:
    """The canary as stored text, hex and base64 (std and url-safe, at each of the 3 alignments)."""
    found = {canary, canary.hex().encode(), canary.hex().upper().encode()}
    for offset in range(3):
        chunk = canary[offset:]
        chunk = chunk[: len(chunk) // 3 * 3]
        if len(chunk) >= 6:
            found.add(base64.b64encode(chunk))
            found.add(base64.urlsafe_b64encode(chunk))
    return found


def raw_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)}


def fill_with_canaries(store: SqliteStore, rng: Rng) -> dict[str, bytes]:
    """Write a canary into every sensitive field; returns name → canary bytes."""
    c: dict[str, bytes] = {}

    def text(name: str) -> str:
        value = f"CANARY-{name}-{rng(6).hex()}"
        c[name] = value.encode()
        return value

    def blob(name: str, size: int = 32) -> bytes:
        c[name] = rng(size)
        return c[name]

    account = factories.account(rng, display_name=text("display-name"), server_url=text("server-url"))
    account = dataclasses.replace(
        account, account_id=blob("account-id", 16), device_secret=blob("device-secret")
    )
    c["identity-private"] = account.identity.private.to_bytes()
    contact_account = blob("contact-account-id", 16)
    contact_address = ProtocolAddress(text("contact-address"), 1)
    peer = factories.address(rng)
    session = factories.session_record(rng, account.address, peer)
    one_time = PreKeyRecord.generate(1, rng)
    c["prekey-private"] = one_time.key_pair.private.to_bytes()
    signed = SignedPreKeyRecord.generate(1, account.identity, NOW_MS, rng)
    c["signed-prekey-private"] = signed.key_pair.private.to_bytes()
    kyber = KyberPreKeyRecord.generate(1, account.identity, NOW_MS, rng, last_resort=True)
    c["kyber-seed"] = kyber.key_pair.seed()
    sender_key = factories.sender_key_record(rng)
    newest = sender_key.newest()
    assert newest is not None
    c["sender-chain-key"] = newest.chain_key.chain_key
    c["peer-identity"] = account.identity.public.to_bytes()

    with store.transaction() as tx:
        tx.account.put(account)
        tx.settings.put(text("setting-key"), blob("setting-value", 24))
        tx.prekeys.put_one_time(one_time)
        tx.prekeys.put_signed(signed)
        tx.prekeys.put_kyber(kyber)
        tx.prekeys.record_last_resort_use((1, 1, blob("base-key", 33)))
        tx.sessions.put(peer, session)
        tx.identities.observe(peer.name, account.identity.public, NOW_MS)
        tx.sender_keys.put(peer, sender_key)
        bob = tx.contacts.add(
            name=text("contact-name"),
            account_id=contact_account,
            address=contact_address,
            now_ms=NOW_MS,
            display_name=text("contact-display-name"),
        )
        tx.mailboxes.add(
            OurMailbox(
                MailboxId(blob("our-mailbox-id", 16)),
                bob.contact_id,
                text("our-mailbox-url"),
                blob("mailbox-seed"),
                blob("our-delivery-token"),
                NOW_MS,
            )
        )
        their_mailbox = MailboxId(blob("their-mailbox-id", 16))
        tx.their_mailboxes.put(
            TheirMailbox(bob.contact_id, text("their-url"), their_mailbox, blob("their-token"), NOW_MS)
        )
        tx.invites.add(
            secret=blob("invite-secret"),
            mailbox_id=MailboxId(blob("invite-mailbox", 16)),
            signing_seed=blob("invite-seed"),
            delivery_token=blob("invite-token"),
            access_token=blob("invite-access-token"),
            created_ms=NOW_MS,
            expires_ms=NOW_MS + 1,
        )
        group_id = GroupId(blob("group-id", 16))
        tx.groups.create(
            group_id=group_id,
            name=text("group-name"),
            distribution_id=uuid.UUID(bytes=blob("distribution-id", 16)),
            created_ms=NOW_MS,
        )
        tx.groups.add_member(group_id, bob.contact_id)
        message = tx.messages.add(
            message_id=MessageId(blob("message-id", 16)),
            conversation=Conversation.direct(bob.contact_id),
            direction=Direction.OUTGOING,
            sender=None,
            text=text("message-text"),
            sent_ms=NOW_MS,
            stored_ms=NOW_MS,
            state=MessageState.QUEUED,
        )
        tx.messages.add(
            message_id=MessageId(blob("group-message-id", 16)),
            conversation=Conversation.group(group_id),
            direction=Direction.INCOMING,
            sender=bob.contact_id,
            text=text("group-text") + " ünïcødé ✓",
            sent_ms=NOW_MS,
            stored_ms=NOW_MS,
            state=MessageState.RECEIVED,
        )
        tx.outbox.enqueue(
            server_url=text("outbox-url"),
            mailbox_id=their_mailbox,
            delivery_token=blob("outbox-token"),
            message_id=message.message_id,
            payload=blob("payload", 256),
            created_ms=NOW_MS,
            message_row=message.row_id,
        )
        tx.seen.add(MailboxId(blob("seen-mailbox", 16)), MessageId(blob("seen-envelope", 16)), 20_000)
        tx.send_log.add(
            contact_id=bob.contact_id,
            envelope_id=MessageId(blob("send-log-envelope", 16)),
            message_id=MessageId(blob("send-log-message-id", 16)),
            content=text("send-log-content").encode(),
            sent_ms=NOW_MS,
        )
    c["passphrase"] = PASSPHRASE.encode()
    return c


def assert_no_canary(path: Path, canaries: dict[str, bytes]) -> None:
    files = raw_files(path)
    assert any(name.endswith("-wal") for name in files) or len(files) >= 1
    hits = [
        (name, file_name)
        for name, canary in canaries.items()
        for form in forms(canary)
        for file_name, data in files.items()
        if form in data
    ]
    assert hits == []


def test_no_sensitive_value_in_the_files(tmp_path: Path) -> None:
    path = tmp_path / "at-rest.db"
    store = SqliteStore.create(path, PASSPHRASE, kdf=KDF)
    canaries = fill_with_canaries(store, seeded_rng(1))
    # The search can fail: the canaries are really in what the store hands back.
    with store.transaction() as tx:
        assert tx.contacts.by_name(canaries["contact-name"].decode()) is not None
    files = raw_files(path)
    assert set(files) >= {"at-rest.db", "at-rest.db-wal", "at-rest.db-shm"}
    assert sum(len(d) for d in files.values()) > 50_000
    assert_no_canary(path, canaries)  # live: most of it is still in the WAL
    store.checkpoint()
    assert_no_canary(path, canaries)
    store.close()
    assert_no_canary(path, canaries)


def test_the_search_finds_a_planted_value(tmp_path: Path) -> None:
    """Negative control: the same search does find a value written in clear, in each form."""
    path = tmp_path / "control.db"
    canary = b"CANARY-in-clear-\x00\x01\x02\xff"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v BLOB, h TEXT, b TEXT)")
    conn.execute(
        "INSERT INTO t VALUES (?, ?, ?)",
        (b"xx" + canary, canary.hex(), base64.b64encode(b"\x00" + canary).decode()),
    )
    conn.commit()
    conn.close()
    data = path.read_bytes()
    assert canary in data and canary.hex().encode() in data
    assert any(form in data for form in forms(canary) - {canary, canary.hex().encode()})
    with pytest.raises(AssertionError):
        assert_no_canary(path, {"planted": canary})


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore.create(path, "right", kdf=KDF).close()
    with pytest.raises(WrongPassphraseError):
        SqliteStore.open(path, "wrong")
    with pytest.raises(WrongPassphraseError):
        SqliteStore.open(path, "")
    # Unicode normalization: the same passphrase typed as composed or decomposed characters.
    SqliteStore.create(tmp_path / "u.db", "caf\u00e9", kdf=KDF).close()
    SqliteStore.open(tmp_path / "u.db", "cafe\u0301").close()
    SqliteStore.open(path, "right").close()


def test_change_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, "old", kdf=KDF)
    with store.transaction() as tx:
        tx.settings.put("k", b"v")
    store.change_passphrase("new", kdf=KDF)
    store.close()
    with pytest.raises(WrongPassphraseError):
        SqliteStore.open(path, "old")
    store = SqliteStore.open(path, "new")
    with store.transaction() as tx:
        assert tx.settings.get("k") == b"v"
    store.close()


def test_create_refuses_an_existing_file_and_open_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore.create(path, "p", kdf=KDF).close()
    with pytest.raises(StoreConflictError):
        SqliteStore.create(path, "p", kdf=KDF)
    with pytest.raises(FileNotFoundError):
        SqliteStore.open(tmp_path / "missing.db", "p")
    not_a_store = tmp_path / "junk.db"
    not_a_store.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreCorruptedError):
        SqliteStore.open(not_a_store, "p")


def test_one_handle_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, "p", kdf=KDF)
    with pytest.raises(StoreLockedError):
        SqliteStore.open(path, "p")
    store.close()
    SqliteStore.open(path, "p").close()


def test_connection_settings(tmp_path: Path) -> None:
    store = SqliteStore.create(tmp_path / "s.db", "p", kdf=KDF)
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    store.close()


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, "p", kdf=KDF)
    with store.transaction() as tx:
        tx.settings.put("k", b"v")
    for name in ("s.db", "s.db-wal", "s.db-shm"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))
    store.close()


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    store = SqliteStore.create(path, PASSPHRASE, kdf=KDF)
    rng = seeded_rng(2)
    with store.transaction() as tx:
        for name in ("Bob", "Carol"):
            account_id = rng(16)
            contact = tx.contacts.add(
                name=name,
                account_id=account_id,
                address=ProtocolAddress(str(uuid.UUID(bytes=account_id)), 1),
                now_ms=NOW_MS,
            )
            tx.messages.add(
                message_id=MessageId(rng(16)),
                conversation=Conversation.direct(contact.contact_id),
                direction=Direction.INCOMING,
                sender=contact.contact_id,
                text=f"hello from {name}",
                sent_ms=NOW_MS,
                stored_ms=NOW_MS,
                state=MessageState.RECEIVED,
            )
            tx.sessions.put(
                ProtocolAddress(name, 1),
                factories.session_record(rng, factories.address(rng), factories.address(rng)),
            )
        tx.settings.put("a", b"1")
        tx.settings.put("b", b"2")
        for i in (1, 2):
            tx.prekeys.put_one_time(PreKeyRecord.generate(i, rng))
    store.close()
    return path


def _open(path: Path) -> SqliteStore:
    return SqliteStore.open(path, PASSPHRASE)


def test_untampered_file_reads(filled: Path) -> None:
    store = _open(filled)
    with store.transaction() as tx:
        assert [c.name for c in tx.contacts.all()] == ["Bob", "Carol"]
        assert tx.sessions.get(ProtocolAddress("Bob", 1)) is not None
        assert (
            tx.messages.conversation(Conversation.direct(tx.contacts.all()[0].contact_id))[0].text
            == "hello from Bob"
        )
    store.close()


@pytest.mark.parametrize(
    ("statements", "read"),
    [
        # Two contacts' sealed rows swapped: each is bound to its own id.
        (
            [
                "UPDATE contacts SET sealed = (SELECT sealed FROM contacts WHERE id = 2) WHERE id = 1",
            ],
            "contacts",
        ),
        # A session record moved to another peer's row.
        (
            [
                "UPDATE sessions SET sealed = (SELECT sealed FROM sessions ORDER BY address_ix DESC LIMIT 1) "
                "WHERE address_ix = (SELECT address_ix FROM sessions ORDER BY address_ix LIMIT 1)",
            ],
            "sessions",
        ),
        # A message relinked to the other contact's conversation in the clear columns.
        (["UPDATE messages SET contact_id = 2, sender_id = 2 WHERE id = 1"], "messages"),
        # A value copied from one table into another.
        (["UPDATE settings SET sealed = (SELECT sealed FROM contacts WHERE id = 1)"], "settings"),
        # Two prekeys swapped.
        (["UPDATE prekeys SET sealed = (SELECT sealed FROM prekeys WHERE id = 2) WHERE id = 1"], "prekeys"),
        # The name index of one contact pointed at the other: the lookup must not return the wrong row.
        (
            [
                "CREATE TEMP TABLE saved AS SELECT id, name_ix FROM contacts",
                "UPDATE contacts SET name_ix = x'01' WHERE id = 1",
                "UPDATE contacts SET name_ix = (SELECT name_ix FROM saved WHERE id = 1) WHERE id = 2",
                "UPDATE contacts SET name_ix = (SELECT name_ix FROM saved WHERE id = 2) WHERE id = 1",
            ],
            "contact-by-name",
        ),
        # Text where a sealed blob belongs, and a number.
        (["UPDATE settings SET sealed = 'not a blob \xff'"], "settings"),
        (["UPDATE settings SET sealed = 12345"], "settings"),
        # A flipped bit.
        (["UPDATE settings SET sealed = substr(sealed, 1, 20) || x'ff' || substr(sealed, 22)"], "settings"),
    ],
    ids=[
        "swap-contacts",
        "swap-sessions",
        "relink-message",
        "cross-table",
        "swap-prekeys",
        "swap-index",
        "text-value",
        "number-value",
        "bit-flip",
    ],
)
def test_moved_or_altered_values_are_refused(filled: Path, statements: list[str], read: str) -> None:
    _tamper(filled, *statements)
    store = _open(filled)
    try:
        with store.transaction() as tx, pytest.raises(StoreCorruptedError):
            if read == "contacts":
                tx.contacts.all()
            elif read == "sessions":
                for name in ("Bob", "Carol"):
                    tx.sessions.get(ProtocolAddress(name, 1))
            elif read == "messages":
                tx.messages.conversation(Conversation.direct(2))  # type: ignore[arg-type]
            elif read == "settings":
                tx.settings.get("a")
                tx.settings.get("b")
            elif read == "prekeys":
                tx.prekeys.get_one_time(1)
            else:
                tx.contacts.by_name("Carol")
    finally:
        store.close()


def test_tampered_key_parameters_are_refused_before_deriving(filled: Path) -> None:
    _tamper(filled, "UPDATE keyring SET memory_kib = 1099511627776")
    with pytest.raises(StoreCorruptedError):
        _open(filled)


def test_reprs_hide_secrets(tmp_path: Path) -> None:
    rng = seeded_rng(3)
    store = SqliteStore.create(tmp_path / "s.db", PASSPHRASE, kdf=KDF)
    canaries = fill_with_canaries(store, rng)
    shown: list[str] = [repr(store)]
    with store.transaction() as tx:
        shown.append(repr(tx))
        account = tx.account.get()
        assert account is not None
        shown.append(repr(account))
        contacts = tx.contacts.all()
        shown += [repr(c) for c in contacts]
        shown += [repr(m) for m in tx.mailboxes.all()]
        shown.append(repr(tx.their_mailboxes.get(contacts[0].contact_id)))
        shown += [repr(i) for i in tx.invites.all()]
        shown += [repr(g) for g in tx.groups.all()]
        shown += [repr(m) for m in tx.messages.conversation(Conversation.direct(contacts[0].contact_id))]
        shown += [repr(i) for i in tx.outbox.all()]
        shown.append(repr(tx.prekeys.pending_upload()))
        shown.append(repr(store._cipher))
    store.close()
    text = "\n".join(shown)
    assert "<hidden>" in text
    for name, canary in canaries.items():
        for form in forms(canary) | {repr(canary).encode()}:
            assert form.decode("latin-1") not in text, name


def test_a_failed_create_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sotto.store.sqlite import store as sqlite_store

    def broken(*args: object, **kwargs: object) -> list[int]:
        raise OSError("disk full")

    monkeypatch.setattr(sqlite_store, "migrate", broken)
    with pytest.raises(OSError, match="disk full"):
        SqliteStore.create(tmp_path / "s.db", "p", kdf=KDF)
    assert not any(p.name.startswith("s.db") and not p.name.endswith(".lock") for p in tmp_path.iterdir())
    monkeypatch.undo()
    SqliteStore.create(tmp_path / "s.db", "p", kdf=KDF).close()


def test_sqlite_failures_surface_as_store_errors(tmp_path: Path) -> None:
    from sotto.errors import StoreError

    store = SqliteStore.create(tmp_path / "s.db", "p", kdf=KDF)
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.settings.put("k", b"v")
        store._conn.execute("DROP TABLE settings")
        tx.settings.get("k")
    with store.transaction() as tx:
        assert tx.settings.get("k") is None  # rolled back, table and all
    store.close()
