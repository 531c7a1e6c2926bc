"""What ``sotto chat`` shows while it opens a store older than this version of Sotto: the store's
upgrade can read every message (schema 6 lists each one for search, about 14 s for 100,000), so
instead of a silent pause before the app appears, a small screen counts the messages listed.

The store is opened in a thread (:meth:`SqliteStore.open` with a progress callback), and the
screen ends when it is open; the chat app starts after it. The upgrade runs in one transaction
and cannot stop halfway: quitting while it runs quits as soon as it is done (a killed process
loses nothing either: the store stays as it was and is upgraded the next time).
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState

from sotto.store.migrations import Progress
from sotto.store.sqlite import SqliteStore

StoreOpen = Callable[[Progress | None], SqliteStore]
"""Unlocks, upgrades and opens the store, telling the callback ``(version, done, total)``."""
UNLOCKING = "Unlocking your store (Argon2id)…"
LISTING = "Listing your messages for search"


def counted(done: int, total: int) -> str:
    return f"{LISTING}: {done:,} of {total:,}"


class UpgradeApp(App[SqliteStore | None]):
    """The store's upgrade, counted; its result is the open store (``error`` holds why not)."""

    TITLE = "Sotto"
    CSS = """
    Screen { align: center middle; }
    #upgrade { width: 64; max-width: 100%; height: auto; border: round $accent; padding: 1 2; }
    #upgrade > Static { width: 100%; }
    #upgrade-count, #upgrade ProgressBar { margin-top: 1; }
    """

    def __init__(self, open_store: StoreOpen) -> None:
        super().__init__()
        self.open_store = open_store
        self.error: BaseException | None = None
        self.leaving = False
        """Quit was asked for while the upgrade ran: the chat app does not start after it."""

    def compose(self) -> ComposeResult:
        with Vertical(id="upgrade") as box:
            box.border_title = "Upgrading your store"
            yield Static("This version of Sotto keeps your store in a newer form; it is changed once.")
            yield Static(UNLOCKING, id="upgrade-count")
            yield ProgressBar(show_eta=False, id="upgrade-bar")
            yield Static("", id="upgrade-note")

    def on_mount(self) -> None:
        self.run_worker(self._open, thread=True, exit_on_error=False, name="open")

    def _open(self) -> SqliteStore:
        return self.open_store(self._heard)

    def _heard(self, version: int, done: int, total: int) -> None:
        """From the opening thread: show how far the listing has got."""
        self.call_from_thread(self.show, done, total)

    def show(self, done: int, total: int) -> None:
        self.query_one("#upgrade-count", Static).update(counted(done, total))
        self.query_one(ProgressBar).update(total=max(total, 1), progress=done)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.SUCCESS:
            self.exit(event.worker.result)
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.error = event.worker.error
            self.exit(None)

    async def action_quit(self) -> None:
        self.leaving = True
        self.query_one("#upgrade-note", Static).update("Quitting as soon as the upgrade is done…")


async def upgrade_in_app(open_store: StoreOpen, *, headless: bool = False) -> SqliteStore:
    """Open a store that needs an upgrade while :class:`UpgradeApp` counts it; its error, if it
    failed; KeyboardInterrupt (the store closed) if quit was asked for meanwhile."""
    app = UpgradeApp(open_store)
    store = await app.run_async(headless=headless)
    if app.error is not None:
        raise app.error
    if store is None:  # the app was stopped from outside before the store opened
        raise KeyboardInterrupt
    if app.leaving:
        store.close()
        raise KeyboardInterrupt
    return store
