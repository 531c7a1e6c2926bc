"""Who is in a group, who runs it and what it is called: one pure rule every member applies alike.

A member holds a group's state as a *base* (what it knew when it created or joined the group,
at ``base_version``) and the *changes* made since. A change carries a version (one more than the
highest its author had seen: a Lamport clock), its author's account id and what it does. The
state is the base with the changes applied in one total order (by version, then author id, then
the change itself), each checked against the state just before it:

* the creator is the first admin; admins add and remove members and make other admins;
* any member renames the group (name and description) and any member leaves;
* a change refused at its place in the order does nothing.

So the state is a function of the *set* of changes held, whatever order they arrived in: two
members holding the same changes agree, and two concurrent changes (the same version, made by two
members who had not seen each other's) end the same whichever arrives first. When the last admin
leaves, the remaining member with the smallest account id becomes admin, so a group is never left
without one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.wire.limits import ID_LENGTH

MAX_DESCRIPTION_BYTES = 480
"""UTF-8 bytes of a group's description (Signal's limit is 480 characters)."""

MAX_CHANGES = 1_000
"""Changes one member keeps for a group; a group past that is made anew."""

_MAX_NAME_BYTES = 256


class Action(enum.IntEnum):
    ADD = 1
    REMOVE = 2
    ADMIN = 3
    LEAVE = 4
    RENAME = 5


class Refusal(enum.StrEnum):
    """Why a change does nothing at its place in the order."""

    NOT_A_MEMBER = "not_a_member"
    """Its author is not (or no longer) in the group."""
    NOT_AN_ADMIN = "not_an_admin"
    """Adding, removing and making admins is for admins."""
    NOT_IN_GROUP = "target_not_in_group"
    """It removes, or makes admin, someone who is not in the group."""
    STALE = "stale"
    """It is older than the state we joined with (that state includes it or passed it by)."""
    FULL = "full"
    """We hold :data:`MAX_CHANGES` changes for this group already."""


@dataclass(frozen=True, slots=True, order=True)
class Change:
    """One change to a group. ``target``: the account added, removed or made admin (empty for
    LEAVE and RENAME); ``name`` and ``description``: the new ones (RENAME only)."""

    version: int
    author: bytes
    action: Action
    target: bytes = b""
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        check_change(self.version, self.author, self.action, self.target, self.name, self.description)

    def __repr__(self) -> str:
        return f"Change(version={self.version}, author={self.author.hex()[:8]}…, action={self.action.name})"


def check_change(  # noqa: PLR0917
    version: int, author: bytes, action: Action, target: bytes, name: str, description: str
) -> None:
    """ValueError unless the fields make a change (the limits :mod:`sotto.client.content` applies)."""
    if not 0 < version < 2**63:
        raise ValueError("a change's version is positive")
    if len(author) != ID_LENGTH:
        raise ValueError("account ids are 16 bytes")
    targeted = action in (Action.ADD, Action.REMOVE, Action.ADMIN)
    if len(target) != (ID_LENGTH if targeted else 0):
        raise ValueError("ADD, REMOVE and ADMIN name one account; LEAVE and RENAME none")
    if action is not Action.RENAME and (name or description):
        raise ValueError("only a RENAME carries a name and a description")
    if action is Action.RENAME and not name:
        raise ValueError("a group's name is not empty")
    if len(name.encode()) > _MAX_NAME_BYTES or len(description.encode()) > MAX_DESCRIPTION_BYTES:
        raise ValueError("the name or the description is too long")


@dataclass(frozen=True, slots=True)
class Roster:
    """A group's state: its members and admins (account ids), name and description."""

    members: frozenset[bytes]
    admins: frozenset[bytes]
    name: str
    description: str = ""

    def __repr__(self) -> str:
        return f"Roster(members={len(self.members)}, admins={len(self.admins)}, name=<hidden>)"


@dataclass(frozen=True, slots=True)
class Membership:
    """What one member holds of a group: the base it started from and the changes since."""

    base: Roster
    base_version: int = 0
    changes: frozenset[Change] = field(default_factory=frozenset)

    @property
    def version(self) -> int:
        """The highest version seen: a new change gets one more."""
        return max((ch.version for ch in self.changes), default=self.base_version)


def step(roster: Roster, change: Change) -> Roster | Refusal:
    """``roster`` after ``change``, or why the change does nothing there."""
    author = change.author
    if author not in roster.members:
        return Refusal.NOT_A_MEMBER
    match change.action:
        case Action.RENAME:
            return Roster(roster.members, roster.admins, change.name, change.description)
        case Action.LEAVE:
            return _without(roster, author)
    if author not in roster.admins:
        return Refusal.NOT_AN_ADMIN
    if change.action is Action.ADD:
        return Roster(roster.members | {change.target}, roster.admins, roster.name, roster.description)
    if change.target not in roster.members:
        return Refusal.NOT_IN_GROUP
    if change.action is Action.ADMIN:
        return Roster(roster.members, roster.admins | {change.target}, roster.name, roster.description)
    return _without(roster, change.target)


