"""The control endpoint: a running client takes requests from other processes of the same user.

A store is open in one process at a time, so while a long-running client (``sotto listen``) holds
a profile, another command cannot open it; stopping and restarting the client to send would show
on the relay as a gap in the device's traffic (in cadence mode, a tick without its polls and
sends). Instead the running client serves a Unix domain socket in the profile folder
(:data:`SOCKET_NAME`) and another process hands it the request: the client queues the message in
its outbox and sends it on its own schedule (at once in default mode, in its next tick in cadence
mode), then answers what became of it.

Who may ask: only the profile's owner. The socket is made only in a folder owned by the user and
closed to everyone else (no group or other permission bits), with mode 0600, and each side checks
the other's user id (``SO_PEERCRED``, where the system has it). The passphrase is not asked for:
a process of the same user can read the running client's memory anyway.

The format, version :data:`VERSION`: one JSON object per line (UTF-8, at most
:data:`MAX_LINE_BYTES` with its newline), one request and one answer per connection::

    {"v": 1, "op": "status"}
    {"v": 1, "op": "send", "to": NAME, "text": TEXT, "cadence": BOOL}
    {"v": 1, "op": "group_send", "group": NAME, "text": TEXT}

    {"v": 1, "ok": true, "op": "status", "pid": N, "cadence": BOOL, "relay": URL}
    {"v": 1, "ok": true, "op": "send", "outcome": "sent" | "unsent" | "kept" | "queued",
     "name": NAME, "left": N, "relay": URL, "refusal": null | {"status": N, "code": C, "message": M}}
    {"v": 1, "ok": false, "error": REASON, "message": M, "known": null | [NAME, ...]}

A request that is not JSON, too long, of another version or of an unknown shape gets a refusal
(:class:`Reason`) and the connection is closed; the client goes on. Nothing here logs, and no
refusal quotes the request: a text never leaves the socket except into the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sotto.client.sdk import Client
from sotto.errors import (
    ClientError,
    MailboxFullError,
    QuotaExceededError,
    RelayError,
    RelayFullError,
    UnknownContactError,
)
from sotto.store.model import Contact, Group

VERSION = 1
SOCKET_NAME = "listen.sock"
"""The socket's file name inside the profile folder."""
MAX_LINE_BYTES = 256 * 1024
"""The longest request or answer line: a 30,000-byte text in JSON escapes (at most 6 bytes per
byte, for control characters) fits with room to spare."""
MAX_SOCKET_PATH = 107
"""The longest path a Unix domain socket may have (``sun_path`` holds 108 bytes with its NUL)."""
READ_TIMEOUT_S = 10.0
"""How long the server waits for a request's line after the connection opens."""
FLUSH_WAIT_S = 60.0
"""How long the server waits for a send to the relay before answering with what is still queued
(the send goes on; the message stays in the outbox either way)."""
CONNECT_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = FLUSH_WAIT_S + 30.0
"""How long the asking side waits for an answer."""


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
    """No whole request line within :data:`READ_TIMEOUT_S`."""
    NOT_OWNER = "not_owner"
    """The asking process runs as another user."""
    UNKNOWN_NAME = "unknown_name"
    """No contact or group by that name (``known`` lists the names there are)."""
    MODE = "mode"
    """Cadence asked of a client that does not run in cadence mode."""
    FAILED = "failed"
    """The client refused or failed (the message says what, as the SDK's error does)."""


class Outcome(enum.StrEnum):
    """What became of a message handed over."""

    SENT = "sent"
    """The relay took everything queued."""
    UNSENT = "unsent"
    """Queued, and ``left`` envelopes are still waiting (``refusal`` says why, if the relay said)."""
    KEPT = "kept"
    """Queued until the contact answers our contact request."""
    QUEUED = "queued"
    """Queued for the client's next tick (cadence mode)."""


class ControlError(ClientError):
    """The control endpoint cannot be used: the refusal's ``reason`` and a message."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ControlUnsafeError(ControlError):
    """The profile folder or its socket is not private to this user: nothing is served or asked."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.NOT_OWNER, message)


