"""The SQLite store: one file (plus its WAL), every sensitive value sealed, one process at a time.

Opening derives the key-encryption key from the passphrase (Argon2id, ~0.3 s by default), unwraps
the data key, takes an exclusive lock file and runs pending migrations. Connections are set up
for crash safety and for leaving nothing readable behind:

* ``journal_mode=WAL`` and ``synchronous=FULL``: a committed transaction survives a process kill
  and a power cut, which is what "commit, then acknowledge" needs;
* ``secure_delete=ON``: deleted rows are zeroed, not left in free pages;
* ``foreign_keys=ON``: deleting a contact removes what hangs off it, in the same transaction;
* ``temp_store=MEMORY``: sorts and temporary tables do not spill to temp files.

See :mod:`sotto.store.cipher` for the encryption and :mod:`sotto.store.migrations` for the schema.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
import uuid
from collections.abc import Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, system_rng
from sotto.errors import (
    MissingRecordError,
    SottoError,
    StoreConflictError,
    StoreCorruptedError,
    StoreError,
    StoreLockedError,
)
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.group.sender_key import SenderKeyRecord
from sotto.protocol.record import SessionRecord
from sotto.protocol.session import LastResortUse
from sotto.store import codec, rules
from sotto.store.cipher import DATA_KEY_LENGTH, StoreCipher, unwrap_data_key, wrap_data_key
from sotto.store.codec import Value, as_bool, as_bytes, as_int, as_opt_int, as_str
from sotto.store.gate import TransactionGate
from sotto.store.interfaces import PendingUpload, Transaction
from sotto.store.migrations import SCHEMA_VERSION, migrate, schema_version
from sotto.store.model import (
    Account,
    Contact,
    ContactId,
    Conversation,
    Direction,
    Group,
    GroupId,
    GroupMember,
    IdentityChange,
    Invite,
    InviteId,
    MailboxId,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
    OurMailbox,
    OutboxItem,
    OutboxItemId,
    PendingReceipt,
    PreKeyKind,
    Receipt,
    ReceiptKind,
    TheirMailbox,
    TrustedIdentity,
)

KDF_NAME = "argon2id"
_INT = struct.Struct(">q")
_KEYRING_SQL = """
CREATE TABLE keyring (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    kdf TEXT NOT NULL,
    iterations INTEGER NOT NULL,
    memory_kib INTEGER NOT NULL,
    lanes INTEGER NOT NULL,
    salt BLOB NOT NULL,
    wrapped_key BLOB NOT NULL
)
"""


def _row_key(value: int) -> bytes:
    return _INT.pack(value)


def _mailbox_row_key(mailbox_ix: bytes, contact_id: int) -> bytes:
    """A mailbox's seal names its owner too: relinking the row to another contact breaks it."""
    return mailbox_ix + _row_key(contact_id)


def _message_row_key(
    row_id: int, contact_id: int | None, group_row: int | None, sender_id: int | None, direction: str
) -> bytes:
    """A message's seal names its conversation, sender and direction: moving it breaks it."""
    links = (row_id, contact_id or 0, group_row or 0, sender_id or 0)
    return b"".join(_row_key(v) for v in links) + direction.encode()


def _mismatch(what: str) -> StoreCorruptedError:
    return StoreCorruptedError(f"a {what} index points at another row")


def _decoded(what: str, error: SottoError) -> StoreCorruptedError:
    return StoreCorruptedError(f"stored {what} does not load ({type(error).__name__})")


def _read_error(error: sqlite3.OperationalError) -> Exception:
    # A text value where a sealed blob belongs fails while the row is fetched.
    if "decode" in str(error):
        return StoreCorruptedError("a stored value has the wrong type")
    return error


class _Db:
    """A transaction's view of the connection: statements, sealing and id counters."""

    __slots__ = ("cipher", "conn", "open")

    def __init__(self, conn: sqlite3.Connection, cipher: StoreCipher) -> None:
        self.conn = conn
        self.cipher = cipher
        self.open = True

    def check(self) -> None:
        if not self.open:
            raise StoreError("this transaction has ended")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self.check()
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            raise _read_error(error) from None

    def row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.check()
        try:
            return self.conn.execute(sql, params).fetchone()
        except sqlite3.OperationalError as error:
            raise _read_error(error) from None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; returns the number of rows changed."""
        self.check()
        return self.conn.execute(sql, params).rowcount

    def seal(self, table: str, row_key: bytes, values: Sequence[Value]) -> bytes:
        return self.cipher.seal(table, "sealed", row_key, codec.pack(values))

    def open_row(self, table: str, row_key: bytes, sealed: bytes, count: int) -> list[Value]:
        return codec.unpack(self.cipher.open(table, "sealed", row_key, sealed), count)

    def seal_raw(self, table: str, row_key: bytes, data: bytes) -> bytes:
        return self.cipher.seal(table, "sealed", row_key, data)

    def open_raw(self, table: str, row_key: bytes, sealed: bytes) -> bytes:
        return self.cipher.open(table, "sealed", row_key, sealed)

    def ix(self, domain: str, *parts: bytes) -> bytes:
        return self.cipher.index(domain, *parts)

    def next_id(self, counter: str, count: int = 1) -> int:
        """The first of ``count`` fresh ids from a never-decreasing counter."""
        found = self.row("SELECT value FROM counters WHERE name = ?", (counter,))
        first = (0 if found is None else int(found[0])) + 1
        self.run(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (counter, first + count - 1),
        )
        return first

    def peek_counter(self, counter: str) -> int:
        found = self.row("SELECT value FROM counters WHERE name = ?", (counter,))
        return 0 if found is None else int(found[0])


class _Repo:
    __slots__ = ("db",)

    def __init__(self, db: _Db) -> None:
        self.db = db


class _Account(_Repo):
    _FIELDS = 9

    def get(self) -> Account | None:
        found = self.db.row("SELECT sealed FROM account WHERE id = 1")
        if found is None:
            return None
        v = self.db.open_row("account", _row_key(1), found[0], self._FIELDS)
        try:
            identity = KeyPair.from_private_bytes(as_bytes(v[3]))
        except SottoError as error:
            raise _decoded("identity key", error) from None
        return Account(
            account_id=as_bytes(v[0]),
            device_id=as_int(v[1]),
            device_secret=as_bytes(v[2]),
            identity=identity,
            registration_id=as_int(v[4]),
            server_url=as_str(v[5]),
            display_name=as_str(v[6]),
            created_ms=as_int(v[7]),
            address=ProtocolAddress(as_str(v[8]), as_int(v[1])),
        )

    def put(self, account: Account) -> None:
        if account.address.device_id != account.device_id:
            raise ValueError("the account's address must carry its device id")
        sealed = self.db.seal(
            "account",
            _row_key(1),
            [
                account.account_id,
                account.device_id,
                account.device_secret,
                account.identity.private.to_bytes(),
                account.registration_id,
                account.server_url,
                account.display_name,
                account.created_ms,
                account.address.name,
            ],
        )
        self.db.run(
            "INSERT INTO account (id, sealed) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
            (sealed,),
        )


class _Settings(_Repo):
    def get(self, key: str) -> bytes | None:
        ix = self.db.ix("settings", key.encode())
        found = self.db.row("SELECT sealed FROM settings WHERE key_ix = ?", (ix,))
        if found is None:
            return None
        return as_bytes(self.db.open_row("settings", ix, found[0], 2)[1])

    def put(self, key: str, value: bytes) -> None:
        ix = self.db.ix("settings", key.encode())
        sealed = self.db.seal("settings", ix, [key, bytes(value)])
        self.db.run(
            "INSERT INTO settings (key_ix, sealed) VALUES (?, ?) "
            "ON CONFLICT (key_ix) DO UPDATE SET sealed = excluded.sealed",
            (ix, sealed),
        )

    def delete(self, key: str) -> bool:
        return (
            self.db.run("DELETE FROM settings WHERE key_ix = ?", (self.db.ix("settings", key.encode()),)) > 0
        )


class _UsedTriples:
    """Container over the stored triples: each ``in`` is one indexed lookup."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    def __contains__(self, item: object) -> bool:
        if not (
            isinstance(item, tuple)
            and len(item) == 3
            and isinstance(item[0], int)
            and isinstance(item[1], int)
            and isinstance(item[2], bytes)
        ):
            return False
        ix = _triple_ix(self._db, (item[0], item[1], item[2]))
        return self._db.row("SELECT 1 FROM last_resort_uses WHERE use_ix = ?", (ix,)) is not None


