"""``sotto backup create|restore`` between real profiles on a real relay: the export after a
restore is byte-identical, a wrong key changes nothing, and the restored profile talks again
through the session repair."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from sotto.cli.commands import backup
from sotto.cli.failures import ExitCode
from sotto.client.runtime import Engine
from sotto.crypto.passphrase import Argon2Params
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile

RECOVERY = re.compile(r"((?:[A-Z2-7]{4}-){12}[A-Z2-7]{4})")


@pytest.fixture(autouse=True)
def fast_backup_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "KDF", Argon2Params.TESTING)


def test_backup_restore_export_identical_and_the_restored_profile_talks_again(
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
    ok("send", "Alice", "an answer ünïcödé 🎉", "--profile", bob)
    ok("listen", "--once", "--profile", alice)

    file = tmp_path / "bob.sottobackup"
    made = ok("backup", "create", str(file), "--profile", bob)
    key = RECOVERY.search(made)
    assert key is not None, made
    assert "shown this once" in flat(made) and "2 messages" in flat(made)

    now = int(time.time() * 1000)
    with monkeypatch.context() as patch:
        patch.setattr(Engine, "now_ms", lambda self: now)
        before = ok("history", "--export", "json", "--profile", bob)
        restored = str(tmp_path / "bob-new")
        ok("backup", "restore", str(file), "--profile", restored, SOTTO_RECOVERY_KEY=key.group(1).lower())
        after = ok("history", "--export", "json", "--profile", restored)
    assert "before the backup" in before and "an answer" in before
    assert after == before

    # The copied-from machine is retired; the restored profile has no session with Alice. Her
    # next message fails to decrypt, its retry receipt makes her start a new session and send it
    # again, and from then on both directions work.
    ok("send", "Bob", "after the restore", "--profile", alice)
    ok("listen", "--once", "--profile", restored)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", restored)
    assert "after the restore" in flat(ok("history", "Alice", "--profile", restored))
    ok("send", "Alice", "the restored Bob writes", "--profile", restored)
    assert "the restored Bob writes" in flat(ok("listen", "--once", "--profile", alice))


def test_wrong_key_refused_and_nothing_changed(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    carol = make_profile(sotto, relay, tmp_path / "carol", "Carol")
    file = tmp_path / "carol.sottobackup"
    result = sotto("backup", "create", str(file), "--profile", str(carol))
    assert result.exit_code == 0, result.output
    store = carol / "sotto.db"
    before = store.read_bytes()

    existing = sotto("backup", "restore", str(file), "--profile", str(carol), input="")
    assert existing.exit_code == ExitCode.USAGE and "already a profile" in flat(existing.output)

    wrong = "AAAA-" * 12 + "AAAA"
    for target in (carol, tmp_path / "elsewhere"):
        refused = sotto(
            "backup", "restore", str(file), "--force", "--profile", str(target), input=f"{wrong}\n"
        )
        assert refused.exit_code == ExitCode.WRONG_PASSPHRASE, refused.output
        assert "wrong recovery key" in flat(refused.output) and "nothing was changed" in flat(refused.output)
    assert store.read_bytes() == before
    assert not (tmp_path / "elsewhere" / "sotto.db").exists()

    damaged = tmp_path / "damaged"
    damaged.write_bytes(file.read_bytes()[:-1])
    key = "BBBB-" * 12 + "BBBB"
    refused = sotto("backup", "restore", str(damaged), "--profile", str(tmp_path / "x"), input=f"{key}\n")
    assert refused.exit_code == ExitCode.WRONG_PASSPHRASE


def test_a_short_backup_passphrase_is_refused(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    dave = make_profile(sotto, relay, tmp_path / "dave", "Dave")
    file = tmp_path / "dave.sottobackup"
    short = sotto("backup", "create", str(file), "--passphrase", "--profile", str(dave), input="tiny pass\n")
    assert short.exit_code == ExitCode.USAGE and "at least 5 words" in flat(short.output)
    assert not file.exists()
    words = "ladder velvet comet harbor pickle"
    made = sotto(
        "backup", "create", str(file), "--passphrase", "--profile", str(dave), input=f"{words}\n{words}\n"
    )
    assert made.exit_code == 0, made.output
    assert RECOVERY.search(made.output) is None
    again = sotto(
        "backup", "restore", str(file), "--passphrase", "--profile", str(tmp_path / "d2"), input=f"{words}\n"
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "d2" / "sotto.db").exists()
