"""The records the client keeps, as immutable values every backend stores and hands back.

Every record is a frozen dataclass: a backend returns a value, the caller builds a changed copy
(``dataclasses.replace``) and puts it back inside a transaction. Records that hold a secret (a
key, a token, a text, a name) have a deliberate ``repr`` that shows ids and counters only, so a
log line or a traceback never carries one.

Times are Unix milliseconds passed in by the caller (the store never reads the clock), except
the dedupe table's coarse day numbers.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import NewType

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.protocol.address import ProtocolAddress

ContactId = NewType("ContactId", int)
"""The store's local number for a contact (never sent anywhere)."""

InviteId = NewType("InviteId", int)
"""The store's local number for an invite we issued."""

OutboxItemId = NewType("OutboxItemId", int)
"""The store's local number for a queued envelope."""

MessageRowId = NewType("MessageRowId", int)
"""The store's local number for a message in the history."""

GroupId = NewType("GroupId", bytes)
"""A group's 16-byte random id, shared with its members."""

MailboxId = NewType("MailboxId", bytes)
"""A relay mailbox id (16 random bytes)."""

MessageId = NewType("MessageId", bytes)
"""A client-chosen 16-byte id: the envelope id on the relay and the message id in receipts."""


def _hidden(value: object) -> str:
    return "<hidden>" if value else "<empty>"


@dataclass(frozen=True, slots=True, repr=False)
class Account:
    """Our own account on one relay, and the device this store belongs to."""

    account_id: bytes
    """16 random bytes, chosen by the relay at registration."""
    device_id: int
    device_secret: bytes
    """The 32-byte password of this device (the relay keeps only its SHA-256)."""
    identity: KeyPair
    registration_id: int
    server_url: str
    display_name: str
    created_ms: int
    address: ProtocolAddress
    """The name the protocol layer knows us by (the client derives it from ``account_id``)."""

    def __repr__(self) -> str:
        return (
            f"Account(device_id={self.device_id}, registration_id={self.registration_id}, "
            f"identity={self.identity.public!r}, account_id=<hidden>, device_secret=<hidden>)"
        )


class PreKeyKind(enum.StrEnum):
    """The three kinds of prekey we publish; each has its own never-reused id sequence."""

    ONE_TIME = "one_time"
    """One-time EC prekeys (deleted on use)."""
    SIGNED = "signed"
    """Signed EC prekeys (medium term, rotated)."""
    KYBER = "kyber"
    """Signed Kyber prekeys: one-time ones and the last-resort one share this id sequence."""


class IdentityChange(enum.Enum):
    """What :meth:`~sotto.store.interfaces.IdentityRepository.observe` found (trust on first use)."""

    NEW = "new"
    """First key seen for this peer: it is now trusted."""
    UNCHANGED = "unchanged"
    """The key we already trust."""
    CHANGED = "changed"
    """A different key from the trusted one: nothing was written, the client decides."""


@dataclass(frozen=True, slots=True)
class TrustedIdentity:
    """The identity key we trust for one peer account, and since when."""

    name: str
    """The peer's protocol name (``ProtocolAddress.name``): every device of an account shares it."""
    identity_key: PublicKey
    first_seen_ms: int
    """When this key became trusted (first contact, or an accepted change)."""
    verified: bool = False
    """The user compared safety numbers for this key."""
    previous_key: PublicKey | None = None
    """The key this one replaced, if any (to show "safety number changed")."""
    changed_ms: int | None = None
    """When a message last came for this peer under another identity key (it was refused): the
    "safety number changed" flag, kept until the user verifies the contact again or acknowledges
    the change (see :meth:`~sotto.store.interfaces.IdentityRepository.set_changed`)."""


