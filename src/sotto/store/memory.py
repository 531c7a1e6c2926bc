"""The in-memory reference store: the behaviour every backend must match, with nothing persisted.

Each table is a dict of immutable values. A transaction copies a table the first time it writes
to it and installs its copies only on commit, so an exception inside the block leaves the store
exactly as it was. Use it in tests and for throw-away clients; the shared suite in
``tests/store`` runs against it and against SQLite.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sotto.crypto.keys import PublicKey
from sotto.errors import MissingRecordError, StoreConflictError, StoreError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.group.sender_key import SenderKeyRecord
from sotto.protocol.record import SessionRecord
from sotto.protocol.session import LastResortUse
from sotto.store import rules, search
from sotto.store.gate import TransactionGate
from sotto.store.interfaces import PendingUpload, Transaction
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
    PendingEvent,
    PendingEventId,
    PendingEventKind,
    PendingReceipt,
    PreKeyKind,
    Quote,
    Reaction,
    Receipt,
    ReceiptKind,
    SendLogEntry,
    SendLogEntryId,
    TheirMailbox,
    TrustedIdentity,
)

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Tables:
    account: dict[str, Account] = field(default_factory=dict)
    settings: dict[str, bytes] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    one_time: dict[int, tuple[PreKeyRecord, bool]] = field(default_factory=dict)
    signed: dict[int, tuple[SignedPreKeyRecord, bool]] = field(default_factory=dict)
    kyber: dict[int, tuple[KyberPreKeyRecord, bool]] = field(default_factory=dict)
    last_resort_uses: dict[LastResortUse, None] = field(default_factory=dict)
    sessions: dict[ProtocolAddress, SessionRecord] = field(default_factory=dict)
    identities: dict[str, TrustedIdentity] = field(default_factory=dict)
    sender_keys: dict[tuple[ProtocolAddress, uuid.UUID], SenderKeyRecord] = field(default_factory=dict)
    contacts: dict[ContactId, Contact] = field(default_factory=dict)
    mailboxes: dict[MailboxId, OurMailbox] = field(default_factory=dict)
    their_mailboxes: dict[ContactId, TheirMailbox] = field(default_factory=dict)
    invites: dict[InviteId, Invite] = field(default_factory=dict)
    groups: dict[GroupId, Group] = field(default_factory=dict)
    members: dict[tuple[GroupId, ContactId], bool] = field(default_factory=dict)
    messages: dict[MessageRowId, Message] = field(default_factory=dict)
    attachments: dict[MessageRowId, bytes] = field(default_factory=dict)
    receipts: dict[tuple[MessageRowId, ContactId, ReceiptKind], Receipt] = field(default_factory=dict)
    owed_receipts: dict[tuple[MessageRowId, ReceiptKind], PendingReceipt] = field(default_factory=dict)
    outbox: dict[OutboxItemId, OutboxItem] = field(default_factory=dict)
    seen: dict[tuple[MailboxId, MessageId], int] = field(default_factory=dict)
    unreported: dict[MessageRowId, None] = field(default_factory=dict)
    events: dict[PendingEventId, PendingEvent] = field(default_factory=dict)
    send_log: dict[SendLogEntryId, SendLogEntry] = field(default_factory=dict)


class _Table(Generic[K, V]):
    """Copy-on-write view of one committed table."""

    __slots__ = ("_base", "_own")

    def __init__(self, base: dict[K, V]) -> None:
        self._base = base
        self._own: dict[K, V] | None = None

    @property
    def r(self) -> dict[K, V]:
        return self._base if self._own is None else self._own

    @property
    def w(self) -> dict[K, V]:
        if self._own is None:
            self._own = dict(self._base)
        return self._own

    @property
    def changed(self) -> dict[K, V] | None:
        return self._own


class _Work:
    """A transaction's working set: one copy-on-write table per committed table."""

    def __init__(self, tables: _Tables) -> None:
        self.open = True
        self.account = _Table(tables.account)
        self.settings = _Table(tables.settings)
        self.counters = _Table(tables.counters)
        self.one_time = _Table(tables.one_time)
        self.signed = _Table(tables.signed)
        self.kyber = _Table(tables.kyber)
        self.last_resort_uses = _Table(tables.last_resort_uses)
        self.sessions = _Table(tables.sessions)
        self.identities = _Table(tables.identities)
        self.sender_keys = _Table(tables.sender_keys)
        self.contacts = _Table(tables.contacts)
        self.mailboxes = _Table(tables.mailboxes)
        self.their_mailboxes = _Table(tables.their_mailboxes)
        self.invites = _Table(tables.invites)
        self.groups = _Table(tables.groups)
        self.members = _Table(tables.members)
        self.messages = _Table(tables.messages)
        self.attachments = _Table(tables.attachments)
        self.receipts = _Table(tables.receipts)
        self.owed_receipts = _Table(tables.owed_receipts)
        self.outbox = _Table(tables.outbox)
        self.seen = _Table(tables.seen)
        self.unreported = _Table(tables.unreported)
        self.events = _Table(tables.events)
        self.send_log = _Table(tables.send_log)

    def check(self) -> None:
        if not self.open:
            raise StoreError("this transaction has ended")

    def next_id(self, counter: str) -> int:
        value = self.counters.r.get(counter, 0) + 1
        self.counters.w[counter] = value
        return value

    def commit_into(self, tables: _Tables) -> None:
        for f in dataclasses.fields(_Tables):
            table: _Table[Any, Any] = getattr(self, f.name)
            if table.changed is not None:
                setattr(tables, f.name, table.changed)


