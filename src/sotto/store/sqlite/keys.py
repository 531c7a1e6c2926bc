"""Our account, settings, prekeys, sessions, trusted identities and sender keys, as sealed rows."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Container, Iterable

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.errors import (
    MissingRecordError,
    SottoError,
    StoreCorruptedError,
)
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.group.sender_key import SenderKeyRecord
from sotto.protocol.record import SessionRecord
from sotto.protocol.session import LastResortUse
from sotto.store import rules
from sotto.store.codec import as_bool, as_bytes, as_int, as_str
from sotto.store.interfaces import PendingUpload
from sotto.store.model import (
    Account,
    IdentityChange,
    PreKeyKind,
    TrustedIdentity,
)
from sotto.store.sqlite.db import Db, Repo, corrupted, id_key


class AccountRepo(Repo):
    _FIELDS = 9

    def get(self) -> Account | None:
        found = self.db.row("SELECT sealed FROM account WHERE id = 1")
        if found is None:
            return None
        v = self.db.open_row("account", id_key(1), found[0], self._FIELDS)
        try:
            identity = KeyPair.from_private_bytes(as_bytes(v[3]))
        except SottoError as error:
            raise corrupted("identity key", error) from None
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
            id_key(1),
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


class SettingsRepo(Repo):
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

    def __init__(self, db: Db) -> None:
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


def _triple_ix(db: Db, use: LastResortUse) -> bytes:
    return db.ix("last-resort-use", id_key(use[0]), id_key(use[1]), bytes(use[2]))


def _prekey_row_key(kind: PreKeyKind, prekey_id: int) -> bytes:
    return kind.value.encode() + id_key(prekey_id)


class PreKeyRepo(Repo):
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
        self.db.run_many(
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
        raise corrupted("prekey", error) from None


def _load_signed(data: bytes) -> SignedPreKeyRecord:
    try:
        return SignedPreKeyRecord.from_bytes(data)
    except SottoError as error:
        raise corrupted("signed prekey", error) from None


def _load_kyber(data: bytes) -> KyberPreKeyRecord:
    try:
        return KyberPreKeyRecord.from_bytes(data)
    except SottoError as error:
        raise corrupted("Kyber prekey", error) from None


class SessionRepo(Repo):
    def _ix(self, address: ProtocolAddress) -> bytes:
        return self.db.ix("session", address.name.encode(), id_key(address.device_id))

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
            raise corrupted("session", error) from None

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


IDENTITY_FIELDS = 6
"""A trusted identity's sealed values (schema 8 added the "safety number changed" time)."""


class IdentityRepo(Repo):
    def _load(self, name: str) -> tuple[bytes, TrustedIdentity | None]:
        ix = self.db.ix("identity", name.encode())
        found = self.db.row("SELECT sealed FROM identities WHERE name_ix = ?", (ix,))
        if found is None:
            return ix, None
        v = self.db.open_row("identities", ix, found[0], IDENTITY_FIELDS)
        previous, changed = v[4], v[5]
        try:
            return ix, TrustedIdentity(
                name=as_str(v[0]),
                identity_key=PublicKey.from_bytes(as_bytes(v[1])),
                first_seen_ms=as_int(v[2]),
                verified=as_bool(v[3]),
                previous_key=None if previous is None else PublicKey.from_bytes(as_bytes(previous)),
                changed_ms=None if changed is None else as_int(changed),
            )
        except SottoError as error:
            if isinstance(error, StoreCorruptedError):
                raise
            raise corrupted("identity key", error) from None

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
                trusted.changed_ms,
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
        self._save(ix, dataclasses.replace(known, verified=verified))

    def set_changed(self, name: str, changed_ms: int | None) -> None:
        ix, known = self._load(name)
        if known is None:
            raise MissingRecordError("no trusted identity for this peer")
        self._save(ix, dataclasses.replace(known, changed_ms=changed_ms))

    def delete(self, name: str) -> bool:
        return (
            self.db.run("DELETE FROM identities WHERE name_ix = ?", (self.db.ix("identity", name.encode()),))
            > 0
        )


class SenderKeyRepo(Repo):
    def _ix(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> bytes:
        return self.db.ix("sender-key", sender.name.encode(), id_key(sender.device_id), distribution_id.bytes)

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
            raise corrupted("sender key", error) from None

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
