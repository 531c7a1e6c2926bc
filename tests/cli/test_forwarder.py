"""``sotto forwarder`` and ``sotto init --forwarder``: two people on the command line whose every
request reaches the relay through a forwarder, on real processes on 127.0.0.1.

The relay runs as ``python -m sotto.server`` (gateway on by default, a 1-second tick, its
operator's view recorded), the forwarder as ``python -m sotto.cli forwarder``. Alice and Bob make
their profiles with ``--forwarder``, connect by invite, and exchange texts with ``sotto send`` and
``sotto listen --cadence --once``. The relay's view then holds no request from a client's
connection: every one it saw from an address was the forwarder's (``POST /v1/gateway``, and its
fetch of the key configuration).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.core
import typer.main

from sotto.cli import forwarding
from sotto.cli.app import app
from sotto.cli.failures import ExitCode
from sotto.server.gateway import GATEWAY_PATH, KEYS_PATH
from sotto.server.observer import HttpExchange, read_view
from tests.cli.conftest import Sotto, flat
from tests.forwarder.processes import free_port, process, relay_with_gateway

LISTEN = ("listen", "--once", "--cadence", "--timeout", "4")


@dataclass
class Stack:
    relay: str
    forwarder: str
    view: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cli-forwarder")
    view = root / "view.jsonl"
    with relay_with_gateway(root / "data", root / "relay.log", view) as relay:
        port = free_port()
        args = ["sotto.cli", "forwarder", "--relay", relay, "--port", str(port)]
        with process(args, root / "forwarder.log", port):
            yield Stack(relay, f"http://127.0.0.1:{port}", view)


def _init(sotto: Sotto, stack: Stack, profile: Path, name: str) -> str:
    args = ("init", "--server", stack.relay, "--forwarder", stack.forwarder, "--name", name)
    result = sotto(*args, "--profile", str(profile))
    assert result.exit_code == 0, result.output
    assert stack.forwarder in flat(result.output)
    return str(profile)


def _until(sotto: Sotto, sender: str, receiver: str, wanted: str, rounds: int = 6) -> str:
    """Both run ``sotto listen --once --cadence`` in turn (each tick sends one envelope per
    contact, so what the sender owes goes out over its ticks) until ``receiver`` shows ``wanted``;
    what ``receiver``'s listens printed."""
    seen = ""
    for _ in range(rounds):
        for profile in (sender, receiver):
            result = sotto(*LISTEN, "--profile", profile)
            assert result.exit_code == 0, result.output
            if profile == receiver:
                seen += result.output
        if wanted in flat(seen):
            return flat(seen)
    raise AssertionError(f"{wanted!r} did not arrive: {seen}")


def test_two_people_talk_through_a_forwarder_and_the_relay_sees_only_the_forwarder(
    sotto: Sotto, stack: Stack, tmp_path: Path
) -> None:
    alice = _init(sotto, stack, tmp_path / "alice", "Alice")
    bob = _init(sotto, stack, tmp_path / "bob", "Bob")
    setting = forwarding.read(Path(alice))
    assert setting is not None and setting.forwarder == stack.forwarder and setting.relay == stack.relay

    invite = sotto("invite", "--profile", alice)
    assert invite.exit_code == 0, invite.output
    link = re.search(r"sotto://invite\?[^\s']+", invite.output)
    assert link is not None
    accepted = sotto("accept", link.group(0), "--name", "Alice", "--profile", bob)
    assert accepted.exit_code == 0, accepted.output
    _until(sotto, bob, alice, "Bob")  # the request arrives; her client answers it
    _until(sotto, alice, bob, "Alice")  # the answer arrives

    sent = sotto("send", "Alice", "through", "the", "forwarder", "--profile", bob)
    assert sent.exit_code == 0, sent.output
    _until(sotto, bob, alice, "through the forwarder")
    queued = sotto("send", "Bob", "on", "a", "tick", "--cadence", "--profile", alice)
    assert queued.exit_code == 0, queued.output
    _until(sotto, alice, bob, "on a tick")

    # Files both ways, larger than one sealed answer: Bob's at once, Alice's message on a tick.
    for sender, receiver, size, mode in ((bob, alice, 1_500_000, ()), (alice, bob, 40_000, ("--cadence",))):
        source = tmp_path / f"file-{size}.bin"
        source.write_bytes(os.urandom(size))
        sent = sotto(
            "send", "Alice" if sender == bob else "Bob", "--file", str(source), *mode, "--profile", sender
        )
        assert sent.exit_code == 0, sent.output
        assert ("goes out in a tick" if mode else "sent to") in flat(sent.output)
        seen = _until(sotto, sender, receiver, f"{source.name}")
        shown = re.search(r"sotto save ([0-9a-f]{8})", seen)
        assert shown is not None, seen
        saves = tmp_path / f"saves-{size}"
        saves.mkdir()
        saved = sotto("save", shown.group(1), "--to", str(saves), "--profile", receiver)
        assert saved.exit_code == 0, saved.output
        assert (saves / source.name).read_bytes() == source.read_bytes()

    # The relay saw requests from one address only: the forwarder's, on its gateway.
    exchanges = [r for r in read_view(stack.view) if isinstance(r, HttpExchange)]
    inner = [r for r in exchanges if r.path not in (GATEWAY_PATH, KEYS_PATH)]
    assert len(inner) > 10
    assert all(r.addr is None and r.port is None for r in inner)
    assert {r.path for r in exchanges if r.addr is not None} == {GATEWAY_PATH, KEYS_PATH}
    assert len({r.conn for r in inner}) == len(inner)