class _Repo:
    __slots__ = ("_w",)

    def __init__(self, work: _Work) -> None:
        self._w = work

    @property
    def w(self) -> _Work:
        self._w.check()
        return self._w


class _Account(_Repo):
    def get(self) -> Account | None:
        return self.w.account.r.get("me")

    def put(self, account: Account) -> None:
        self.w.account.w["me"] = account


class _Settings(_Repo):
    def get(self, key: str) -> bytes | None:
        return self.w.settings.r.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.w.settings.w[key] = bytes(value)

    def delete(self, key: str) -> bool:
        return self.w.settings.w.pop(key, None) is not None


class _UsedTriples:
    """A Container over the committed-or-pending triples, read at lookup time."""

    def __init__(self, work: _Work) -> None:
        self._work = work

    def __contains__(self, item: object) -> bool:
        self._work.check()
        return item in self._work.last_resort_uses.r


R = TypeVar("R")


def _mark(table: _Table[int, tuple[R, bool]], prekey_ids: Iterable[int]) -> None:
    for prekey_id in prekey_ids:
        found = table.r.get(prekey_id)
        if found is not None and not found[1]:
            table.w[prekey_id] = (found[0], True)


class _PreKeys(_Repo):
    def allocate_ids(self, kind: PreKeyKind, count: int) -> range:
        rules.check_allocation(count)
        key = f"prekey:{kind.value}"
        first = self.w.counters.r.get(key, 0) + 1
        rules.check_prekey_id(first + count - 1)
        self.w.counters.w[key] = first + count - 1
        return range(first, first + count)

    def put_one_time(self, record: PreKeyRecord, *, uploaded: bool = False) -> None:
        self.w.one_time.w[record.id] = (record, uploaded)

    def get_one_time(self, prekey_id: int) -> PreKeyRecord | None:
        found = self.w.one_time.r.get(prekey_id)
        return None if found is None else found[0]

    def remove_one_time(self, prekey_id: int) -> bool:
        return self.w.one_time.w.pop(prekey_id, None) is not None

    def put_signed(self, record: SignedPreKeyRecord, *, uploaded: bool = False) -> None:
        self.w.signed.w[record.id] = (record, uploaded)

    def get_signed(self, prekey_id: int) -> SignedPreKeyRecord | None:
        found = self.w.signed.r.get(prekey_id)
        return None if found is None else found[0]

    def remove_signed(self, prekey_id: int) -> bool:
        return self.w.signed.w.pop(prekey_id, None) is not None

    def latest_signed(self) -> SignedPreKeyRecord | None:
        table = self.w.signed.r
        return table[max(table)][0] if table else None

    def put_kyber(self, record: KyberPreKeyRecord, *, uploaded: bool = False) -> None:
        self.w.kyber.w[record.id] = (record, uploaded)

    def get_kyber(self, prekey_id: int) -> KyberPreKeyRecord | None:
        found = self.w.kyber.r.get(prekey_id)
        return None if found is None else found[0]

    def remove_kyber(self, prekey_id: int) -> bool:
        return self.w.kyber.w.pop(prekey_id, None) is not None

    def latest_last_resort(self) -> KyberPreKeyRecord | None:
        ids = [i for i, (r, _) in self.w.kyber.r.items() if r.last_resort]
        return self.w.kyber.r[max(ids)][0] if ids else None

    def ids(self, kind: PreKeyKind, *, last_resort: bool | None = None) -> list[int]:
        if kind is PreKeyKind.ONE_TIME:
            return sorted(self.w.one_time.r)
        if kind is PreKeyKind.SIGNED:
            return sorted(self.w.signed.r)
        return sorted(
            i for i, (r, _) in self.w.kyber.r.items() if last_resort is None or r.last_resort == last_resort
        )

    def pending_upload(self) -> PendingUpload:
        w = self.w
        return PendingUpload(
            one_time=tuple(r for _, (r, up) in sorted(w.one_time.r.items()) if not up),
            signed=tuple(r for _, (r, up) in sorted(w.signed.r.items()) if not up),
            kyber=tuple(r for _, (r, up) in sorted(w.kyber.r.items()) if not up),
        )

    def mark_uploaded(self, kind: PreKeyKind, prekey_ids: Iterable[int]) -> None:
        if kind is PreKeyKind.ONE_TIME:
            _mark(self.w.one_time, prekey_ids)
        elif kind is PreKeyKind.SIGNED:
            _mark(self.w.signed, prekey_ids)
        else:
            _mark(self.w.kyber, prekey_ids)

    def record_last_resort_use(self, use: LastResortUse) -> bool:
        key = (use[0], use[1], bytes(use[2]))
        if key in self.w.last_resort_uses.r:
            return False
        self.w.last_resort_uses.w[key] = None
        return True

    def last_resort_uses(self) -> Container[LastResortUse]:
        return _UsedTriples(self.w)

    def forget_last_resort_uses(self, kyber_pre_key_id: int) -> int:
        gone = [k for k in self.w.last_resort_uses.r if k[0] == kyber_pre_key_id]
        for k in gone:
            del self.w.last_resort_uses.w[k]
        return len(gone)


