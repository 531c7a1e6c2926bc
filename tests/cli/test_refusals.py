"""The relay's quota and proof-of-work refusals as the command line reports them: one line
each, saying what is full or asked for and whether anything was lost, with exit code 8."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from sotto.cli.failures import ExitCode, Where, explain, report_send
from sotto.client.sdk import STORE_FILE
from sotto.errors import (
    MailboxFullError,
    QuotaExceededError,
    RelayFullError,
    WorkRequiredError,
    WorkTooHardError,
)
from sotto.server.config import Quotas
from tests.cli.conftest import Sotto, flat
from tests.client.running_relay import free_port, running_relay


@pytest.mark.parametrize(
    ("error", "words", "hint"),
    [
        (MailboxFullError(), "mailbox on http://relay.test is full", "saved"),
        (RelayFullError(), "short of disk space", "saved"),
        (QuotaExceededError("the account holds its quota of access tokens"), "access tokens", "invites"),
        (
            WorkTooHardError(30, 24),
            "asks for 30 bits of proof of work, more than this client does (24)",
            "again",
        ),
        (
            WorkRequiredError("work_expired", "expired", 12),
            "did not accept our proof of work (work_expired)",
            "clock",
        ),
    ],
)
def test_each_refusal_has_its_own_message(error: Exception, words: str, hint: str) -> None:
    message, advice, code = explain(error, Where(Path("/p"), "http://relay.test"))
    assert code == ExitCode.REFUSED
    assert words in message
    assert advice is not None and hint in advice


def test_init_on_a_relay_short_of_disk_says_so_and_leaves_no_store(sotto: Sotto, tmp_path: Path) -> None:
    with running_relay(tmp_path / "relay", free_port(), quotas=Quotas(min_free_disk_bytes=2**62)) as url:
        result = sotto("init", "--server", url, "--name", "Dan", "--profile", str(tmp_path / "dan"))
    assert result.exit_code == ExitCode.REFUSED
    assert f"the relay at {url} is short of disk space" in flat(result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "dan" / STORE_FILE).exists()


def test_a_send_held_for_want_of_room_says_why_not_that_the_relay_is_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    place = Where(Path("/p"), "http://relay.test")
    with pytest.raises(typer.Exit) as held:
        report_send(place, 2, "sent", MailboxFullError())
    assert held.value.exit_code == ExitCode.REFUSED
    said = flat(capsys.readouterr().err)
    assert "2 queued envelope(s) not taken" in said and "mailbox on http://relay.test is full" in said
    assert "unreachable" not in said and "is the relay running" not in said
    with pytest.raises(typer.Exit) as down:
        report_send(place, 1, "sent")
    assert down.value.exit_code == ExitCode.RELAY_UNREACHABLE
