"""The control socket's format, version :data:`VERSION`: typed requests and answers, one JSON
object per line (UTF-8, at most :data:`MAX_LINE_BYTES` with its newline). Pure: bytes in, values
out; :func:`decode_request` and :func:`decode_answer` raise :class:`ControlError` and nothing else,
and never quote the line (it may hold a text).

::

    {"v": 1, "op": "status"}
    {"v": 1, "op": "send", "to": NAME, "text": TEXT, "cadence": BOOL}
    {"v": 1, "op": "group_send", "group": NAME, "text": TEXT}
    {"v": 1, "op": "group_create", "group": NAME, "members": [NAME, ...]}
    {"v": 1, "op": "group_add", "group": NAME, "member": NAME}
    {"v": 1, "op": "block", "to": NAME, "blocked": BOOL}
    {"v": 1, "op": "remove", "to": NAME, "forget_history": BOOL}
    {"v": 1, "op": "rotate"}
    {"v": 1, "op": "invite"}
    {"v": 1, "op": "accept", "link": LINK, "name": NAME}

    {"v": 1, "ok": true, "op": "status", "pid": N, "cadence": BOOL, "relay": URL}
    {"v": 1, "ok": true, "op": "handled", "outcome": OUTCOME, "name": NAME, "left": N, "relay": URL,
     "refusal": null | RELAY_REFUSAL, "members": [NAME, ...], "count": N}
    {"v": 1, "ok": true, "op": "invited", "link": LINK, "qr_text": TEXT, "expires_ms": N}
    {"v": 1, "ok": false, "error": REASON, "message": M, "known": null | [NAME, ...],
     "what": null | "contact" | "group", "name": null | NAME, "kind": null | ERROR,
     "refusal": null | RELAY_REFUSAL}

    RELAY_REFUSAL = {"status": N, "code": C, "message": M}
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from sotto.errors import (
    ClientError,
    DecodeError,
    InviteError,
    MailboxFullError,
    QuotaExceededError,
    RelayError,
    RelayFullError,
    RelayUnavailableError,
    SottoError,
    StoreConflictError,
    StoreError,
    UnknownContactError,
)

VERSION = 1
MAX_LINE_BYTES = 256 * 1024
"""The longest request or answer line: a 30,000-byte text in JSON escapes (at most 6 bytes per
byte, for control characters) fits with room to spare."""
MAX_MEMBERS = 1000
"""The most names one ``group_create`` may list."""


class Reason(enum.StrEnum):
    """Why a request was refused (the ``error`` of a refusal)."""

    MALFORMED = "malformed"
    """Not a JSON object with the fields its ``op`` needs."""
    TOO_LARGE = "too_large"
    """Longer than :data:`MAX_LINE_BYTES`."""
    VERSION = "version"
    """Another version of this format."""
    UNKNOWN_OP = "unknown_op"
    TIMEOUT = "timeout"
    """No whole request line in time."""
    NOT_OWNER = "not_owner"
    """The asking process runs as another user."""
    UNKNOWN_NAME = "unknown_name"
    """No contact or group by that name (``what``, and ``known`` lists the names there are)."""
    CONFLICT = "conflict"
    """A group by that name exists already."""
    MODE = "mode"
    """Cadence asked of a client that does not run in cadence mode."""
    FAILED = "failed"
    """The client refused or failed: ``kind`` names the SDK's error, ``refusal`` the relay's."""


class Outcome(enum.StrEnum):
    """What became of a request that was carried out."""

    SENT = "sent"
    """The relay took everything queued."""
    UNSENT = "unsent"
    """``left`` envelopes are still queued (``refusal`` says why, if the relay said)."""
    KEPT = "kept"
    """Queued until the contact answers our contact request."""
    WAITING = "waiting"
    """Queued until the contact answers our request for a new session (a profile restored
    from a backup holds none: :meth:`~sotto.client.sdk.Client.waits_for_session`). For a group
    message, ``members`` are those it waits for and ``count`` how many others it went to."""
    QUEUED = "queued"
    """Queued for the client's next tick (cadence mode)."""
    DONE = "done"
    """Done, with nothing to send."""
    UNCHANGED = "unchanged"
    """Nothing to do: the member was in the group already, the contact removed already."""