class _Sessions(_Repo):
    def get(self, address: ProtocolAddress) -> SessionRecord | None:
        return self.w.sessions.r.get(address)

    def put(self, address: ProtocolAddress, record: SessionRecord) -> None:
        self.w.sessions.w[address] = record

    def delete(self, address: ProtocolAddress) -> bool:
        return self.w.sessions.w.pop(address, None) is not None

    def devices(self, name: str) -> list[int]:
        return sorted(a.device_id for a in self.w.sessions.r if a.name == name)

    def delete_all(self, name: str) -> int:
        gone = [a for a in self.w.sessions.r if a.name == name]
        for a in gone:
            del self.w.sessions.w[a]
        return len(gone)


class _Identities(_Repo):
    def get(self, name: str) -> TrustedIdentity | None:
        return self.w.identities.r.get(name)

    def observe(self, name: str, identity_key: PublicKey, now_ms: int) -> IdentityChange:
        known = self.w.identities.r.get(name)
        if known is None:
            self.w.identities.w[name] = TrustedIdentity(name, identity_key, now_ms)
            return IdentityChange.NEW
        return IdentityChange.UNCHANGED if known.identity_key == identity_key else IdentityChange.CHANGED

    def replace(self, name: str, identity_key: PublicKey, now_ms: int) -> TrustedIdentity:
        known = self.w.identities.r.get(name)
        if known is not None and known.identity_key == identity_key:
            return known
        trusted = TrustedIdentity(
            name, identity_key, now_ms, previous_key=None if known is None else known.identity_key
        )
        self.w.identities.w[name] = trusted
        return trusted

    def set_verified(self, name: str, verified: bool) -> None:
        known = self.w.identities.r.get(name)
        if known is None:
            raise MissingRecordError("no trusted identity for this peer")
        self.w.identities.w[name] = dataclasses.replace(known, verified=verified)

    def set_changed(self, name: str, changed_ms: int | None) -> None:
        known = self.w.identities.r.get(name)
        if known is None:
            raise MissingRecordError("no trusted identity for this peer")
        self.w.identities.w[name] = dataclasses.replace(known, changed_ms=changed_ms)

    def delete(self, name: str) -> bool:
        return self.w.identities.w.pop(name, None) is not None