def test_a_plain_listen_through_a_forwarder_receives_by_long_polls(
    sotto: Sotto, stack: Stack, tmp_path: Path
) -> None:
    """Default mode (no --cadence): ``sotto listen`` takes what waits by long polls, one sealed
    request per mailbox, and ``sotto send`` sends at once."""
    alice = _init(sotto, stack, tmp_path / "alice", "Alice")
    bob = _init(sotto, stack, tmp_path / "bob", "Bob")
    invite = sotto("invite", "--profile", alice)
    assert invite.exit_code == 0, invite.output
    link = re.search(r"sotto://invite\?[^\s']+", invite.output)
    assert link is not None
    assert sotto("accept", link.group(0), "--name", "Alice", "--profile", bob).exit_code == 0
    plain = ("listen", "--once", "--timeout", "8")
    seen = ""
    for _ in range(6):
        for profile in (alice, bob):
            result = sotto(*plain, "--profile", profile)
            assert result.exit_code == 0, result.output
        sent = sotto("send", "Alice", "no", "tick", "needed", "--profile", bob)
        if sent.exit_code == 0:
            break
    assert sent.exit_code == 0, sent.output
    for _ in range(3):
        seen += sotto(*plain, "--profile", alice).output
        if "no tick needed" in flat(seen):
            break
    assert "no tick needed" in flat(seen), seen
    polls = [r for r in read_view(stack.view) if isinstance(r, HttpExchange) and r.path.endswith("/poll")]
    assert polls and all(r.addr is None for r in polls)


def test_a_damaged_setting_fails_rather_than_going_direct(sotto: Sotto, stack: Stack, tmp_path: Path) -> None:
    alice = _init(sotto, stack, tmp_path / "alice", "Alice")
    (Path(alice) / forwarding.FORWARDER_FILE).write_text(json.dumps({"forwarder": stack.forwarder}))
    result = sotto("export", "--profile", alice)
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "not a forwarder setting" in flat(result.output)


def test_init_through_an_unreachable_forwarder_makes_no_profile(
    sotto: Sotto, stack: Stack, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    args = ("init", "--server", stack.relay, "--forwarder", nowhere, "--name", "Alice")
    result = sotto(*args, "--profile", str(tmp_path / "alice"))
    assert result.exit_code == ExitCode.RELAY_UNREACHABLE, result.output
    assert not (tmp_path / "alice" / "sotto.db").exists()


def test_sotto_forwarder_refuses_a_relay_that_is_not_a_url(sotto: Sotto) -> None:
    result = sotto("forwarder", "--relay", "relay.example")
    assert result.exit_code == ExitCode.USAGE
    assert "not an http(s) URL" in flat(result.output)
    assert "--relay" in sotto("forwarder", "--help").output


def _parses(line: str) -> str:
    """Parse one ``sotto ...`` line as the CLI would, without running it; the command's name."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    name, *args = shlex.split(line, comments=True)[1:]
    command = group.get_command(group.context_class(group), name)
    assert command is not None, name
    command.make_context(name, list(args))  # a misspelt option raises a usage error
    return name


def _sotto_lines(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.startswith("sotto ")]


def test_the_documented_commands_for_hiding_your_address_parse() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Hiding your address from the relay\n")
    (block,) = re.findall(r"```sh\n(.*?)```", text[start : text.find("\n## ", start + 1)], re.S)
    names = [_parses(line) for line in _sotto_lines(block)]
    assert names == ["server", "forwarder", "init", "invite", "listen", "send"]
    guide = (root / "docs" / "ohttp.md").read_text(encoding="utf-8")
    lines = [line for block in re.findall(r"```sh\n(.*?)```", guide, re.S) for line in _sotto_lines(block)]
    assert {_parses(line) for line in lines} == {"server", "forwarder", "init", "listen", "send"}
