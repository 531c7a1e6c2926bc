"""The control endpoint's format, its socket's place and permissions, and its refusals, on a
stand-in for the serving client (the real one runs in ``tests/cli/test_listener.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any, cast

import pytest

from sotto.client import control
from sotto.client.sdk import Client
from sotto.errors import (
    ClientError,
    InviteError,
    MailboxFullError,
    QuotaExceededError,
    RelayError,
    RelayFullError,
    RelayUnavailableError,
    StoreError,
    StoreLockedError,
    UnknownContactError,
)

RELAY = "http://127.0.0.1:9"


class StandIn:
    """What the endpoint asks of a client to answer a status request and refuse unknown names."""

    cadence = True
    server_url = RELAY

    def contact(self, name: str) -> Any:
        raise UnknownContactError("no such contact")

    def contacts(self) -> list[Any]:
        return []

    def groups(self) -> list[Any]:
        return []


def stand_in() -> Client:
    return cast(Client, StandIn())


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    folder = tmp_path / "p"
    folder.mkdir(mode=0o700)
    return folder


REQUESTS: list[control.Request] = [
    control.AskStatus(),
    control.SendText("Bob", "hello\nthere \u202e ✓", cadence=True),
    control.SendText("Bob", "x"),
    control.SendGroupText("#Lunch", "at noon"),
    control.CreateGroup("Lunch", ("Bob", "Carol")),
    control.AddToGroup("Lunch", "Dan"),
    control.SetBlocked("Bob", True),
    control.SetBlocked("Bob", False),
    control.RemoveContact("Bob", forget_history=True),
    control.RotateMailboxes(),
    control.CreateInvite(),
    control.AcceptInvite("sotto://invite?s=a&a=b&k=c", "Alice"),
]
ANSWERS: list[control.Answer] = [
    control.Status(123, True, RELAY),
    control.Handled(control.Outcome.SENT, "Bob", 0, RELAY),
    control.Handled(control.Outcome.UNSENT, "Bob", 2, RELAY, control.Refusal(507, "mailbox_full", "full")),
    control.Refused(control.Reason.UNKNOWN_NAME, "no such contact", ("Bob", "Carol")),
    control.Refused(control.Reason.MALFORMED, "not JSON"),
    control.Handled(control.Outcome.QUEUED, "Lunch", 3, RELAY, None, ("Bob", "Carol"), 0),
    control.Handled(control.Outcome.SENT, "", 0, RELAY, count=2),
    control.Invited("sotto://invite?s=a&a=b&k=c", "sotto://invite?s=a&a=b&k=c", 1_700_000_000_000),
    control.Refused(control.Reason.UNKNOWN_NAME, "no such group", ("#Lunch",), "group", "Dinner"),
    control.Refused(control.Reason.FAILED, "the invite was used", kind="InviteError"),
    control.Refused(control.Reason.FAILED, "full", refusal=control.Refusal(507, "mailbox_full", "full")),
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_requests_round_trip_as_one_line(request_: control.Request) -> None:
    line = control.encode_request(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["v"] == control.VERSION
    assert control.decode_request(line) == request_


@pytest.mark.parametrize("answer", ANSWERS)
def test_answers_round_trip_as_one_line(answer: control.Answer) -> None:
    line = control.encode_answer(answer)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert control.decode_answer(line) == answer


def test_a_text_or_a_link_is_never_in_a_repr() -> None:
    assert "hush" not in repr(control.AcceptInvite("sotto://invite?hush", "Al"))
    assert "hush" not in repr(control.Invited("sotto://invite?hush", "hush", 1))
    assert "secret" not in repr(control.SendText("Bob", "secret words"))
    assert "secret" not in repr(control.SendGroupText("Lunch", "secret words"))
    assert "12 bytes" in repr(control.SendText("Bob", "secret words"))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"secret words\n", control.Reason.MALFORMED),
        (b"\xff\n", control.Reason.MALFORMED),
        (b"[]\n", control.Reason.MALFORMED),
        (b'{"op": "status"}\n', control.Reason.VERSION),
        (b'{"v": true, "op": "status"}\n', control.Reason.VERSION),
        (b'{"v": 1}\n', control.Reason.MALFORMED),
        (b'{"v": 1, "op": "dance"}\n', control.Reason.UNKNOWN_OP),
        (b'{"v": 1, "op": "send", "to": "", "text": "secret words"}\n', control.Reason.MALFORMED),
        (
            b'{"v": 1, "op": "send", "to": "B", "text": "secret words", "cadence": 1}\n',
            control.Reason.MALFORMED,
        ),
        (b'{"v": 1, "op": "group_send", "group": ["L"], "text": "secret words"}\n', control.Reason.MALFORMED),
        (b'{"v": 1, "op": "group_create", "group": "L", "members": []}\n', control.Reason.MALFORMED),
        (b'{"v": 1, "op": "group_create", "group": "L", "members": ["", "B"]}\n', control.Reason.MALFORMED),
        (b'{"v": 1, "op": "group_create", "group": "L", "members": "B"}\n', control.Reason.MALFORMED),
        (b'{"v": 1, "op": "block", "to": "B", "blocked": "yes"}\n', control.Reason.MALFORMED),
        (b'{"v": 1, "op": "accept", "link": "secret"}\n', control.Reason.MALFORMED),
        (b"[" * 100_000 + b"\n", control.Reason.MALFORMED),
        (b'{"v": 1, "text": "' + b"x" * control.MAX_LINE_BYTES + b'"}\n', control.Reason.TOO_LARGE),
    ],
)
def test_requests_that_are_not_well_formed_raise_one_typed_error(line: bytes, reason: control.Reason) -> None:
    with pytest.raises(control.ControlError) as raised:
        control.decode_request(line)
    assert raised.value.reason is reason
    assert isinstance(raised.value, ClientError)
    assert "secret" not in str(raised.value)


def _handled(**changed: object) -> bytes:
    fields = {"v": 1, "ok": True, "op": "handled", "outcome": "sent", "name": "B", "left": 0, "relay": "r"}
    return json.dumps({**fields, "count": 0, **changed}).encode() + b"\n"


@pytest.mark.parametrize(
    "line",
    [
        b'{"v": 1, "ok": "yes"}\n',
        b'{"v": 1, "ok": false, "error": "oops", "message": "m"}\n',
        b'{"v": 1, "ok": false, "error": "failed", "message": "m", "known": [1]}\n',
        _handled(outcome="lost"),
        _handled(left=True),
        _handled(refusal=5),
        _handled(members="B"),
        b'{"v": 1, "ok": true, "op": "handled", "outcome": "sent", "name": "B", "left": 0, "relay": "r"}\n',
        b'{"v": 1, "ok": true, "op": "invited", "link": "l", "qr_text": "q"}\n',
        b'{"v": 1, "ok": false, "error": "failed", "message": "m", "kind": 5}\n',
        b'{"v": 1, "ok": true, "op": "status", "pid": 1, "cadence": false}\n',
        b'{"v": 1, "ok": true, "op": "dance"}\n',
    ],
)
def test_answers_that_are_not_well_formed_raise_one_typed_error(line: bytes) -> None:
    with pytest.raises(control.ControlError):
        control.decode_answer(line)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("mailbox_full", MailboxFullError),
        ("relay_full", RelayFullError),
        ("quota_exceeded", QuotaExceededError),
        ("other", RelayError),
    ],
)
def test_a_refusal_comes_back_as_the_sdks_error(code: str, kind: type[RelayError]) -> None:
    error = control.Refusal(507, code, "held").to_error()
    assert type(error) is kind and error.code == code and error.message == "held"
    assert control.Refusal.of(error) == control.Refusal(error.status, code, "held")


def test_an_sdk_error_comes_back_as_itself() -> None:
    for error in (InviteError("used"), UnknownContactError("gone"), RelayUnavailableError("down")):
        again = control.Refused.of(error).to_error()
        assert type(again) is type(error) and str(again) == str(error)
    assert type(control.Refused.of(MailboxFullError()).to_error()) is MailboxFullError
    assert type(control.Refused.of(StoreLockedError("held")).to_error()) is StoreError
    assert type(control.Refused(control.Reason.FAILED, "x", kind="SystemExit").to_error()) is ClientError


def test_the_socket_is_private_and_gone_after(profile: Path) -> None:
    async def scenario() -> None:
        async with control.serving(stand_in(), profile) as path:
            assert path == profile / control.SOCKET_NAME
            info = path.lstat()
            assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            answer = await control.ask(profile, control.AskStatus())
            assert answer == control.Status(os.getpid(), True, RELAY)
            unknown = await control.ask(profile, control.SendText("Nobody", "hi"))
            assert unknown == control.Refused(
                control.Reason.UNKNOWN_NAME, "no such contact", (), "contact", "Nobody"
            )
        assert not path.exists()
        assert await control.ask(profile, control.AskStatus()) is None

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o770, 0o777])
def test_a_folder_open_to_others_gets_no_socket(profile: Path, mode: int) -> None:
    profile.chmod(mode)

    async def scenario() -> None:
        with pytest.raises(control.ControlUnsafeError, match="chmod 700"):
            async with control.serving(stand_in(), profile):
                pass

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert not (profile / control.SOCKET_NAME).exists()


def test_the_asking_side_checks_the_folder_and_the_socket(profile: Path) -> None:
    async def scenario() -> None:
        async with control.serving(stand_in(), profile) as path:
            profile.chmod(0o755)
            with pytest.raises(control.ControlUnsafeError, match="open to other users"):
                await control.ask(profile, control.AskStatus())
            profile.chmod(0o700)
            path.chmod(0o666)
            with pytest.raises(control.ControlUnsafeError, match="not private"):
                await control.ask(profile, control.AskStatus())
            path.chmod(0o600)
            assert isinstance(await control.ask(profile, control.AskStatus()), control.Status)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(profile: Path) -> None:
    path = profile / control.SOCKET_NAME
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))  # bound, never listening, then closed: what a killed listener leaves
    left.close()
    path.chmod(0o600)

    async def scenario() -> None:
        assert await control.ask(profile, control.AskStatus()) is None  # no one serves it
        async with control.serving(stand_in(), profile):
            assert isinstance(await control.ask(profile, control.AskStatus()), control.Status)
            with pytest.raises(control.ControlError, match="another process serves"):
                async with control.serving(stand_in(), profile):
                    pass
            # The refused second server left the first one's socket in place.
            assert isinstance(await control.ask(profile, control.AskStatus()), control.Status)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert not path.exists()


def test_something_else_where_the_socket_goes_is_left_alone(profile: Path) -> None:
    path = profile / control.SOCKET_NAME
    path.write_text("mine")

    async def scenario() -> None:
        with pytest.raises(control.ControlError, match="in the way"):
            async with control.serving(stand_in(), profile):
                pass
        with pytest.raises(control.ControlUnsafeError, match="not a socket"):
            await control.ask(profile, control.AskStatus())

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert path.read_text() == "mine"


def test_a_path_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (control.MAX_SOCKET_PATH - len(str(tmp_path))))
    deep.mkdir(mode=0o700)

    async def scenario() -> None:
        with pytest.raises(control.ControlError, match="too long"):
            async with control.serving(stand_in(), deep):
                pass

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_bad_requests_are_refused_and_the_server_goes_on(profile: Path) -> None:
    async def exchange(data: bytes) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(str(profile / control.SOCKET_NAME))
        try:
            writer.write(data)
            writer.write_eof()
            await writer.drain()
        except ConnectionError:
            pass
        answer: dict[str, Any] = json.loads(await reader.readline())
        writer.close()
        return answer

    async def scenario() -> None:
        async with control.serving(stand_in(), profile):
            assert (await exchange(b"nonsense\n"))["error"] == "malformed"
            assert (await exchange(b'{"v":1,"op":"status"}'))["error"] == "malformed"  # no newline
            big = b'{"v":1,"text":"' + b"x" * (2 * control.MAX_LINE_BYTES) + b'"}\n'
            assert (await exchange(big))["error"] == "too_large"
            assert (await exchange(b""))["error"] == "malformed"
            answers = await asyncio.gather(*(exchange(b"[\n") for _ in range(20)))
            assert {a["error"] for a in answers} == {"malformed"}
            assert (await exchange(b'{"v":1,"op":"status"}\n'))["ok"] is True

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("answers", [False, None])
def test_a_server_that_goes_away_or_never_answers_is_reported(profile: Path, answers: bool | None) -> None:
    """``answers`` False: it closes the connection unanswered; None: it keeps it open, silent."""

    async def scenario() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            if answers is None:
                await asyncio.sleep(30)
            writer.close()

        path = profile / control.SOCKET_NAME
        server = await asyncio.start_unix_server(serve, path=str(path))
        path.chmod(0o600)
        async with server:
            with pytest.raises(control.ListenerGoneError):
                await control.ask(profile, control.SendText("Bob", "hi"), timeout=0.5)

    asyncio.run(asyncio.wait_for(scenario(), 30))
