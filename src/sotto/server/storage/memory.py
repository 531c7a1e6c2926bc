"""The reference storage: plain dicts, one coroutine step per transaction.

It defines the behaviour the SQLite backend must match (the shared suite in
``tests/server/storage`` runs against both) and serves tests that need no disk. Each method runs
without awaiting, so on one event loop it is atomic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from sotto.crypto.kdf import bytes_equal
from sotto.server.config import Quotas
from sotto.server.storage.base import (
    AccountId,
    AccountRecord,
    BundleRecord,
    CreateOutcome,
    DeviceBundleRecord,
    DeviceRecord,
    EnvelopeRecord,
    Export,
    KeyCounts,
    KeyUpload,
    MailboxId,
    MailboxRecord,
    MessageId,
    OneTimePreKey,
    PutOutcome,
    PutResult,
    SignedKey,
    SweepResult,
    UploadOutcome,
    UsernameOutcome,
    drained_expiry,
)
from sotto.server.storage.sqlite import KEY_BYTES, id_tag

_NO_TOKEN_HASH = bytes(32)
"""Compared with when the mailbox is missing."""


@dataclass
class _Device:
    record: DeviceRecord
    signed_pre_key: SignedKey | None = None
    kyber_last_resort: SignedKey | None = None
    one_time: dict[int, OneTimePreKey] = field(default_factory=dict)
    kyber: dict[int, SignedKey] = field(default_factory=dict)
    one_time_floor: int = -1
    kyber_floor: int = -1


@dataclass
class _Account:
    record: AccountRecord
    username_hash: bytes | None = None
    devices: dict[int, _Device] = field(default_factory=dict)
    access_tokens: dict[bytes, int] = field(default_factory=dict)


def _conflicts(held: OneTimePreKey | SignedKey | None, new: OneTimePreKey | SignedKey) -> bool:
    return held is not None and held.key_id == new.key_id and held != new


class MemoryStorage:
    """Storage in dicts; lost when the process ends."""

    def __init__(self, *, quotas: Quotas | None = None) -> None:
        self.quotas = quotas or Quotas()
        self.disk_low = False
        """No disk here: tests set it to play a relay short of space."""
        self._accounts: dict[AccountId, _Account] = {}
        self._usernames: dict[bytes, AccountId] = {}
        self._token_owners: dict[bytes, AccountId] = {}
        """Access token hash → the account holding it (a hash is held by one account at most)."""
        self._mailboxes: dict[MailboxId, MailboxRecord] = {}
        self._envelopes: dict[MailboxId, dict[MessageId, EnvelopeRecord]] = {}

    async def close(self) -> None:
        return None

    def low_on_disk(self) -> bool:
        return self.disk_low

    # ------------------------------------------------------------------ accounts
    async def create_account(self, account: AccountRecord, device: DeviceRecord) -> bool:
        if account.account_id in self._accounts:
            return False
        self._accounts[account.account_id] = _Account(account, devices={device.device_id: _Device(device)})
        return True

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        held = self._accounts.get(account_id)
        return held.record if held else None

    async def get_device(self, account_id: AccountId, device_id: int) -> DeviceRecord | None:
        held = self._accounts.get(account_id)
        device = held.devices.get(device_id) if held else None
        return device.record if device else None

    async def set_username(self, account_id: AccountId, username_hash: bytes) -> UsernameOutcome:
        owner = self._usernames.get(username_hash)
        if owner is not None and owner != account_id:
            return UsernameOutcome.TAKEN
        account = self._accounts[account_id]
        if account.username_hash is not None:
            self._usernames.pop(account.username_hash, None)
        account.username_hash = username_hash
        self._usernames[username_hash] = account_id
        return UsernameOutcome.SET

    async def clear_username(self, account_id: AccountId) -> None:
        account = self._accounts[account_id]
        if account.username_hash is not None:
            self._usernames.pop(account.username_hash, None)
            account.username_hash = None

    async def find_username(self, username_hash: bytes) -> AccountId | None:
        return self._usernames.get(username_hash)

    async def delete_account(self, account_id: AccountId) -> bool:
        account = self._accounts.pop(account_id, None)
        if account is None:
            return False
        if account.username_hash is not None:
            self._usernames.pop(account.username_hash, None)
        for token_hash in list(account.access_tokens):
            self._drop_token(account, token_hash)
        return True

    # ------------------------------------------------------------------ prekeys
    async def upload_keys(self, account_id: AccountId, device_id: int, upload: KeyUpload) -> UploadOutcome:
        device = self._accounts[account_id].devices[device_id]
        if upload.signed_pre_key and _conflicts(device.signed_pre_key, upload.signed_pre_key):
            return UploadOutcome.CONFLICT
        if upload.kyber_last_resort and _conflicts(device.kyber_last_resort, upload.kyber_last_resort):
            return UploadOutcome.CONFLICT
        if any(_conflicts(device.one_time.get(k.key_id), k) for k in upload.one_time_pre_keys):
            return UploadOutcome.CONFLICT
        if any(_conflicts(device.kyber.get(k.key_id), k) for k in upload.kyber_pre_keys):
            return UploadOutcome.CONFLICT
        if _duplicate_ids(upload):
            return UploadOutcome.CONFLICT
        new_one_time = {k.key_id for k in upload.one_time_pre_keys if k.key_id > device.one_time_floor}
        new_kyber = {k.key_id for k in upload.kyber_pre_keys if k.key_id > device.kyber_floor}
        if (
            len(new_one_time | device.one_time.keys()) > self.quotas.device_one_time_pre_keys
            or len(new_kyber | device.kyber.keys()) > self.quotas.device_kyber_pre_keys
        ):
            return UploadOutcome.OVER_QUOTA
        if upload.signed_pre_key:
            device.signed_pre_key = upload.signed_pre_key
        if upload.kyber_last_resort:
            device.kyber_last_resort = upload.kyber_last_resort
        for key in upload.one_time_pre_keys:
            if key.key_id > device.one_time_floor:
                device.one_time[key.key_id] = key
        for kyber in upload.kyber_pre_keys:
            if kyber.key_id > device.kyber_floor:
                device.kyber[kyber.key_id] = kyber
        return UploadOutcome.STORED

    async def key_counts(self, account_id: AccountId, device_id: int) -> KeyCounts:
        device = self._accounts[account_id].devices[device_id]
        return KeyCounts(one_time=len(device.one_time), kyber=len(device.kyber))

    async def add_access_token(self, account_id: AccountId, token_hash: bytes, expires_day: int) -> bool:
        held = self._accounts[account_id].access_tokens
        if token_hash not in held and len(held) >= self.quotas.account_access_tokens:
            return False
        owner = self._token_owners.get(token_hash)
        if owner is not None and owner != account_id and owner in self._accounts:
            self._accounts[owner].access_tokens.pop(token_hash, None)
        self._token_owners[token_hash] = account_id
        held[token_hash] = expires_day
        return True

    def _drop_token(self, account: _Account, token_hash: bytes) -> None:
        dropped = account.access_tokens.pop(token_hash, None) is not None
        if dropped and self._token_owners.get(token_hash) == account.record.account_id:
            del self._token_owners[token_hash]

    async def delete_access_token(self, account_id: AccountId, token_hash: bytes) -> None:
        self._drop_token(self._accounts[account_id], token_hash)

    async def has_access(self, account_id: AccountId, token_hash: bytes, today: int) -> bool:
        account = self._accounts.get(account_id)
        expires = account.access_tokens.get(token_hash) if account else None
        return expires is not None and expires > today

    async def take_bundle(self, account_id: AccountId, token_hash: bytes, today: int) -> BundleRecord | None:
        account = self._accounts.get(account_id)
        if account is None or not await self.has_access(account_id, token_hash, today):
            return None
        devices = []
        for device_id in sorted(account.devices):
            device = account.devices[device_id]
            if device.signed_pre_key is None or (device.kyber_last_resort is None and not device.kyber):
                continue
            pre_key = None
            if device.one_time:
                pre_key = device.one_time.pop(min(device.one_time))
                device.one_time_floor = max(device.one_time_floor, pre_key.key_id)
            if device.kyber:
                kyber = device.kyber.pop(min(device.kyber))
                device.kyber_floor = max(device.kyber_floor, kyber.key_id)
            else:
                assert device.kyber_last_resort is not None
                kyber = device.kyber_last_resort
            devices.append(
                DeviceBundleRecord(
                    device_id=device_id,
                    registration_id=device.record.registration_id,
                    signed_pre_key=device.signed_pre_key,
                    kyber_pre_key=kyber,
                    pre_key=pre_key,
                )
            )
        return BundleRecord(identity_key=account.record.identity_key, devices=tuple(devices))

    async def export_account(self, account_id: AccountId) -> Export:
        account = self._accounts.get(account_id)
        if account is None:
            return {}
        a = account.record
        out: Export = {
            "accounts": [
                {
                    "account_id": a.account_id,
                    "identity_key": a.identity_key,
                    "username_hash": account.username_hash,
                    "created_day": a.created_day,
                }
            ],
            "devices": [],
            "one_time_pre_keys": [],
            "kyber_pre_keys": [],
            "access_tokens": [
                {"token_hash": h, "account_id": a.account_id, "expires_day": day}
                for h, day in sorted(account.access_tokens.items())
            ],
        }
        for device_id in sorted(account.devices):
            device = account.devices[device_id]
            d, spk, lr = device.record, device.signed_pre_key, device.kyber_last_resort
            out["devices"].append(
                {
                    "account_id": d.account_id,
                    "device_id": d.device_id,
                    "registration_id": d.registration_id,
                    "secret_hash": d.secret_hash,
                    "signed_pre_key_id": spk.key_id if spk else None,
                    "signed_pre_key": spk.public_key if spk else None,
                    "signed_pre_key_signature": spk.signature if spk else None,
                    "kyber_last_resort_id": lr.key_id if lr else None,
                    "kyber_last_resort": lr.public_key if lr else None,
                    "kyber_last_resort_signature": lr.signature if lr else None,
                    "one_time_floor": device.one_time_floor,
                    "kyber_floor": device.kyber_floor,
                }
            )
            out["one_time_pre_keys"] += [
                {
                    "account_id": a.account_id,
                    "device_id": device_id,
                    "key_id": k.key_id,
                    "public_key": k.public_key,
                }
                for _, k in sorted(device.one_time.items())
            ]
            out["kyber_pre_keys"] += [
                {
                    "account_id": a.account_id,
                    "device_id": device_id,
                    "key_id": k.key_id,
                    "public_key": k.public_key,
                    "signature": k.signature,
                }
                for _, k in sorted(device.kyber.items())
            ]
        return out

    # ------------------------------------------------------------------ mailboxes
    async def create_mailbox(self, mailbox: MailboxRecord) -> CreateOutcome:
        held = self._mailboxes.get(mailbox.mailbox_id)
        if held is None:
            self._mailboxes[mailbox.mailbox_id] = mailbox
            self._envelopes[mailbox.mailbox_id] = {}
            return CreateOutcome.CREATED
        return CreateOutcome.EXISTS if held.same_keys(mailbox) else CreateOutcome.CONFLICT

    async def get_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> Mapping[MailboxId, MailboxRecord]:
        return {m: self._mailboxes[m] for m in mailbox_ids if m in self._mailboxes}

    async def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId], today: int) -> None:
        for mailbox_id in mailbox_ids:
            held = self._mailboxes.get(mailbox_id)
            if held is not None:
                expires_day = drained_expiry(mailbox_id, today, held.ttl_days)
                if expires_day > held.expires_day:
                    self._mailboxes[mailbox_id] = replace(held, expires_day=expires_day)

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        self._mailboxes.pop(mailbox_id, None)
        self._envelopes.pop(mailbox_id, None)

    async def put_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> PutResult:
        return self._put(mailbox_id, token_hash, message_id, payload, today)

    def submit_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> asyncio.Future[PutResult]:
        future: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        future.set_result(self._put(mailbox_id, token_hash, message_id, payload, today))
        return future

    def _put(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> PutResult:
        held = self._mailboxes.get(mailbox_id)
        # A missing mailbox does the comparison a wrong token does, so the two cost the same.
        matches = bytes_equal(_NO_TOKEN_HASH if held is None else held.token_hash, token_hash)
        if held is None or held.expires_day <= today or not matches:
            return PutResult(PutOutcome.NOT_FOUND)
        pending = self._envelopes[mailbox_id]
        if message_id in pending:
            return PutResult(PutOutcome.DUPLICATE)
        if self.disk_low:
            return PutResult(PutOutcome.RELAY_FULL)
        if (
            len(pending) >= self.quotas.mailbox_envelopes
            or len(payload) + sum(len(e.payload) for e in pending.values()) > self.quotas.mailbox_bytes
        ):
            return PutResult(PutOutcome.MAILBOX_FULL)
        seq = 1 + max((e.seq for e in pending.values()), default=0)
        envelope = EnvelopeRecord(mailbox_id, message_id, seq, today, bytes(payload))
        pending[message_id] = envelope
        return PutResult(PutOutcome.STORED, envelope)

    async def pending(
        self,
        mailbox_id: MailboxId,
        limit: int,
        skip: frozenset[MessageId] = frozenset(),
        max_bytes: int | None = None,
    ) -> list[EnvelopeRecord]:
        envelopes = sorted(self._envelopes.get(mailbox_id, {}).values(), key=lambda e: e.seq)
        out: list[EnvelopeRecord] = []
        total = 0
        for envelope in envelopes:
            if envelope.message_id in skip:
                continue
            out.append(envelope)
            total += len(envelope.payload)
            if len(out) == limit or (max_bytes is not None and total > max_bytes):
                break
        return out

    async def delete_envelopes(self, refs: Sequence[tuple[MailboxId, MessageId]]) -> int:
        deleted = 0
        for mailbox_id, message_id in refs:
            if self._envelopes.get(mailbox_id, {}).pop(message_id, None) is not None:
                deleted += 1
        return deleted

    async def export_mailbox(self, mailbox_id: MailboxId) -> Export:
        held = self._mailboxes.get(mailbox_id)
        if held is None:
            return {}
        envelopes = sorted(self._envelopes[mailbox_id].values(), key=lambda e: e.seq)
        return {
            "mailboxes": [
                {
                    "mailbox_id": held.mailbox_id,
                    "auth_key": held.auth_key,
                    "token_hash": held.token_hash,
                    "ttl_days": held.ttl_days,
                    "expires_day": held.expires_day,
                }
            ],
            # The SQLite schema's rows: the id and payload sealed under a key of the envelope's own
            # (here in clear and with a made-up slot: an export shows only their sizes).
            "envelopes": [
                {
                    "mailbox_id": e.mailbox_id,
                    "seq": e.seq,
                    "id_tag": id_tag(e.mailbox_id, e.message_id),
                    "received_day": e.received_day,
                    "key_slot": e.seq,
                    "sealed": e.message_id + e.payload,
                }
                for e in envelopes
            ],
            "envelope_keys": [{"slot": e.seq, "key": bytes(KEY_BYTES)} for e in envelopes],
        }

    async def sweep(self, today: int, envelope_ttl_days: int) -> SweepResult:
        envelopes = mailboxes = tokens = 0
        for mailbox_id, held in list(self._mailboxes.items()):
            if held.expires_day <= today:
                envelopes += len(self._envelopes.pop(mailbox_id, {}))
                del self._mailboxes[mailbox_id]
                mailboxes += 1
        for pending in self._envelopes.values():
            for message_id, envelope in list(pending.items()):
                if envelope.received_day + envelope_ttl_days <= today:
                    del pending[message_id]
                    envelopes += 1
        for account in self._accounts.values():
            for token_hash, day in list(account.access_tokens.items()):
                if day <= today:
                    self._drop_token(account, token_hash)
                    tokens += 1
        return SweepResult(envelopes=envelopes, mailboxes=mailboxes, access_tokens=tokens)


def _duplicate_ids(upload: KeyUpload) -> bool:
    """The same id twice within one upload with different bytes."""
    for keys in (upload.one_time_pre_keys, upload.kyber_pre_keys):
        seen: dict[int, object] = {}
        for item in keys:
            if seen.setdefault(item.key_id, item) != item:
                return True
    return False