@dataclass(frozen=True, slots=True, repr=False)
class Contact:
    """Someone we talk to. Identity trust lives in the identity repository under ``address.name``."""

    contact_id: ContactId
    name: str
    """The local name the user gave them (unique in this store)."""
    account_id: bytes
    address: ProtocolAddress
    created_ms: int
    display_name: str = ""
    """The name they announced for themselves (may differ from ``name``)."""
    blocked: bool = False
    """Their envelopes are dropped unread: no events, no receipts (set with ``set_blocked``)."""
    removed: bool = False
    """The user removed them: no session, no mailboxes; the row stays for the history it names
    (set with ``set_removed``; a new invite from or to the account clears it)."""

    def __repr__(self) -> str:
        return (
            f"Contact(contact_id={self.contact_id}, device_id={self.address.device_id}, "
            f"blocked={self.blocked}, removed={self.removed}, name=<hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class OurMailbox:
    """A mailbox we created for one contact: we drain it, they send to it with the token."""

    mailbox_id: MailboxId
    contact_id: ContactId
    server_url: str
    signing_seed: bytes
    """The 32-byte Ed25519 seed of the mailbox key (drain auth)."""
    delivery_token: bytes
    """The 32-byte token we handed to the contact."""
    created_ms: int
    rotated_ms: int | None = None
    """When a newer mailbox for this contact replaced it (None while it is the current one)."""
    retiring_until_ms: int | None = None
    """Keep draining until then, then delete it on the relay and here."""

    def __repr__(self) -> str:
        return (
            f"OurMailbox(contact_id={self.contact_id}, created_ms={self.created_ms}, "
            f"rotated_ms={self.rotated_ms}, retiring_until_ms={self.retiring_until_ms}, <secrets hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class TheirMailbox:
    """Where a contact wants our messages: their mailbox on their relay, and its delivery token."""

    contact_id: ContactId
    server_url: str
    mailbox_id: MailboxId
    delivery_token: bytes
    received_ms: int
    """When they announced it (a newer announcement replaces it)."""

    def __repr__(self) -> str:
        return f"TheirMailbox(contact_id={self.contact_id}, received_ms={self.received_ms}, <secrets hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class Invite:
    """A one-time invite we issued, with everything derived from its secret."""

    invite_id: InviteId
    secret: bytes
    mailbox_id: MailboxId
    signing_seed: bytes
    delivery_token: bytes
    access_token: bytes
    created_ms: int
    expires_ms: int
    used_ms: int | None = None
    """When a contact request arrived through it (then it is retired)."""

    def __repr__(self) -> str:
        return (
            f"Invite(invite_id={self.invite_id}, expires_ms={self.expires_ms}, used_ms={self.used_ms}, "
            "<secrets hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Group:
    """A group we are in. Members are contacts; ``distribution_id`` names OUR sender key in it."""

    group_id: GroupId
    name: str
    distribution_id: uuid.UUID
    created_ms: int

    def __repr__(self) -> str:
        return f"Group(group_id={self.group_id.hex()[:8]}…, name=<hidden>)"


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A member of a group, and whether they hold our current sender key."""

    contact_id: ContactId
    skdm_sent: bool
    """Our SenderKeyDistributionMessage for the group's current distribution id reached the outbox."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A 1:1 conversation (a contact) or a group conversation; exactly one of the two is set."""

    contact_id: ContactId | None = None
    group_id: GroupId | None = None

    def __post_init__(self) -> None:
        if (self.contact_id is None) == (self.group_id is None):
            raise ValueError("a conversation is either a contact or a group")

    @classmethod
    def direct(cls, contact_id: ContactId) -> Conversation:
        return cls(contact_id=contact_id)

    @classmethod
    def group(cls, group_id: GroupId) -> Conversation:
        return cls(group_id=group_id)


class Direction(enum.StrEnum):
    INCOMING = "in"
    OUTGOING = "out"


class MessageState(enum.IntEnum):
    """A message's progress; it only moves forward (a late "delivered" never undoes "read").

    Outgoing: QUEUED → SENT → DELIVERED → READ. Incoming: RECEIVED → READ.
    """

    QUEUED = 0
    """Outgoing, in the outbox."""
    SENT = 1
    """Outgoing, the relay accepted every envelope."""
    RECEIVED = 2
    """Incoming, not read yet."""
    DELIVERED = 3
    """Outgoing: a delivery receipt arrived (from any member, for a group)."""
    READ = 4
    """Outgoing: a read receipt arrived; incoming: the user read it."""


class ReceiptKind(enum.StrEnum):
    DELIVERED = "delivered"
    READ = "read"


@dataclass(frozen=True, slots=True)
class Quote:
    """The message a message replies to: its id and its author's account id (ours or a contact's)."""

    message_id: MessageId
    author: bytes


@dataclass(frozen=True, slots=True, repr=False)
class Reaction:
    """One person's reaction to a message (``reactor`` None: ours); one per person."""

    reactor: ContactId | None
    emoji: str
    sent_ms: int

    def __repr__(self) -> str:
        return f"Reaction(reactor={self.reactor}, sent_ms={self.sent_ms}, emoji=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """One message in the history, either direction.

    ``text`` is the latest version (``edited_ms`` set once edited); a message deleted for
    everyone keeps its row with an empty text and ``deleted``. A row with ``timer_s`` set is
    a notice, not a text: someone set the conversation's disappearing timer to that many
    seconds (0: off). ``expires_ms``: when the store deletes the row (None: kept)."""

    row_id: MessageRowId
    message_id: MessageId
    conversation: Conversation
    direction: Direction
    sender: ContactId | None
    """The contact who wrote it; None for our own messages."""
    text: str
    sent_ms: int
    """The sender's timestamp (from inside the encryption for incoming ones)."""
    stored_ms: int
    """When this store recorded it."""
    state: MessageState
    quote: Quote | None = None
    edited_ms: int | None = None
    deleted: bool = False
    reactions: tuple[Reaction, ...] = ()
    expires_ms: int | None = None
    timer_s: int | None = None

    def __repr__(self) -> str:
        return (
            f"Message(row_id={self.row_id}, direction={self.direction.value}, state={self.state.name}, "
            f"sent_ms={self.sent_ms}, text=<hidden>)"
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """A contact confirmed delivery or reading of one of our messages."""

    row_id: MessageRowId
    contact_id: ContactId
    kind: ReceiptKind
    at_ms: int


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    """A receipt WE owe a contact for an incoming message, not yet handed to the outbox."""

    contact_id: ContactId
    kind: ReceiptKind
    message_id: MessageId
    row_id: MessageRowId


PendingEventId = NewType("PendingEventId", int)
"""The store's local number for an event not yet reported to the app."""


class PendingEventKind(enum.StrEnum):
    """The events other than received messages that are kept until the app has taken them."""

    CONTACT_ADDED = "contact_added"
    CONTACT_ACCEPTED = "contact_accepted"
    CONTACT_MAILBOX_CHANGED = "contact_mailbox_changed"
    IDENTITY_CHANGED = "identity_changed"
    GROUP_UPDATED = "group_updated"


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event committed with the change it reports, kept until the app has taken it.

    It names its records by local number; the client rebuilds the event from them.
    """

    event_id: PendingEventId
    kind: PendingEventKind
    contact_id: ContactId
    group_id: GroupId | None = None
    flag: bool = False
    """A kind's yes/no detail (GROUP_UPDATED: we were just added)."""


@dataclass(frozen=True, slots=True, repr=False)
class OutboxItem:
    """An envelope waiting for the relay to confirm it (``sent`` or ``duplicate``)."""

    item_id: OutboxItemId
    server_url: str
    mailbox_id: MailboxId
    delivery_token: bytes
    message_id: MessageId
    """The envelope id: the same on every retry, so the relay and the receiver dedupe."""
    payload: bytes
    """The padded sealed-sender blob, exactly as it goes on the wire."""
    created_ms: int
    attempts: int = 0
    next_attempt_ms: int = 0
    message_row: MessageRowId | None = None
    """The history entry this envelope carries (to mark it sent), if any."""

    def __repr__(self) -> str:
        return (
            f"OutboxItem(item_id={self.item_id}, attempts={self.attempts}, "
            f"next_attempt_ms={self.next_attempt_ms}, payload={len(self.payload)} bytes, <secrets hidden>)"
        )


SendLogEntryId = NewType("SendLogEntryId", int)
"""A send log entry's local number."""


@dataclass(frozen=True, slots=True, repr=False)
class SendLogEntry:
    """Content we sent one contact 1:1, kept a while so it can be sent again on a new session
    after the contact's device could not decrypt it (see :mod:`sotto.client.flows.repair`)."""

    entry_id: SendLogEntryId
    contact_id: ContactId
    envelope_id: MessageId
    """The envelope it first went out in (what a retry receipt names)."""
    message_id: MessageId | None
    """The text's id, which delivery receipts name; None for content that gets no receipt."""
    content: bytes
    """The encoded content message, unpadded: plaintext, so the repr hides it."""
    sent_ms: int

    def __repr__(self) -> str:
        return (
            f"SendLogEntry(entry_id={self.entry_id}, contact_id={self.contact_id}, "
            f"sent_ms={self.sent_ms}, content=<hidden>)"
        )
