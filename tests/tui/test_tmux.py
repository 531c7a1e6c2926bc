"""End to end in real terminals: ``sotto chat`` for Alice and for Bob, each in a tmux session
of its own (on a tmux server of this test's own socket), against a relay on loopback; keys go
in with ``send-keys`` and the screens are read with ``capture-pane``. Skipped only on a machine
without tmux."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.conftest import PASSPHRASE, WAIT_S, befriend, new_client

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """A tmux server on a socket in the test's directory, and its sessions."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.names: list[str] = []

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=20, check=True
        )
        return done.stdout

    def start(self, name: str, command: str, env: dict[str, str]) -> None:
        self.names.append(name)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self("new-session", "-d", "-s", name, "-x", "100", "-y", "30", f"env {exports} {command}")

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def keys(self, name: str, *keys: str) -> None:
        self("send-keys", "-t", name, *keys)

    def text(self, name: str, text: str) -> None:
        self("send-keys", "-t", name, "-l", text)

    def wait(self, name: str, wanted: str, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen(name)
            if wanted in shown:
                return shown
            if time.monotonic() > deadline:
                screens = "\n".join(f"--- {n}:\n{self.screen(n)}" for n in self.names)
                raise AssertionError(f"{name}'s screen never showed {wanted!r}; the screens:\n{screens}")
            time.sleep(0.1)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path / "tmux.sock")
    try:
        yield server
    finally:
        subprocess.run(
            ["tmux", "-S", str(server.socket), "kill-server"], check=False, capture_output=True, timeout=20
        )


def test_two_people_chat_in_real_terminals(server_url: str, tmp_path: Path, tmux: Tmux) -> None:
    async def make() -> None:
        alice, bob = (
            await new_client(server_url, tmp_path, "Alice"),
            await new_client(server_url, tmp_path, "Bob"),
        )
        async with alice, bob:
            await befriend(alice, bob)

    asyncio.run(asyncio.wait_for(make(), 120))
    env = {
        "SOTTO_PASSPHRASE": PASSPHRASE,
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    for name in ("Alice", "Bob"):
        profile = shlex.quote(str(tmp_path / name))
        chat = f"{shlex.quote(sys.executable)} -m sotto.cli chat --notify off -p {profile}"
        tmux.start(name, f"sh -c {shlex.quote(chat + '; echo EXIT=$?; sleep 60')}", env)
    for name, other in (("Alice", "Bob"), ("Bob", "Alice")):
        shown = tmux.wait(name, "● connected")
        assert other in shown

    tmux.keys("Alice", "Enter", "i")
    tmux.text("Alice", "hello Bob, from a terminal")
    tmux.keys("Alice", "Enter")
    tmux.wait("Alice", "you: hello Bob, from a terminal")
    tmux.wait("Bob", "Alice 1")  # unread in Bob's list
    tmux.keys("Bob", "Enter")
    tmux.wait("Bob", "Alice: hello Bob, from a terminal")
    tmux.wait("Alice", "✓✓ read")  # Bob opened it: his read receipt reached Alice's screen

    tmux.keys("Bob", "i")
    tmux.text("Bob", "hi Alice")
    tmux.keys("Bob", "Enter")
    tmux.wait("Alice", "Bob: hi Alice")  # Alice has Bob open: it shows at once

    for name in ("Alice", "Bob"):
        tmux.keys(name, "C-q")
        tmux.wait(name, "EXIT=0")