class ListenerGoneError(ControlError):
    """The serving client closed the connection, or did not answer in time, before it answered."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.FAILED, message)


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


Request = AskStatus | SendText | SendGroupText


# ---------------------------------------------------------------------- answers
@dataclass(frozen=True, slots=True)
class Status:
    pid: int
    cadence: bool
    relay: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """The relay's refusal that holds queued envelopes (a full mailbox, relay or quota)."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, error: RelayError) -> Refusal:
        return cls(error.status, error.code, error.message)

    def to_error(self) -> RelayError:
        """The SDK's error for it, as :meth:`Client.last_refusal` would have given it."""
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
    """What became of a message handed over: the outcome, the contact's or group's name as
    stored, how many envelopes are still queued, and the relay's refusal if one holds them."""

    outcome: Outcome
    name: str
    left: int
    relay: str
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    message: str
    known: tuple[str, ...] | None = None
    """With :attr:`Reason.UNKNOWN_NAME`: the names there are (``#name`` for groups)."""


Answer = Status | Handled | Refused


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
            refusal = answer.refusal
            return _line(
                {
                    "ok": True,
                    "op": "send",
                    "outcome": answer.outcome.value,
                    "name": answer.name,
                    "left": answer.left,
                    "relay": answer.relay,
                    "refusal": None
                    if refusal is None
                    else {"status": refusal.status, "code": refusal.code, "message": refusal.message},
                }
            )
        case Refused():
            known = None if answer.known is None else list(answer.known)
            return _line(
                {"ok": False, "error": answer.reason.value, "message": answer.message, "known": known}
            )


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


def _text(value: dict[str, Any], name: str) -> str:
    found: str = _field(value, name, str)
    if not found:
        raise ControlError(Reason.MALFORMED, f"{name!r} is empty")
    return found


def decode_request(line: bytes) -> Request:
    """The request on ``line``; ControlError (malformed, too large, version, unknown op) otherwise."""
    value = _object(line)
    match value.get("op"):
        case "status":
            return AskStatus()
        case "send":
            cadence = value.get("cadence", False)
            if not isinstance(cadence, bool):
                raise ControlError(Reason.MALFORMED, "'cadence' must be true or false")
            return SendText(_text(value, "to"), _text(value, "text"), cadence)
        case "group_send":
            return SendGroupText(_text(value, "group"), _text(value, "text"))
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
        known = value.get("known")
        if known is not None and not (isinstance(known, list) and all(isinstance(n, str) for n in known)):
            raise ControlError(Reason.MALFORMED, "'known' must be a list of names")
        return Refused(reason, _field(value, "message", str), None if known is None else tuple(known))
    if ok is not True:
        raise ControlError(Reason.MALFORMED, "'ok' must be true or false")
    match value.get("op"):
        case "status":
            return Status(
                _field(value, "pid", int), _field(value, "cadence", bool), _field(value, "relay", str)
            )
        case "send":
            try:
                outcome = Outcome(_field(value, "outcome", str))
            except ValueError:
                raise ControlError(Reason.MALFORMED, "an outcome of an unknown kind") from None
            given = value.get("refusal")
            refusal = None
            if given is not None:
                if not isinstance(given, dict):
                    raise ControlError(Reason.MALFORMED, "'refusal' must be an object")
                refusal = Refusal(
                    _field(given, "status", int), _field(given, "code", str), _field(given, "message", str)
                )
            return Handled(
                outcome,
                _field(value, "name", str),
                _field(value, "left", int),
                _field(value, "relay", str),
                refusal,
            )
    raise ControlError(Reason.UNKNOWN_OP, "an answer to an operation this side does not know")


# ---------------------------------------------------------------------- where and who
def socket_path(profile: Path) -> Path:
    return profile / SOCKET_NAME