class ControlError(ClientError):
    """The control endpoint cannot be used, or a line is not of this format: ``reason`` says why."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class AskStatus:
    """Is a client serving, in which mode, on which relay."""


@dataclass(frozen=True, slots=True, repr=False)
class SendText:
    """Queue ``text`` for the contact named ``to``; ``cadence``: only in a tick (refused otherwise)."""

    to: str
    text: str
    cadence: bool = False

    def __repr__(self) -> str:
        return f"SendText(to=<name>, text=<{len(self.text.encode())} bytes>, cadence={self.cadence})"


@dataclass(frozen=True, slots=True, repr=False)
class SendGroupText:
    """Queue ``text`` for every member of the group named ``group`` (``#name`` works too)."""

    group: str
    text: str

    def __repr__(self) -> str:
        return f"SendGroupText(group=<name>, text=<{len(self.text.encode())} bytes>)"


@dataclass(frozen=True, slots=True)
class CreateGroup:
    group: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddToGroup:
    group: str
    member: str


@dataclass(frozen=True, slots=True)
class SetBlocked:
    to: str
    blocked: bool


@dataclass(frozen=True, slots=True)
class RemoveContact:
    to: str
    forget_history: bool = False


@dataclass(frozen=True, slots=True)
class RotateMailboxes:
    pass


@dataclass(frozen=True, slots=True)
class CreateInvite:
    pass


@dataclass(frozen=True, slots=True, repr=False)
class AcceptInvite:
    """Use the invite ``link`` (a secret until used), calling its maker ``name``."""

    link: str
    name: str

    def __repr__(self) -> str:
        return "AcceptInvite(<link>, name=<name>)"


Request = (
    AskStatus
    | SendText
    | SendGroupText
    | CreateGroup
    | AddToGroup
    | SetBlocked
    | RemoveContact
    | RotateMailboxes
    | CreateInvite
    | AcceptInvite
)


# ---------------------------------------------------------------------- answers
@dataclass(frozen=True, slots=True)
class Status:
    pid: int
    cadence: bool
    relay: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A relay's refusal: its HTTP status, stable code and message."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, error: RelayError) -> Refusal:
        return cls(error.status, error.code, error.message)

    def to_error(self) -> RelayError:
        """The SDK's error for it, as the client raised or kept it."""
        match self.code:
            case "mailbox_full":
                return MailboxFullError(self.message)
            case "relay_full":
                return RelayFullError(self.message)
            case "quota_exceeded":
                return QuotaExceededError(self.message)
        return RelayError(self.status, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Handled:
    """A request carried out: the outcome, the contact's or group's name as stored, how many
    envelopes are still queued, the relay's refusal if one holds them, the members concerned
    (``group_create``, ``group_add``) and a count (mailboxes rotated)."""

    outcome: Outcome
    name: str
    left: int
    relay: str
    refusal: Refusal | None = None
    members: tuple[str, ...] = ()
    count: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class Invited:
    """A new invite (its link is a secret until used)."""

    link: str
    qr_text: str
    expires_ms: int

    def __repr__(self) -> str:
        return f"Invited(expires_ms={self.expires_ms}, <secret>)"


ERROR_KINDS: dict[str, type[SottoError]] = {
    kind.__name__: kind
    for kind in (
        ClientError,
        InviteError,
        UnknownContactError,
        RelayUnavailableError,
        StoreError,
        StoreConflictError,
        DecodeError,
    )
}
"""The SDK errors a refusal may name, to be raised again on the asking side as they were."""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    message: str
    known: tuple[str, ...] | None = None
    """With :attr:`Reason.UNKNOWN_NAME`: the names there are (``#name`` for groups)."""
    what: str | None = None
    """With :attr:`Reason.UNKNOWN_NAME`: ``contact`` or ``group``."""
    name: str | None = None
    """With :attr:`Reason.UNKNOWN_NAME`: the name as the request gave it."""
    kind: str | None = None
    """With :attr:`Reason.FAILED`: the SDK error's name (one of :data:`ERROR_KINDS`)."""
    refusal: Refusal | None = None
    """With :attr:`Reason.FAILED`: the relay's refusal that made the request fail."""

    @classmethod
    def of(cls, error: SottoError) -> Refused:
        """The refusal for an SDK error (its message carries no key or text, by the errors' rule)."""
        if isinstance(error, RelayError):
            return cls(Reason.FAILED, error.message, refusal=Refusal.of(error))
        kind = next((k for k in type(error).__mro__ if ERROR_KINDS.get(k.__name__) is k), ClientError)
        return cls(Reason.FAILED, str(error), kind=kind.__name__)

    def to_error(self) -> SottoError:
        """The SDK's error this refusal stands for (a ClientError if it names none)."""
        if self.refusal is not None:
            return self.refusal.to_error()
        kind = ERROR_KINDS.get(self.kind or "", ClientError)
        return kind(self.message)


Answer = Status | Handled | Invited | Refused


# ---------------------------------------------------------------------- encoding
def _line(fields: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, **fields}, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def encode_request(request: Request) -> bytes:
    match request:
        case AskStatus():
            return _line({"op": "status"})
        case SendText():
            return _line({"op": "send", "to": request.to, "text": request.text, "cadence": request.cadence})
        case SendGroupText():
            return _line({"op": "group_send", "group": request.group, "text": request.text})
        case CreateGroup():
            return _line({"op": "group_create", "group": request.group, "members": list(request.members)})
        case AddToGroup():
            return _line({"op": "group_add", "group": request.group, "member": request.member})
        case SetBlocked():
            return _line({"op": "block", "to": request.to, "blocked": request.blocked})
        case RemoveContact():
            return _line({"op": "remove", "to": request.to, "forget_history": request.forget_history})
        case RotateMailboxes():
            return _line({"op": "rotate"})
        case CreateInvite():
            return _line({"op": "invite"})
        case AcceptInvite():
            return _line({"op": "accept", "link": request.link, "name": request.name})


def _refusal_fields(refusal: Refusal | None) -> dict[str, Any] | None:
    if refusal is None:
        return None
    return {"status": refusal.status, "code": refusal.code, "message": refusal.message}


def encode_answer(answer: Answer) -> bytes:
    match answer:
        case Status():
            return _line(
                {
                    "ok": True,
                    "op": "status",
                    "pid": answer.pid,
                    "cadence": answer.cadence,
                    "relay": answer.relay,
                }
            )
        case Handled():
            return _line(
                {
                    "ok": True,
                    "op": "handled",
                    "outcome": answer.outcome.value,
                    "name": answer.name,
                    "left": answer.left,
                    "relay": answer.relay,
                    "refusal": _refusal_fields(answer.refusal),
                    "members": list(answer.members),
                    "count": answer.count,
                }
            )
        case Invited():
            return _line(
                {
                    "ok": True,
                    "op": "invited",
                    "link": answer.link,
                    "qr_text": answer.qr_text,
                    "expires_ms": answer.expires_ms,
                }
            )
        case Refused():
            return _line(
                {
                    "ok": False,
                    "error": answer.reason.value,
                    "message": answer.message,
                    "known": None if answer.known is None else list(answer.known),
                    "what": answer.what,
                    "name": answer.name,
                    "kind": answer.kind,
                    "refusal": _refusal_fields(answer.refusal),
                }
            )


# ---------------------------------------------------------------------- decoding
def _object(line: bytes) -> dict[str, Any]:
    """The line's JSON object, its version checked; ControlError (never quoting the line)."""
    if len(line) > MAX_LINE_BYTES:
        raise ControlError(Reason.TOO_LARGE, f"a line holds at most {MAX_LINE_BYTES} bytes")
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ControlError(Reason.MALFORMED, "not a line of UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise ControlError(Reason.MALFORMED, "not a JSON object")
    version = value.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ControlError(Reason.VERSION, f"this side speaks version {VERSION} only")
    return value


def _field(value: dict[str, Any], name: str, kind: type[Any]) -> Any:
    found = value.get(name)
    if not isinstance(found, kind) or (kind is int and isinstance(found, bool)):
        raise ControlError(Reason.MALFORMED, f"{name!r} must be a {kind.__name__}")
    return found


def _flag(value: dict[str, Any], name: str) -> bool:
    found = value.get(name, False)
    if not isinstance(found, bool):
        raise ControlError(Reason.MALFORMED, f"{name!r} must be true or false")
    return found


def _text(value: dict[str, Any], name: str) -> str:
    found: str = _field(value, name, str)
    if not found:
        raise ControlError(Reason.MALFORMED, f"{name!r} is empty")
    return found


def _names(value: dict[str, Any], name: str, *, most: int) -> tuple[str, ...]:
    found = value.get(name)
    if (
        not isinstance(found, list)
        or not 0 < len(found) <= most
        or not all(isinstance(n, str) and n for n in found)
    ):
        raise ControlError(Reason.MALFORMED, f"{name!r} must list 1 to {most} names")
    return tuple(found)


def _optional_names(value: dict[str, Any], name: str) -> tuple[str, ...] | None:
    found = value.get(name)
    if found is None:
        return None
    if not isinstance(found, list) or not all(isinstance(n, str) for n in found):
        raise ControlError(Reason.MALFORMED, f"{name!r} must be a list of names")
    return tuple(found)


def _optional_text(value: dict[str, Any], name: str) -> str | None:
    found = value.get(name)
    if found is not None and not isinstance(found, str):
        raise ControlError(Reason.MALFORMED, f"{name!r} must be a string")
    return found


def _relay_refusal(value: dict[str, Any]) -> Refusal | None:
    given = value.get("refusal")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise ControlError(Reason.MALFORMED, "'refusal' must be an object")
    return Refusal(_field(given, "status", int), _field(given, "code", str), _field(given, "message", str))


def decode_request(line: bytes) -> Request:
    """The request on ``line``; ControlError (malformed, too large, version, unknown op) otherwise."""
    value = _object(line)
    match value.get("op"):
        case "status":
            return AskStatus()
        case "send":
            return SendText(_text(value, "to"), _text(value, "text"), _flag(value, "cadence"))
        case "group_send":
            return SendGroupText(_text(value, "group"), _text(value, "text"))
        case "group_create":
            return CreateGroup(_text(value, "group"), _names(value, "members", most=MAX_MEMBERS))
        case "group_add":
            return AddToGroup(_text(value, "group"), _text(value, "member"))
        case "block":
            return SetBlocked(_text(value, "to"), _flag(value, "blocked"))
        case "remove":
            return RemoveContact(_text(value, "to"), _flag(value, "forget_history"))
        case "rotate":
            return RotateMailboxes()
        case "invite":
            return CreateInvite()
        case "accept":
            return AcceptInvite(_text(value, "link"), _text(value, "name"))
        case str():
            raise ControlError(Reason.UNKNOWN_OP, "an operation this side does not know")
    raise ControlError(Reason.MALFORMED, "'op' must be a string")


def decode_answer(line: bytes) -> Answer:
    """The answer on ``line``; ControlError (malformed, too large, version) otherwise."""
    value = _object(line)
    ok = value.get("ok")
    if ok is False:
        try:
            reason = Reason(_field(value, "error", str))
        except ValueError:
            raise ControlError(Reason.MALFORMED, "a refusal of an unknown kind") from None
        return Refused(
            reason,
            _field(value, "message", str),
            _optional_names(value, "known"),
            _optional_text(value, "what"),
            _optional_text(value, "name"),
            _optional_text(value, "kind"),
            _relay_refusal(value),
        )
    if ok is not True:
        raise ControlError(Reason.MALFORMED, "'ok' must be true or false")
    match value.get("op"):
        case "status":
            return Status(
                _field(value, "pid", int), _field(value, "cadence", bool), _field(value, "relay", str)
            )
        case "handled":
            try:
                outcome = Outcome(_field(value, "outcome", str))
            except ValueError:
                raise ControlError(Reason.MALFORMED, "an outcome of an unknown kind") from None
            return Handled(
                outcome,
                _field(value, "name", str),
                _field(value, "left", int),
                _field(value, "relay", str),
                _relay_refusal(value),
                _optional_names(value, "members") or (),
                _field(value, "count", int),
            )
        case "invited":
            return Invited(
                _field(value, "link", str), _field(value, "qr_text", str), _field(value, "expires_ms", int)
            )
    raise ControlError(Reason.UNKNOWN_OP, "an answer to an operation this side does not know")