class _SenderKeys(_Repo):
    def get(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> SenderKeyRecord | None:
        return self.w.sender_keys.r.get((sender, distribution_id))

    def put(self, sender: ProtocolAddress, record: SenderKeyRecord) -> None:
        self.w.sender_keys.w[(sender, record.distribution_id)] = record

    def delete(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> bool:
        return self.w.sender_keys.w.pop((sender, distribution_id), None) is not None


def _delete_contact_rows(w: _Work, contact_id: ContactId) -> None:
    """Everything that hangs off a contact (the SQLite backend gets this from ON DELETE CASCADE)."""
    for mailbox_id in [m.mailbox_id for m in w.mailboxes.r.values() if m.contact_id == contact_id]:
        del w.mailboxes.w[mailbox_id]
    w.their_mailboxes.w.pop(contact_id, None)
    for key in [k for k in w.members.r if k[1] == contact_id]:
        del w.members.w[key]
    rows = [m.row_id for m in w.messages.r.values() if contact_id in (m.sender, m.conversation.contact_id)]
    _delete_message_rows(w, rows)
    for receipt_key in [k for k in w.receipts.r if k[1] == contact_id]:
        del w.receipts.w[receipt_key]
    for event_id in [e.event_id for e in w.events.r.values() if e.contact_id == contact_id]:
        del w.events.w[event_id]
    for entry_id in [e.entry_id for e in w.send_log.r.values() if e.contact_id == contact_id]:
        del w.send_log.w[entry_id]


def _delete_message_rows(w: _Work, rows: Sequence[MessageRowId]) -> None:
    if not rows:
        return
    gone = set(rows)
    for row in gone:
        w.messages.w.pop(row, None)
    for row in [r for r in w.attachments.r if r in gone]:
        del w.attachments.w[row]
    for rkey in [k for k in w.receipts.r if k[0] in gone]:
        del w.receipts.w[rkey]
    for okey in [k for k in w.owed_receipts.r if k[0] in gone]:
        del w.owed_receipts.w[okey]
    for row in [r for r in w.unreported.r if r in gone]:
        del w.unreported.w[row]
    for item in [i for i in w.outbox.r.values() if i.message_row in gone]:
        w.outbox.w[item.item_id] = dataclasses.replace(item, message_row=None)


def _forget_sent(w: _Work, message_ids: Sequence[MessageId]) -> None:
    """Our messages' copies in the send log go with them (expiry, deletion for everyone)."""
    gone = set(message_ids)
    for entry_id in [e.entry_id for e in w.send_log.r.values() if e.message_id in gone]:
        del w.send_log.w[entry_id]


class _Contacts(_Repo):
    def _check_unique(self, name: str, account_id: bytes, address_name: str, skip: ContactId | None) -> None:
        for c in self.w.contacts.r.values():
            if c.contact_id == skip:
                continue
            if c.name == name:
                raise StoreConflictError("a contact with this name exists")
            if c.account_id == account_id or c.address.name == address_name:
                raise StoreConflictError("this account is already a contact")

    def add(
        self,
        *,
        name: str,
        account_id: bytes,
        address: ProtocolAddress,
        now_ms: int,
        display_name: str = "",
    ) -> Contact:
        self._check_unique(name, account_id, address.name, None)
        contact = Contact(
            ContactId(self.w.next_id("contact")), name, bytes(account_id), address, now_ms, display_name
        )
        self.w.contacts.w[contact.contact_id] = contact
        return contact

    def get(self, contact_id: ContactId) -> Contact | None:
        return self.w.contacts.r.get(contact_id)

    def by_name(self, name: str) -> Contact | None:
        return next((c for c in self.w.contacts.r.values() if c.name == name), None)

    def by_account(self, account_id: bytes) -> Contact | None:
        return next((c for c in self.w.contacts.r.values() if c.account_id == account_id), None)

    def by_address_name(self, name: str) -> Contact | None:
        return next((c for c in self.w.contacts.r.values() if c.address.name == name), None)

    def all(self) -> list[Contact]:
        return sorted(self.w.contacts.r.values(), key=lambda c: c.contact_id)

    def update(self, contact: Contact) -> None:
        if contact.contact_id not in self.w.contacts.r:
            raise MissingRecordError("no such contact")
        self._check_unique(contact.name, contact.account_id, contact.address.name, contact.contact_id)
        known = self.w.contacts.r[contact.contact_id]
        self.w.contacts.w[contact.contact_id] = dataclasses.replace(
            contact, blocked=known.blocked, removed=known.removed
        )

    def _known(self, contact_id: ContactId) -> Contact:
        known = self.w.contacts.r.get(contact_id)
        if known is None:
            raise MissingRecordError("no such contact")
        return known

    def set_blocked(self, contact_id: ContactId, blocked: bool) -> None:
        self.w.contacts.w[contact_id] = dataclasses.replace(self._known(contact_id), blocked=blocked)

    def set_removed(self, contact_id: ContactId, removed: bool) -> None:
        self.w.contacts.w[contact_id] = dataclasses.replace(self._known(contact_id), removed=removed)

    def delete(self, contact_id: ContactId) -> bool:
        if contact_id not in self.w.contacts.r:
            return False
        _delete_contact_rows(self.w, contact_id)
        del self.w.contacts.w[contact_id]
        return True


def _newest_first(mailboxes: Iterable[OurMailbox]) -> list[OurMailbox]:
    # dict order is insertion order; reversed then a stable sort gives "newest, later-added first".
    return sorted(reversed(list(mailboxes)), key=lambda m: -m.created_ms)


class _Mailboxes(_Repo):
    def add(self, mailbox: OurMailbox) -> None:
        if mailbox.mailbox_id in self.w.mailboxes.r or self._taken(mailbox.mailbox_id):
            raise StoreConflictError("mailbox id exists")
        if mailbox.contact_id not in self.w.contacts.r:
            raise MissingRecordError("no such contact")
        self.w.mailboxes.w[mailbox.mailbox_id] = mailbox

    def _taken(self, mailbox_id: MailboxId) -> bool:
        return any(i.mailbox_id == mailbox_id for i in self.w.invites.r.values())

    def get(self, mailbox_id: MailboxId) -> OurMailbox | None:
        return self.w.mailboxes.r.get(mailbox_id)

    def for_contact(self, contact_id: ContactId) -> list[OurMailbox]:
        return _newest_first(m for m in self.w.mailboxes.r.values() if m.contact_id == contact_id)

    def current(self, contact_id: ContactId) -> OurMailbox | None:
        return next((m for m in self.for_contact(contact_id) if m.rotated_ms is None), None)

    def all(self) -> list[OurMailbox]:
        return list(reversed(_newest_first(self.w.mailboxes.r.values())))

    def update(self, mailbox: OurMailbox) -> None:
        known = self.w.mailboxes.r.get(mailbox.mailbox_id)
        if known is None:
            raise MissingRecordError("no such mailbox")
        self.w.mailboxes.w[mailbox.mailbox_id] = dataclasses.replace(
            known, rotated_ms=mailbox.rotated_ms, retiring_until_ms=mailbox.retiring_until_ms
        )

    def delete(self, mailbox_id: MailboxId) -> bool:
        return self.w.mailboxes.w.pop(mailbox_id, None) is not None


class _TheirMailboxes(_Repo):
    def get(self, contact_id: ContactId) -> TheirMailbox | None:
        return self.w.their_mailboxes.r.get(contact_id)

    def put(self, mailbox: TheirMailbox) -> None:
        if mailbox.contact_id not in self.w.contacts.r:
            raise MissingRecordError("no such contact")
        self.w.their_mailboxes.w[mailbox.contact_id] = mailbox

    def delete(self, contact_id: ContactId) -> bool:
        return self.w.their_mailboxes.w.pop(contact_id, None) is not None


class _Invites(_Repo):
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
        if mailbox_id in self.w.mailboxes.r or self.by_mailbox(mailbox_id) is not None:
            raise StoreConflictError("mailbox id exists")
        invite = Invite(
            InviteId(self.w.next_id("invite")),
            bytes(secret),
            MailboxId(bytes(mailbox_id)),
            bytes(signing_seed),
            bytes(delivery_token),
            bytes(access_token),
            created_ms,
            expires_ms,
        )
        self.w.invites.w[invite.invite_id] = invite
        return invite

    def get(self, invite_id: InviteId) -> Invite | None:
        return self.w.invites.r.get(invite_id)

    def by_mailbox(self, mailbox_id: MailboxId) -> Invite | None:
        return next((i for i in self.w.invites.r.values() if i.mailbox_id == mailbox_id), None)

    def open(self, now_ms: int) -> list[Invite]:
        return [i for i in self.all() if i.used_ms is None and i.expires_ms > now_ms]

    def all(self) -> list[Invite]:
        return sorted(self.w.invites.r.values(), key=lambda i: i.invite_id)

    def mark_used(self, invite_id: InviteId, now_ms: int) -> None:
        known = self.w.invites.r.get(invite_id)
        if known is None:
            raise MissingRecordError("no such invite")
        if known.used_ms is None:
            self.w.invites.w[invite_id] = dataclasses.replace(known, used_ms=now_ms)

    def delete(self, invite_id: InviteId) -> bool:
        return self.w.invites.w.pop(invite_id, None) is not None


class _Groups(_Repo):
    def create(self, *, group_id: GroupId, name: str, distribution_id: uuid.UUID, created_ms: int) -> Group:
        if group_id in self.w.groups.r:
            raise StoreConflictError("group id exists")
        group = Group(GroupId(bytes(group_id)), name, distribution_id, created_ms)
        self.w.groups.w[group.group_id] = group
        return group

    def get(self, group_id: GroupId) -> Group | None:
        return self.w.groups.r.get(group_id)

    def all(self) -> list[Group]:
        return list(self.w.groups.r.values())

    def rename(self, group_id: GroupId, name: str) -> None:
        known = self._need(group_id)
        self.w.groups.w[group_id] = dataclasses.replace(known, name=name)

    def _need(self, group_id: GroupId) -> Group:
        known = self.w.groups.r.get(group_id)
        if known is None:
            raise MissingRecordError("no such group")
        return known

    def delete(self, group_id: GroupId) -> bool:
        w = self.w
        if group_id not in w.groups.r:
            return False
        for key in [k for k in w.members.r if k[0] == group_id]:
            del w.members.w[key]
        for event_id in [e.event_id for e in w.events.r.values() if e.group_id == group_id]:
            del w.events.w[event_id]
        _delete_message_rows(
            w, [m.row_id for m in w.messages.r.values() if m.conversation.group_id == group_id]
        )
        del w.groups.w[group_id]
        return True

    def add_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        self._need(group_id)
        if contact_id not in self.w.contacts.r:
            raise MissingRecordError("no such contact")
        if (group_id, contact_id) in self.w.members.r:
            return False
        self.w.members.w[(group_id, contact_id)] = False
        return True

    def remove_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        return self.w.members.w.pop((group_id, contact_id), None) is not None

    def members(self, group_id: GroupId) -> list[GroupMember]:
        return [GroupMember(c, sent) for (g, c), sent in self.w.members.r.items() if g == group_id]

    def groups_of(self, contact_id: ContactId) -> list[GroupId]:
        return [g for (g, c) in self.w.members.r if c == contact_id]

    def mark_skdm_sent(self, group_id: GroupId, contact_id: ContactId) -> None:
        if (group_id, contact_id) not in self.w.members.r:
            raise MissingRecordError("not a member")
        self.w.members.w[(group_id, contact_id)] = True

    def set_distribution(self, group_id: GroupId, distribution_id: uuid.UUID) -> None:
        known = self._need(group_id)
        self.w.groups.w[group_id] = dataclasses.replace(known, distribution_id=distribution_id)
        for key in [k for k in self.w.members.r if k[0] == group_id]:
            self.w.members.w[key] = False


class _Messages(_Repo):
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
        quote: Quote | None = None,
        expires_ms: int | None = None,
        timer_s: int | None = None,
    ) -> Message:
        w = self.w
        rules.check_message(direction, sender, state)
        if conversation.contact_id is not None and conversation.contact_id not in w.contacts.r:
            raise MissingRecordError("no such contact")
        if conversation.group_id is not None and conversation.group_id not in w.groups.r:
            raise MissingRecordError("no such group")
        if sender is not None and sender not in w.contacts.r:
            raise MissingRecordError("no such contact")
        if self.find(sender, message_id) is not None:
            raise StoreConflictError("message id exists for this sender")
        message = Message(
            MessageRowId(w.next_id("message")),
            MessageId(bytes(message_id)),
            conversation,
            direction,
            sender,
            text,
            sent_ms,
            stored_ms,
            state,
            quote=quote,
            expires_ms=expires_ms,
            timer_s=timer_s,
        )
        w.messages.w[message.row_id] = message
        if sender is not None:
            w.owed_receipts.w[(message.row_id, ReceiptKind.DELIVERED)] = PendingReceipt(
                sender, ReceiptKind.DELIVERED, message.message_id, message.row_id
            )
            w.unreported.w[message.row_id] = None
        return message

    def get(self, row_id: MessageRowId) -> Message | None:
        return self.w.messages.r.get(row_id)

    def find(self, sender: ContactId | None, message_id: MessageId) -> Message | None:
        return next(
            (m for m in self.w.messages.r.values() if m.sender == sender and m.message_id == message_id), None
        )

    def conversation(
        self,
        conversation: Conversation,
        *,
        limit: int = 50,
        before: MessageRowId | None = None,
        after: MessageRowId | None = None,
    ) -> list[Message]:
        rows = [
            m
            for row, m in self.w.messages.r.items()
            if m.conversation == conversation
            and (before is None or row < before)
            and (after is None or row > after)
        ]
        rows.sort(key=lambda m: m.row_id)
        if limit <= 0:
            return []
        return rows[:limit] if after is not None else rows[-limit:]

    def search(
        self,
        conversation: Conversation,
        query: str,
        *,
        limit: int = 20,
        before: MessageRowId | None = None,
        after: MessageRowId | None = None,
        newest_first: bool = True,
    ) -> list[Message]:
        rows = [
            m
            for row, m in self.w.messages.r.items()
            if m.conversation == conversation
            and (before is None or row < before)
            and (after is None or row > after)
            and search.matches(query, m.text)
        ]
        rows.sort(key=lambda m: m.row_id, reverse=newest_first)
        return rows[: max(limit, 0)]

    def advance(self, row_id: MessageRowId, state: MessageState) -> MessageState:
        known = self.w.messages.r.get(row_id)
        if known is None:
            raise MissingRecordError("no such message")
        new_state = max(known.state, state)
        if new_state != known.state:
            self.w.messages.w[row_id] = dataclasses.replace(known, state=new_state)
        return new_state

    def add_receipt(self, row_id: MessageRowId, contact_id: ContactId, kind: ReceiptKind, at_ms: int) -> None:
        if row_id not in self.w.messages.r:
            raise MissingRecordError("no such message")
        if contact_id not in self.w.contacts.r:
            raise MissingRecordError("no such contact")
        key = (row_id, contact_id, kind)
        if key not in self.w.receipts.r:
            self.w.receipts.w[key] = Receipt(row_id, contact_id, kind, at_ms)
        self.advance(row_id, rules.state_for_receipt(kind))

    def receipts(self, row_id: MessageRowId) -> list[Receipt]:
        found = [r for k, r in self.w.receipts.r.items() if k[0] == row_id]
        return sorted(found, key=lambda r: (r.at_ms, r.contact_id, r.kind.value))

    def mark_read(self, row_ids: Iterable[MessageRowId]) -> list[MessageRowId]:
        changed: list[MessageRowId] = []
        for row_id in row_ids:
            known = self.w.messages.r.get(row_id)
            if known is None or known.sender is None or known.state >= MessageState.READ:
                continue
            self.w.messages.w[row_id] = dataclasses.replace(known, state=MessageState.READ)
            self.w.owed_receipts.w[(row_id, ReceiptKind.READ)] = PendingReceipt(
                known.sender, ReceiptKind.READ, known.message_id, row_id
            )
            changed.append(row_id)
        return changed

    def pending_receipts(self, limit: int = 1000) -> list[PendingReceipt]:
        order = {ReceiptKind.DELIVERED: 0, ReceiptKind.READ: 1}
        owed = sorted(self.w.owed_receipts.r.values(), key=lambda p: (p.row_id, order[p.kind]))
        return owed[:limit]

    def clear_pending_receipts(self, receipts: Sequence[PendingReceipt]) -> None:
        for receipt in receipts:
            self.w.owed_receipts.w.pop((receipt.row_id, receipt.kind), None)

    def unreported(self, limit: int = 1000) -> list[Message]:
        rows = sorted(self.w.unreported.r)[: max(limit, 0)]
        return [self.w.messages.r[row] for row in rows]

    def mark_reported(self, row_ids: Iterable[MessageRowId]) -> int:
        marked = [row for row in set(row_ids) if row in self.w.unreported.r]
        for row in marked:
            del self.w.unreported.w[row]
        return len(marked)

    def delete(self, row_id: MessageRowId) -> bool:
        if row_id not in self.w.messages.r:
            return False
        _delete_message_rows(self.w, [row_id])
        return True

    def _known(self, row_id: MessageRowId) -> Message:
        known = self.w.messages.r.get(row_id)
        if known is None:
            raise MissingRecordError("no such message")
        return known

    def edit(self, row_id: MessageRowId, text: str, edited_ms: int) -> Message:
        changed = dataclasses.replace(self._known(row_id), text=text, edited_ms=edited_ms)
        self.w.messages.w[row_id] = changed
        return changed

    def delete_for_everyone(self, row_id: MessageRowId, at_ms: int) -> Message:
        changed = dataclasses.replace(
            self._known(row_id), text="", quote=None, reactions=(), deleted=True, edited_ms=at_ms
        )
        self.w.messages.w[row_id] = changed
        self.w.attachments.w.pop(row_id, None)
        if changed.direction is Direction.OUTGOING:
            _forget_sent(self.w, [changed.message_id])
        return changed

    def react(self, row_id: MessageRowId, reactor: ContactId | None, emoji: str, sent_ms: int) -> bool:
        known = self._known(row_id)
        reactions, changed = rules.with_reaction(known.reactions, Reaction(reactor, emoji, sent_ms))
        if changed:
            self.w.messages.w[row_id] = dataclasses.replace(known, reactions=reactions)
        return changed

    def expire(self, now_ms: int) -> int:
        due = [m for m in self.w.messages.r.values() if m.expires_ms is not None and m.expires_ms <= now_ms]
        if due:
            _forget_sent(self.w, [m.message_id for m in due if m.direction is Direction.OUTGOING])
            _delete_message_rows(self.w, [m.row_id for m in due])
        return len(due)

    def next_expiry(self) -> int | None:
        times = [m.expires_ms for m in self.w.messages.r.values() if m.expires_ms is not None]
        return min(times, default=None)

    def put_attachment(self, row_id: MessageRowId, data: bytes) -> None:
        self._known(row_id)
        self.w.attachments.w[row_id] = bytes(data)

    def attachment(self, row_id: MessageRowId) -> bytes | None:
        return self.w.attachments.r.get(row_id)


class _UnreportedEvents(_Repo):
    def add(
        self,
        kind: PendingEventKind,
        contact_id: ContactId,
        *,
        group_id: GroupId | None = None,
        flag: bool = False,
    ) -> PendingEvent:
        w = self.w
        if contact_id not in w.contacts.r:
            raise MissingRecordError("no such contact")
        if group_id is not None and group_id not in w.groups.r:
            raise MissingRecordError("no such group")
        event = PendingEvent(
            PendingEventId(w.next_id("unreported_event")), PendingEventKind(kind), contact_id, group_id, flag
        )
        w.events.w[event.event_id] = event
        return event

    def all(self) -> list[PendingEvent]:
        return sorted(self.w.events.r.values(), key=lambda e: e.event_id)

    def remove(self, event_ids: Iterable[PendingEventId]) -> int:
        gone = [e for e in set(event_ids) if e in self.w.events.r]
        for event_id in gone:
            del self.w.events.w[event_id]
        return len(gone)


class _Outbox(_Repo):
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
        w = self.w
        if any(i.mailbox_id == mailbox_id and i.message_id == message_id for i in w.outbox.r.values()):
            raise StoreConflictError("this envelope is queued already")
        if message_row is not None and message_row not in w.messages.r:
            raise MissingRecordError("no such message")
        item = OutboxItem(
            OutboxItemId(w.next_id("outbox")),
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
        w.outbox.w[item.item_id] = item
        return item

    def get(self, item_id: OutboxItemId) -> OutboxItem | None:
        return self.w.outbox.r.get(item_id)

    def due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        due = [i for i in self.w.outbox.r.values() if i.next_attempt_ms <= now_ms]
        due.sort(key=lambda i: (i.next_attempt_ms, i.item_id))
        return due[:limit]

    def all(self) -> list[OutboxItem]:
        return sorted(self.w.outbox.r.values(), key=lambda i: i.item_id)

    def count(self) -> int:
        return len(self.w.outbox.r)

    def reschedule(self, item_id: OutboxItemId, next_attempt_ms: int) -> OutboxItem:
        known = self.w.outbox.r.get(item_id)
        if known is None:
            raise MissingRecordError("no such outbox item")
        item = dataclasses.replace(known, attempts=known.attempts + 1, next_attempt_ms=next_attempt_ms)
        self.w.outbox.w[item_id] = item
        return item

    def remove(self, item_id: OutboxItemId) -> bool:
        return self.w.outbox.w.pop(item_id, None) is not None

    def remaining_for(self, message_row: MessageRowId) -> int:
        return sum(1 for i in self.w.outbox.r.values() if i.message_row == message_row)


class _Seen(_Repo):
    def add(self, mailbox_id: MailboxId, envelope_id: MessageId, day: int) -> bool:
        key = (MailboxId(bytes(mailbox_id)), MessageId(bytes(envelope_id)))
        if key in self.w.seen.r:
            return False
        self.w.seen.w[key] = day
        return True

    def contains(self, mailbox_id: MailboxId, envelope_id: MessageId) -> bool:
        return (mailbox_id, envelope_id) in self.w.seen.r

    def prune(self, before_day: int) -> int:
        gone = [k for k, day in self.w.seen.r.items() if day < before_day]
        for k in gone:
            del self.w.seen.w[k]
        return len(gone)


class _SendLog(_Repo):
    def add(
        self,
        *,
        contact_id: ContactId,
        envelope_id: MessageId,
        message_id: MessageId | None,
        content: bytes,
        sent_ms: int,
    ) -> SendLogEntry:
        w = self.w
        if contact_id not in w.contacts.r:
            raise MissingRecordError("no such contact")
        entry = SendLogEntry(
            SendLogEntryId(w.next_id("send_log")),
            contact_id,
            MessageId(bytes(envelope_id)),
            None if message_id is None else MessageId(bytes(message_id)),
            bytes(content),
            sent_ms,
        )
        w.send_log.w[entry.entry_id] = entry
        return entry

    def for_contact(self, contact_id: ContactId) -> list[SendLogEntry]:
        return sorted(
            (e for e in self.w.send_log.r.values() if e.contact_id == contact_id), key=lambda e: e.entry_id
        )

    def remove_delivered(self, contact_id: ContactId, message_ids: Iterable[MessageId]) -> int:
        wanted = {bytes(m) for m in message_ids}
        gone = [
            e.entry_id
            for e in self.w.send_log.r.values()
            if e.contact_id == contact_id and e.message_id is not None and e.message_id in wanted
        ]
        for entry_id in gone:
            del self.w.send_log.w[entry_id]
        return len(gone)

    def expire(self, before_ms: int) -> int:
        gone = [e.entry_id for e in self.w.send_log.r.values() if e.sent_ms < before_ms]
        for entry_id in gone:
            del self.w.send_log.w[entry_id]
        return len(gone)

    def count(self) -> int:
        return len(self.w.send_log.r)


class MemoryTransaction:
    """A unit of work over a :class:`MemoryStore` (see :mod:`sotto.store.interfaces`)."""

    def __init__(self, work: _Work) -> None:
        self._work = work
        self._account = _Account(work)
        self._settings = _Settings(work)
        self._prekeys = _PreKeys(work)
        self._sessions = _Sessions(work)
        self._identities = _Identities(work)
        self._sender_keys = _SenderKeys(work)
        self._contacts = _Contacts(work)
        self._mailboxes = _Mailboxes(work)
        self._their_mailboxes = _TheirMailboxes(work)
        self._invites = _Invites(work)
        self._groups = _Groups(work)
        self._messages = _Messages(work)
        self._outbox = _Outbox(work)
        self._seen = _Seen(work)
        self._unreported_events = _UnreportedEvents(work)
        self._send_log = _SendLog(work)

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

    @property
    def unreported_events(self) -> _UnreportedEvents:
        return self._unreported_events

    @property
    def send_log(self) -> _SendLog:
        return self._send_log

    def __repr__(self) -> str:
        return "MemoryTransaction(<open>)" if self._work.open else "MemoryTransaction(<ended>)"


class MemoryStore:
    """The reference :class:`~sotto.store.interfaces.Store`: all in memory, nothing survives the process."""

    def __init__(self) -> None:
        self._tables = _Tables()
        self._gate = TransactionGate()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        self._gate.enter()
        work = _Work(self._tables)
        try:
            yield MemoryTransaction(work)
            work.commit_into(self._tables)
        finally:
            work.open = False
            self._gate.leave()

    def close(self) -> None:
        self._gate.close()

    def __repr__(self) -> str:
        return "MemoryStore(<closed>)" if self._gate.closed else "MemoryStore()"
