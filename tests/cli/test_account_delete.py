"""``sotto account delete`` against a real relay process: asks first (``--yes`` skips), prints
what the relay held, and afterwards ``sotto export`` says the account is gone."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sotto.cli.failures import ExitCode
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile


def test_account_delete_asks_then_deletes_and_export_says_so(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    assert sotto("invite", "--profile", alice).exit_code == 0  # an invite's mailbox and token

    declined = sotto("account", "delete", "--profile", alice, input="n\n")
    assert declined.exit_code == ExitCode.ERROR and "nothing deleted" in flat(declined.output)
    held = json.loads(sotto("export", "--json", "--profile", alice).stdout)
    assert len(held["account"]["tables"]["accounts"]) == 1 and len(held["mailboxes"]) == 1

    confirmed = sotto("account", "delete", "--profile", alice, input="y\n")
    out = flat(confirmed.output)
    assert confirmed.exit_code == 0, out
    assert "deleted your account" in out and "accounts: 1 row" in out and "access_tokens: 1 row" in out
    assert "mailboxes: 1, with 0 waiting messages" in out

    gone = sotto("export", "--profile", alice)
    assert gone.exit_code == ExitCode.ERROR and "deleted" in flat(gone.output)
    again = sotto("account", "delete", "--yes", "--profile", alice)
    assert again.exit_code != 0 and "deleted" in flat(again.output)


def test_after_a_deletion_neither_side_can_write(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    """The deleted profile refuses to write; a contact writing to it is told the relay does not
    know the mailbox, not that the relay is unreachable."""
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))
    link = re.search(r"sotto://invite\?[^\s']+", flat(sotto("invite", "--profile", alice).output))
    assert link is not None
    assert sotto("accept", link.group(0), "--name", "Alice", "--profile", bob).exit_code == 0
    assert "Bob accepted your invite" in flat(sotto("listen", "--once", "--profile", alice).output)
    assert "Alice answered" in flat(sotto("listen", "--once", "--profile", bob).output)
    assert sotto("account", "delete", "--yes", "--profile", alice).exit_code == 0

    own = sotto("send", "Bob", "still here?", "--profile", alice)
    assert own.exit_code == ExitCode.ERROR and "can no longer write" in flat(own.output)
    theirs = sotto("send", "Alice", "hello?", "--profile", bob)
    said = flat(theirs.output)
    assert theirs.exit_code == ExitCode.REFUSED, said
    assert "does not know the mailbox they gave you" in said and "their account is gone" in said


def test_account_delete_yes_skips_the_question(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))
    result = sotto("account", "delete", "--yes", "--profile", bob, input="")
    assert result.exit_code == 0, result.output
    assert "deleted your account" in flat(result.output) and "devices: 1 row" in flat(result.output)


def test_account_delete_needs_a_profile_and_is_listed(sotto: Sotto, tmp_path: Path) -> None:
    result = sotto("account", "delete", "--yes", "--profile", str(tmp_path / "nowhere"))
    assert result.exit_code == ExitCode.NO_PROFILE and "run `sotto init` first" in flat(result.output)
    assert "account" in sotto("--help").output
    assert "delete" in sotto("account", "--help").output
