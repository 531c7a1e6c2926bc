"""What a client store offers: one Unit of Work over typed repositories.

Every read and write happens inside :meth:`Store.transaction`::

    with store.transaction() as tx:
        record = tx.sessions.get(peer)
        new_record, plaintext = session.decrypt_signal_message(record, body, ...)
        tx.sessions.put(peer, new_record)
        tx.messages.add(...)
        tx.seen.add(mailbox_id, envelope_id, day)
    # only now: acknowledge the envelope to the relay

Leaving the block normally commits everything at once; an exception inside it writes nothing
(and propagates). That is the contract the client's at-least-once receive path rests on: new
session state, the plaintext and the "seen" mark are durable together before the ack, so a
crash either redelivers (nothing written) or dedupes (all written). Sending is the mirror image:
the advanced session record and the outbox entry commit together, and the outbox entry is
removed only after the relay confirms (``sent`` or ``duplicate``).

Concurrency:

* A store runs one transaction at a time. ``transaction()`` called from another thread waits for
  the open one to finish; called again from the thread that holds one it raises
  :class:`~sotto.errors.StoreError` instead of deadlocking.
* Keep a transaction synchronous and short: never ``await`` inside the ``with`` block. An async
  client runs a whole block in a worker thread (``asyncio.to_thread``) or inline (each call is a
  few SQLite statements), and serializes work per peer with its own ``asyncio.Lock`` held around
  "load, compute, commit" — the store does not know about peers' locks.
* A transaction object is valid only inside its block; using it afterwards raises StoreError.
* One process per store: a second process opening the same SQLite file gets
  :class:`~sotto.errors.StoreLockedError`.

Records are immutable values (:mod:`sotto.store.model`, the protocol's record types): change one
by putting back a new value. Lookups of something absent return None; updates of something
absent raise :class:`~sotto.errors.MissingRecordError`; a taken unique value raises
:class:`~sotto.errors.StoreConflictError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from sotto.crypto.keys import PublicKey
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.group.sender_key import SenderKeyRecord
from sotto.protocol.record import SessionRecord
from sotto.protocol.session import LastResortUse
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
    Receipt,
    ReceiptKind,
    SendLogEntry,
    TheirMailbox,
    TrustedIdentity,
)


@dataclass(frozen=True, slots=True, repr=False)
class PendingUpload:
    """Prekeys stored but not yet confirmed uploaded: upload exactly these (same ids, same bytes)."""

    one_time: tuple[PreKeyRecord, ...]
    signed: tuple[SignedPreKeyRecord, ...]
    kyber: tuple[KyberPreKeyRecord, ...]

    def is_empty(self) -> bool:
        return not (self.one_time or self.signed or self.kyber)

    def __repr__(self) -> str:
        return (
            f"PendingUpload(one_time={[r.id for r in self.one_time]}, signed={[r.id for r in self.signed]}, "
            f"kyber={[r.id for r in self.kyber]})"
        )


class AccountRepository(Protocol):
    """Our account: at most one per store."""

    def get(self) -> Account | None:
        """Our account, or None before registration finished."""
        ...

    def put(self, account: Account) -> None:
        """Create or replace our account (e.g. a new display name)."""
        ...


class SettingsRepository(Protocol):
    """Small named values the client keeps (cursors, timers, preferences); values are encrypted."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> bool:
        """True if the key existed."""
        ...


