"""``sotto chat`` opening a store older than this version: the upgrade's screen counts the
messages listed for search, hands over the open store, and reports a failure or a quit."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from sotto.errors import WrongPassphraseError
from sotto.store.migrations import Progress
from sotto.store.sqlite import SqliteStore
from sotto.tui.upgrade import UNLOCKING, UpgradeApp, counted, upgrade_in_app
from tests.store.fixtures import store_v1 as v1
from tests.tui.conftest import WAIT_S, run, shown

FIXTURE = Path(__file__).parents[1] / "store" / "fixtures" / "store_v1.db"


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    """A store at schema 5 holding the v1 fixture's two messages."""
    path = tmp_path / "sotto.db"
    shutil.copyfile(FIXTURE, path)
    SqliteStore.open(path, v1.PASSPHRASE, migrate_to=5).close()
    return path


class Held:
    """Opens ``path``; after each report of the upgrade, waits until the test lets it go on, so
    the test sees every count on the screen before the store is open."""

    def __init__(self, path: Path, passphrase: str = v1.PASSPHRASE) -> None:
        self.path = path
        self.passphrase = passphrase
        self.go_on = threading.Event()
        self.heard: list[tuple[int, int, int]] = []

    def __call__(self, progress: Progress | None) -> SqliteStore:
        assert progress is not None

        def report(version: int, done: int, total: int) -> None:
            self.heard.append((version, done, total))
            progress(version, done, total)
            assert self.go_on.wait(WAIT_S), "the test never let the upgrade go on"

        return SqliteStore.open(self.path, self.passphrase, progress=report)


def test_the_upgrade_is_counted_on_screen_and_hands_over_the_store(old_store: Path) -> None:
    held = Held(old_store)

    async def main() -> SqliteStore | None:
        app = UpgradeApp(held)
        async with app.run_test(size=(80, 24)) as pilot:
            await shown(pilot, app, counted(2, 2))  # the fixture's two messages
            assert "Upgrading your store" in app.screen.query_one("#upgrade").border_title  # type: ignore[operator]
            held.go_on.set()
            await pilot.pause()
            for _ in range(int(WAIT_S / 0.05)):
                if app.return_value is not None:
                    break
                await pilot.pause(0.05)
        return app.return_value

    store = run(main)
    assert isinstance(store, SqliteStore)
    store.close()
    assert held.heard == [(6, 2, 2)]


def test_before_the_first_count_it_says_it_is_unlocking(old_store: Path) -> None:
    held = Held(old_store)
    started = threading.Event()

    def slow_unlock(progress: Progress | None) -> SqliteStore:
        started.set()
        assert held.go_on.wait(WAIT_S)
        return held(progress)

    async def main() -> None:
        app = UpgradeApp(slow_unlock)
        async with app.run_test(size=(80, 24)) as pilot:
            await shown(pilot, app, UNLOCKING)
            assert started.is_set()
            held.go_on.set()
            await shown(pilot, app, counted(2, 2))
        if isinstance(app.return_value, SqliteStore):
            app.return_value.close()

    run(main)


def test_a_wrong_passphrase_fails_as_opening_would(old_store: Path) -> None:
    async def main() -> None:
        app = UpgradeApp(Held(old_store, "not the passphrase"))
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(int(WAIT_S / 0.05)):
                if app.error is not None:
                    break
                await pilot.pause(0.05)
        assert isinstance(app.error, WrongPassphraseError)
        assert app.return_value is None

    run(main)


def test_quit_during_the_upgrade_waits_for_it_and_then_stops(old_store: Path) -> None:
    held = Held(old_store)

    async def main() -> None:
        app = UpgradeApp(held)
        async with app.run_test(size=(80, 24)) as pilot:
            await shown(pilot, app, counted(2, 2))
            await pilot.press("ctrl+q")
            await shown(pilot, app, "Quitting as soon as the upgrade is done")
            assert app.is_running  # still upgrading
            held.go_on.set()
            for _ in range(int(WAIT_S / 0.05)):
                if app.return_value is not None:
                    break
                await pilot.pause(0.05)
        assert app.leaving
        assert isinstance(app.return_value, SqliteStore)
        app.return_value.close()

    run(main)
    # The upgrade was kept: opening again has nothing to list.
    heard: list[tuple[int, int, int]] = []
    SqliteStore.open(old_store, v1.PASSPHRASE, progress=lambda *p: heard.append(p)).close()
    assert heard == []


def test_upgrade_in_app_raises_what_opening_raised() -> None:
    def refused(progress: Progress | None) -> SqliteStore:
        raise WrongPassphraseError("wrong passphrase")

    async def main() -> None:
        # Headless: the app draws nowhere, and ends as soon as the opening fails.
        with pytest.raises(WrongPassphraseError):
            await asyncio.wait_for(upgrade_in_app(refused, headless=True), WAIT_S)

    run(main)