def check_private(profile: Path) -> None:
    """ControlUnsafeError unless ``profile`` is a folder of this user that no one else may use."""
    try:
        info = os.stat(profile)
    except OSError as error:
        raise ControlUnsafeError(f"cannot look at {profile}: {error.strerror or error}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ControlUnsafeError(f"{profile} is not a folder")
    if info.st_uid != os.getuid():
        raise ControlUnsafeError(f"{profile} belongs to another user")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        raise ControlUnsafeError(
            f"{profile} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"`chmod 700 {profile}` closes it"
        )


def _check_socket(path: Path) -> None:
    """ControlUnsafeError unless ``path`` is a socket of this user that only this user may use."""
    info = os.lstat(path)
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlUnsafeError(f"{path} is not a socket")
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ControlUnsafeError(f"{path} is not private to this user")


def _peer_uid(sock: socket.socket | None) -> int | None:
    """The user id of the process at the other end, where the system tells it (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    size = struct.calcsize("3i")
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, size))
    return int(uid)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    uid = _peer_uid(writer.get_extra_info("socket"))
    return uid is None or uid == os.getuid()


# ---------------------------------------------------------------------- serving
@contextlib.asynccontextmanager
async def serving(client: Client, profile: Path) -> AsyncIterator[Path]:
    """Serve ``client`` on the profile's socket until the block ends (then remove the socket).

    ControlUnsafeError if the folder is not private; ControlError if its path is too long for a
    socket, if another process serves it, or if something else sits where the socket goes. A
    socket left by a client that was killed is replaced.
    """
    check_private(profile)
    path = socket_path(profile)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlError(Reason.FAILED, f"the path {path} is too long for a local socket")
    await _clear_stale(path)
    handler = _Handler(client)
    server = await asyncio.start_unix_server(handler.connection, path=str(path), limit=MAX_LINE_BYTES)
    try:
        os.chmod(path, 0o600)  # the folder is closed to others: no one could reach it before this
        made = os.lstat(path).st_ino
        yield path
    finally:
        server.close()
        with contextlib.suppress(OSError):
            if os.lstat(path).st_ino == made:
                path.unlink()
        await handler.close()


async def _clear_stale(path: Path) -> None:
    """Remove a socket no process serves any more; refuse if one does, or if it is not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(Reason.FAILED, f"{path} is in the way of the control socket: move it away")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), CONNECT_TIMEOUT_S)
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: its process is gone
        return
    except (OSError, TimeoutError) as error:
        raise ControlError(Reason.FAILED, f"cannot tell whether {path} is in use: {error}") from None
    writer.close()
    raise ControlError(Reason.FAILED, f"another process serves {path}")


