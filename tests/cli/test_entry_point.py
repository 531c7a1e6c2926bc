"""The real command in real processes: the installed entry point, the default Argon2 setting,
and Ctrl-C ending ``sotto server`` and ``sotto listen`` cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import httpx

from sotto.cli.app import main
from sotto.demo.relay import RelayProcess, free_port
from tests.cli.conftest import PASSPHRASE

# Python leaves SIGINT ignored if it started ignored (as in a shell's background jobs): restore
# the handler a terminal user has, then run the CLI as `python -m sotto.cli` would.
INTERRUPTIBLE = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('sotto.cli', run_name='__main__', alter_sys=True)"
)


def sotto(
    *args: str, home: Path | None = None, passphrase: str = PASSPHRASE
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOTTO_PASSPHRASE": passphrase, "COLUMNS": "200"}
    if home is not None:
        env["SOTTO_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "sotto.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def interrupted(
    args: list[str], ready: str, *, home: Path | None = None, probe: Callable[[], None] = lambda: None
) -> tuple[int, str]:
    """Start ``sotto ARGS``, wait for ``ready`` on stderr, run ``probe``, press Ctrl-C; the exit
    code and stderr."""
    env = {**os.environ, "SOTTO_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}
    if home is not None:
        env["SOTTO_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if ready in line:
            probe()
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=30)[1]
    return process.returncode, "".join(seen) + rest


def test_the_sotto_script_is_the_cli() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "sotto"]
    assert script.load() is main
    result = sotto("--help")
    assert result.returncode == 0 and "invite" in result.stdout


def test_init_with_the_real_key_derivation(relay: RelayProcess, tmp_path: Path) -> None:
    started = time.monotonic()
    made = sotto("init", "--server", relay.url, "--name", "Frank", home=tmp_path / "frank")
    assert made.returncode == 0, made.stderr
    assert "Welcome, Frank" in made.stdout
    listed = sotto("contacts", home=tmp_path / "frank")
    assert listed.returncode == 0 and "You are Frank" in listed.stdout
    wrong = sotto("contacts", home=tmp_path / "frank", passphrase="nope")
    assert wrong.returncode == 4 and "wrong passphrase" in wrong.stderr and "Traceback" not in wrong.stderr
    assert time.monotonic() - started < 30


def test_ctrl_c_stops_the_server_cleanly(tmp_path: Path) -> None:
    port = free_port()

    def healthy() -> None:
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).status_code == 200

    code, stderr = interrupted(
        ["server", "--port", str(port), "--data", str(tmp_path / "data")],
        "event relay started",
        probe=healthy,
    )
    assert code == 0, stderr
    assert "event relay stopped" in stderr and "relay stopped" in stderr
    assert "Traceback" not in stderr
    assert (tmp_path / "data" / "relay.db").exists()


def test_ctrl_c_ends_listen_quietly(relay: RelayProcess, tmp_path: Path) -> None:
    assert sotto("init", "--server", relay.url, "--name", "Gina", home=tmp_path).returncode == 0
    code, stderr = interrupted(["listen"], "Listening as", home=tmp_path, probe=lambda: time.sleep(0.5))
    assert code == 0, stderr
    assert "error" not in stderr and "Traceback" not in stderr
