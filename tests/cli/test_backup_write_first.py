"""``sotto send`` from a restored profile, before anyone wrote to it, between real profiles on a
real relay: it says the text waits for the contact's new session (not that it was sent), and
the text arrives once the contact's client answered; the same through a running ``sotto listen``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sotto.cli.commands import backup
from sotto.crypto.passphrase import Argon2Params
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile
from tests.cli.test_listener import Listener, heard, run_sotto

RECOVERY = re.compile(r"((?:[A-Z2-7]{4}-){12}[A-Z2-7]{4})")


@pytest.fixture(autouse=True)
def fast_backup_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "KDF", Argon2Params.TESTING)


def test_the_restored_profile_writes_first(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str, **env: str) -> str:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return result.output

    link = re.search(r"sotto://invite\?[^\s']+", flat(sotto("invite", "--profile", alice).output))
    assert link is not None
    ok("accept", link.group(0), "--name", "Alice", "--profile", bob)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    ok("send", "Bob", "before the backup", "--profile", alice)
    ok("listen", "--once", "--profile", bob)

    file = tmp_path / "bob.sottobackup"
    key = RECOVERY.search(ok("backup", "create", str(file), "--profile", bob))
    assert key is not None
    restored = str(tmp_path / "bob-new")
    ok("backup", "restore", str(file), "--profile", restored, SOTTO_RECOVERY_KEY=key.group(1))

    # The restored Bob writes first: it asks Alice for a session; her client starts one and
    # answers on it; Bob's text goes out when that answer arrives.
    # `sotto send` says so: the text is kept, not sent.
    said = flat(ok("send", "Alice", "the restored Bob writes first", "--profile", restored))
    assert "queued: waiting for Alice to answer; it goes out when they do" in said
    assert "sent to" not in said
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", restored)
    assert "the restored Bob writes first" in flat(ok("listen", "--once", "--profile", alice))
    assert "sent to Alice" in flat(ok("send", "Alice", "and now it flows", "--profile", restored))
    assert "and now it flows" in flat(ok("listen", "--once", "--profile", alice))
    ok("send", "Bob", "welcome back", "--profile", alice)
    assert "welcome back" in flat(ok("listen", "--once", "--profile", restored))


def test_through_a_running_listener_the_restored_profile_says_it_waits(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str, **env: str) -> str:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return result.output

    link = re.search(r"sotto://invite\?[^\s']+", flat(sotto("invite", "--profile", alice).output))
    assert link is not None
    ok("accept", link.group(0), "--name", "Alice", "--profile", bob)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    file = tmp_path / "bob.sottobackup"
    key = RECOVERY.search(ok("backup", "create", str(file), "--profile", bob))
    assert key is not None
    restored = str(tmp_path / "bob-new")
    ok("backup", "restore", str(file), "--profile", restored, SOTTO_RECOVERY_KEY=key.group(1))

    listening = Listener("--profile", restored)
    try:
        listening.wait_for("connected to")
        sent = run_sotto("send", "Alice", "handed to the listener", "--profile", restored)
        assert sent.returncode == 0, sent.stderr
        said = flat(sent.stdout)
        assert "queued: waiting for Alice to answer; it goes out when they do" in said
        assert "sent to" not in said
        # Alice's client answers the session request; the listener then sends the text.
        first = flat(ok("listen", "--once", "--profile", alice))
        if "handed to the listener" not in first:  # it may come within the same listen
            first += heard(sotto, alice, "handed to the listener")
        assert "Bob: handed to the listener" in first
        listening.wait_for("Alice received 1 message")
    finally:
        assert listening.stop() == 0


def test_a_group_message_from_the_restored_profile_says_it_waits(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str, **env: str) -> str:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    link = re.search(r"sotto://invite\?[^\s']+", flat(sotto("invite", "--profile", alice).output))
    assert link is not None
    ok("accept", link.group(0), "--name", "Alice", "--profile", bob)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    ok("group", "create", "Trip", "Bob", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    file = tmp_path / "bob.sottobackup"
    key = RECOVERY.search(ok("backup", "create", str(file), "--profile", bob))
    assert key is not None
    restored = str(tmp_path / "bob-new")
    ok("backup", "restore", str(file), "--profile", restored, SOTTO_RECOVERY_KEY=key.group(1))

    said = ok("group", "send", "Trip", "the restored Bob in the group", "--profile", restored)
    assert "queued for #Trip: waiting for Alice to answer; it goes out to them when they do" in said
    assert "sent to" not in said
    seen = ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", restored)
    for _ in range(3):
        if "the restored Bob in the group" in seen:
            break
        seen += ok("listen", "--once", "--profile", alice)
    assert "Bob in #Trip: the restored Bob in the group" in seen
    assert "sent to #Trip" in ok("group", "send", "Trip", "and now at once", "--profile", restored)
