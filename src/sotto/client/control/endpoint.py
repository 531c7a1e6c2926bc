"""The control endpoint: a running client takes requests from other processes of the same user.

A store is open in one process at a time, so while a long-running client (``sotto listen``) holds
a profile, another command cannot open it; stopping and restarting the client to send would show
on the relay as a gap in the device's traffic (in cadence mode, ticks without its polls and
sends). Instead the running client serves a Unix domain socket in the profile folder
(:data:`SOCKET_NAME`) and another process hands it the request (:mod:`.messages`): the client
carries it out (:mod:`.handler`), queueing what it sends in its outbox and sending it on its own
schedule, and answers what became of it. One request and one answer per connection.

Who may ask: only the profile's owner. The socket is made only in a folder owned by the user and
closed to everyone else (no group or other permission bits), with mode 0600, and each side checks
the other's user id (``SO_PEERCRED``, where the system has it). The passphrase is not asked for:
a process of the same user can read the running client's memory anyway.

A request that is not JSON, too long, of another version or of an unknown shape gets a refusal
and the connection is closed; the client goes on. Nothing here logs, and no refusal quotes the
request: a text never leaves the socket except into the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sotto.client.control.handler import Handler
from sotto.client.control.messages import (
    MAX_LINE_BYTES,
    Answer,
    ControlError,
    Reason,
    Refused,
    Request,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
)
from sotto.client.sdk import Client
from sotto.errors import SottoError

SOCKET_NAME = "listen.sock"
"""The socket's file name inside the profile folder."""
MAX_SOCKET_PATH = 107
"""The longest path a Unix domain socket may have (``sun_path`` holds 108 bytes with its NUL)."""
READ_TIMEOUT_S = 10.0
"""How long the server waits for a request's line after the connection opens."""
CONNECT_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 120.0
"""How long the asking side waits for an answer (an invite or a rotation waits seconds between
its requests on purpose; a send waits for the relay at most :data:`~.handler.FLUSH_WAIT_S`)."""


class ControlUnsafeError(ControlError):
    """The profile folder or its socket is not private to this user: nothing is served or asked."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.NOT_OWNER, message)


class ListenerGoneError(ControlError):
    """The serving client closed the connection, or did not answer in time, before it answered."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.FAILED, message)


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
    connections = _Connections(client)
    server = await asyncio.start_unix_server(connections.serve, path=str(path), limit=MAX_LINE_BYTES)
    made: int | None = None
    try:
        made = os.lstat(path).st_ino
        os.chmod(path, 0o600)  # the folder is closed to others: no one could reach it before this
        yield path
    finally:
        server.close()
        with contextlib.suppress(OSError):
            if made is not None and os.lstat(path).st_ino == made:  # not a successor's socket
                path.unlink()
        await connections.close()


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


class _Connections:
    """One request per connection, answered; nothing raised escapes into the serving client."""

    def __init__(self, client: Client) -> None:
        self._handler = Handler(client)
        self._open: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        for task in list(self._open):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._open, return_exceptions=True), CONNECT_TIMEOUT_S)
        await self._handler.close(CONNECT_TIMEOUT_S)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._open.add(task)
        try:
            answer = await self._answer_to(reader, writer)
            writer.write(encode_answer(answer))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except Exception:  # noqa: S110 (a broken connection is the asker's loss, never the client's)
            pass
        finally:
            if task is not None:
                self._open.discard(task)
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
            return await self._handler.answer(request)
        except SottoError as error:
            return Refused.of(error)
        except Exception as error:
            # The type only: an unexpected error's text could quote what it was handed.
            return Refused(Reason.FAILED, f"the client failed ({type(error).__name__})")


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