def _triple_ix(db: _Db, use: LastResortUse) -> bytes:
    return db.ix("last-resort-use", _row_key(use[0]), _row_key(use[1]), bytes(use[2]))


def _prekey_row_key(kind: PreKeyKind, prekey_id: int) -> bytes:
    return kind.value.encode() + _row_key(prekey_id)


class _PreKeys(_Repo):
    def allocate_ids(self, kind: PreKeyKind, count: int) -> range:
        rules.check_allocation(count)
        counter = f"prekey:{kind.value}"
        rules.check_prekey_id(self.db.peek_counter(counter) + count)
        first = self.db.next_id(counter, count)
        return range(first, first + count)

    def _put(self, kind: PreKeyKind, prekey_id: int, data: bytes, uploaded: bool, last_resort: bool) -> None:
        sealed = self.db.seal_raw("prekeys", _prekey_row_key(kind, prekey_id), data)
        self.db.run(
            "INSERT INTO prekeys (kind, id, uploaded, last_resort, sealed) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET uploaded = excluded.uploaded, "
            "last_resort = excluded.last_resort, sealed = excluded.sealed",
            (kind.value, prekey_id, int(uploaded), int(last_resort), sealed),
        )

    def _get(self, kind: PreKeyKind, prekey_id: int) -> bytes | None:
        found = self.db.row("SELECT sealed FROM prekeys WHERE kind = ? AND id = ?", (kind.value, prekey_id))
        return (
            None if found is None else self.db.open_raw("prekeys", _prekey_row_key(kind, prekey_id), found[0])
        )

    def _remove(self, kind: PreKeyKind, prekey_id: int) -> bool:
        return self.db.run("DELETE FROM prekeys WHERE kind = ? AND id = ?", (kind.value, prekey_id)) > 0

    def put_one_time(self, record: PreKeyRecord, *, uploaded: bool = False) -> None:
        self._put(PreKeyKind.ONE_TIME, record.id, record.to_bytes(), uploaded, False)

    def get_one_time(self, prekey_id: int) -> PreKeyRecord | None:
        data = self._get(PreKeyKind.ONE_TIME, prekey_id)
        return None if data is None else _load_one_time(data)

    def remove_one_time(self, prekey_id: int) -> bool:
        return self._remove(PreKeyKind.ONE_TIME, prekey_id)

    def put_signed(self, record: SignedPreKeyRecord, *, uploaded: bool = False) -> None:
        self._put(PreKeyKind.SIGNED, record.id, record.to_bytes(), uploaded, False)

    def get_signed(self, prekey_id: int) -> SignedPreKeyRecord | None:
        data = self._get(PreKeyKind.SIGNED, prekey_id)
        return None if data is None else _load_signed(data)

    def remove_signed(self, prekey_id: int) -> bool:
        return self._remove(PreKeyKind.SIGNED, prekey_id)

    def latest_signed(self) -> SignedPreKeyRecord | None:
        found = self.db.row("SELECT max(id) FROM prekeys WHERE kind = 'signed'")
        return None if found is None or found[0] is None else self.get_signed(int(found[0]))

    def put_kyber(self, record: KyberPreKeyRecord, *, uploaded: bool = False) -> None:
        self._put(PreKeyKind.KYBER, record.id, record.to_bytes(), uploaded, record.last_resort)

    def get_kyber(self, prekey_id: int) -> KyberPreKeyRecord | None:
        data = self._get(PreKeyKind.KYBER, prekey_id)
        return None if data is None else _load_kyber(data)

    def remove_kyber(self, prekey_id: int) -> bool:
        return self._remove(PreKeyKind.KYBER, prekey_id)

    def latest_last_resort(self) -> KyberPreKeyRecord | None:
        found = self.db.row("SELECT max(id) FROM prekeys WHERE kind = 'kyber' AND last_resort = 1")
        return None if found is None or found[0] is None else self.get_kyber(int(found[0]))

    def ids(self, kind: PreKeyKind, *, last_resort: bool | None = None) -> list[int]:
        if kind is PreKeyKind.KYBER and last_resort is not None:
            rows = self.db.rows(
                "SELECT id FROM prekeys WHERE kind = ? AND last_resort = ? ORDER BY id",
                (kind.value, int(last_resort)),
            )
        else:
            rows = self.db.rows("SELECT id FROM prekeys WHERE kind = ? ORDER BY id", (kind.value,))
        return [int(r[0]) for r in rows]

    def pending_upload(self) -> PendingUpload:
        rows = self.db.rows("SELECT kind, id, sealed FROM prekeys WHERE uploaded = 0 ORDER BY kind, id")
        one_time: list[PreKeyRecord] = []
        signed: list[SignedPreKeyRecord] = []
        kyber: list[KyberPreKeyRecord] = []
        for kind_text, prekey_id, sealed in rows:
            kind = PreKeyKind(kind_text)
            data = self.db.open_raw("prekeys", _prekey_row_key(kind, int(prekey_id)), sealed)
            if kind is PreKeyKind.ONE_TIME:
                one_time.append(_load_one_time(data))
            elif kind is PreKeyKind.SIGNED:
                signed.append(_load_signed(data))
            else:
                kyber.append(_load_kyber(data))
        return PendingUpload(tuple(one_time), tuple(signed), tuple(kyber))

    def mark_uploaded(self, kind: PreKeyKind, prekey_ids: Iterable[int]) -> None:
        self.db.check()
        self.db.conn.executemany(
            "UPDATE prekeys SET uploaded = 1 WHERE kind = ? AND id = ?", [(kind.value, i) for i in prekey_ids]
        )

    def record_last_resort_use(self, use: LastResortUse) -> bool:
        ix = _triple_ix(self.db, use)
        return (
            self.db.run(
                "INSERT INTO last_resort_uses (use_ix, kyber_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (ix, use[0]),
            )
            > 0
        )

    def last_resort_uses(self) -> Container[LastResortUse]:
        self.db.check()
        return _UsedTriples(self.db)

    def forget_last_resort_uses(self, kyber_pre_key_id: int) -> int:
        return self.db.run("DELETE FROM last_resort_uses WHERE kyber_id = ?", (kyber_pre_key_id,))


def _load_one_time(data: bytes) -> PreKeyRecord:
    try:
        return PreKeyRecord.from_bytes(data)
    except SottoError as error:
        raise _decoded("prekey", error) from None


