"""What happened, as the client reports it: frozen values, named in the past tense.

:meth:`sotto.client.sdk.Client.listen` yields these. Contacts and groups are the store's records
(:class:`~sotto.store.model.Contact`, :class:`~sotto.store.model.Group`), whose reprs hide names;
texts are hidden in reprs too, so logging an event never logs what someone wrote.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sotto.store.model import Contact, Group, MessageId


@dataclass(frozen=True, slots=True, repr=False)
class MessageReceived:
    """A 1:1 text arrived and is stored."""

    contact: Contact
    message_id: MessageId
    text: str
    sent_ms: int

    def __repr__(self) -> str:
        return f"MessageReceived(contact_id={self.contact.contact_id}, sent_ms={self.sent_ms}, text=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class AttachmentReceived(MessageReceived):
    """A 1:1 file arrived: its message is stored (``text`` is the caption) and its blob waits on
    the relay until :meth:`~sotto.client.sdk.Client.save_attachment` fetches it. A reader that
    knows only :class:`MessageReceived` sees the caption."""

    file_name: str
    """The name the sender gave ("" if none); a bare name, never a path."""
    size: int
    content_type: str = ""

    def __repr__(self) -> str:
        return (
            f"AttachmentReceived(contact_id={self.contact.contact_id}, sent_ms={self.sent_ms}, "
            f"size={self.size}, file_name=<hidden>, text=<hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class GroupMessageReceived:
    """A group text arrived and is stored."""

    group: Group
    sender: Contact
    message_id: MessageId
    text: str
    sent_ms: int

    def __repr__(self) -> str:
        return (
            f"GroupMessageReceived(group={self.group.group_id.hex()[:8]}…, "
            f"sender_id={self.sender.contact_id}, sent_ms={self.sent_ms}, text=<hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class GroupAttachmentReceived(GroupMessageReceived):
    """A group file arrived: like :class:`AttachmentReceived`, in a group (``text`` is the
    caption). A reader that knows only :class:`GroupMessageReceived` sees the caption."""

    file_name: str
    """The name the sender gave ("" if none); a bare name, never a path."""
    size: int
    content_type: str = ""

    def __repr__(self) -> str:
        return (
            f"GroupAttachmentReceived(group={self.group.group_id.hex()[:8]}…, "
            f"sender_id={self.sender.contact_id}, sent_ms={self.sent_ms}, size={self.size}, "
            "file_name=<hidden>, text=<hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class MessageEdited:
    """The contact edited one of their messages (in ``group`` if set); ``text`` is the new one."""

    contact: Contact
    message_id: MessageId
    text: str
    group: Group | None = None

    def __repr__(self) -> str:
        return f"MessageEdited(contact_id={self.contact.contact_id}, text=<hidden>)"


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """The contact deleted one of their messages for everyone: its text is gone here too."""

    contact: Contact
    message_id: MessageId
    group: Group | None = None


@dataclass(frozen=True, slots=True, repr=False)
class ReactionChanged:
    """The contact reacted to a message (``emoji`` "" : took their reaction back)."""

    contact: Contact
    message_id: MessageId
    emoji: str
    group: Group | None = None

    def __repr__(self) -> str:
        return f"ReactionChanged(contact_id={self.contact.contact_id}, emoji=<hidden>)"


@dataclass(frozen=True, slots=True)
class TimerChanged:
    """The contact set the conversation's disappearing-message timer (0: off)."""

    contact: Contact
    seconds: int
    group: Group | None = None


@dataclass(frozen=True, slots=True)
class MessageChangeIgnored:
    """An edit, deletion or reaction from the contact was not applied (not their message, too
    late, or a message we do not hold). No reason is kept: it would tell an app no more."""

    contact: Contact
    group: Group | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReceiptReceived:
    """The contact's device received these messages of ours (batched and delayed on purpose)."""

    contact: Contact
    message_ids: tuple[MessageId, ...]


@dataclass(frozen=True, slots=True)
class ReadReceiptReceived:
    """The contact read these messages of ours."""

    contact: Contact
    message_ids: tuple[MessageId, ...]


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """The contact started or stopped typing (in a group when ``group`` is set)."""

    contact: Contact
    started: bool
    group: Group | None = None


