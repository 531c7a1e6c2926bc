"""Snapshots of the chat app at 80×24 and 120×40 (pytest-textual-snapshot; the SVGs are in
``__snapshots__/``; ``pytest tests/tui/test_snapshots.py --snapshot-update`` writes them anew
after a deliberate change, to be looked at before committing).

Deterministic by construction: a store seeded from a fixed seed with fixed times, the clock
frozen at 12:30 UTC on 2026-12-07, the dark theme, no cursor blink, the app not listening,
and every worker finished before the screenshot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest
from textual.pilot import Pilot

from sotto.client.sdk import Client
from sotto.errors import StoreError
from sotto.store.migrations import Progress
from sotto.store.sqlite import SqliteStore
from sotto.tui.app import ChatApp
from sotto.tui.upgrade import UpgradeApp, counted
from tests.tui.conftest import WAIT_S, open_seeded, seeded_app, shown
from tests.tui.seed import small_world, world_with_a_request

Compare = Callable[..., bool]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture
def app() -> Iterator[ChatApp]:
    client: Client = asyncio.run(open_seeded(small_world()))
    try:
        yield seeded_app(client)
    finally:
        asyncio.run(client.close())


@pytest.fixture
def app_with_request() -> Iterator[ChatApp]:
    client: Client = asyncio.run(open_seeded(world_with_a_request()))
    try:
        yield seeded_app(client)
    finally:
        asyncio.run(client.close())


@pytest.fixture
def upgrade_app() -> Iterator[UpgradeApp]:
    """The store upgrade's screen, held at 42,000 of 100,000 messages listed."""
    done = threading.Event()

    def open_store(progress: Progress | None) -> SqliteStore:
        assert progress is not None
        progress(6, 42_000, 100_000)
        done.wait(WAIT_S)
        raise StoreError("the snapshot is taken")

    try:
        yield UpgradeApp(open_store)
    finally:
        done.set()


def keys(*pressed: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Freeze what could move, press ``pressed``, and wait until every worker is done."""

    async def before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, ChatApp)
        app.theme = "textual-dark"
        app.composer.cursor_blink = False
        app.command_line.cursor_blink = False
        await pilot.pause()
        await pilot.press(*pressed)
        await app.workers.wait_for_complete()
        await pilot.pause()

    return before


@pytest.mark.parametrize("size", SIZES)
def test_start(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys())


@pytest.mark.parametrize("size", SIZES)
def test_conversation_open(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys("enter"))


@pytest.mark.parametrize("size", SIZES)
def test_pending_message_and_draft(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys("j", "enter", "i", *"a draft"))


@pytest.mark.parametrize("size", SIZES)
def test_group(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys("j", "j", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_search_match(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys("enter", "slash", *"usual", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_command_line(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys("a"))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=keys("question_mark"))


@pytest.mark.parametrize("size", SIZES)
def test_message_requests(snap_compare: Compare, app_with_request: ChatApp, size: tuple[int, int]) -> None:
    assert snap_compare(app_with_request, terminal_size=size, run_before=keys("R"))


@pytest.mark.parametrize("size", SIZES)
def test_search_every_conversation(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    """``:find you``: the matches of every conversation, newest first, the cursor on the first."""
    assert snap_compare(app, terminal_size=size, run_before=keys("F", *"you", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_store_upgrade(snap_compare: Compare, upgrade_app: UpgradeApp, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[None]) -> None:
        pilot.app.theme = "textual-dark"
        await shown(pilot, pilot.app, counted(42_000, 100_000))
        await pilot.pause()

    assert snap_compare(upgrade_app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_changed_messages(snap_compare: Compare, app: ChatApp, size: tuple[int, int]) -> None:
    """An edit, a reaction and a disappearing timer: the header, the notice, ``(edited)``, the
    reaction under its message."""

    async def before(pilot: Pilot[None]) -> None:
        await keys("enter")(pilot)
        for line in ("edit Yes! The usual place, at 12:30", "react 👍", "timer 8h"):
            await pilot.press("colon")
            app.command_line.value = f":{line}"
            await pilot.press("enter")
            await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=before)