class _Handler:
    """One request per connection, answered; nothing raised escapes into the serving client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._background: set[asyncio.Task[int]] = set()
        self._connections: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        for task in list(self._connections):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*self._connections, *self._background, return_exceptions=True), 5.0
            )

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            answer = await self._answer_to(reader, writer)
            writer.write(encode_answer(answer))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except Exception:  # noqa: S110 (a broken connection is the asker's loss, never the client's)
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT_S)

    async def _answer_to(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Answer:
        if not _same_user(writer):
            return Refused(Reason.NOT_OWNER, "this client serves its own user only")
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            return Refused(Reason.TOO_LARGE, f"a request holds at most {MAX_LINE_BYTES} bytes")
        except asyncio.IncompleteReadError as error:
            if len(error.partial) > MAX_LINE_BYTES:
                return Refused(Reason.TOO_LARGE, f"a request holds at most {MAX_LINE_BYTES} bytes")
            return Refused(Reason.MALFORMED, "a request is one line ending in a newline")
        except TimeoutError:
            return Refused(Reason.TIMEOUT, f"no request within {READ_TIMEOUT_S:g} s")
        try:
            request = decode_request(line)
        except ControlError as error:
            return Refused(error.reason, str(error))
        try:
            return await self._handle(request)
        except UnknownContactError as error:
            return Refused(Reason.UNKNOWN_NAME, str(error))
        except ClientError as error:
            return Refused(Reason.FAILED, str(error))
        except Exception as error:
            # The type only: an unexpected error's text could quote what it was handed.
            return Refused(Reason.FAILED, f"the client failed ({type(error).__name__})")

    async def _handle(self, request: Request) -> Answer:
        client = self._client
        match request:
            case AskStatus():
                return Status(os.getpid(), client.cadence, client.server_url)
            case SendText():
                contact = self._contact(request.to)
                if contact is None:
                    return Refused(
                        Reason.UNKNOWN_NAME,
                        "no such contact",
                        tuple(c.name for c in client.contacts()),
                    )
                if request.cadence and not client.cadence:
                    return Refused(
                        Reason.MODE, "the running client is not in cadence mode: it would send this at once"
                    )
                ready = client.is_ready(contact)
                await client.send_text(contact, request.text)
                if client.cadence:
                    return self._handled(Outcome.QUEUED, contact.name)
                if not ready:
                    return self._handled(Outcome.KEPT, contact.name)
                return await self._flushed(contact.name)
            case SendGroupText():
                group = self._group(request.group)
                if group is None:
                    return Refused(
                        Reason.UNKNOWN_NAME, "no such group", tuple(f"#{g.name}" for g in client.groups())
                    )
                await client.send_group_text(group, request.text)
                if client.cadence:
                    return self._handled(Outcome.QUEUED, group.name)
                return await self._flushed(group.name)

    def _contact(self, name: str) -> Contact | None:
        try:
            return self._client.contact(name)
        except UnknownContactError:
            return None

    def _group(self, name: str) -> Group | None:
        groups = self._client.groups()
        found = next((g for g in groups if g.name == name), None)
        if found is None and name.startswith("#"):
            found = next((g for g in groups if g.name == name[1:]), None)
        return found

    def _handled(self, outcome: Outcome, name: str, refusal: RelayError | None = None) -> Handled:
        client = self._client
        held = None if refusal is None else Refusal.of(refusal)
        return Handled(outcome, name, client.pending_outbox(), client.server_url, held)

    async def _flushed(self, name: str) -> Handled:
        """Default mode: everything queued tried now, as ``sotto send`` does on its own; past
        :data:`FLUSH_WAIT_S` the answer says what is still queued and the attempt goes on."""
        flush = asyncio.create_task(self._client.flush())
        self._background.add(flush)
        flush.add_done_callback(self._background.discard)
        done, _ = await asyncio.wait({flush}, timeout=FLUSH_WAIT_S)
        left = (
            flush.result() if flush in done and not flush.cancelled() and flush.exception() is None else None
        )
        refusal = self._client.last_refusal
        if left is None:
            left = self._client.pending_outbox()
        outcome = Outcome.SENT if left == 0 else Outcome.UNSENT
        return Handled(
            outcome, name, left, self._client.server_url, None if refusal is None else Refusal.of(refusal)
        )


# ---------------------------------------------------------------------- asking
async def ask(profile: Path, request: Request, *, timeout: float = ANSWER_TIMEOUT_S) -> Answer | None:
    """Hand ``request`` to the client serving ``profile``: its answer, or None if none serves
    it (no socket, or one left by a client that is gone).

    ControlUnsafeError if the folder or the socket is not private to this user;
    ListenerGoneError if the client went away or took longer than ``timeout`` before answering;
    ControlError if its answer cannot be read.
    """
    path = socket_path(profile)
    try:
        os.lstat(path)
    except FileNotFoundError:
        return None
    check_private(profile)
    _check_socket(path)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_LINE_BYTES), CONNECT_TIMEOUT_S
        )
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except (OSError, TimeoutError) as error:
        raise ListenerGoneError(f"cannot connect to {path}: {error}") from None
    try:
        if not _same_user(writer):
            raise ControlUnsafeError(f"{path} is served by another user")
        with contextlib.suppress(ConnectionError):  # refused before it was read whole: read why
            writer.write(encode_request(request))
            await asyncio.wait_for(writer.drain(), timeout)
        try:
            async with asyncio.timeout(timeout):
                line = await reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            raise ListenerGoneError("the running client closed the connection before it answered") from None
        except TimeoutError:
            raise ListenerGoneError(f"the running client did not answer within {timeout:g} s") from None
        except asyncio.LimitOverrunError:
            raise ControlError(Reason.TOO_LARGE, "the answer is longer than an answer may be") from None
        return decode_answer(line)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), CONNECT_TIMEOUT_S)