@dataclass(frozen=True, slots=True)
class ContactAdded:
    """Someone used one of our invites: they are a contact now, and we answered with a mailbox."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class ContactAccepted:
    """The person whose invite we accepted answered: messages to them can flow now."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class ContactMailboxChanged:
    """The contact rotated the mailbox we send to."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class IdentityChanged:
    """A message claimed to come from the contact under another identity key; it was refused.

    Compare safety numbers out of band before trusting anything from this contact again.
    """

    contact: Contact


@dataclass(frozen=True, slots=True)
class SessionRepaired:
    """The encrypted session with the contact was re-established by itself.

    A message could not be decrypted (one side's profile was restored from an older copy, for
    one); the two clients started a new session, and what was sent lately went again. With
    ``requested`` we asked for it (their message did not decrypt here); without, they did.
    """

    contact: Contact
    requested: bool


@dataclass(frozen=True, slots=True)
class GroupUpdated:
    """A group was created for us, renamed, or gained members (``joined``: we were just added)."""

    group: Group
    sender: Contact
    joined: bool


@dataclass(frozen=True, slots=True)
class MessageSent:
    """The relay accepted every envelope of one of our messages."""

    message_id: MessageId


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The relay refused an envelope for good (unknown mailbox or token); it left the outbox.

    ``message_id`` is the text's id, or the envelope's own id for one that carried no text (a
    contact request to an invite that was used meanwhile, a receipt). ``contact``, for a
    ``not_found``, is the contact whose mailbox the relay no longer knows, when it was theirs:
    they deleted their account, or the mailbox expired while they were away (the relay gives one
    answer for both, on purpose).
    """

    message_id: MessageId
    reason: str
    contact: Contact | None = None


@dataclass(frozen=True, slots=True)
class SendHeld:
    """The relay has no room for one of our messages now (a 507: the contact's mailbox is full,
    the relay is short of disk, or our account is over its quota); it stays in the outbox and
    goes out by itself later, retried with a back-off that starts at half a minute.

    Reported once per message, at its first refusal. ``reason`` is the relay's code
    (``mailbox_full``, ``relay_full`` or ``quota_exceeded``).
    """

    message_id: MessageId
    reason: str


class RejectReason(enum.StrEnum):
    """Why an envelope was dropped. Each is permanent: the envelope is acknowledged and gone."""

    MALFORMED = "malformed"
    """Not padded, not a sealed message, or the content inside does not parse."""
    UNSEALABLE = "unsealable"
    """The sealed layer does not decrypt for us, or its certificate does not check out."""
    SELF_SEND = "self_send"
    """It claims to come from ourselves."""
    UNKNOWN_MAILBOX = "unknown_mailbox"
    """It arrived in a mailbox we no longer hold."""
    WRONG_SENDER = "wrong_sender"
    """The sender is not the contact this mailbox belongs to (or not a group member)."""
    UNTRUSTED_IDENTITY = "untrusted_identity"
    """The sender's identity key is not the one we trust for them."""
    UNDECRYPTABLE = "undecryptable"
    """The session or sender key cannot decrypt it (missing, evicted or tampered)."""
    INVITE_REFUSED = "invite_refused"
    """A contact request through a used, expired or forged invite."""
    UNEXPECTED = "unexpected"
    """A well-formed message that has no business in this mailbox or session."""


@dataclass(frozen=True, slots=True)
class EnvelopeRejected:
    """An envelope that can never be processed was acknowledged and dropped.

    ``detail`` names the error type only (never bytes of the envelope).
    """

    mailbox_id: bytes
    envelope_id: bytes
    reason: RejectReason
    detail: str

    def __repr__(self) -> str:
        return (
            f"EnvelopeRejected(mailbox={self.mailbox_id.hex()[:8]}…, envelope={self.envelope_id.hex()[:8]}…, "
            f"reason={self.reason.value}, detail={self.detail!r})"
        )


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """The delivery connection came up or went down (the client reconnects by itself)."""

    connected: bool


Event = (
    MessageReceived
    | AttachmentReceived
    | GroupMessageReceived
    | GroupAttachmentReceived
    | MessageEdited
    | MessageDeleted
    | ReactionChanged
    | TimerChanged
    | MessageChangeIgnored
    | DeliveryReceiptReceived
    | ReadReceiptReceived
    | TypingChanged
    | ContactAdded
    | ContactAccepted
    | ContactMailboxChanged
    | IdentityChanged
    | SessionRepaired
    | GroupUpdated
    | MessageSent
    | SendFailed
    | SendHeld
    | EnvelopeRejected
    | ConnectionChanged
)
