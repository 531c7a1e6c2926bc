"""``sotto send`` while ``sotto listen`` runs: the real command in processes, a real relay process.

The listener keeps running (the same process, the same WebSocket to the relay, in cadence mode
traffic in every tick) while another process hands it texts through the profile's control
socket; with no listener, ``sotto send`` works on its own as before. A socket left by a killed
listener is replaced, a profile folder open to others gets no socket, and requests that are not
well formed get a typed refusal without harming the listener.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from sotto.cli.failures import ExitCode
from sotto.client.control import MAX_LINE_BYTES, SOCKET_NAME
from sotto.demo.relay import RelayProcess
from sotto.server.observer import HttpExchange, WsClose, WsOpen, read_view
from tests.cli.conftest import PASSPHRASE, Sotto, flat, make_profile

TICK_S = 2
WAIT_S = 30.0
"""The most any step here waits for a process to say something."""


@pytest.fixture(scope="module")
def view_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayProcess, Path]]:
    """A relay process with a short cadence tick that records what its operator could see."""
    root = tmp_path_factory.mktemp("listener-relay")
    view = root / "view.jsonl"
    command = ("-m", "sotto.server", "--cadence-tick", str(TICK_S), "--record-view", str(view))
    process = RelayProcess(root / "data", root / "relay.log", command=command)
    with process:
        process.start()
        yield process, view


def _env() -> dict[str, str]:
    env = {**os.environ, "SOTTO_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["PYTHONFAULTHANDLER"] = "1"  # a listener that hangs shows where, when the test aborts it
    for name in ("SOTTO_HOME", "SOTTO_SERVER", "SOTTO_DEBUG"):
        env.pop(name, None)
    return env


def run_sotto(*args: str) -> subprocess.CompletedProcess[str]:
    """``sotto ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "sotto.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )


class Listener:
    """``sotto listen ARGS`` in a process of its own, its output read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sotto.cli", "listen", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and self.lines.empty()):
                raise AssertionError(f"the listener never said {text!r}: {''.join(self.seen)}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=min(left, 0.5)))

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "".join(self.seen)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack
                try:
                    self.process.wait(WAIT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(WAIT_S)
                time.sleep(0.5)  # the reader threads take the last lines
                raise AssertionError(
                    f"the listener was still running {WAIT_S:g} s after Ctrl-C; it wrote:\n{self.output()}"
                ) from None
        return self.process.returncode


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(*args: str) -> Listener:
        started.append(Listener(*args))
        return started[-1]

    yield start
    for listener in started:
        listener.stop()


def contacts(sotto: Sotto, relay: RelayProcess, root: Path) -> tuple[str, str]:
    """Alice and Bob, who know each other (made in process, with the fast key derivation)."""
    alice = str(make_profile(sotto, relay, root / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, root / "bob", "Bob"))
    link = re.search(r"sotto://invite\?[^\s']+", sotto("invite", "--profile", alice).output)
    assert link is not None
    assert sotto("accept", link.group(0), "--name", "Alice", "--profile", bob).exit_code == 0
    assert sotto("listen", "--once", "--profile", alice).exit_code == 0
    assert sotto("listen", "--once", "--profile", bob).exit_code == 0
    return alice, bob


def heard(sotto: Sotto, profile: str, text: str) -> str:
    """``listen --once`` on ``profile`` until ``text`` arrives (a bounded number of times)."""
    seen = ""
    for _ in range(6):
        result = sotto("listen", "--once", "--timeout", "5", "--profile", profile)
        assert result.exit_code == 0, result.output
        seen += flat(result.output)
        if text in seen:
            return seen
    raise AssertionError(f"{text!r} never arrived: {seen}")


def status(profile: str) -> dict[str, object]:
    """The listener's answer to a status request, straight on its socket."""
    answer: dict[str, object] = json.loads(raw(profile, b'{"v":1,"op":"status"}\n'))
    return answer


