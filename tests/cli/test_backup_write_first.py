"""``sotto send`` from a restored profile, before anyone wrote to it, between real profiles on a
real relay: it says the text waits for the contact's new session (not that it was sent), and
the text arrives once the contact's client answered; the same through a running ``sotto listen``,
and for a group message."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sotto.cli.commands import backup
from sotto.crypto.passphrase import Argon2Params
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat
from tests.cli.test_listener import Listener, heard, run_sotto

RECOVERY = re.compile(r"((?:[A-Z2-7]{4}-){12}[A-Z2-7]{4})")


@pytest.fixture(autouse=True)
def fast_backup_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "KDF", Argon2Params.TESTING)


Ok = Callable[..., str]


@pytest.fixture
def ok(sotto: Sotto, monkeypatch: pytest.MonkeyPatch) -> Ok:
    """Run ``sotto`` with these arguments (and environment variables), assert it succeeded, and
    return its output with whitespace runs as one space."""

    def run(*args: str, **env: str) -> str:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    return run


def restored_bob(
    ok: Ok, relay: RelayProcess, tmp_path: Path, *, before_backup: Callable[[str, str], None] | None = None
) -> tuple[str, str]:
    """Alice and Bob made contacts; ``before_backup(alice, bob)`` done; Bob's profile backed up
    and restored into a new folder: the profiles of Alice and of the restored Bob."""
    alice, bob = (str(tmp_path / n) for n in ("alice", "bob"))
    ok("init", "--server", relay.url, "--name", "Alice", "--profile", alice)
    ok("init", "--server", relay.url, "--name", "Bob", "--profile", bob)
    link = re.search(r"sotto://invite\?[^\s']+", ok("invite", "--profile", alice))
    assert link is not None
    ok("accept", link.group(0), "--name", "Alice", "--profile", bob)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    if before_backup is not None:
        before_backup(alice, bob)
    file = tmp_path / "bob.sottobackup"
    key = RECOVERY.search(ok("backup", "create", str(file), "--profile", bob))
    assert key is not None
    restored = str(tmp_path / "bob-new")
    ok("backup", "restore", str(file), "--profile", restored, SOTTO_RECOVERY_KEY=key.group(1))
    return alice, restored


def test_the_restored_profile_writes_first(ok: Ok, relay: RelayProcess, tmp_path: Path) -> None:
    def a_message(alice: str, bob: str) -> None:
        ok("send", "Bob", "before the backup", "--profile", alice)
        ok("listen", "--once", "--profile", bob)

    alice, restored = restored_bob(ok, relay, tmp_path, before_backup=a_message)
    # The restored Bob writes first: it asks Alice for a session; her client starts one and
    # answers on it; Bob's text goes out when that answer arrives.
    # `sotto send` says so: the text is kept, not sent.
    said = ok("send", "Alice", "the restored Bob writes first", "--profile", restored)
    assert "queued: waiting for Alice to answer; it goes out when they do" in said
    assert "sent to" not in said
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", restored)
    assert "the restored Bob writes first" in ok("listen", "--once", "--profile", alice)
    assert "sent to Alice" in ok("send", "Alice", "and now it flows", "--profile", restored)
    assert "and now it flows" in ok("listen", "--once", "--profile", alice)
    ok("send", "Bob", "welcome back", "--profile", alice)
    assert "welcome back" in ok("listen", "--once", "--profile", restored)


def test_through_a_running_listener_the_restored_profile_says_it_waits(
    sotto: Sotto, ok: Ok, relay: RelayProcess, tmp_path: Path
) -> None:
    alice, restored = restored_bob(ok, relay, tmp_path)
    listening = Listener("--profile", restored)
    try:
        listening.wait_for("connected to")
        sent = run_sotto("send", "Alice", "handed to the listener", "--profile", restored)
        assert sent.returncode == 0, sent.stderr
        said = flat(sent.stdout)
        assert "queued: waiting for Alice to answer; it goes out when they do" in said
        assert "sent to" not in said
        # Alice's client answers the session request; the listener then sends the text.
        first = ok("listen", "--once", "--profile", alice)
        if "handed to the listener" not in first:  # it may come within the same listen
            first += heard(sotto, alice, "handed to the listener")
        assert "Bob: handed to the listener" in first
        listening.wait_for("Alice received 1 message")
    finally:
        assert listening.stop() == 0


def a_group(ok: Ok) -> Callable[[str, str], None]:
    def make(alice: str, bob: str) -> None:
        ok("group", "create", "Trip", "Bob", "--profile", alice)
        ok("listen", "--once", "--profile", bob)

    return make


def heard_in_group(ok: Ok, alice: str, text: str, *, then: str | None = None) -> str:
    """What Alice's listens show until ``text`` (at most four): the first answers the restored
    profile's session request, after which ``then`` (the restored profile, when no listener
    runs for it) listens once to get the answer and send."""
    seen = ok("listen", "--once", "--profile", alice)
    if then is not None:
        ok("listen", "--once", "--profile", then)
    for _ in range(3):
        if text in seen:
            break
        seen += ok("listen", "--once", "--profile", alice)
    return seen


def test_a_group_message_from_the_restored_profile_says_it_waits(
    ok: Ok, relay: RelayProcess, tmp_path: Path
) -> None:
    alice, restored = restored_bob(ok, relay, tmp_path, before_backup=a_group(ok))
    said = ok("group", "send", "Trip", "the restored Bob in the group", "--profile", restored)
    assert "queued for #Trip: waiting for Alice to answer; it goes out to them when they do" in said
    assert "sent to" not in said
    seen = heard_in_group(ok, alice, "the restored Bob in the group", then=restored)
    assert "Bob in #Trip: the restored Bob in the group" in seen
    assert "sent to #Trip" in ok("group", "send", "Trip", "and now at once", "--profile", restored)


def test_through_a_running_listener_a_group_message_says_it_waits(
    ok: Ok, relay: RelayProcess, tmp_path: Path
) -> None:
    alice, restored = restored_bob(ok, relay, tmp_path, before_backup=a_group(ok))
    listening = Listener("--profile", restored)
    try:
        listening.wait_for("connected to")
        sent = run_sotto("group", "send", "Trip", "through the listener", "--profile", restored)
        assert sent.returncode == 0, sent.stderr
        said = flat(sent.stdout)
        assert "queued for #Trip: waiting for Alice to answer; it goes out to them when they do" in said
        assert "sent to" not in said
        seen = heard_in_group(ok, alice, "through the listener")
        assert "Bob in #Trip: through the listener" in seen
    finally:
        assert listening.stop() == 0