def _load_signed(data: bytes) -> SignedPreKeyRecord:
    try:
        return SignedPreKeyRecord.from_bytes(data)
    except SottoError as error:
        raise _decoded("signed prekey", error) from None


def _load_kyber(data: bytes) -> KyberPreKeyRecord:
    try:
        return KyberPreKeyRecord.from_bytes(data)
    except SottoError as error:
        raise _decoded("Kyber prekey", error) from None


class _Sessions(_Repo):
    def _ix(self, address: ProtocolAddress) -> bytes:
        return self.db.ix("session", address.name.encode(), _row_key(address.device_id))

    def get(self, address: ProtocolAddress) -> SessionRecord | None:
        ix = self._ix(address)
        found = self.db.row("SELECT sealed FROM sessions WHERE address_ix = ?", (ix,))
        if found is None:
            return None
        try:
            return SessionRecord.from_bytes(self.db.open_raw("sessions", ix, found[0]))
        except SottoError as error:
            if isinstance(error, StoreCorruptedError):
                raise
            raise _decoded("session", error) from None

    def put(self, address: ProtocolAddress, record: SessionRecord) -> None:
        ix = self._ix(address)
        sealed = self.db.seal_raw("sessions", ix, record.to_bytes())
        self.db.run(
            "INSERT INTO sessions (address_ix, name_ix, device_id, sealed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (address_ix) DO UPDATE SET sealed = excluded.sealed",
            (ix, self.db.ix("session-name", address.name.encode()), address.device_id, sealed),
        )

    def delete(self, address: ProtocolAddress) -> bool:
        return self.db.run("DELETE FROM sessions WHERE address_ix = ?", (self._ix(address),)) > 0

    def devices(self, name: str) -> list[int]:
        rows = self.db.rows(
            "SELECT device_id FROM sessions WHERE name_ix = ? ORDER BY device_id",
            (self.db.ix("session-name", name.encode()),),
        )
        return [int(r[0]) for r in rows]

    def delete_all(self, name: str) -> int:
        return self.db.run(
            "DELETE FROM sessions WHERE name_ix = ?", (self.db.ix("session-name", name.encode()),)
        )


class _Identities(_Repo):
    def _load(self, name: str) -> tuple[bytes, TrustedIdentity | None]:
        ix = self.db.ix("identity", name.encode())
        found = self.db.row("SELECT sealed FROM identities WHERE name_ix = ?", (ix,))
        if found is None:
            return ix, None
        v = self.db.open_row("identities", ix, found[0], 5)
        previous = v[4]
        try:
            return ix, TrustedIdentity(
                name=as_str(v[0]),
                identity_key=PublicKey.from_bytes(as_bytes(v[1])),
                first_seen_ms=as_int(v[2]),
                verified=as_bool(v[3]),
                previous_key=None if previous is None else PublicKey.from_bytes(as_bytes(previous)),
            )
        except SottoError as error:
            if isinstance(error, StoreCorruptedError):
                raise
            raise _decoded("identity key", error) from None

    def _save(self, ix: bytes, trusted: TrustedIdentity) -> None:
        previous = None if trusted.previous_key is None else trusted.previous_key.to_bytes()
        sealed = self.db.seal(
            "identities",
            ix,
            [
                trusted.name,
                trusted.identity_key.to_bytes(),
                trusted.first_seen_ms,
                trusted.verified,
                previous,
            ],
        )
        self.db.run(
            "INSERT INTO identities (name_ix, sealed) VALUES (?, ?) "
            "ON CONFLICT (name_ix) DO UPDATE SET sealed = excluded.sealed",
            (ix, sealed),
        )

    def get(self, name: str) -> TrustedIdentity | None:
        return self._load(name)[1]

    def observe(self, name: str, identity_key: PublicKey, now_ms: int) -> IdentityChange:
        ix, known = self._load(name)
        if known is None:
            self._save(ix, TrustedIdentity(name, identity_key, now_ms))
            return IdentityChange.NEW
        return IdentityChange.UNCHANGED if known.identity_key == identity_key else IdentityChange.CHANGED

    def replace(self, name: str, identity_key: PublicKey, now_ms: int) -> TrustedIdentity:
        ix, known = self._load(name)
        if known is not None and known.identity_key == identity_key:
            return known
        trusted = TrustedIdentity(
            name, identity_key, now_ms, previous_key=None if known is None else known.identity_key
        )
        self._save(ix, trusted)
        return trusted

    def set_verified(self, name: str, verified: bool) -> None:
        ix, known = self._load(name)
        if known is None:
            raise MissingRecordError("no trusted identity for this peer")
        self._save(
            ix,
            TrustedIdentity(
                known.name, known.identity_key, known.first_seen_ms, verified, known.previous_key
            ),
        )

    def delete(self, name: str) -> bool:
        return (
            self.db.run("DELETE FROM identities WHERE name_ix = ?", (self.db.ix("identity", name.encode()),))
            > 0
        )


