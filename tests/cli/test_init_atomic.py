"""``sotto init`` stopped at any point leaves no profile or a whole one, never half of one.

The runs happen in ``init_kills.py`` (a real ``sotto init`` against the real relay, stopped by
SIGINT or SIGKILL at chosen steps of its progress); this file checks every profile they left.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sotto.cli.failures import ExitCode
from sotto.cli.profile import BUILDING_PREFIX
from sotto.client.sdk import STORE_FILE
from sotto.crypto.passphrase import Argon2Params
from sotto.demo.relay import RelayProcess
from sotto.store.sqlite import SqliteStore
from tests.cli.conftest import PASSPHRASE, Sotto, flat, make_profile
from tests.cli.init_kills import PASSPHRASE as KILLED_PASSPHRASE

ROOT = Path(__file__).resolve().parents[2]
MIN_POINTS = 20
"""Distinct steps at which each signal must have stopped a run."""


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A relay of this module's own, which lets 127.0.0.1 register an account per run."""
    root = tmp_path_factory.mktemp("many-accounts-relay")
    command = (str(Path(__file__).with_name("many_accounts_relay.py")),)
    with RelayProcess(root / "data", root / "relay.log", command=command) as process:
        process.start()
        yield process


@pytest.fixture(scope="module")
def killed_runs(relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("init-kills")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOTTO_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.cli.init_kills", relay.url, str(root)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.slow
def test_init_stopped_at_any_step_leaves_no_profile_or_a_whole_one(
    killed_runs: dict[str, Any], sotto: Sotto, relay: RelayProcess
) -> None:
    runs = killed_runs["runs"]
    points = Counter(run["signal"] for run in runs)
    assert points["SIGINT"] >= MIN_POINTS and points["SIGKILL"] >= MIN_POINTS, points
    outcomes: Counter[str] = Counter()
    for run in runs:
        what = f"{run['signal']} at step {run['point']} ({run['at']}): {run['output']}"
        assert run["at"] is not None, f"the run ended before its step: {what}"
        expected = -9 if run["signal"] == "SIGKILL" else ExitCode.INTERRUPTED
        assert run["status"] == expected, what
        assert "Traceback" not in run["output"], what
        profile = Path(run["profile"])
        if (profile / STORE_FILE).exists():
            # Whole: it opens, and the relay knows its account.
            exported = sotto("export", "--json", "--profile", str(profile), passphrase=KILLED_PASSPHRASE)
            assert exported.exit_code == 0, f"{what}\n{exported.output}"
            outcomes["whole"] += 1
            assert not list(profile.glob(f"{BUILDING_PREFIX}*")), f"a leftover was not removed: {what}"
            again = sotto("init", "--server", relay.url, "--name", "Again", "--profile", str(profile))
            assert again.exit_code == ExitCode.USAGE and "already a profile" in again.output, what
        else:
            # None: commands say there is no profile, and `sotto init` makes one in the same place.
            missing = sotto("contacts", "--profile", str(profile), passphrase=KILLED_PASSPHRASE)
            assert missing.exit_code == ExitCode.NO_PROFILE, f"{what}\n{missing.output}"
            outcomes["none"] += 1
            if list(profile.glob(f"{BUILDING_PREFIX}*")):
                # A kill left the store it was building: the next `sotto init` removes it (tried
                # on every third such profile, spread over the run, to keep the test short).
                outcomes["leftover"] += 1
                if outcomes["leftover"] % 3 != 1:
                    continue
                make_profile(sotto, relay, profile, "Again")
                assert sotto("contacts", "--profile", str(profile)).exit_code == 0, what
                assert not list(profile.glob(f"{BUILDING_PREFIX}*")), f"a leftover was not removed: {what}"
    # The steps straddle the moment the profile appears: both outcomes occur.
    assert outcomes["whole"] >= 2 and outcomes["none"] >= MIN_POINTS and outcomes["leftover"] >= 2, outcomes


def test_a_whole_run_reaches_the_relay_and_every_phase(killed_runs: dict[str, Any]) -> None:
    steps: list[str] = killed_runs["steps"]
    for phase in (
        "store/sqlite/store.py:SqliteStore.create",
        "crypto/passphrase.py:derive_key",
        "client/transport.py:HttpRelay.create_account",
        "client/flows/account.py:store_account",
        "os.rename",
        "os.fsync",
    ):
        assert phase in steps, phase
    chosen = {steps[run["point"] - 1].split(":")[0] for run in killed_runs["runs"]}
    for module in ("store/migrations/v001_initial.py", "client/transport.py", "os.rename"):
        assert module in chosen, module


def unfinished_store(profile: Path) -> None:
    """What an interrupted `sotto init` of an earlier version left: a store with no account."""
    profile.mkdir(parents=True)
    SqliteStore.create(profile / STORE_FILE, "another passphrase", kdf=Argon2Params.TESTING).close()


def test_a_store_without_an_account_is_named_and_replaced_by_init(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    unfinished_store(profile)
    used = sotto("contacts", "--profile", str(profile))
    assert used.exit_code == ExitCode.NO_PROFILE
    assert "was never finished" in flat(used.output) and "run `sotto init` again" in flat(used.output)
    assert "Traceback" not in used.output
    made = sotto("init", "--server", relay.url, "--name", "Alice", "--profile", str(profile))
    assert made.exit_code == 0, made.output
    assert "holds no account" in flat(made.output) and "replacing it" in flat(made.output)
    assert sotto("contacts", "--profile", str(profile)).exit_code == 0


def no_tables(path: Path) -> None:
    """A database whose first transaction never committed (killed inside ``SqliteStore.create``)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


@pytest.mark.parametrize("make", [Path.touch, no_tables], ids=["empty file", "no tables"])
def test_an_empty_or_never_committed_store_file_is_replaced(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path, make: Callable[[Path], None]
) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    make(profile / STORE_FILE)
    made = sotto("init", "--server", relay.url, "--name", "Alice", "--profile", str(profile))
    assert made.exit_code == 0, made.output
    assert "holds no account" in flat(made.output)
    assert sotto("contacts", "--profile", str(profile)).exit_code == 0


def test_a_file_that_is_no_store_is_left_alone(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / STORE_FILE).write_text("my notes, not a database\n" * 10)
    made = sotto("init", "--server", relay.url, "--name", "Alice", "--profile", str(profile))
    assert made.exit_code == ExitCode.ERROR
    assert "is not a Sotto store" in flat(made.output)
    assert (profile / STORE_FILE).read_text().startswith("my notes")


def test_leftovers_of_an_interrupted_init_are_removed(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    leftover = profile / f"{BUILDING_PREFIX}abc123"
    leftover.mkdir(parents=True)
    (leftover / STORE_FILE).write_bytes(b"half")
    (profile / f"{STORE_FILE}-wal").write_bytes(b"stale")  # must never be paired with the new store
    make_profile(sotto, relay, profile, "Alice")
    assert not leftover.exists()
    assert sotto("contacts", "--profile", str(profile)).exit_code == 0


def test_init_while_the_profile_is_open_elsewhere_is_refused(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    profile = make_profile(sotto, relay, tmp_path / "profile", "Alice")
    store = SqliteStore.open(profile / STORE_FILE, PASSPHRASE)
    try:
        busy = sotto("init", "--server", relay.url, "--name", "Alice", "--profile", str(profile))
    finally:
        store.close()
    assert busy.exit_code == ExitCode.PROFILE_BUSY
    assert "open in another sotto process" in flat(busy.output)


def test_a_store_that_cannot_be_opened_is_not_called_foreign(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    (profile / STORE_FILE).mkdir(parents=True)  # SQLite cannot open it (as with no permission)
    made = sotto("init", "--server", relay.url, "--name", "Alice", "--profile", str(profile))
    assert made.exit_code == ExitCode.ERROR and "cannot open" in flat(made.output), made.output
    assert (profile / STORE_FILE).is_dir()


def test_a_lock_file_that_cannot_be_made_is_one_line(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    profile = make_profile(sotto, relay, tmp_path / "profile", "Alice")
    (profile / f"{STORE_FILE}.lock").unlink()
    (profile / f"{STORE_FILE}.lock").mkdir()  # as a read-only directory would refuse the file
    made = sotto("init", "--server", relay.url, "--name", "Alice", "--profile", str(profile))
    assert made.exit_code == ExitCode.ERROR and "cannot open" in flat(made.output), made.output
    used = sotto("contacts", "--profile", str(profile))
    assert used.exit_code == ExitCode.ERROR and "Traceback" not in used.output, used.output
