"""Ctrl-C at any prompt exits 130 with one line, as ``sotto --help`` says, in a real process.

The process runs in a session of its own (so it has no terminal: the hidden prompt reads standard
input, which stays open), and the signal is sent once the prompt has been printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sotto.cli.failures import ExitCode
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, make_profile
from tests.cli.test_entry_point import INTERRUPTIBLE


def ctrl_c_at_prompt(args: list[str], prompt: str) -> tuple[int, str]:
    """Run ``sotto ARGS`` with no passphrase in the environment, wait until ``prompt`` is printed,
    press Ctrl-C; the exit code and everything printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOTTO_")}
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    assert process.stdout is not None
    shown = b""
    while prompt.encode() not in shown:
        byte = process.stdout.read(1)
        assert byte, f"the process ended before its prompt: {shown.decode(errors='replace')}"
        shown += byte
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    return process.returncode, (shown + rest).decode(errors="replace")


@pytest.fixture(scope="module")
def profile(relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_profile(Sotto(), relay, tmp_path_factory.mktemp("prompts") / "profile", "Pat")


@pytest.mark.parametrize(
    ("command", "prompt"),
    [
        (["contacts"], "Passphrase"),
        (["accept", "sotto://invite?x", "--name", "X"], "Passphrase"),
        (["accept", "sotto://invite?x"], "What do you call"),
    ],
)
def test_ctrl_c_at_a_prompt_of_an_existing_profile_exits_130(
    profile: Path, command: list[str], prompt: str
) -> None:
    code, output = ctrl_c_at_prompt([*command, "--profile", str(profile)], prompt)
    assert code == ExitCode.INTERRUPTED, output
    assert "error: interrupted" in output
    assert "Traceback" not in output and "Aborted" not in output


@pytest.mark.parametrize(
    ("extra", "prompt"), [([], "Your name"), (["--name", "Quinn"], "Choose a passphrase")]
)
def test_ctrl_c_at_the_prompts_of_init_exits_130_and_leaves_no_profile(
    relay: RelayProcess, tmp_path: Path, extra: list[str], prompt: str
) -> None:
    home = tmp_path / "profile"
    code, output = ctrl_c_at_prompt(["init", "--server", relay.url, "--profile", str(home), *extra], prompt)
    assert code == ExitCode.INTERRUPTED, output
    assert "error: interrupted" in output and "Traceback" not in output
    assert not (home / "sotto.db").exists()