class PreKeyRepository(Protocol):
    """Our private prekey records, their upload state, and the used last-resort triples.

    Upload protocol (idempotent under a crash at any point): allocate ids and put the new records
    with ``uploaded=False`` in one transaction; upload :meth:`pending_upload` (the relay treats a
    re-upload of the same id and bytes as a no-op); then :meth:`mark_uploaded` in another. A crash
    between the two re-uploads the same records, never new key material under an old id.
    """

    def allocate_ids(self, kind: PreKeyKind, count: int) -> range:
        """Reserve ``count`` fresh ids for ``kind`` (from 1 up). Ids are never handed out twice,
        even after their records are deleted or the transaction that used them failed to upload."""
        ...

    def put_one_time(self, record: PreKeyRecord, *, uploaded: bool = False) -> None: ...

    def get_one_time(self, prekey_id: int) -> PreKeyRecord | None: ...

    def remove_one_time(self, prekey_id: int) -> bool:
        """Delete a used one-time prekey; True if it existed."""
        ...

    def put_signed(self, record: SignedPreKeyRecord, *, uploaded: bool = False) -> None: ...

    def get_signed(self, prekey_id: int) -> SignedPreKeyRecord | None: ...

    def remove_signed(self, prekey_id: int) -> bool: ...

    def latest_signed(self) -> SignedPreKeyRecord | None:
        """The signed prekey with the highest id (the one to publish)."""
        ...

    def put_kyber(self, record: KyberPreKeyRecord, *, uploaded: bool = False) -> None:
        """A one-time or (``record.last_resort``) last-resort Kyber prekey."""
        ...

    def get_kyber(self, prekey_id: int) -> KyberPreKeyRecord | None: ...

    def remove_kyber(self, prekey_id: int) -> bool:
        """Delete a used one-time Kyber prekey (never the last-resort one while it is published)."""
        ...

    def latest_last_resort(self) -> KyberPreKeyRecord | None:
        """The last-resort Kyber prekey with the highest id."""
        ...

    def ids(self, kind: PreKeyKind, *, last_resort: bool | None = None) -> list[int]:
        """Stored ids of ``kind``, ascending. For KYBER, ``last_resort`` filters (None: all)."""
        ...

    def pending_upload(self) -> PendingUpload:
        """Every record stored with ``uploaded=False``, ascending ids."""
        ...

    def mark_uploaded(self, kind: PreKeyKind, prekey_ids: Iterable[int]) -> None:
        """The relay confirmed these ids; unknown ids are ignored (they may have been used since)."""
        ...

    def record_last_resort_use(self, use: LastResortUse) -> bool:
        """Remember a (Kyber id, signed id, base key) triple; False if it was already there."""
        ...

    def last_resort_uses(self) -> Container[LastResortUse]:
        """The remembered triples, for ``session.decrypt_prekey_message(used_last_resort=...)``.

        Membership is looked up on demand; valid only inside this transaction.
        """
        ...

    def forget_last_resort_uses(self, kyber_pre_key_id: int) -> int:
        """Drop the triples of a retired last-resort key (its record is gone, so no replay can
        succeed); returns how many."""
        ...


class SessionRepository(Protocol):
    """One :class:`~sotto.protocol.record.SessionRecord` per peer device."""

    def get(self, address: ProtocolAddress) -> SessionRecord | None: ...

    def put(self, address: ProtocolAddress, record: SessionRecord) -> None: ...

    def delete(self, address: ProtocolAddress) -> bool: ...

    def devices(self, name: str) -> list[int]:
        """Device ids with a session for the account ``name``, ascending."""
        ...

    def delete_all(self, name: str) -> int:
        """Delete every device's session for ``name`` ("reset session"); returns how many."""
        ...


class IdentityRepository(Protocol):
    """Trust on first use, per peer account name (``ProtocolAddress.name``)."""

    def get(self, name: str) -> TrustedIdentity | None: ...

    def observe(self, name: str, identity_key: PublicKey, now_ms: int) -> IdentityChange:
        """Check ``identity_key`` against the trusted one; trust it if it is the first.

        CHANGED writes nothing: the client shows the change and calls :meth:`replace` if it
        accepts it (or refuses the message).
        """
        ...

    def replace(self, name: str, identity_key: PublicKey, now_ms: int) -> TrustedIdentity:
        """Trust a new key for ``name`` (verified is cleared, the old key kept as previous)."""
        ...

    def set_verified(self, name: str, verified: bool) -> None:
        """Record that the user compared safety numbers. MissingRecordError if ``name`` is unknown."""
        ...

    def set_changed(self, name: str, changed_ms: int | None) -> None:
        """Set (a time) or clear (None) the "safety number changed" flag, keeping the rest.
        MissingRecordError if ``name`` is unknown."""
        ...

    def delete(self, name: str) -> bool: ...


