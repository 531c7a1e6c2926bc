"""What people say to each other, inside the encryption: the end-to-end content format.

Every 1:1 or group ciphertext carries one content message, padded with
:func:`sotto.wire.padding.pad` before encryption so its length says no more than its bucket::

    content = 0x01 (format version) ‖ kind (1 byte) ‖ protobuf fields

The fields use proto2's wire format (:mod:`sotto.protocol.protobuf`), so an older reader skips
fields it does not know. Ids are 16 bytes; a list of ids travels as one length-delimited field
of concatenated ids. Receipts and typing are content too: the relay cannot tell them from text.

A text names the message it replies to (a :class:`Quote`: its id and its author's account id)
and the conversation's disappearing-message timer when it was written; edits, deletions for
everyone and reactions name their message by the same id, which both sides store. Each travels
1:1 on the session or in a group under the sender key, like a text.

An attachment message carries an :class:`~sotto.client.attachment_pointer.AttachmentPointer`
(the blob's id on the relay, its 64-byte key, digest, size and name), a caption, and the URL of
the relay that holds the blob: everything needed to fetch and open it, and only inside the
encryption.

Contract: :func:`decode` raises :class:`~sotto.errors.DecodeError` and nothing else, on any input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit

from sotto.client import group_membership as gm
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.wire.limits import DELIVERY_TOKEN_LENGTH, ID_LENGTH

FORMAT_VERSION = 1

MAX_TEXT_BYTES = 30_000
"""UTF-8 bytes of one text: with sealing and a PreKey message around it, the envelope still fits
the largest padding bucket (64 KiB) with room to spare."""

MAX_NAME_BYTES = 256
"""A display name or group name, UTF-8."""

MAX_URL_BYTES = 512

MAX_IDS = 1_000
"""Message ids per receipt and members per group."""

INVITE_PROOF_LENGTH = 32

MAX_REACTION_BYTES = 32
"""UTF-8 bytes of one reaction: an emoji, with skin tone and joiners ("" removes one's reaction)."""

MAX_TIMER_S = 4 * 7 * 86_400
"""The longest disappearing-message timer: four weeks (Signal's longest preset)."""

MAX_CAPTION_BYTES = 4_096
"""UTF-8 bytes of an attachment's caption."""


class Kind(enum.IntEnum):
    TEXT = 1
    DELIVERY_RECEIPT = 2
    READ_RECEIPT = 3
    TYPING = 4
    CONTACT_REQUEST = 5
    CONTACT_ACCEPTED = 6
    MAILBOX_ROTATED = 7
    GROUP_UPDATE = 8
    GROUP_TEXT = 9
    COVER = 10
    EDIT = 11
    DELETE_FOR_EVERYONE = 12
    REACTION = 13
    TIMER = 14
    ATTACHMENT = 15
    GROUP_CHANGE = 16


@dataclass(frozen=True, slots=True, repr=False)
class MailboxAddress:
    """Where to send someone: their relay, one of their mailboxes, and its delivery token."""

    server_url: str
    mailbox_id: bytes
    delivery_token: bytes

    def __post_init__(self) -> None:
        _check_url(self.server_url, ValueError)
        if len(self.mailbox_id) != ID_LENGTH or len(self.delivery_token) != DELIVERY_TOKEN_LENGTH:
            raise ValueError("mailbox id is 16 bytes and the delivery token 32")

    def encode(self) -> bytes:
        return (
            pb.bytes_field(1, self.server_url.encode())
            + pb.bytes_field(2, self.mailbox_id)
            + pb.bytes_field(3, self.delivery_token)
        )

    @classmethod
    def decode(cls, data: bytes) -> MailboxAddress:
        fields = pb.decode_fields(data)
        url = _text(fields, 1, MAX_URL_BYTES)
        _check_url(url, DecodeError)
        return cls(url, _exact(fields, 2, ID_LENGTH), _exact(fields, 3, DELIVERY_TOKEN_LENGTH))

    def __repr__(self) -> str:
        return "MailboxAddress(<hidden>)"


@dataclass(frozen=True, slots=True)
class Quote:
    """The message a text replies to: its id and the account id of whoever wrote it."""

    message_id: bytes
    author: bytes


@dataclass(frozen=True, slots=True, repr=False)
class Text:
    """A 1:1 text message. ``message_id`` is what receipts, edits and reactions name.

    ``quote``: the message this one replies to. ``expire_s``: the conversation's disappearing
    timer as the sender knew it (0: off), so both keep the text as long."""

    message_id: bytes
    sent_ms: int
    text: str
    quote: Quote | None = None
    expire_s: int = 0

    def __repr__(self) -> str:
        return f"Text(message_id={self.message_id.hex()[:8]}…, sent_ms={self.sent_ms}, text=<hidden>)"


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """ "These messages of yours reached me": sent batched and delayed, never one per message."""

    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """ "I have read these messages of yours": sent when the user marks them read."""

    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Typing:
    """Typing started or stopped, in the 1:1 conversation or in a group."""

    started: bool
    group_id: bytes | None = None


@dataclass(frozen=True, slots=True, repr=False)
class ContactRequest:
    """The first message through an invite: who I am and where you can reach me.

    ``invite_proof`` is an HMAC under a key only the invite's secret yields, over my account id
    and identity key: the relay, which sees the invite's tokens in transit, cannot forge it.
    """

    display_name: str
    reply_to: MailboxAddress
    invite_proof: bytes

    def __repr__(self) -> str:
        return "ContactRequest(<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class ContactAccepted:
    """The inviter's answer: its name and the mailbox it made for the new contact."""

    display_name: str
    reply_to: MailboxAddress

    def __repr__(self) -> str:
        return "ContactAccepted(<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class MailboxRotated:
    """Send to this mailbox from now on; the old one is drained for a while, then deleted."""

    mailbox: MailboxAddress

    def __repr__(self) -> str:
        return "MailboxRotated(<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class GroupUpdate:
    """A group's metadata as the sender knows it, and optionally the sender's sender key (SKDM).

    ``members`` are account ids, the sender's included.
    """

    group_id: bytes
    name: str
    members: tuple[bytes, ...]
    distribution: bytes | None = None
    """A serialized SenderKeyDistributionMessage, if this update hands over the sender's key."""
    admins: tuple[bytes, ...] = ()
    """Account ids of the group's admins (none: an update from before groups had admins)."""
    description: str = ""
    version: int = 0
    """The membership version this state is at (:mod:`sotto.client.group_membership`)."""

    def __repr__(self) -> str:
        return (
            f"GroupUpdate(group_id={self.group_id.hex()[:8]}…, members={len(self.members)}, "
            f"distribution={'<set>' if self.distribution else None}, name=<hidden>)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class GroupChange:
    """One change to a group's members, admins, name or description, sent 1:1 to each member
    (the removed one too). Its author is the sealed sender; ``version`` and the other fields as
    in :class:`sotto.client.group_membership.Change`."""

    group_id: bytes
    version: int
    action: gm.Action
    target: bytes = b""
    name: str = ""
    description: str = ""

    def __repr__(self) -> str:
        return (
            f"GroupChange(group_id={self.group_id.hex()[:8]}…, version={self.version}, "
            f"action={self.action.name})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class GroupText:
    """A group text. Which group is the sender-key message's distribution id, not a field here.
    ``quote`` and ``expire_s`` as in :class:`Text`."""

    message_id: bytes
    sent_ms: int
    text: str
    quote: Quote | None = None
    expire_s: int = 0

    def __repr__(self) -> str:
        return f"GroupText(message_id={self.message_id.hex()[:8]}…, sent_ms={self.sent_ms}, text=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class Edit:
    """The sender's new text for one of its own messages (``message_id``), written at ``sent_ms``."""

    message_id: bytes
    sent_ms: int
    text: str

    def __repr__(self) -> str:
        return f"Edit(message_id={self.message_id.hex()[:8]}…, sent_ms={self.sent_ms}, text=<hidden>)"


@dataclass(frozen=True, slots=True)
class DeleteForEveryone:
    """The sender takes back one of its own messages: its text goes from every copy."""

    message_id: bytes
    sent_ms: int


@dataclass(frozen=True, slots=True, repr=False)
class Reaction:
    """The sender's reaction to a message (``author``'s, by account id); "" takes it back.
    One per person per message: a later one replaces an earlier (by ``sent_ms``)."""

    message_id: bytes
    author: bytes
    emoji: str
    sent_ms: int

    def __repr__(self) -> str:
        return f"Reaction(message_id={self.message_id.hex()[:8]}…, sent_ms={self.sent_ms}, emoji=<hidden>)"


@dataclass(frozen=True, slots=True)
class Timer:
    """The sender set the conversation's disappearing-message timer (0: off). ``message_id``
    names the notice both sides keep in their history."""

    message_id: bytes
    sent_ms: int
    seconds: int


@dataclass(frozen=True, slots=True, repr=False)
class Attachment:
    """A file sent 1:1: where its encrypted blob is and how to open it (``pointer``), a caption,
    and the relay holding the blob (``server_url``; None: the sender's mailbox relay).
    ``expire_s`` as in :class:`Text`. The pointer's key and the caption stay out of the repr."""

    message_id: bytes
    sent_ms: int
    pointer: AttachmentPointer
    caption: str = ""
    server_url: str | None = None
    expire_s: int = 0

    def __repr__(self) -> str:
        return (
            f"Attachment(message_id={self.message_id.hex()[:8]}…, sent_ms={self.sent_ms}, "
            f"size={self.pointer.size}, caption=<hidden>)"
        )


@dataclass(frozen=True, slots=True)
class Cover:
    """Cadence mode's filler: sent when a tick has nothing for a contact; decrypted and dropped.

    Empty, so it pads to the same bucket as a short text and looks like one on the wire.
    """


Content = (
    Text
    | DeliveryReceipt
    | ReadReceipt
    | Typing
    | ContactRequest
    | ContactAccepted
    | MailboxRotated
    | GroupUpdate
    | GroupText
    | Cover
    | Edit
    | DeleteForEveryone
    | Reaction
    | Timer
    | Attachment
    | GroupChange
)


# --------------------------------------------------------------------------- encoding
def _version(version: int) -> int:
    if not 0 <= version < 2**63:
        raise ValueError("a membership version is 0 to 2^63 - 1")
    return version


def _check_url(url: str, error: type[Exception]) -> None:
    try:
        parts = urlsplit(url) if len(url.encode()) <= MAX_URL_BYTES else None
    except ValueError:  # a malformed IPv6 literal, for one
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise error("server URL must be http(s)://host[:port][/path]")


def _ids(ids: tuple[bytes, ...]) -> bytes:
    if len(ids) > MAX_IDS or any(len(i) != ID_LENGTH for i in ids):
        raise ValueError(f"at most {MAX_IDS} ids of {ID_LENGTH} bytes")
    return b"".join(ids)


def _utf8(value: str, limit: int) -> bytes:
    data = value.encode("utf-8")
    if len(data) > limit:
        raise ValueError(f"at most {limit} UTF-8 bytes")
    return data


def _id(value: bytes, what: str = "message") -> bytes:
    if len(value) != ID_LENGTH:
        raise ValueError(f"{what} ids are {ID_LENGTH} bytes")
    return value


def _timer(seconds: int) -> int:
    if not 0 <= seconds <= MAX_TIMER_S:
        raise ValueError(f"a timer is 0 to {MAX_TIMER_S} seconds")
    return seconds


def _quote_field(quote: Quote) -> bytes:
    return pb.bytes_field(4, _id(quote.message_id) + _id(quote.author, "account"))


def _body(content: Content) -> tuple[Kind, bytes]:
    match content:
        case Text(message_id, sent_ms, text, quote, expire_s) | GroupText(
            message_id, sent_ms, text, quote, expire_s
        ):
            kind = Kind.TEXT if isinstance(content, Text) else Kind.GROUP_TEXT
            return kind, (
                pb.bytes_field(1, _id(message_id))
                + pb.uint_field(2, sent_ms)
                + pb.bytes_field(3, _utf8(text, MAX_TEXT_BYTES))
                + (
                    b""
                    if quote is None
                    else pb.bytes_field(4, _id(quote.message_id) + _id(quote.author, "account"))
                )
                + (pb.uint_field(5, _timer(expire_s)) if expire_s else b"")
            )
        case Edit(message_id, sent_ms, text):
            return Kind.EDIT, (
                pb.bytes_field(1, _id(message_id))
                + pb.uint_field(2, sent_ms)
                + pb.bytes_field(3, _utf8(text, MAX_TEXT_BYTES))
            )
        case DeleteForEveryone(message_id, sent_ms):
            return Kind.DELETE_FOR_EVERYONE, pb.bytes_field(1, _id(message_id)) + pb.uint_field(2, sent_ms)
        case Reaction(message_id, author, emoji, sent_ms):
            return Kind.REACTION, (
                pb.bytes_field(1, _id(message_id))
                + pb.bytes_field(2, _id(author, "account"))
                + pb.bytes_field(3, _reaction(emoji, ValueError).encode())
                + pb.uint_field(4, sent_ms)
            )
        case Timer(message_id, sent_ms, seconds):
            return Kind.TIMER, (
                pb.bytes_field(1, _id(message_id))
                + pb.uint_field(2, sent_ms)
                + pb.uint_field(3, _timer(seconds))
            )
        case Attachment(message_id, sent_ms, pointer, caption, server_url, expire_s):
            if server_url is not None:
                _check_url(server_url, ValueError)
            return Kind.ATTACHMENT, (
                pb.bytes_field(1, _id(message_id))
                + pb.uint_field(2, sent_ms)
                + pb.bytes_field(3, pointer.encode())
                + (pb.bytes_field(4, _utf8(caption, MAX_CAPTION_BYTES)) if caption else b"")
                + (pb.uint_field(5, _timer(expire_s)) if expire_s else b"")
                + (pb.bytes_field(6, server_url.encode()) if server_url is not None else b"")
            )
        case DeliveryReceipt(ids):
            return Kind.DELIVERY_RECEIPT, pb.bytes_field(1, _ids(ids))
        case ReadReceipt(ids):
            return Kind.READ_RECEIPT, pb.bytes_field(1, _ids(ids))
        case Typing(started, group_id):
            if group_id is not None and len(group_id) != ID_LENGTH:
                raise ValueError("group ids are 16 bytes")
            return Kind.TYPING, pb.uint_field(1, int(started)) + (
                pb.bytes_field(2, group_id) if group_id is not None else b""
            )
        case ContactRequest(name, reply_to, proof):
            if len(proof) != INVITE_PROOF_LENGTH:
                raise ValueError("invite proof is 32 bytes")
            return Kind.CONTACT_REQUEST, (
                pb.bytes_field(1, _utf8(name, MAX_NAME_BYTES))
                + pb.bytes_field(2, reply_to.encode())
                + pb.bytes_field(3, proof)
            )
        case ContactAccepted(name, reply_to):
            return Kind.CONTACT_ACCEPTED, (
                pb.bytes_field(1, _utf8(name, MAX_NAME_BYTES)) + pb.bytes_field(2, reply_to.encode())
            )
        case MailboxRotated(mailbox):
            return Kind.MAILBOX_ROTATED, pb.bytes_field(1, mailbox.encode())
        case Cover():
            return Kind.COVER, b""
        case GroupUpdate(group_id, name, members, distribution, admins, description, version):
            if len(group_id) != ID_LENGTH:
                raise ValueError("group ids are 16 bytes")
            return Kind.GROUP_UPDATE, (
                pb.bytes_field(1, group_id)
                + pb.bytes_field(2, _utf8(name, MAX_NAME_BYTES))
                + pb.bytes_field(3, _ids(members))
                + (pb.bytes_field(4, distribution) if distribution is not None else b"")
                + (pb.bytes_field(5, _ids(admins)) if admins else b"")
                + (pb.bytes_field(6, _utf8(description, gm.MAX_DESCRIPTION_BYTES)) if description else b"")
                + (pb.uint_field(7, _version(version)) if version else b"")
            )
        case GroupChange(group_id, version, action, target, name, description):
            if len(group_id) != ID_LENGTH:
                raise ValueError("group ids are 16 bytes")
            gm.check_change(version, bytes(ID_LENGTH), action, target, name, description)
            return Kind.GROUP_CHANGE, (
                pb.bytes_field(1, group_id)
                + pb.uint_field(2, version)
                + pb.uint_field(3, action)
                + (pb.bytes_field(4, target) if target else b"")
                + (pb.bytes_field(5, name.encode()) if name else b"")
                + (pb.bytes_field(6, description.encode()) if description else b"")
            )
    raise TypeError(f"not a content message: {type(content).__name__}")


def encode(content: Content) -> bytes:
    """The unpadded content bytes (ValueError if a field is out of its limits)."""
    kind, body = _body(content)
    return bytes((FORMAT_VERSION, kind)) + body


# --------------------------------------------------------------------------- decoding
def _bytes(fields: pb.Fields, number: int) -> bytes:
    value = pb.get_bytes(fields, number)
    assert value is not None  # required: get_bytes raised DecodeError otherwise
    return bytes(value)


def _exact(fields: pb.Fields, number: int, length: int) -> bytes:
    value = _bytes(fields, number)
    if len(value) != length:
        raise DecodeError(f"field {number} must be {length} bytes")
    return value


def _text(fields: pb.Fields, number: int, limit: int) -> str:
    value = _bytes(fields, number)
    if len(value) > limit:
        raise DecodeError(f"field {number} is longer than {limit} bytes")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"field {number} is not UTF-8") from None


def _id_list(fields: pb.Fields, number: int) -> tuple[bytes, ...]:
    value = _bytes(fields, number)
    if len(value) % ID_LENGTH or len(value) > MAX_IDS * ID_LENGTH:
        raise DecodeError(f"field {number} must hold at most {MAX_IDS} ids of {ID_LENGTH} bytes")
    return tuple(value[i : i + ID_LENGTH] for i in range(0, len(value), ID_LENGTH))


def _uint(fields: pb.Fields, number: int, bits: int = 64) -> int:
    value = pb.get_uint(fields, number, bits=bits)
    assert value is not None
    return value


def _reaction(emoji: str, error: type[Exception]) -> str:
    """An emoji as a reaction holds it: at most MAX_REACTION_BYTES, no spaces or control characters."""
    if len(emoji.encode("utf-8")) > MAX_REACTION_BYTES or any(ch.isspace() or ord(ch) < 32 for ch in emoji):
        raise error(f"a reaction is one emoji of at most {MAX_REACTION_BYTES} UTF-8 bytes")
    return emoji


def _bounded_timer(fields: pb.Fields, number: int, *, required: bool) -> int:
    value = pb.get_uint(fields, number, required=required)
    if value is None:
        return 0
    if value > MAX_TIMER_S:
        raise DecodeError(f"a timer is at most {MAX_TIMER_S} seconds")
    return value


def _quote(fields: pb.Fields, number: int) -> Quote | None:
    value = pb.get_bytes(fields, number, required=False)
    if value is None:
        return None
    if len(value) != 2 * ID_LENGTH:
        raise DecodeError(f"field {number} must be a message id and an account id")
    return Quote(bytes(value[:ID_LENGTH]), bytes(value[ID_LENGTH:]))


def _optional_text(fields: pb.Fields, number: int, limit: int) -> str | None:
    if pb.get_bytes(fields, number, required=False) is None:
        return None
    return _text(fields, number, limit)


def _attachment(fields: pb.Fields) -> Attachment:
    server_url = _optional_text(fields, 6, MAX_URL_BYTES)
    if server_url is not None:
        _check_url(server_url, DecodeError)
    return Attachment(
        _exact(fields, 1, ID_LENGTH),
        _uint(fields, 2),
        AttachmentPointer.decode(_bytes(fields, 3)),
        _optional_text(fields, 4, MAX_CAPTION_BYTES) or "",
        server_url,
        _bounded_timer(fields, 5, required=False),
    )


def decode(data: bytes) -> Content:
    """Parse unpadded content bytes; raises DecodeError and nothing else."""
    data = bytes(data)
    if len(data) < 2:
        raise DecodeError("content too short")
    if data[0] != FORMAT_VERSION:
        raise DecodeError(f"unknown content format {data[0]}")
    try:
        kind = Kind(data[1])
    except ValueError:
        raise DecodeError(f"unknown content kind {data[1]}") from None
    fields = pb.decode_fields(data[2:])
    if kind in (Kind.TEXT, Kind.GROUP_TEXT):
        cls = Text if kind is Kind.TEXT else GroupText
        return cls(
            _exact(fields, 1, ID_LENGTH),
            _uint(fields, 2),
            _text(fields, 3, MAX_TEXT_BYTES),
            _quote(fields, 4),
            _bounded_timer(fields, 5, required=False),
        )
    if kind is Kind.EDIT:
        return Edit(_exact(fields, 1, ID_LENGTH), _uint(fields, 2), _text(fields, 3, MAX_TEXT_BYTES))
    if kind is Kind.DELETE_FOR_EVERYONE:
        return DeleteForEveryone(_exact(fields, 1, ID_LENGTH), _uint(fields, 2))
    if kind is Kind.REACTION:
        return Reaction(
            _exact(fields, 1, ID_LENGTH),
            _exact(fields, 2, ID_LENGTH),
            _reaction(_text(fields, 3, MAX_REACTION_BYTES), DecodeError),
            _uint(fields, 4),
        )
    if kind is Kind.TIMER:
        return Timer(_exact(fields, 1, ID_LENGTH), _uint(fields, 2), _bounded_timer(fields, 3, required=True))
    if kind is Kind.ATTACHMENT:
        return _attachment(fields)
    if kind is Kind.DELIVERY_RECEIPT:
        return DeliveryReceipt(_id_list(fields, 1))
    if kind is Kind.READ_RECEIPT:
        return ReadReceipt(_id_list(fields, 1))
    if kind is Kind.TYPING:
        started = _uint(fields, 1, bits=1)
        group_id = pb.get_bytes(fields, 2, required=False)
        if group_id is not None and len(group_id) != ID_LENGTH:
            raise DecodeError("group ids are 16 bytes")
        return Typing(bool(started), None if group_id is None else bytes(group_id))
    if kind is Kind.CONTACT_REQUEST:
        return ContactRequest(
            _text(fields, 1, MAX_NAME_BYTES),
            MailboxAddress.decode(_bytes(fields, 2)),
            _exact(fields, 3, INVITE_PROOF_LENGTH),
        )
    if kind is Kind.CONTACT_ACCEPTED:
        return ContactAccepted(_text(fields, 1, MAX_NAME_BYTES), MailboxAddress.decode(_bytes(fields, 2)))
    if kind is Kind.MAILBOX_ROTATED:
        return MailboxRotated(MailboxAddress.decode(_bytes(fields, 1)))
    if kind is Kind.COVER:
        return Cover()
    if kind is Kind.GROUP_CHANGE:
        return _group_change(fields)
    distribution = pb.get_bytes(fields, 4, required=False)
    admins = _id_list(fields, 5) if pb.get_bytes(fields, 5, required=False) is not None else ()
    version = pb.get_uint(fields, 7, required=False, bits=63)
    return GroupUpdate(
        _exact(fields, 1, ID_LENGTH),
        _text(fields, 2, MAX_NAME_BYTES),
        _id_list(fields, 3),
        None if distribution is None else bytes(distribution),
        admins,
        _optional_text(fields, 6, gm.MAX_DESCRIPTION_BYTES) or "",
        version or 0,
    )


def _group_change(fields: pb.Fields) -> GroupChange:
    group_id = _exact(fields, 1, ID_LENGTH)
    version = _uint(fields, 2, bits=63)
    try:
        action = gm.Action(_uint(fields, 3, bits=8))
    except ValueError:
        raise DecodeError("unknown group change") from None
    target = pb.get_bytes(fields, 4, required=False)
    name = _optional_text(fields, 5, MAX_NAME_BYTES) or ""
    description = _optional_text(fields, 6, gm.MAX_DESCRIPTION_BYTES) or ""
    target_id = b"" if target is None else bytes(target)
    try:
        gm.check_change(version, bytes(ID_LENGTH), action, target_id, name, description)
    except ValueError as e:
        raise DecodeError(str(e)) from None
    return GroupChange(group_id, version, action, target_id, name, description)