def _without(roster: Roster, account: bytes) -> Roster:
    members = roster.members - {account}
    admins = roster.admins - {account}
    if not admins and members:
        admins = frozenset({min(members)})
    return Roster(members, admins, roster.name, roster.description)


def resolve(membership: Membership) -> tuple[Roster, dict[Change, Refusal]]:
    """The group's state, and the changes that did nothing with why."""
    roster = membership.base
    refused: dict[Change, Refusal] = {}
    for change in sorted(membership.changes):
        after = step(roster, change)
        if isinstance(after, Refusal):
            refused[change] = after
        else:
            roster = after
    return roster, refused


def receive(membership: Membership, change: Change) -> Membership | Refusal:
    """``membership`` holding ``change`` too, or why it is refused (then not kept).

    A change refused at its place in the order is not kept: a member who made it is told so
    by every member's client, and it cannot come back to life when other changes arrive."""
    if change.version <= membership.base_version:
        return Refusal.STALE
    if change in membership.changes:
        return membership
    if len(membership.changes) >= MAX_CHANGES:
        return Refusal.FULL
    held = Membership(membership.base, membership.base_version, membership.changes | {change})
    _, refused = resolve(held)
    return refused.get(change, held)


def propose(
    membership: Membership,
    author: bytes,
    action: Action,
    *,
    target: bytes = b"",
    name: str = "",
    description: str = "",
) -> Change | Refusal:
    """Our next change (ValueError if its fields are malformed), or why it would do nothing."""
    change = Change(membership.version + 1, author, action, target, name, description)
    after = receive(membership, change)
    return after if isinstance(after, Refusal) else change


# --------------------------------------------------------------------------- encoding
def encode_change(change: Change) -> bytes:
    return (
        pb.uint_field(1, change.version)
        + pb.bytes_field(2, change.author)
        + pb.uint_field(3, change.action)
        + (pb.bytes_field(4, change.target) if change.target else b"")
        + (pb.bytes_field(5, change.name.encode()) if change.name else b"")
        + (pb.bytes_field(6, change.description.encode()) if change.description else b"")
    )


def _text(fields: pb.Fields, number: int) -> str:
    value = pb.get_bytes(fields, number, required=False)
    try:
        return "" if value is None else bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"field {number} is not UTF-8") from None


def decode_change(data: bytes) -> Change:
    """DecodeError and nothing else on any input."""
    fields = pb.decode_fields(data)
    version = pb.get_uint(fields, 1, bits=63)
    author = pb.get_bytes(fields, 2)
    action = pb.get_uint(fields, 3, bits=8)
    target = pb.get_bytes(fields, 4, required=False)
    assert version is not None and author is not None and action is not None
    try:
        return Change(
            version,
            bytes(author),
            Action(action),
            b"" if target is None else bytes(target),
            _text(fields, 5),
            _text(fields, 6),
        )
    except ValueError as e:
        raise DecodeError(str(e)) from None


def _ids(ids: frozenset[bytes]) -> bytes:
    return b"".join(sorted(ids))


def _id_set(fields: pb.Fields, number: int) -> frozenset[bytes]:
    value = bytes(pb.get_bytes(fields, number) or b"")
    if len(value) % ID_LENGTH:
        raise DecodeError(f"field {number} must hold ids of {ID_LENGTH} bytes")
    return frozenset(value[i : i + ID_LENGTH] for i in range(0, len(value), ID_LENGTH))


def encode_membership(membership: Membership) -> bytes:
    """What the client store keeps for a group."""
    base = membership.base
    return (
        pb.bytes_field(1, _ids(base.members))
        + pb.bytes_field(2, _ids(base.admins))
        + pb.bytes_field(3, base.name.encode())
        + pb.bytes_field(4, base.description.encode())
        + pb.uint_field(5, membership.base_version)
        + pb.bytes_field(6, b"".join(_framed(encode_change(ch)) for ch in sorted(membership.changes)))
    )


def _framed(data: bytes) -> bytes:
    return pb.encode_varint(len(data)) + data


def _unframed(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length, pos = pb.read_varint(data, pos)
        if length > len(data) - pos:
            raise DecodeError("a change runs past the end")
        out.append(data[pos : pos + length])
        pos += length
    return out


def decode_membership(data: bytes) -> Membership:
    """DecodeError and nothing else on any input."""
    fields = pb.decode_fields(data)
    base = Roster(_id_set(fields, 1), _id_set(fields, 2), _text(fields, 3), _text(fields, 4))
    version = pb.get_uint(fields, 5, bits=63)
    assert version is not None
    changes = frozenset(decode_change(raw) for raw in _unframed(bytes(pb.get_bytes(fields, 6) or b"")))
    return Membership(base, version, changes)
