"""Arguments and failures: every expected failure is one clean message, a hint and its exit code.

No test here expects a traceback; ``--debug`` is the only way to get one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import typer

from sotto.cli.app import app
from sotto.cli.failures import ExitCode, Where, explain, reported
from sotto.client.sdk import STORE_FILE
from sotto.demo.relay import RelayProcess, free_port
from sotto.errors import (
    DecodeError,
    InviteError,
    RelayError,
    RelayStorageError,
    RelayUnavailableError,
    StoreCorruptedError,
    StoreLockedError,
    UnknownContactError,
    WrongPassphraseError,
)
from sotto.store.sqlite import SqliteStore
from tests.cli.conftest import PASSPHRASE, Sotto, flat, make_profile

COMMANDS = (
    *("server", "init", "invite", "accept", "send", "listen", "contacts", "history", "group"),
    *("verify", "export", "rotate", "audit"),
)


@pytest.fixture(scope="module")
def alice(relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_profile(Sotto(), relay, tmp_path_factory.mktemp("alice") / "profile", "Alice")


def clean(output: str) -> None:
    assert "Traceback" not in output
    assert "SOTTO_PASSPHRASE=" not in output


def test_help_lists_every_command(sotto: Sotto) -> None:
    result = sotto("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "--debug" not in result.output  # hidden
    group = sotto("group", "--help")
    for sub in ("create", "add", "send"):
        assert sub in group.output


def test_no_arguments_shows_the_usage(sotto: Sotto) -> None:
    result = sotto()
    assert "Usage" in result.output


def test_missing_and_bad_arguments_are_usage_errors(sotto: Sotto, tmp_path: Path) -> None:
    assert sotto("send").exit_code == ExitCode.USAGE
    assert sotto("listen", "--timeout", "-1", "--profile", str(tmp_path)).exit_code == ExitCode.USAGE
    assert sotto("server", "--port", "70000").exit_code == ExitCode.USAGE
    assert sotto("frobnicate").exit_code == ExitCode.USAGE


@pytest.mark.parametrize("command", [["contacts"], ["send", "Bob", "hi"], ["listen", "--once"], ["export"]])
def test_no_profile_says_run_init(sotto: Sotto, tmp_path: Path, command: list[str]) -> None:
    result = sotto(*command, "--profile", str(tmp_path / "nowhere"))
    assert result.exit_code == ExitCode.NO_PROFILE
    assert "no Sotto profile in" in result.output and "nowhere" in result.output
    assert "run `sotto init` first" in flat(result.output)
    clean(result.output)


def test_profile_from_sotto_home(sotto: Sotto, tmp_path: Path) -> None:
    result = sotto.runner.invoke(
        app, ["contacts"], env={"SOTTO_HOME": str(tmp_path / "home"), "SOTTO_PASSPHRASE": "x"}
    )
    assert result.exit_code == ExitCode.NO_PROFILE
    assert str(tmp_path / "home") in flat(result.output)


def test_unreachable_relay_names_the_url_and_leaves_no_store(sotto: Sotto, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = sotto("init", "--server", url, "--name", "Dan", "--profile", str(tmp_path / "dan"))
    assert result.exit_code == ExitCode.RELAY_UNREACHABLE
    assert f"cannot reach the relay at {url}" in result.output
    assert "sotto server" in result.output
    assert not (tmp_path / "dan" / STORE_FILE).exists()  # so `sotto init` can simply be run again
    clean(result.output)


def test_init_checks_its_values(sotto: Sotto, tmp_path: Path, alice: Path) -> None:
    bad_url = sotto("init", "--server", "ftp://relay", "--name", "Dan", "--profile", str(tmp_path / "d"))
    assert bad_url.exit_code == ExitCode.USAGE and "http" in bad_url.output
    long_name = sotto("init", "--name", "x" * 300, "--profile", str(tmp_path / "d"))
    assert long_name.exit_code == ExitCode.USAGE and "display name" in long_name.output
    again = sotto("init", "--name", "Alice", "--profile", str(alice))
    assert again.exit_code == ExitCode.USAGE and "already a profile" in again.output


def test_init_prompts_for_name_and_passphrase_twice(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    answers = "Erin\nsecret words\nsecret words\n"
    result = sotto(
        "init", "--server", relay.url, "--profile", str(tmp_path / "erin"), passphrase=None, input=answers
    )
    assert result.exit_code == 0, result.output
    assert "Welcome, Erin" in result.output
    assert "secret words" not in result.output  # the passphrase is not echoed
    wrong = sotto("contacts", "--profile", str(tmp_path / "erin"), passphrase=None, input="not it\n")
    assert wrong.exit_code == ExitCode.WRONG_PASSPHRASE
    right = sotto("contacts", "--profile", str(tmp_path / "erin"), passphrase=None, input="secret words\n")
    assert right.exit_code == 0 and "No contacts yet" in right.output


def test_wrong_passphrase(sotto: Sotto, alice: Path) -> None:
    result = sotto("contacts", "--profile", str(alice), passphrase="not the passphrase")
    assert result.exit_code == ExitCode.WRONG_PASSPHRASE
    assert "wrong passphrase" in result.output
    clean(result.output)


def test_a_profile_open_elsewhere_is_busy(sotto: Sotto, alice: Path) -> None:
    store = SqliteStore.open(alice / STORE_FILE, PASSPHRASE)
    try:
        result = sotto("contacts", "--profile", str(alice))
    finally:
        store.close()
    assert result.exit_code == ExitCode.PROFILE_BUSY
    assert "open in another sotto process" in result.output and "sotto listen" in result.output


def test_unknown_contact_lists_the_known_ones(sotto: Sotto, alice: Path) -> None:
    none_yet = sotto("send", "Bob", "hi", "--profile", str(alice))
    assert none_yet.exit_code == ExitCode.UNKNOWN_NAME
    assert "no contact named 'Bob'" in none_yet.output
    assert "you have no contacts yet" in flat(none_yet.output) and "sotto invite" in none_yet.output
    for command in (["history", "Bob"], ["verify", "Bob"], ["group", "send", "Lunch", "hi"]):
        result = sotto(*command, "--profile", str(alice))
        assert result.exit_code == ExitCode.UNKNOWN_NAME, result.output
        clean(result.output)


def test_invites_that_cannot_be_used(sotto: Sotto, alice: Path) -> None:
    garbage = sotto("accept", "https://example.com/not-an-invite", "--name", "X", "--profile", str(alice))
    assert garbage.exit_code == ExitCode.REFUSED
    assert "this invite cannot be used" in garbage.output
    made = sotto("invite", "--no-qr", "--profile", str(alice))
    link = next(word.strip("'") for word in made.output.split() if word.startswith("'sotto://invite?"))
    own = sotto("accept", link, "--name", "Me", "--profile", str(alice))
    assert own.exit_code == ExitCode.REFUSED and "own" in own.output


def test_nothing_to_send(sotto: Sotto, alice: Path) -> None:
    result = sotto("send", "Bob", " ", "--profile", str(alice))
    assert result.exit_code == ExitCode.USAGE and "nothing to send" in result.output


def test_debug_shows_the_exception(sotto: Sotto, alice: Path) -> None:
    result = sotto("--debug", "contacts", "--profile", str(alice), passphrase="wrong")
    assert isinstance(result.exception, WrongPassphraseError)


def test_a_taken_port_is_explained(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    result = sotto("server", "--port", str(relay.port), "--data", str(tmp_path))
    assert result.exit_code == ExitCode.ERROR
    assert f"cannot listen on 127.0.0.1:{relay.port}" in result.output
    assert "another `sotto server`" in flat(result.output)


# ---------------------------------------------------------------------------- the mapping itself
@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (WrongPassphraseError("x"), ExitCode.WRONG_PASSPHRASE, "wrong passphrase"),
        (StoreLockedError("x"), ExitCode.PROFILE_BUSY, "another sotto process"),
        (StoreCorruptedError("x"), ExitCode.ERROR, "cannot be read"),
        (RelayUnavailableError("x"), ExitCode.RELAY_UNREACHABLE, "http://relay.test"),
        (RelayStorageError(), ExitCode.REFUSED, "cannot store"),
        (RelayError(429, "rate_limited", "slow down"), ExitCode.REFUSED, "slow down (429 rate_limited)"),
        (InviteError("used"), ExitCode.REFUSED, "invite"),
        (UnknownContactError("no such contact"), ExitCode.UNKNOWN_NAME, "no such contact"),
        (DecodeError("bad"), ExitCode.USAGE, "cannot read"),
        (ValueError("bad value"), ExitCode.USAGE, "bad value"),
        (PermissionError(13, "Permission denied", "/x"), ExitCode.ERROR, "Permission denied"),
        (RuntimeError("boom"), ExitCode.ERROR, "unexpected RuntimeError"),
    ],
)
def test_every_error_has_a_message_and_code(error: Exception, code: ExitCode, words: str) -> None:
    message, _, got = explain(error, Where(Path("/p"), "http://relay.test"))
    assert got == code
    assert words in message


def test_ctrl_c_is_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as stopped, reported(Where(Path("/p"))):
        raise KeyboardInterrupt
    assert stopped.value.exit_code == ExitCode.INTERRUPTED
    assert "interrupted" in capsys.readouterr().err


def test_unexpected_errors_become_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.suppress(typer.Exit), reported(Where(Path("/p"))):
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: boom" in err and "--debug" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["init"], ["send"], ["group", "send"], ["listen"]])
def test_profile_help_shows_where_the_profile_is_by_default(sotto: Sotto, command: list[str]) -> None:
    shown = flat(sotto(*command, "--help").output.replace("│", " "))
    assert "Profile directory (default: $SOTTO_HOME, else ~/.sotto)." in shown
    assert "Profile directory ." not in shown