def raw(profile: str, request: bytes) -> bytes:
    """Write ``request`` on the profile's socket as it is; the answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(WAIT_S)
        conn.connect(str(Path(profile) / SOCKET_NAME))
        # Refused before it read everything: the answer is there to read all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)  # all there is: a line without its newline ends here
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_send_goes_through_a_running_listener(
    sotto: Sotto,
    view_relay: tuple[RelayProcess, Path],
    tmp_path: Path,
    listeners: Callable[..., Listener],
) -> None:
    relay, view = view_relay
    alice, bob = contacts(sotto, relay, tmp_path)
    first = len(read_view(view))
    listening = listeners("--profile", alice)
    listening.wait_for("Listening as")
    listening.wait_for("connected to")
    socket_file = Path(alice) / SOCKET_NAME
    assert stat.S_ISSOCK(socket_file.lstat().st_mode)
    assert stat.S_IMODE(socket_file.lstat().st_mode) == 0o600
    assert status(alice)["pid"] == listening.process.pid
    opened = [r.conn for r in read_view(view)[first:] if isinstance(r, WsOpen)]
    assert len(opened) == 1, opened  # the listener's WebSocket

    sent = run_sotto("send", "Bob", "through", "the", "listener", "--profile", alice)
    assert sent.returncode == 0, sent.stderr
    assert "sent to Bob" in flat(sent.stdout)
    group_sent = run_sotto("group", "send", "Nobody", "hi", "--profile", alice)
    assert group_sent.returncode == ExitCode.UNKNOWN_NAME and "no group named 'Nobody'" in flat(
        group_sent.stderr
    )
    unknown = run_sotto("send", "Carol", "hi", "--profile", alice)
    assert unknown.returncode == ExitCode.UNKNOWN_NAME, unknown.stderr
    assert "no contact named 'Carol'" in flat(unknown.stderr) and "your contacts: Bob" in flat(unknown.stderr)
    assert "Alice: through the listener" in heard(sotto, bob, "through the listener")
    listening.wait_for("Bob received 1 message")  # the delivery receipt, on the same connection

    # The same process, the same WebSocket, never closed; nothing was refused or restarted.
    assert listening.process.poll() is None
    assert status(alice)["pid"] == listening.process.pid
    closed = {r.conn for r in read_view(view)[first:] if isinstance(r, WsClose)}
    assert opened[0] not in closed
    out = listening.output()
    assert out.count("connected to") == 1 and "connection lost" not in out
    assert "through the listener" not in out  # the listener does not echo what it was handed

    # Commands that need the store say the listener has it, and how to go on.
    busy = run_sotto("contacts", "--profile", alice)
    assert busy.returncode == ExitCode.PROFILE_BUSY
    assert f"`sotto listen` (process {listening.process.pid})" in flat(busy.stderr)
    assert "this command cannot go through it" in flat(busy.stderr) and "Ctrl-C" in flat(busy.stderr)
    refused = run_sotto("send", "Bob", "later", "--cadence", "--profile", alice)
    assert refused.returncode == ExitCode.PROFILE_BUSY and "not in cadence mode" in flat(refused.stderr)

    assert listening.stop() == 0
    assert not socket_file.exists()


def test_send_goes_out_in_a_tick_of_a_cadence_listener(
    sotto: Sotto,
    view_relay: tuple[RelayProcess, Path],
    tmp_path: Path,
    listeners: Callable[..., Listener],
) -> None:
    relay, view = view_relay
    alice, bob = contacts(sotto, relay, tmp_path)
    listening = listeners("--cadence", "--profile", alice)
    listening.wait_for("Listening as")
    pid = status(alice)["pid"]
    assert pid == listening.process.pid and status(alice)["cadence"] is True
    started_us = time.time_ns() // 1000

    queued = run_sotto("send", "Bob", "on", "a", "tick", "--profile", alice)
    assert queued.returncode == 0, queued.stderr
    assert "queued for Bob: it goes out in a tick" in flat(queued.stdout)

    # Until Bob listens, every request the relay sees is the cadence listener's: one send to Bob
    # and one poll of its mailbox in each tick, the handed-over text among the sends, and no two
    # ticks in a row go by without them.
    def ticks_of(kind: str) -> set[int]:
        return {
            r.t_us // (TICK_S * 1_000_000)
            for r in read_view(view)
            if isinstance(r, HttpExchange) and r.t_us >= started_us and r.path.endswith(kind)
        }

    first = started_us // (TICK_S * 1_000_000) + 1
    deadline = time.monotonic() + WAIT_S
    while len({t for t in ticks_of("/messages") if t >= first}) < 4:
        assert time.monotonic() < deadline, ticks_of("/messages")
        time.sleep(0.2)
    last = max(ticks_of("/messages")) - 1
    for kind in ("/messages", "/poll"):
        # A request made late in its tick may reach the relay in the next one on a loaded
        # machine; a stopped and restarted listener would leave ticks without any.
        seen = ticks_of(kind)
        quiet = [t for t in range(first, last) if t not in seen and t + 1 not in seen]
        assert not quiet, (kind, sorted(seen), first, last)
    assert listening.process.poll() is None and status(alice)["pid"] == pid
    assert "Alice: on a tick" in heard(sotto, bob, "on a tick")
    assert status(alice)["pid"] == pid
    assert listening.stop() == 0


def test_without_a_listener_send_works_alone_and_a_stale_socket_is_replaced(
    sotto: Sotto,
    view_relay: tuple[RelayProcess, Path],
    tmp_path: Path,
    listeners: Callable[..., Listener],
) -> None:
    relay, _ = view_relay
    alice, bob = contacts(sotto, relay, tmp_path)
    alone = run_sotto("send", "Bob", "no", "listener", "--profile", alice)
    assert alone.returncode == 0 and "sent to Bob" in flat(alone.stdout), alone.stderr

    killed = listeners("--profile", alice)
    killed.wait_for("Listening as")
    killed.process.kill()
    killed.process.wait(WAIT_S)
    socket_file = Path(alice) / SOCKET_NAME
    assert socket_file.exists()  # left behind: no process serves it

    stale = run_sotto("send", "Bob", "past", "a", "stale", "socket", "--profile", alice)
    assert stale.returncode == 0 and "sent to Bob" in flat(stale.stdout), stale.stderr

    again = listeners("--profile", alice)
    again.wait_for("Listening as")
    assert status(alice)["pid"] == again.process.pid
    through = run_sotto("send", "Bob", "through", "the", "new", "one", "--profile", alice)
    assert through.returncode == 0 and "sent to Bob" in flat(through.stdout), through.stderr
    seen = heard(sotto, bob, "through the new one")
    assert "Alice: no listener" in seen and "Alice: past a stale socket" in seen
    assert "cannot go through" not in again.output()


def test_a_profile_folder_open_to_others_gets_no_socket(
    sotto: Sotto,
    view_relay: tuple[RelayProcess, Path],
    tmp_path: Path,
    listeners: Callable[..., Listener],
) -> None:
    relay, _ = view_relay
    alice = make_profile(sotto, relay, tmp_path / "alice", "Alice")
    alice.chmod(0o750)
    listening = listeners("--profile", str(alice))
    listening.wait_for("Listening as")
    assert "cannot go through this listener" in flat(listening.output())
    assert "chmod 700" in listening.output()
    assert not (alice / SOCKET_NAME).exists()
    # Then `sotto send` finds no listener, and the store is in use, as without a socket at all.
    busy = run_sotto("send", "Bob", "hi", "--profile", str(alice))
    assert busy.returncode == ExitCode.PROFILE_BUSY, busy.stderr

    # A socket in an open folder is not trusted by the asking side either.
    alice.chmod(0o700)
    assert listening.stop() == 0
    again = listeners("--profile", str(alice))
    again.wait_for("Listening as")
    alice.chmod(0o750)
    try:
        refused = run_sotto("send", "Bob", "hi", "--profile", str(alice))
    finally:
        alice.chmod(0o700)
    assert refused.returncode == ExitCode.ERROR and "open to other users" in flat(refused.stderr)


def test_requests_that_are_not_well_formed_are_refused_and_harm_nothing(
    sotto: Sotto,
    view_relay: tuple[RelayProcess, Path],
    tmp_path: Path,
    listeners: Callable[..., Listener],
) -> None:
    relay, _ = view_relay
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    listening = listeners("--profile", alice)
    listening.wait_for("Listening as")
    pid = listening.process.pid

    def refusal(request: bytes) -> str:
        answer = json.loads(raw(alice, request))
        assert answer["v"] == 1 and answer["ok"] is False, answer
        assert "secret words" not in answer["message"]
        return str(answer["error"])

    assert refusal(b"secret words\n") == "malformed"
    assert refusal(b"\xff\xfe secret words\n") == "malformed"
    assert refusal(b"[1, 2]\n") == "malformed"
    assert refusal(b'{"v": 2, "op": "send", "to": "Bob", "text": "secret words"}\n') == "version"
    assert refusal(b'{"v": 1, "op": "shout", "text": "secret words"}\n') == "unknown_op"
    assert refusal(b'{"v": 1, "op": "send", "to": "Bob"}\n') == "malformed"
    assert refusal(b'{"v": 1, "op": "send", "to": "Bob", "text": 7}\n') == "malformed"
    assert (
        refusal(b'{"v": 1, "op": "send", "to": "Bob", "text": "secret words"}') == "malformed"
    )  # no newline
    assert refusal(b'{"v": 1, "text": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n') == "too_large"
    answer = json.loads(raw(alice, b'{"v": 1, "op": "send", "to": "Nobody", "text": "secret words"}\n'))
    assert answer["error"] == "unknown_name" and answer["known"] == []

    assert listening.process.poll() is None and status(alice)["pid"] == pid
    out = listening.output()
    assert "secret words" not in out and "Traceback" not in out
    assert listening.stop() == 0


def test_the_other_writing_commands_go_through_a_running_listener(
    sotto: Sotto,
    view_relay: tuple[RelayProcess, Path],
    tmp_path: Path,
    listeners: Callable[..., Listener],
) -> None:
    relay, _ = view_relay
    alice, bob = contacts(sotto, relay, tmp_path)
    carol = str(make_profile(sotto, relay, tmp_path / "carol", "Carol"))
    dan = str(make_profile(sotto, relay, tmp_path / "dan", "Dan"))
    listening = listeners("--profile", alice)
    listening.wait_for("Listening as")
    listening.wait_for("connected to")
    pid = listening.process.pid

    def ok(*args: str) -> str:
        result = run_sotto(*args, "--profile", alice)
        assert result.returncode == 0, f"sotto {' '.join(args)}: {result.stderr}"
        return flat(result.stdout)

    assert "created #Lunch with Bob" in ok("group", "create", "Lunch", "Bob")
    taken = run_sotto("group", "create", "Lunch", "Bob", "--profile", alice)
    assert taken.returncode == ExitCode.USAGE and "already have a group named 'Lunch'" in flat(taken.stderr)
    stranger = run_sotto("group", "create", "Tea", "Bob", "Zed", "--profile", alice)
    assert stranger.returncode == ExitCode.UNKNOWN_NAME and "no contact named 'Zed'" in flat(stranger.stderr)
    assert "sent to #Lunch" in ok("group", "send", "Lunch", "soup", "today")
    assert "rotated 1 mailbox" in ok("rotate")
    assert "Bob is already in #Lunch" in ok("group", "add", "Lunch", "Bob")
    assert "Bob blocked" in ok("block", "Bob")
    blocked = run_sotto("send", "Bob", "hello", "--profile", alice)
    assert blocked.returncode == ExitCode.ERROR and "blocked" in flat(blocked.stderr), blocked.stderr
    assert "Bob unblocked" in ok("unblock", "Bob")

    # Alice invites Carol, and accepts Dan's invite, all while listening.
    link = re.search(r"sotto://invite\?[^\s']+", ok("invite", "--no-qr"))
    assert link is not None
    assert sotto("accept", link.group(0), "--name", "Alice", "--profile", carol).exit_code == 0
    listening.wait_for("Carol accepted your invite")
    made = re.search(r"sotto://invite\?[^\s']+", sotto("invite", "--no-qr", "--profile", dan).output)
    assert made is not None
    assert "Dan added" in ok("accept", made.group(0), "--name", "Dan")
    # A link that cannot be used fails as it does without a listener: same line, same exit code.
    broken = "sotto://invite?s=broken"
    through = run_sotto("accept", broken, "--name", "X", "--profile", alice)
    alone = sotto("accept", broken, "--name", "X", "--profile", dan)
    assert through.returncode == alone.exit_code != 0
    assert flat(through.stderr).splitlines()[0] == flat(alone.output).splitlines()[0]
    assert "Carol removed; your messages with them are kept" in ok("remove", "Carol")
    assert "Carol was removed already" in ok("remove", "Carol")

    heard_by_bob = heard(sotto, bob, "soup today")
    assert "Alice added you to #Lunch" in heard_by_bob and "Alice in #Lunch: soup today" in heard_by_bob
    if "moved to a fresh mailbox" not in heard_by_bob:  # it may come in the next listen
        heard_by_bob += heard(sotto, bob, "moved to a fresh mailbox")
    assert "Alice" in heard(sotto, dan, "accepted your invite")
    assert listening.process.poll() is None and status(alice)["pid"] == pid
    out = listening.output()
    assert out.count("connected to") == 1 and "connection lost" not in out