class SenderKeyRepository(Protocol):
    """Sender-key records per (sender device, distribution id); ours are stored under our address."""

    def get(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> SenderKeyRecord | None: ...

    def put(self, sender: ProtocolAddress, record: SenderKeyRecord) -> None:
        """Stored under ``record.distribution_id``."""
        ...

    def delete(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> bool: ...


class ContactRepository(Protocol):
    """People we talk to; deleting one deletes its mailboxes, memberships, messages and outbox items."""

    def add(
        self,
        *,
        name: str,
        account_id: bytes,
        address: ProtocolAddress,
        now_ms: int,
        display_name: str = "",
    ) -> Contact:
        """StoreConflictError if the local name or the account is already a contact."""
        ...

    def get(self, contact_id: ContactId) -> Contact | None: ...

    def by_name(self, name: str) -> Contact | None: ...

    def by_account(self, account_id: bytes) -> Contact | None: ...

    def by_address_name(self, name: str) -> Contact | None:
        """The contact whose ``address.name`` is ``name`` (a sealed sender's certificate names it)."""
        ...

    def all(self) -> list[Contact]:
        """Every contact, in the order they were added."""
        ...

    def update(self, contact: Contact) -> None:
        """Replace name / display name / address (``blocked`` and ``removed`` stay as stored);
        MissingRecordError, StoreConflictError."""
        ...

    def set_blocked(self, contact_id: ContactId, blocked: bool) -> None:
        """Block or unblock; MissingRecordError if unknown."""
        ...

    def set_removed(self, contact_id: ContactId, removed: bool) -> None:
        """Mark removed (the row stays, with its history) or bring back; MissingRecordError."""
        ...

    def delete(self, contact_id: ContactId) -> bool: ...


class MailboxRepository(Protocol):
    """Mailboxes WE created, one current per contact plus retiring ones after a rotation."""

    def add(self, mailbox: OurMailbox) -> None:
        """StoreConflictError if the id exists; MissingRecordError if the contact does not."""
        ...

    def get(self, mailbox_id: MailboxId) -> OurMailbox | None: ...

    def for_contact(self, contact_id: ContactId) -> list[OurMailbox]:
        """Newest first."""
        ...

    def current(self, contact_id: ContactId) -> OurMailbox | None:
        """The newest one not rotated out."""
        ...

    def all(self) -> list[OurMailbox]:
        """Every mailbox to drain (current and retiring), oldest first."""
        ...

    def update(self, mailbox: OurMailbox) -> None:
        """Replace the rotation fields; MissingRecordError if unknown."""
        ...

    def delete(self, mailbox_id: MailboxId) -> bool: ...


class TheirMailboxRepository(Protocol):
    """Where each contact wants our envelopes: the latest mailbox they announced."""

    def get(self, contact_id: ContactId) -> TheirMailbox | None: ...

    def put(self, mailbox: TheirMailbox) -> None:
        """Replace the contact's mailbox; MissingRecordError if the contact does not exist."""
        ...

    def delete(self, contact_id: ContactId) -> bool: ...


class InviteRepository(Protocol):
    """One-time invites we issued."""

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
    ) -> Invite: ...

    def get(self, invite_id: InviteId) -> Invite | None: ...

    def by_mailbox(self, mailbox_id: MailboxId) -> Invite | None: ...

    def open(self, now_ms: int) -> list[Invite]:
        """Unused and unexpired invites (their mailboxes are drained), oldest first."""
        ...

    def all(self) -> list[Invite]: ...

    def mark_used(self, invite_id: InviteId, now_ms: int) -> None:
        """MissingRecordError if unknown; a second call keeps the first time."""
        ...

    def delete(self, invite_id: InviteId) -> bool: ...


class GroupRepository(Protocol):
    """Groups, their members (contacts) and who holds our current sender key."""

    def create(self, *, group_id: GroupId, name: str, distribution_id: uuid.UUID, created_ms: int) -> Group:
        """StoreConflictError if the group id exists."""
        ...

    def get(self, group_id: GroupId) -> Group | None: ...

    def all(self) -> list[Group]:
        """In creation order."""
        ...

    def rename(self, group_id: GroupId, name: str) -> None: ...

    def delete(self, group_id: GroupId) -> bool:
        """Also deletes the group's members and messages."""
        ...

    def add_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        """False if already a member (their SKDM flag is kept)."""
        ...

    def remove_member(self, group_id: GroupId, contact_id: ContactId) -> bool: ...

    def members(self, group_id: GroupId) -> list[GroupMember]:
        """In the order they joined."""
        ...

    def groups_of(self, contact_id: ContactId) -> list[GroupId]: ...

    def mark_skdm_sent(self, group_id: GroupId, contact_id: ContactId) -> None:
        """MissingRecordError if the contact is not a member."""
        ...

    def set_distribution(self, group_id: GroupId, distribution_id: uuid.UUID) -> None:
        """Re-key: our new distribution id; every member needs the new SKDM again."""
        ...


class MessageRepository(Protocol):
    """The message history and its receipts (both the ones we got and the ones we owe)."""

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
        """StoreConflictError if ``(sender, message_id)`` exists. An INCOMING message owes its
        sender a delivery receipt (see :meth:`pending_receipts`)."""
        ...

    def edit(self, row_id: MessageRowId, text: str, edited_ms: int) -> Message:
        """The message's new text (MissingRecordError if there is no such row)."""
        ...

    def delete_for_everyone(self, row_id: MessageRowId, at_ms: int) -> Message:
        """Keep the row as a placeholder: text, quote, reactions and attachment gone (and, for one
        of ours, its copies in the send log), ``deleted`` set."""
        ...

    def react(self, row_id: MessageRowId, reactor: ContactId | None, emoji: str, sent_ms: int) -> bool:
        """Set ``reactor``'s one reaction ("" removes it), unless one sent later is held; whether
        anything changed."""
        ...

    def expire(self, now_ms: int) -> int:
        """Delete every message whose ``expires_ms`` has come (with what hangs off it, and the
        send log's copies of ours); how many."""
        ...

    def put_attachment(self, row_id: MessageRowId, data: bytes) -> None:
        """Keep what opens the file a message carries (its pointer, key and digest, opaque here)
        beside the row. It goes with the message: deleted with it (expiry, a removed contact or
        group) and by :meth:`delete_for_everyone`. MissingRecordError if there is no such row."""
        ...

    def attachment(self, row_id: MessageRowId) -> bytes | None:
        """What :meth:`put_attachment` kept for the row, or None."""
        ...

    def next_expiry(self) -> int | None:
        """The earliest ``expires_ms`` of any message (None: no message expires)."""
        ...

    def get(self, row_id: MessageRowId) -> Message | None: ...

    def find(self, sender: ContactId | None, message_id: MessageId) -> Message | None:
        """Ours (``sender=None``, e.g. for a receipt) or a contact's message by its id."""
        ...

    def conversation(
        self,
        conversation: Conversation,
        *,
        limit: int = 50,
        before: MessageRowId | None = None,
        after: MessageRowId | None = None,
    ) -> list[Message]:
        """The latest ``limit`` messages (older than ``before`` if given), oldest first; with
        ``after``, the first ``limit`` messages newer than ``after`` (and older than ``before``)."""
        ...

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
        """Up to ``limit`` messages of ``conversation`` that ``query`` matches (every word of it
        begins a word of the message: :func:`sotto.store.search.matches`), between ``after`` and
        ``before`` (both excluded), newest first or oldest first. Messages deleted for everyone
        have no text and match nothing."""
        ...

    def advance(self, row_id: MessageRowId, state: MessageState) -> MessageState:
        """Move the state forward (never back); returns the resulting state."""
        ...

    def add_receipt(self, row_id: MessageRowId, contact_id: ContactId, kind: ReceiptKind, at_ms: int) -> None:
        """A receipt for one of our messages; advances it to DELIVERED/READ. Repeats are ignored."""
        ...

    def receipts(self, row_id: MessageRowId) -> list[Receipt]: ...

    def mark_read(self, row_ids: Iterable[MessageRowId]) -> list[MessageRowId]:
        """Incoming messages the user has now read: READ, and a read receipt is owed.
        Returns the rows that changed."""
        ...

    def pending_receipts(self, limit: int = 1000) -> list[PendingReceipt]:
        """Receipts we owe, oldest first."""
        ...

    def clear_pending_receipts(self, receipts: Sequence[PendingReceipt]) -> None:
        """These receipts are in the outbox now (call in the same transaction as the enqueue)."""
        ...

    def unreported(self, limit: int = 1000) -> list[Message]:
        """Incoming messages not yet reported to the app, oldest first. :meth:`add` marks every
        incoming message so, in the transaction that stores it."""
        ...

    def mark_reported(self, row_ids: Iterable[MessageRowId]) -> int:
        """The app has taken these messages' events; how many were still marked."""
        ...

    def delete(self, row_id: MessageRowId) -> bool: ...


class UnreportedEventRepository(Protocol):
    """Events other than messages, committed with the change they report and kept until the app
    has taken them (deleting their contact or group deletes them)."""

    def add(
        self,
        kind: PendingEventKind,
        contact_id: ContactId,
        *,
        group_id: GroupId | None = None,
        flag: bool = False,
    ) -> PendingEvent:
        """MissingRecordError if the contact or the group does not exist."""
        ...

    def all(self) -> list[PendingEvent]:
        """Oldest first."""
        ...

    def remove(self, event_ids: Iterable[PendingEventId]) -> int:
        """The app has taken these; how many were still kept."""
        ...


class OutboxRepository(Protocol):
    """Envelopes to send, durable across crashes, retried with the same message id."""

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
        """Due immediately. StoreConflictError if ``(mailbox_id, message_id)`` is queued already."""
        ...

    def get(self, item_id: OutboxItemId) -> OutboxItem | None: ...

    def due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        """Items whose next attempt is at or before ``now_ms``, earliest first."""
        ...

    def all(self) -> list[OutboxItem]:
        """Every queued item, in enqueue order."""
        ...

    def count(self) -> int: ...

    def reschedule(self, item_id: OutboxItemId, next_attempt_ms: int) -> OutboxItem:
        """An attempt failed: count it and set the next time. MissingRecordError if gone."""
        ...

    def remove(self, item_id: OutboxItemId) -> bool:
        """The relay confirmed (sent or duplicate): forget it. False if already gone."""
        ...

    def remaining_for(self, message_row: MessageRowId) -> int:
        """Items still queued for a history entry (0: every envelope reached the relay)."""
        ...


class SeenEnvelopeRepository(Protocol):
    """Envelope ids already processed, per mailbox, kept for a bounded number of days.

    Prune with ``prune(today - sotto.store.rules.SEEN_RETENTION_DAYS)``: an id must outlive every
    redelivery the relay may still make (its envelope TTL).
    """

    def add(self, mailbox_id: MailboxId, envelope_id: MessageId, day: int) -> bool:
        """Remember it; False if it was seen already (then drop the envelope, but still ack it)."""
        ...

    def contains(self, mailbox_id: MailboxId, envelope_id: MessageId) -> bool: ...

    def prune(self, before_day: int) -> int:
        """Forget ids recorded on days before ``before_day``; returns how many."""
        ...


class SendLogRepository(Protocol):
    """What we sent each contact 1:1 lately, for resending after a session repair: an entry
    leaves when a delivery receipt names its text, or when it expires (deleting the contact
    deletes its entries)."""

    def add(
        self,
        *,
        contact_id: ContactId,
        envelope_id: MessageId,
        message_id: MessageId | None,
        content: bytes,
        sent_ms: int,
    ) -> SendLogEntry:
        """MissingRecordError if the contact does not exist."""
        ...

    def for_contact(self, contact_id: ContactId) -> list[SendLogEntry]:
        """The contact's entries, oldest first."""
        ...

    def remove_delivered(self, contact_id: ContactId, message_ids: Iterable[MessageId]) -> int:
        """The contact received these texts: forget their entries; how many went."""
        ...

    def expire(self, before_ms: int) -> int:
        """Forget entries sent before ``before_ms``; how many went."""
        ...

    def count(self) -> int: ...


class Transaction(Protocol):
    """One unit of work: every repository, all committed together or not at all."""

    @property
    def account(self) -> AccountRepository: ...

    @property
    def settings(self) -> SettingsRepository: ...

    @property
    def prekeys(self) -> PreKeyRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def identities(self) -> IdentityRepository: ...

    @property
    def sender_keys(self) -> SenderKeyRepository: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def mailboxes(self) -> MailboxRepository: ...

    @property
    def their_mailboxes(self) -> TheirMailboxRepository: ...

    @property
    def invites(self) -> InviteRepository: ...

    @property
    def groups(self) -> GroupRepository: ...

    @property
    def messages(self) -> MessageRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def seen(self) -> SeenEnvelopeRepository: ...

    @property
    def unreported_events(self) -> UnreportedEventRepository: ...

    @property
    def send_log(self) -> SendLogRepository: ...


class Store(Protocol):
    """A client's local store. See the module docstring for the transaction contract."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Open a unit of work: commit on normal exit, roll back (and re-raise) on an exception."""
        ...

    def close(self) -> None:
        """Release the store; idempotent. Open transactions must have ended."""
        ...