class _SenderKeys(_Repo):
    def _ix(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> bytes:
        return self.db.ix(
            "sender-key", sender.name.encode(), _row_key(sender.device_id), distribution_id.bytes
        )

    def get(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> SenderKeyRecord | None:
        ix = self._ix(sender, distribution_id)
        found = self.db.row("SELECT sealed FROM sender_keys WHERE key_ix = ?", (ix,))
        if found is None:
            return None
        try:
            return SenderKeyRecord.from_bytes(self.db.open_raw("sender_keys", ix, found[0]))
        except SottoError as error:
            if isinstance(error, StoreCorruptedError):
                raise
            raise _decoded("sender key", error) from None

    def put(self, sender: ProtocolAddress, record: SenderKeyRecord) -> None:
        ix = self._ix(sender, record.distribution_id)
        sealed = self.db.seal_raw("sender_keys", ix, record.to_bytes())
        self.db.run(
            "INSERT INTO sender_keys (key_ix, sealed) VALUES (?, ?) "
            "ON CONFLICT (key_ix) DO UPDATE SET sealed = excluded.sealed",
            (ix, sealed),
        )

    def delete(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> bool:
        return (
            self.db.run("DELETE FROM sender_keys WHERE key_ix = ?", (self._ix(sender, distribution_id),)) > 0
        )


class _Contacts(_Repo):
    _FIELDS = 6
    _COLUMNS = "id, sealed"

    def _load(self, row: Any) -> Contact:
        contact_id = int(row[0])
        v = self.db.open_row("contacts", _row_key(contact_id), row[1], self._FIELDS)
        return Contact(
            contact_id=ContactId(contact_id),
            name=as_str(v[0]),
            account_id=as_bytes(v[1]),
            address=ProtocolAddress(as_str(v[2]), as_int(v[3])),
            created_ms=as_int(v[4]),
            display_name=as_str(v[5]),
        )

    def _indexes(self, name: str, account_id: bytes, address_name: str) -> tuple[bytes, bytes, bytes]:
        return (
            self.db.ix("contact-name", name.encode()),
            self.db.ix("contact-account", account_id),
            self.db.ix("contact-address", address_name.encode()),
        )

    def _check_unique(self, ixs: tuple[bytes, bytes, bytes], skip: int) -> None:
        name_ix, account_ix, address_ix = ixs
        if self.db.row("SELECT 1 FROM contacts WHERE name_ix = ? AND id != ?", (name_ix, skip)):
            raise StoreConflictError("a contact with this name exists")
        if self.db.row(
            "SELECT 1 FROM contacts WHERE (account_ix = ? OR address_ix = ?) AND id != ?",
            (account_ix, address_ix, skip),
        ):
            raise StoreConflictError("this account is already a contact")

    def _sealed(self, contact: Contact) -> bytes:
        return self.db.seal(
            "contacts",
            _row_key(contact.contact_id),
            [
                contact.name,
                contact.account_id,
                contact.address.name,
                contact.address.device_id,
                contact.created_ms,
                contact.display_name,
            ],
        )

    def add(
        self,
        *,
        name: str,
        account_id: bytes,
        address: ProtocolAddress,
        now_ms: int,
        display_name: str = "",
    ) -> Contact:
        ixs = self._indexes(name, account_id, address.name)
        self._check_unique(ixs, 0)
        contact = Contact(
            ContactId(self.db.next_id("contact")), name, bytes(account_id), address, now_ms, display_name
        )
        self.db.run(
            "INSERT INTO contacts (id, name_ix, account_ix, address_ix, sealed) VALUES (?, ?, ?, ?, ?)",
            (contact.contact_id, *ixs, self._sealed(contact)),
        )
        return contact

    def _one(self, where: str, param: Any) -> Contact | None:
        found = self.db.row(f"SELECT {self._COLUMNS} FROM contacts WHERE {where} = ?", (param,))  # noqa: S608
        return None if found is None else self._load(found)

    def get(self, contact_id: ContactId) -> Contact | None:
        return self._one("id", contact_id)

    def by_name(self, name: str) -> Contact | None:
        found = self._one("name_ix", self.db.ix("contact-name", name.encode()))
        if found is not None and found.name != name:
            raise _mismatch("contact")
        return found

    def by_account(self, account_id: bytes) -> Contact | None:
        found = self._one("account_ix", self.db.ix("contact-account", account_id))
        if found is not None and found.account_id != account_id:
            raise _mismatch("contact")
        return found

    def by_address_name(self, name: str) -> Contact | None:
        found = self._one("address_ix", self.db.ix("contact-address", name.encode()))
        if found is not None and found.address.name != name:
            raise _mismatch("contact")
        return found

    def all(self) -> list[Contact]:
        return [self._load(r) for r in self.db.rows(f"SELECT {self._COLUMNS} FROM contacts ORDER BY id")]  # noqa: S608

    def update(self, contact: Contact) -> None:
        if self.db.row("SELECT 1 FROM contacts WHERE id = ?", (contact.contact_id,)) is None:
            raise MissingRecordError("no such contact")
        ixs = self._indexes(contact.name, contact.account_id, contact.address.name)
        self._check_unique(ixs, contact.contact_id)
        self.db.run(
            "UPDATE contacts SET name_ix = ?, account_ix = ?, address_ix = ?, sealed = ? WHERE id = ?",
            (*ixs, self._sealed(contact), contact.contact_id),
        )

    def delete(self, contact_id: ContactId) -> bool:
        return self.db.run("DELETE FROM contacts WHERE id = ?", (contact_id,)) > 0


def _need_contact(db: _Db, contact_id: ContactId) -> None:
    if db.row("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)) is None:
        raise MissingRecordError("no such contact")


class _Mailboxes(_Repo):
    _FIELDS = 7

    def _load(self, row: Any) -> tuple[int, OurMailbox]:
        ix, contact_id, seq, sealed = row
        v = self.db.open_row("our_mailboxes", _mailbox_row_key(ix, int(contact_id)), sealed, self._FIELDS)
        return int(seq), OurMailbox(
            mailbox_id=MailboxId(as_bytes(v[0])),
            contact_id=ContactId(int(contact_id)),
            server_url=as_str(v[1]),
            signing_seed=as_bytes(v[2]),
            delivery_token=as_bytes(v[3]),
            created_ms=as_int(v[4]),
            rotated_ms=as_opt_int(v[5]),
            retiring_until_ms=as_opt_int(v[6]),
        )

    def _sealed(self, ix: bytes, m: OurMailbox) -> bytes:
        return self.db.seal(
            "our_mailboxes",
            _mailbox_row_key(ix, m.contact_id),
            [
                m.mailbox_id,
                m.server_url,
                m.signing_seed,
                m.delivery_token,
                m.created_ms,
                m.rotated_ms,
                m.retiring_until_ms,
            ],
        )

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[tuple[int, OurMailbox]]:
        sql = "SELECT mailbox_ix, contact_id, seq, sealed FROM our_mailboxes " + where  # noqa: S608
        loaded = [self._load(r) for r in self.db.rows(sql, params)]
        loaded.sort(key=lambda sm: (sm[1].created_ms, sm[0]))
        return loaded

    def add(self, mailbox: OurMailbox) -> None:
        ix = self.db.ix("mailbox", mailbox.mailbox_id)
        if self.db.row("SELECT 1 FROM our_mailboxes WHERE mailbox_ix = ?", (ix,)) or self.db.row(
            "SELECT 1 FROM invites WHERE mailbox_ix = ?", (ix,)
        ):
            raise StoreConflictError("mailbox id exists")
        _need_contact(self.db, mailbox.contact_id)
        self.db.run(
            "INSERT INTO our_mailboxes (mailbox_ix, contact_id, seq, sealed) VALUES (?, ?, ?, ?)",
            (ix, mailbox.contact_id, self.db.next_id("mailbox-seq"), self._sealed(ix, mailbox)),
        )

    def get(self, mailbox_id: MailboxId) -> OurMailbox | None:
        found = self._select("WHERE mailbox_ix = ?", (self.db.ix("mailbox", mailbox_id),))
        if not found:
            return None
        if found[0][1].mailbox_id != mailbox_id:
            raise _mismatch("mailbox")
        return found[0][1]

    def for_contact(self, contact_id: ContactId) -> list[OurMailbox]:
        return [m for _, m in reversed(self._select("WHERE contact_id = ?", (contact_id,)))]

    def current(self, contact_id: ContactId) -> OurMailbox | None:
        return next((m for m in self.for_contact(contact_id) if m.rotated_ms is None), None)

    def all(self) -> list[OurMailbox]:
        return [m for _, m in self._select()]

    def update(self, mailbox: OurMailbox) -> None:
        known = self.get(mailbox.mailbox_id)
        if known is None:
            raise MissingRecordError("no such mailbox")
        changed = OurMailbox(
            known.mailbox_id,
            known.contact_id,
            known.server_url,
            known.signing_seed,
            known.delivery_token,
            known.created_ms,
            mailbox.rotated_ms,
            mailbox.retiring_until_ms,
        )
        ix = self.db.ix("mailbox", mailbox.mailbox_id)
        self.db.run(
            "UPDATE our_mailboxes SET sealed = ? WHERE mailbox_ix = ?", (self._sealed(ix, changed), ix)
        )

    def delete(self, mailbox_id: MailboxId) -> bool:
        return (
            self.db.run(
                "DELETE FROM our_mailboxes WHERE mailbox_ix = ?", (self.db.ix("mailbox", mailbox_id),)
            )
            > 0
        )


class _TheirMailboxes(_Repo):
    def get(self, contact_id: ContactId) -> TheirMailbox | None:
        found = self.db.row("SELECT sealed FROM their_mailboxes WHERE contact_id = ?", (contact_id,))
        if found is None:
            return None
        v = self.db.open_row("their_mailboxes", _row_key(contact_id), found[0], 4)
        return TheirMailbox(contact_id, as_str(v[0]), MailboxId(as_bytes(v[1])), as_bytes(v[2]), as_int(v[3]))

    def put(self, mailbox: TheirMailbox) -> None:
        _need_contact(self.db, mailbox.contact_id)
        sealed = self.db.seal(
            "their_mailboxes",
            _row_key(mailbox.contact_id),
            [mailbox.server_url, mailbox.mailbox_id, mailbox.delivery_token, mailbox.received_ms],
        )
        self.db.run(
            "INSERT INTO their_mailboxes (contact_id, sealed) VALUES (?, ?) "
            "ON CONFLICT (contact_id) DO UPDATE SET sealed = excluded.sealed",
            (mailbox.contact_id, sealed),
        )

    def delete(self, contact_id: ContactId) -> bool:
        return self.db.run("DELETE FROM their_mailboxes WHERE contact_id = ?", (contact_id,)) > 0


class _Invites(_Repo):
    _FIELDS = 8

    def _load(self, row: Any) -> Invite:
        invite_id = int(row[0])
        v = self.db.open_row("invites", _row_key(invite_id), row[1], self._FIELDS)
        return Invite(
            invite_id=InviteId(invite_id),
            secret=as_bytes(v[0]),
            mailbox_id=MailboxId(as_bytes(v[1])),
            signing_seed=as_bytes(v[2]),
            delivery_token=as_bytes(v[3]),
            access_token=as_bytes(v[4]),
            created_ms=as_int(v[5]),
            expires_ms=as_int(v[6]),
            used_ms=as_opt_int(v[7]),
        )

    def _write(self, invite: Invite, insert: bool) -> None:
        sealed = self.db.seal(
            "invites",
            _row_key(invite.invite_id),
            [
                invite.secret,
                invite.mailbox_id,
                invite.signing_seed,
                invite.delivery_token,
                invite.access_token,
                invite.created_ms,
                invite.expires_ms,
                invite.used_ms,
            ],
        )
        if insert:
            self.db.run(
                "INSERT INTO invites (id, mailbox_ix, used, sealed) VALUES (?, ?, ?, ?)",
                (
                    invite.invite_id,
                    self.db.ix("mailbox", invite.mailbox_id),
                    int(invite.used_ms is not None),
                    sealed,
                ),
            )
        else:
            self.db.run(
                "UPDATE invites SET used = ?, sealed = ? WHERE id = ?",
                (int(invite.used_ms is not None), sealed, invite.invite_id),
            )

    def add(
        self,
        *,
        secret: bytes,
        mailbox_id: MailboxId,
        signing_seed: bytes,
        delivery_token: bytes,
        access_token: bytes,
        created_ms: int,
        expires_ms: int,
    ) -> Invite:
        ix = self.db.ix("mailbox", mailbox_id)
        if self.db.row("SELECT 1 FROM our_mailboxes WHERE mailbox_ix = ?", (ix,)) or self.db.row(
            "SELECT 1 FROM invites WHERE mailbox_ix = ?", (ix,)
        ):
            raise StoreConflictError("mailbox id exists")
        invite = Invite(
            InviteId(self.db.next_id("invite")),
            bytes(secret),
            MailboxId(bytes(mailbox_id)),
            bytes(signing_seed),
            bytes(delivery_token),
            bytes(access_token),
            created_ms,
            expires_ms,
        )
        self._write(invite, insert=True)
        return invite

    def get(self, invite_id: InviteId) -> Invite | None:
        found = self.db.row("SELECT id, sealed FROM invites WHERE id = ?", (invite_id,))
        return None if found is None else self._load(found)

    def by_mailbox(self, mailbox_id: MailboxId) -> Invite | None:
        found = self.db.row(
            "SELECT id, sealed FROM invites WHERE mailbox_ix = ?", (self.db.ix("mailbox", mailbox_id),)
        )
        if found is None:
            return None
        invite = self._load(found)
        if invite.mailbox_id != mailbox_id:
            raise _mismatch("invite")
        return invite

    def open(self, now_ms: int) -> list[Invite]:
        rows = self.db.rows("SELECT id, sealed FROM invites WHERE used = 0 ORDER BY id")
        return [i for i in (self._load(r) for r in rows) if i.expires_ms > now_ms]

    def all(self) -> list[Invite]:
        return [self._load(r) for r in self.db.rows("SELECT id, sealed FROM invites ORDER BY id")]

    def mark_used(self, invite_id: InviteId, now_ms: int) -> None:
        known = self.get(invite_id)
        if known is None:
            raise MissingRecordError("no such invite")
        if known.used_ms is None:
            self._write(
                Invite(
                    known.invite_id,
                    known.secret,
                    known.mailbox_id,
                    known.signing_seed,
                    known.delivery_token,
                    known.access_token,
                    known.created_ms,
                    known.expires_ms,
                    now_ms,
                ),
                insert=False,
            )

    def delete(self, invite_id: InviteId) -> bool:
        return self.db.run("DELETE FROM invites WHERE id = ?", (invite_id,)) > 0


class _Groups(_Repo):
    def _row(self, group_id: GroupId) -> tuple[int, Group] | None:
        found = self.db.row(
            "SELECT id, sealed FROM groups WHERE group_ix = ?", (self.db.ix("group", group_id),)
        )
        if found is None:
            return None
        group = self._load(found)
        if group.group_id != group_id:
            raise _mismatch("group")
        return int(found[0]), group

    def _load(self, row: Any) -> Group:
        v = self.db.open_row("groups", _row_key(int(row[0])), row[1], 4)
        try:
            distribution_id = uuid.UUID(bytes=as_bytes(v[2]))
        except ValueError:
            raise StoreCorruptedError("stored distribution id does not load") from None
        return Group(GroupId(as_bytes(v[0])), as_str(v[1]), distribution_id, as_int(v[3]))

    def _sealed(self, row_id: int, group: Group) -> bytes:
        return self.db.seal(
            "groups",
            _row_key(row_id),
            [group.group_id, group.name, group.distribution_id.bytes, group.created_ms],
        )

    def _need(self, group_id: GroupId) -> tuple[int, Group]:
        found = self._row(group_id)
        if found is None:
            raise MissingRecordError("no such group")
        return found

    def create(self, *, group_id: GroupId, name: str, distribution_id: uuid.UUID, created_ms: int) -> Group:
        if self._row(group_id) is not None:
            raise StoreConflictError("group id exists")
        group = Group(GroupId(bytes(group_id)), name, distribution_id, created_ms)
        row_id = self.db.next_id("group")
        self.db.run(
            "INSERT INTO groups (id, group_ix, sealed) VALUES (?, ?, ?)",
            (row_id, self.db.ix("group", group_id), self._sealed(row_id, group)),
        )
        return group

    def get(self, group_id: GroupId) -> Group | None:
        found = self._row(group_id)
        return None if found is None else found[1]

    def all(self) -> list[Group]:
        return [self._load(r) for r in self.db.rows("SELECT id, sealed FROM groups ORDER BY id")]

    def _replace(self, row_id: int, group: Group) -> None:
        self.db.run("UPDATE groups SET sealed = ? WHERE id = ?", (self._sealed(row_id, group), row_id))

    def rename(self, group_id: GroupId, name: str) -> None:
        row_id, known = self._need(group_id)
        self._replace(row_id, Group(known.group_id, name, known.distribution_id, known.created_ms))

    def delete(self, group_id: GroupId) -> bool:
        return self.db.run("DELETE FROM groups WHERE group_ix = ?", (self.db.ix("group", group_id),)) > 0

    def add_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        row_id, _ = self._need(group_id)
        _need_contact(self.db, contact_id)
        if self.db.row(
            "SELECT 1 FROM group_members WHERE group_row = ? AND contact_id = ?", (row_id, contact_id)
        ):
            return False
        self.db.run(
            "INSERT INTO group_members (group_row, contact_id, seq, skdm_sent) VALUES (?, ?, ?, 0)",
            (row_id, contact_id, self.db.next_id("member-seq")),
        )
        return True

    def remove_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        found = self._row(group_id)
        if found is None:
            return False
        return (
            self.db.run(
                "DELETE FROM group_members WHERE group_row = ? AND contact_id = ?", (found[0], contact_id)
            )
            > 0
        )

    def members(self, group_id: GroupId) -> list[GroupMember]:
        found = self._row(group_id)
        if found is None:
            return []
        rows = self.db.rows(
            "SELECT contact_id, skdm_sent FROM group_members WHERE group_row = ? ORDER BY seq", (found[0],)
        )
        return [GroupMember(ContactId(int(c)), bool(s)) for c, s in rows]

    def groups_of(self, contact_id: ContactId) -> list[GroupId]:
        rows = self.db.rows(
            "SELECT g.id, g.sealed FROM group_members m JOIN groups g ON g.id = m.group_row "
            "WHERE m.contact_id = ? ORDER BY m.seq",
            (contact_id,),
        )
        return [self._load(r).group_id for r in rows]

    def mark_skdm_sent(self, group_id: GroupId, contact_id: ContactId) -> None:
        found = self._row(group_id)
        changed = (
            0
            if found is None
            else self.db.run(
                "UPDATE group_members SET skdm_sent = 1 WHERE group_row = ? AND contact_id = ?",
                (found[0], contact_id),
            )
        )
        if not changed:
            raise MissingRecordError("not a member")

    def set_distribution(self, group_id: GroupId, distribution_id: uuid.UUID) -> None:
        row_id, known = self._need(group_id)
        self._replace(row_id, Group(known.group_id, known.name, distribution_id, known.created_ms))
        self.db.run("UPDATE group_members SET skdm_sent = 0 WHERE group_row = ?", (row_id,))


_MESSAGE_COLUMNS = "id, contact_id, group_row, sender_id, direction, state, sealed"


class _Messages(_Repo):
    def _find_ix(self, sender: ContactId | None, message_id: bytes) -> bytes:
        return self.db.ix("message", _row_key(0 if sender is None else sender), message_id)

    def _group_id(self, group_row: int) -> GroupId:
        found = self.db.row("SELECT id, sealed FROM groups WHERE id = ?", (group_row,))
        if found is None:
            raise StoreCorruptedError("a message names a missing group")
        return _Groups(self.db)._load(found).group_id

    def _load(self, row: Any, group_ids: dict[int, GroupId] | None = None) -> Message:
        row_id, contact_id, group_row, sender_id, direction, state, sealed = row
        row_key = _message_row_key(row_id, contact_id, group_row, sender_id, direction)
        v = self.db.open_row("messages", row_key, sealed, 4)
        if contact_id is not None:
            conversation = Conversation.direct(ContactId(int(contact_id)))
        else:
            cache = {} if group_ids is None else group_ids
            if group_row not in cache:
                cache[group_row] = self._group_id(int(group_row))
            conversation = Conversation.group(cache[group_row])
        try:
            return Message(
                row_id=MessageRowId(int(row_id)),
                message_id=MessageId(as_bytes(v[0])),
                conversation=conversation,
                direction=Direction(direction),
                sender=None if sender_id is None else ContactId(int(sender_id)),
                text=as_str(v[1]),
                sent_ms=as_int(v[2]),
                stored_ms=as_int(v[3]),
                state=MessageState(int(state)),
            )
        except ValueError:
            raise StoreCorruptedError("stored message state does not load") from None

    def _conversation_where(self, conversation: Conversation) -> tuple[str, int]:
        if conversation.contact_id is not None:
            return "contact_id", conversation.contact_id
        assert conversation.group_id is not None
        found = _Groups(self.db)._row(conversation.group_id)
        return "group_row", -1 if found is None else found[0]

    def add(
        self,
        *,
        message_id: MessageId,
        conversation: Conversation,
        direction: Direction,
        sender: ContactId | None,
        text: str,
        sent_ms: int,
        stored_ms: int,
        state: MessageState,
    ) -> Message:
        rules.check_message(direction, sender, state)
        column, key = self._conversation_where(conversation)
        if column == "contact_id":
            _need_contact(self.db, ContactId(key))
        elif key < 0:
            raise MissingRecordError("no such group")
        if sender is not None:
            _need_contact(self.db, sender)
        find_ix = self._find_ix(sender, message_id)
        if self.db.row("SELECT 1 FROM messages WHERE find_ix = ?", (find_ix,)):
            raise StoreConflictError("message id exists for this sender")
        row_id = self.db.next_id("message")
        contact_id = key if column == "contact_id" else None
        group_row = key if column == "group_row" else None
        row_key = _message_row_key(row_id, contact_id, group_row, sender, direction.value)
        sealed = self.db.seal("messages", row_key, [bytes(message_id), text, sent_ms, stored_ms])
        self.db.run(
            "INSERT INTO messages (id, contact_id, group_row, sender_id, direction, state, find_ix, sealed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row_id,
                contact_id,
                group_row,
                sender,
                direction.value,
                int(state),
                find_ix,
                sealed,
            ),
        )
        if sender is not None:
            self.db.run(
                "INSERT INTO owed_receipts (message_row, kind) VALUES (?, ?)",
                (row_id, ReceiptKind.DELIVERED.value),
            )
        return Message(
            MessageRowId(row_id),
            MessageId(bytes(message_id)),
            conversation,
            direction,
            sender,
            text,
            sent_ms,
            stored_ms,
            state,
        )

    def get(self, row_id: MessageRowId) -> Message | None:
        found = self.db.row(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (row_id,))  # noqa: S608
        return None if found is None else self._load(found)

    def find(self, sender: ContactId | None, message_id: MessageId) -> Message | None:
        found = self.db.row(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE find_ix = ?",  # noqa: S608
            (self._find_ix(sender, message_id),),
        )
        if found is None:
            return None
        message = self._load(found)
        if message.sender != sender or message.message_id != message_id:
            raise _mismatch("message")
        return message

    def conversation(
        self, conversation: Conversation, *, limit: int = 50, before: MessageRowId | None = None
    ) -> list[Message]:
        if limit <= 0:
            return []
        column, key = self._conversation_where(conversation)
        rows = self.db.rows(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {column} = ? AND id < ? ORDER BY id DESC LIMIT ?",  # noqa: S608
            (key, (1 << 62) if before is None else before, limit),
        )
        cache: dict[int, GroupId] = {}
        if conversation.group_id is not None:
            cache[key] = conversation.group_id
        return [self._load(r, cache) for r in reversed(rows)]

    def advance(self, row_id: MessageRowId, state: MessageState) -> MessageState:
        found = self.db.row("SELECT state FROM messages WHERE id = ?", (row_id,))
        if found is None:
            raise MissingRecordError("no such message")
        new_state = max(int(found[0]), int(state))
        if new_state != int(found[0]):
            self.db.run("UPDATE messages SET state = ? WHERE id = ?", (new_state, row_id))
        return MessageState(new_state)

    def add_receipt(self, row_id: MessageRowId, contact_id: ContactId, kind: ReceiptKind, at_ms: int) -> None:
        if self.db.row("SELECT 1 FROM messages WHERE id = ?", (row_id,)) is None:
            raise MissingRecordError("no such message")
        _need_contact(self.db, contact_id)
        row_key = _row_key(row_id) + _row_key(contact_id) + kind.value.encode()
        self.db.run(
            "INSERT INTO receipts (message_row, contact_id, kind, sealed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (row_id, contact_id, kind.value, self.db.seal("receipts", row_key, [at_ms])),
        )
        self.advance(row_id, rules.state_for_receipt(kind))

    def receipts(self, row_id: MessageRowId) -> list[Receipt]:
        found: list[Receipt] = []
        for contact_id, kind_text, sealed in self.db.rows(
            "SELECT contact_id, kind, sealed FROM receipts WHERE message_row = ?", (row_id,)
        ):
            kind = ReceiptKind(kind_text)
            row_key = _row_key(row_id) + _row_key(int(contact_id)) + kind.value.encode()
            at_ms = as_int(self.db.open_row("receipts", row_key, sealed, 1)[0])
            found.append(Receipt(row_id, ContactId(int(contact_id)), kind, at_ms))
        return sorted(found, key=lambda r: (r.at_ms, r.contact_id, r.kind.value))

    def mark_read(self, row_ids: Iterable[MessageRowId]) -> list[MessageRowId]:
        changed: list[MessageRowId] = []
        for row_id in row_ids:
            found = self.db.row("SELECT sender_id, state FROM messages WHERE id = ?", (row_id,))
            if found is None or found[0] is None or int(found[1]) >= MessageState.READ:
                continue
            self.db.run("UPDATE messages SET state = ? WHERE id = ?", (int(MessageState.READ), row_id))
            self.db.run(
                "INSERT INTO owed_receipts (message_row, kind) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (row_id, ReceiptKind.READ.value),
            )
            changed.append(row_id)
        return changed

    def pending_receipts(self, limit: int = 1000) -> list[PendingReceipt]:
        rows = self.db.rows(
            "SELECT o.message_row, o.kind, m.contact_id, m.group_row, m.sender_id, m.direction, m.sealed "
            "FROM owed_receipts o JOIN messages m ON m.id = o.message_row "
            "ORDER BY o.message_row, o.kind LIMIT ?",
            (limit,),
        )
        owed: list[PendingReceipt] = []
        for row_id, kind, contact_id, group_row, sender_id, direction, sealed in rows:
            row_key = _message_row_key(row_id, contact_id, group_row, sender_id, direction)
            message_id = as_bytes(self.db.open_row("messages", row_key, sealed, 4)[0])
            owed.append(
                PendingReceipt(
                    ContactId(int(sender_id)),
                    ReceiptKind(kind),
                    MessageId(message_id),
                    MessageRowId(int(row_id)),
                )
            )
        return owed

    def clear_pending_receipts(self, receipts: Sequence[PendingReceipt]) -> None:
        self.db.check()
        self.db.conn.executemany(
            "DELETE FROM owed_receipts WHERE message_row = ? AND kind = ?",
            [(r.row_id, r.kind.value) for r in receipts],
        )

    def delete(self, row_id: MessageRowId) -> bool:
        return self.db.run("DELETE FROM messages WHERE id = ?", (row_id,)) > 0


class _Outbox(_Repo):
    _COLUMNS = "id, message_row, next_attempt_ms, attempts, sealed"

    def _load(self, row: Any) -> OutboxItem:
        item_id, message_row, next_attempt_ms, attempts, sealed = row
        v = self.db.open_row("outbox", _row_key(int(item_id)), sealed, 6)
        return OutboxItem(
            item_id=OutboxItemId(int(item_id)),
            server_url=as_str(v[0]),
            mailbox_id=MailboxId(as_bytes(v[1])),
            delivery_token=as_bytes(v[2]),
            message_id=MessageId(as_bytes(v[3])),
            payload=as_bytes(v[4]),
            created_ms=as_int(v[5]),
            attempts=int(attempts),
            next_attempt_ms=int(next_attempt_ms),
            message_row=None if message_row is None else MessageRowId(int(message_row)),
        )

    def enqueue(
        self,
        *,
        server_url: str,
        mailbox_id: MailboxId,
        delivery_token: bytes,
        message_id: MessageId,
        payload: bytes,
        created_ms: int,
        message_row: MessageRowId | None = None,
    ) -> OutboxItem:
        dedupe_ix = self.db.ix("outbox", mailbox_id, message_id)
        if self.db.row("SELECT 1 FROM outbox WHERE dedupe_ix = ?", (dedupe_ix,)):
            raise StoreConflictError("this envelope is queued already")
        if (
            message_row is not None
            and self.db.row("SELECT 1 FROM messages WHERE id = ?", (message_row,)) is None
        ):
            raise MissingRecordError("no such message")
        item_id = self.db.next_id("outbox")
        sealed = self.db.seal(
            "outbox",
            _row_key(item_id),
            [
                server_url,
                bytes(mailbox_id),
                bytes(delivery_token),
                bytes(message_id),
                bytes(payload),
                created_ms,
            ],
        )
        self.db.run(
            "INSERT INTO outbox (id, message_row, next_attempt_ms, attempts, dedupe_ix, sealed) "
            "VALUES (?, ?, ?, 0, ?, ?)",
            (item_id, message_row, created_ms, dedupe_ix, sealed),
        )
        return OutboxItem(
            OutboxItemId(item_id),
            server_url,
            MailboxId(bytes(mailbox_id)),
            bytes(delivery_token),
            MessageId(bytes(message_id)),
            bytes(payload),
            created_ms,
            attempts=0,
            next_attempt_ms=created_ms,
            message_row=message_row,
        )

    def get(self, item_id: OutboxItemId) -> OutboxItem | None:
        found = self.db.row(f"SELECT {self._COLUMNS} FROM outbox WHERE id = ?", (item_id,))  # noqa: S608
        return None if found is None else self._load(found)

    def due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        rows = self.db.rows(
            f"SELECT {self._COLUMNS} FROM outbox WHERE next_attempt_ms <= ? "  # noqa: S608
            "ORDER BY next_attempt_ms, id LIMIT ?",
            (now_ms, limit),
        )
        return [self._load(r) for r in rows]

    def all(self) -> list[OutboxItem]:
        return [self._load(r) for r in self.db.rows(f"SELECT {self._COLUMNS} FROM outbox ORDER BY id")]  # noqa: S608

    def count(self) -> int:
        return int(self.db.row("SELECT count(*) FROM outbox")[0])

    def reschedule(self, item_id: OutboxItemId, next_attempt_ms: int) -> OutboxItem:
        if not self.db.run(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?",
            (next_attempt_ms, item_id),
        ):
            raise MissingRecordError("no such outbox item")
        item = self.get(item_id)
        assert item is not None
        return item

    def remove(self, item_id: OutboxItemId) -> bool:
        return self.db.run("DELETE FROM outbox WHERE id = ?", (item_id,)) > 0

    def remaining_for(self, message_row: MessageRowId) -> int:
        return int(self.db.row("SELECT count(*) FROM outbox WHERE message_row = ?", (message_row,))[0])


class _Seen(_Repo):
    def add(self, mailbox_id: MailboxId, envelope_id: MessageId, day: int) -> bool:
        ix = self.db.ix("seen", mailbox_id, envelope_id)
        return self.db.run("INSERT INTO seen (ix, day) VALUES (?, ?) ON CONFLICT DO NOTHING", (ix, day)) > 0

    def contains(self, mailbox_id: MailboxId, envelope_id: MessageId) -> bool:
        return (
            self.db.row("SELECT 1 FROM seen WHERE ix = ?", (self.db.ix("seen", mailbox_id, envelope_id),))
            is not None
        )

    def prune(self, before_day: int) -> int:
        return self.db.run("DELETE FROM seen WHERE day < ?", (before_day,))


class SqliteTransaction:
    """A unit of work over a :class:`SqliteStore` (``BEGIN IMMEDIATE`` … ``COMMIT``)."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        self._account = _Account(db)
        self._settings = _Settings(db)
        self._prekeys = _PreKeys(db)
        self._sessions = _Sessions(db)
        self._identities = _Identities(db)
        self._sender_keys = _SenderKeys(db)
        self._contacts = _Contacts(db)
        self._mailboxes = _Mailboxes(db)
        self._their_mailboxes = _TheirMailboxes(db)
        self._invites = _Invites(db)
        self._groups = _Groups(db)
        self._messages = _Messages(db)
        self._outbox = _Outbox(db)
        self._seen = _Seen(db)

    @property
    def account(self) -> _Account:
        return self._account

    @property
    def settings(self) -> _Settings:
        return self._settings

    @property
    def prekeys(self) -> _PreKeys:
        return self._prekeys

    @property
    def sessions(self) -> _Sessions:
        return self._sessions

    @property
    def identities(self) -> _Identities:
        return self._identities

    @property
    def sender_keys(self) -> _SenderKeys:
        return self._sender_keys

    @property
    def contacts(self) -> _Contacts:
        return self._contacts

    @property
    def mailboxes(self) -> _Mailboxes:
        return self._mailboxes

    @property
    def their_mailboxes(self) -> _TheirMailboxes:
        return self._their_mailboxes

    @property
    def invites(self) -> _Invites:
        return self._invites

    @property
    def groups(self) -> _Groups:
        return self._groups

    @property
    def messages(self) -> _Messages:
        return self._messages

    @property
    def outbox(self) -> _Outbox:
        return self._outbox

    @property
    def seen(self) -> _Seen:
        return self._seen

    def __repr__(self) -> str:
        return "SqliteTransaction(<open>)" if self._db.open else "SqliteTransaction(<ended>)"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError("the store's file system does not support WAL")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as error:
        conn.close()
        raise StoreCorruptedError(f"not a Sotto store ({error})") from None
    return conn


def _lock(path: Path) -> TextIO:
    """An exclusive advisory lock beside the database, held for the store's lifetime.

    A separate file, because closing any descriptor of the database itself would drop SQLite's own
    POSIX locks in this process.
    """
    handle = open(f"{path}.lock", "a")  # noqa: SIM115
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreLockedError("the store is already open (another process or another handle)") from None
    return handle


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite gives -wal/-shm the same mode)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


class SqliteStore:
    """The encrypted SQLite store; build one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, cipher: StoreCipher, lock: TextIO) -> None:
        self._path = path
        self._conn = conn
        self._cipher = cipher
        self._lock_handle = lock
        self._gate = TransactionGate()

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        kdf: Argon2Params = Argon2Params.INTERACTIVE,
        rng: Rng = system_rng,
    ) -> SqliteStore:
        """A new, empty store at ``path``; StoreConflictError if a file is already there."""
        target = Path(path)
        lock = _lock(target)
        try:
            try:
                _create_private_file(target)
            except FileExistsError:
                raise StoreConflictError("a store already exists at this path") from None
            conn = _connect(target)
            try:
                data_key = rng(DATA_KEY_LENGTH)
                salt, wrapped = wrap_data_key(data_key, passphrase, kdf, rng)
                cipher = StoreCipher(data_key, rng)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_KEYRING_SQL)
                conn.execute(
                    "INSERT INTO keyring (id, kdf, iterations, memory_kib, lanes, salt, wrapped_key) "
                    "VALUES (1, ?, ?, ?, ?, ?, ?)",
                    (KDF_NAME, kdf.iterations, kdf.memory_kib, kdf.lanes, salt, wrapped),
                )
                migrate(conn, cipher)
                conn.execute("COMMIT")
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.close()
            raise
        return cls(target, conn, cipher, lock)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        rng: Rng = system_rng,
        migrate_to: int = SCHEMA_VERSION,
    ) -> SqliteStore:
        """Open an existing store, migrating it to the current schema.

        WrongPassphraseError, StoreLockedError, StoreVersionError, StoreCorruptedError (not a store),
        FileNotFoundError. ``migrate_to`` exists for migration tests.
        """
        target = Path(path)
        if not target.exists():
            raise FileNotFoundError(str(target))
        lock = _lock(target)
        try:
            conn = _connect(target)
            try:
                cipher = StoreCipher(_unlock(conn, passphrase), rng)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    migrate(conn, cipher, migrate_to)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.close()
            raise
        return cls(target, conn, cipher, lock)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        self._gate.enter()
        db = _Db(self._conn, self._cipher)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(db)
            except BaseException:
                db.open = False
                self._conn.execute("ROLLBACK")
                raise
            db.open = False
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"commit failed: {error}") from None
        finally:
            db.open = False
            self._gate.leave()

    def change_passphrase(self, new_passphrase: str, *, kdf: Argon2Params = Argon2Params.INTERACTIVE) -> None:
        """Rewrap the data key under a new passphrase (nothing else is re-encrypted)."""
        self._gate.enter()
        try:
            salt, wrapped = self._cipher.wrap(new_passphrase, kdf)
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "UPDATE keyring SET kdf = ?, iterations = ?, memory_kib = ?, lanes = ?, salt = ?, "
                "wrapped_key = ? WHERE id = 1",
                (KDF_NAME, kdf.iterations, kdf.memory_kib, kdf.lanes, salt, wrapped),
            )
            self._conn.execute("COMMIT")
        finally:
            self._gate.leave()

    def schema_version(self) -> int:
        return schema_version(self._conn)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result ("ok" when sound)."""
        self._gate.enter()
        try:
            return "\n".join(str(r[0]) for r in self._conn.execute("PRAGMA integrity_check").fetchall())
        finally:
            self._gate.leave()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (e.g. before a backup)."""
        self._gate.enter()
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._gate.leave()

    def close(self) -> None:
        if self._gate.close():
            self._conn.close()
            self._lock_handle.close()

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStore({'closed' if self._gate.closed else 'open'})"


def _keyring(conn: sqlite3.Connection) -> tuple[Argon2Params, bytes, bytes]:
    try:
        row = conn.execute(
            "SELECT kdf, iterations, memory_kib, lanes, salt, wrapped_key FROM keyring WHERE id = 1"
        ).fetchone()
    except sqlite3.DatabaseError:
        raise StoreCorruptedError("not a Sotto store") from None
    if row is None or row[0] != KDF_NAME:
        raise StoreCorruptedError("the store has no usable key row")
    return Argon2Params(int(row[1]), int(row[2]), int(row[3])), bytes(row[4]), bytes(row[5])


def _unlock(conn: sqlite3.Connection, passphrase: str) -> bytes:
    params, salt, wrapped = _keyring(conn)
    return unwrap_data_key(wrapped, passphrase, salt, params)
