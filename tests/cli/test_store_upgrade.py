"""A command that opens a store older than this version of Sotto shows the upgrade's progress
(the schema-6 listing of every message for search) instead of a silent pause: a progress bar on a
terminal, one line otherwise, and nothing once the store is current."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from sotto.cli import profile, render
from sotto.cli.profile import UPGRADE_LABEL, behind
from sotto.store.migrations import Progress
from sotto.store.sqlite import SqliteStore
from tests.cli.conftest import Sotto
from tests.store.fixtures import store_v1 as v1

FIXTURE = Path(__file__).parents[1] / "store" / "fixtures" / "store_v1.db"


@pytest.fixture
def old_profile(tmp_path: Path) -> Path:
    """A profile whose store is at schema 5, holding the v1 fixture's two messages."""
    directory = tmp_path / "old"
    directory.mkdir()
    store = directory / "sotto.db"
    shutil.copyfile(FIXTURE, store)
    SqliteStore.open(store, v1.PASSPHRASE, migrate_to=5).close()
    return directory


def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr as a terminal, written to a buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(render, "err", Console(file=buffer, force_terminal=True, width=120))
    return buffer


def test_a_command_shows_the_upgrade_as_a_bar_once(
    old_profile: Path, sotto: Sotto, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = terminal(monkeypatch)
    assert behind(old_profile / "sotto.db")
    result = sotto("contacts", "-p", str(old_profile), passphrase=v1.PASSPHRASE)
    assert result.exit_code == 0, result.output
    assert v1.CONTACT_NAME in result.output
    drawn = shown.getvalue()
    assert UPGRADE_LABEL in drawn
    assert "2 of 2" in drawn  # the fixture's two messages, listed
    assert not behind(old_profile / "sotto.db")

    shown.truncate(0)
    again = sotto("contacts", "-p", str(old_profile), passphrase=v1.PASSPHRASE)
    assert again.exit_code == 0, again.output
    assert UPGRADE_LABEL not in shown.getvalue()


def test_without_a_terminal_the_upgrade_is_one_line(old_profile: Path, sotto: Sotto) -> None:
    result = sotto("contacts", "-p", str(old_profile), passphrase=v1.PASSPHRASE)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("Upgrading your store") == 1
    assert "(2 messages, once)" in result.stderr


def test_the_bar_counts_what_the_store_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = terminal(monkeypatch)
    opened = object()

    def open_store(progress: Progress | None) -> SqliteStore:
        assert progress is not None
        for done in (2_000, 4_000, 5_000):
            progress(6, done, 5_000)
            assert f"{done:,} of 5,000" in shown.getvalue()  # drawn as it is heard
        return opened  # type: ignore[return-value]

    assert asyncio.run(profile.upgrade_in_terminal(open_store)) is opened
