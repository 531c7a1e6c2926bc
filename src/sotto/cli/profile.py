"""Where a profile lives, how its passphrase is asked for, how a command gets a Client, and how
``sotto init`` makes a new profile appear whole or not at all.

A profile is a directory holding one encrypted store (``sotto.db``): ``--profile DIR``, else
``$SOTTO_HOME``, else ``~/.sotto``. The passphrase comes from ``$SOTTO_PASSPHRASE`` (for scripts)
or a hidden prompt. Commands run as ``asyncio.run`` of one coroutine, inside
:func:`~sotto.cli.failures.reported`, so every error becomes a message and an exit code.

A new profile is built like an atomic file write (:func:`create`): the store is made, the account
registered on the relay and kept in it, and the store closed, all in a hidden directory inside the
profile (``.init-*``); only then is ``sotto.db`` renamed into place. A ``sotto init`` stopped at any
moment (Ctrl-C, a kill, a power cut) therefore leaves either no ``sotto.db`` or a complete one. What
it can leave: the hidden directory, which the next ``sotto init`` (or, past the rename, the next
command) removes, and an account on the relay that no store holds: registration comes before the
store is complete, so an account can be orphaned, with no contact, mailbox or message, and its
secret gone with the unfinished store. A half profile is never left.
A store that holds no account (left by an interrupted ``sotto init`` of an earlier version) is
recognised and replaced by the next ``sotto init``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from sotto.cli import forwarding, listener, render
from sotto.cli.failures import ExitCode, Where, fail, reported
from sotto.client.sdk import STORE_FILE, Client, check_profile
from sotto.errors import StoreError
from sotto.store.migrations import SCHEMA_VERSION
from sotto.store.migrations import Progress as UpgradeProgress
from sotto.store.sqlite import SqliteStore

DEFAULT_HOME = Path("~/.sotto")
SHORT_PASSPHRASE = 10
"""Below this many characters ``sotto init`` warns (several words are better than one)."""
PASSPHRASE_ENV = "SOTTO_PASSPHRASE"  # noqa: S105 (the variable's name, not a passphrase)
BUILDING_PREFIX = ".init-"
"""The hidden directory inside a profile where ``sotto init`` builds the store before moving it."""
COMPANIONS = ("-wal", "-shm", "-journal")
"""SQLite's files beside a database."""

T = TypeVar("T")

StoreOpen = Callable[[UpgradeProgress | None], SqliteStore]
"""Unlocks and opens the profile's store, upgrading it; hears ``(version, done, total)`` as a
step that reads every message goes (:meth:`SqliteStore.open`). It runs in a thread."""
Upgrading = Callable[[StoreOpen], Awaitable[SqliteStore]]
"""Runs a :data:`StoreOpen` for a store older than this version of Sotto while showing how far
its upgrade has got: :func:`upgrade_in_terminal`, or ``sotto chat``'s screen
(:mod:`sotto.tui.upgrade`)."""
UPGRADE_LABEL = "Listing your messages for search"

ProfileOption = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        "-p",
        envvar="SOTTO_HOME",
        show_envvar=False,
        file_okay=False,
        # Parentheses, not brackets: Rich would take "[default: …]" for markup and drop it.
        help="Profile directory (default: $SOTTO_HOME, else ~/.sotto).",
        show_default=False,
    ),
]


def where(profile: Path | None) -> Where:
    return Where((profile or DEFAULT_HOME).expanduser().absolute())


class Found(enum.Enum):
    """What a profile directory holds, seen without its passphrase."""

    NOTHING = "nothing"
    """No store: no profile."""
    UNFINISHED = "unfinished"
    """A store holding no account: an interrupted ``sotto init`` of an earlier version."""
    ACCOUNT = "account"
    """A store with its account."""
    IN_USE = "in use"
    """A store another process has open (so it is not looked into)."""
    FOREIGN = "foreign"
    """A ``sotto.db`` that is not a Sotto store."""
    UNREADABLE = "unreadable"
    """A ``sotto.db`` that cannot be opened to look (permissions, a read-only disk)."""


def store_path(place: Where) -> Path:
    return place.profile / STORE_FILE


def exists(place: Where) -> bool:
    return store_path(place).exists()


def inspect(place: Where) -> Found:
    """What the profile holds; reads only which tables and rows exist, never a sealed value.

    A whole profile loses what an init stopped after its rename left (its emptied ``.init-*``).
    """
    path = store_path(place)
    if not path.exists():
        return Found.NOTHING
    try:
        with _store_lock(path) as held:
            if not held:
                return Found.IN_USE
            found = _contents(path)
            if found is Found.ACCOUNT:
                _remove_leftovers(place.profile)  # no init runs: it would hold the lock
            return found
    except OSError:  # the lock file cannot be made (a read-only directory)
        return Found.UNREADABLE


def ask(text: str, **options: Any) -> str:
    """``typer.prompt``, but Ctrl-C at the prompt exits 130 at once, as everywhere else.

    Click turns Ctrl-C at a prompt into "Aborted!" and exit 1; and inside ``asyncio.run`` the
    first Ctrl-C would only cancel the command's task, unseen until the prompt returned. So while
    the prompt waits, Ctrl-C raises KeyboardInterrupt as in a plain program.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
    if in_main_thread:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return str(typer.prompt(text, **options))
    except typer.Abort as abort:
        if isinstance(abort.__context__, KeyboardInterrupt):
            render.error("interrupted", None)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def passphrase(*, new: bool = False) -> str:
    """The profile's passphrase: ``$SOTTO_PASSPHRASE``, or asked for (twice for a new profile)."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    prompt = "Choose a passphrase for your local store" if new else "Passphrase"
    entered = ask(prompt, hide_input=True, confirmation_prompt=new)
    if not entered.strip():
        fail("an empty passphrase protects nothing", code=ExitCode.USAGE)
    if new and len(entered) < SHORT_PASSPHRASE:
        render.warn(
            "a short passphrase is quick to guess for anyone who copies your store; consider a longer one"
        )
    return entered


CadenceOption = Annotated[
    bool,
    typer.Option(
        "--cadence",
        help="Cadence mode: poll and send on the relay's fixed ticks, with cover traffic, so the "
        "relay cannot tell when you write or read (messages take up to about two ticks).",
    ),
]


def new_profile(profile: Path | None, server: str, name: str | None, prompt: str) -> tuple[Where, str, str]:
    """Where a new profile on ``server`` goes (refused unless there is room for one), its name
    (asked with ``prompt`` when not given, and checked) and its new passphrase."""
    place = where(profile)
    place.server = server
    refuse(place, inspect(place))
    if name is None:
        name = ask(prompt)
    try:
        check_profile(server, name)
    except ValueError as e:
        fail(str(e), code=ExitCode.USAGE)
    return place, name, passphrase(new=True)


def refuse(place: Where, found: Found) -> None:
    """Fail unless ``found`` leaves room for a new profile (nothing, or an unfinished store)."""
    match found:
        case Found.ACCOUNT:
            fail(
                f"there is already a profile in {place.profile}",
                hint="use it as it is, or make another with --profile DIR",
                code=ExitCode.USAGE,
            )
        case Found.IN_USE:
            fail(
                f"the profile in {place.profile} is open in another sotto process",
                hint="stop it first (a running `sotto listen`?), or use another --profile",
                code=ExitCode.PROFILE_BUSY,
            )
        case Found.FOREIGN:
            fail(
                f"{store_path(place)} is not a Sotto store",
                hint="move it away, or use another --profile",
                code=ExitCode.ERROR,
            )
        case Found.UNREADABLE:
            fail(
                f"cannot open {store_path(place)} to see what it holds",
                hint="check its permissions, or use another --profile",
                code=ExitCode.ERROR,
            )


def need_profile(place: Where) -> None:
    """Fail with exit 3 (or 1) unless the profile holds a store with an account (or is in use)."""
    match inspect(place):
        case Found.NOTHING:
            fail(
                f"no Sotto profile in {place.profile}",
                hint="run `sotto init` first (or point --profile / SOTTO_HOME at your profile)",
                code=ExitCode.NO_PROFILE,
            )
        case Found.UNFINISHED:
            fail(
                f"the profile in {place.profile} was never finished (its `sotto init` was interrupted)",
                hint="run `sotto init` again: it replaces the unfinished store",
                code=ExitCode.NO_PROFILE,
            )
        case Found.FOREIGN:
            refuse(place, Found.FOREIGN)


@asynccontextmanager
async def opened(
    place: Where, *, cadence: bool = False, push: bool = False, upgrading: Upgrading | None = None
) -> AsyncIterator[Client]:
    """The profile's client, unlocked with its passphrase, closed when the block ends; through
    the profile's forwarder if it has one (:mod:`sotto.cli.forwarding`). ``push``: the command
    waits for deliveries (on the WebSocket, or by long polls through a forwarder).
    While a ``sotto listen`` holds the profile, fails saying so (exit 7).

    A store older than this version of Sotto is upgraded as it opens, which for some steps means
    reading every message (about 14 s for 100,000): ``upgrading`` shows how far it has got
    (default: a progress bar on stderr, :func:`upgrade_in_terminal`)."""
    need_profile(place)
    await listener.refuse_if_running(place)
    # Through a forwarder, default mode receives by long polls (sotto.client.longpoll).
    forwarder = forwarder_of(place)
    secret = passphrase()
    network = None if forwarder is None else forwarder.network()
    path = store_path(place)

    def open_store(progress: UpgradeProgress | None) -> SqliteStore:
        return SqliteStore.open(path, secret, progress=progress)

    try:
        if behind(path):
            store = await (upgrading or upgrade_in_terminal)(open_store)
        else:
            with render.spinner("Unlocking your store (Argon2id)…"):
                store = await asyncio.to_thread(open_store, None)
        try:
            client = await Client.attach(store, cadence=cadence, network=network)
        except BaseException:
            store.close()
            raise
        place.server = client.server_url
        async with client:
            yield client
    finally:
        if network is not None:
            await network.aclose()


def behind(path: Path) -> bool:
    """Whether the store at ``path`` is older than this version of Sotto, so that opening it
    upgrades it; read without the passphrase (the schema version is not secret). False when it
    cannot be read: opening it says why."""
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION
        finally:
            conn.close()
    except sqlite3.Error:
        return False


async def upgrade_in_terminal(open_store: StoreOpen) -> SqliteStore:
    """Open a store that needs an upgrade with a progress bar on stderr (on a terminal), or one
    line saying what the pause is (otherwise)."""
    if not render.err.is_terminal:
        announced = False

        def say(version: int, done: int, total: int) -> None:
            nonlocal announced
            if not announced:
                announced = True
                render.err.print(f"Upgrading your store: {UPGRADE_LABEL.lower()} ({total:,} messages, once)")

        return await asyncio.to_thread(open_store, say)
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        console=render.err,
        transient=True,
    )
    task = bar.add_task("Unlocking and upgrading your store…", total=None, count="")

    def report(version: int, done: int, total: int) -> None:
        bar.update(
            task, description=UPGRADE_LABEL, completed=done, total=total, count=f"{done:,} of {total:,}"
        )
        bar.refresh()

    with bar:
        return await asyncio.to_thread(open_store, report)


def forwarder_of(place: Where) -> forwarding.Forwarding | None:
    """The profile's forwarder setting, if any; a damaged one fails (never a silent direct call)."""
    try:
        return forwarding.read(place.profile)
    except ValueError as e:
        fail(
            str(e),
            hint=f"write it again with `sotto init --forwarder URL`, or delete {forwarding.FORWARDER_FILE} "
            "to reach the relay directly",
            code=ExitCode.ERROR,
        )


def run(place: Where, work: Coroutine[Any, Any, None], *, until_interrupted: bool = False) -> None:
    """Run one command's coroutine with errors reported (and the coroutine closed if unused).

    ``until_interrupted``: Ctrl-C is the normal way to end this command (exit 0, no message).
    """
    with reported(place):
        try:
            asyncio.run(work)
        except KeyboardInterrupt:
            if not until_interrupted:
                raise
        finally:
            work.close()


def create(place: Where, make: Callable[[Path], Coroutine[Any, Any, T]]) -> T:
    """Make a new profile whole or not at all; ``make(directory)`` creates, fills and closes the
    store ``directory / STORE_FILE`` (it runs in ``asyncio.run``, with errors reported).

    While this runs, the store's lock file is held, so no other sotto process uses the profile.
    """
    with reported(place):
        place.profile.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = store_path(place)
        with _store_lock(target) as held:
            if not held:
                refuse(place, Found.IN_USE)
            found = _contents(target) if target.exists() else Found.NOTHING
            refuse(place, found)
            if found is Found.UNFINISHED:
                render.warn(
                    f"the store in {place.profile} holds no account (an earlier `sotto init` was "
                    "interrupted): replacing it"
                )
                _remove_store(target)
            _remove_leftovers(place.profile)
            building = Path(tempfile.mkdtemp(prefix=BUILDING_PREFIX, dir=place.profile))
            try:
                work = make(building)
                try:
                    result = asyncio.run(work)
                finally:
                    work.close()
                _move_into_place(building / STORE_FILE, target)
            finally:
                shutil.rmtree(building, ignore_errors=True)
    return result


@contextlib.contextmanager
def _store_lock(path: Path) -> Iterator[bool]:
    """The store's own lock file (the one :class:`SqliteStore` holds while open), if free."""
    with open(f"{path}.lock", "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _contents(path: Path) -> Found:
    """What the store file at ``path`` holds (its lock must be held)."""
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True)
        try:
            listed = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            tables = {str(row[0]) for row in listed}
            if not tables:
                return Found.UNFINISHED  # the file was made, its first transaction never committed
            if "keyring" not in tables:
                return Found.FOREIGN
            if "account" not in tables:
                return Found.UNFINISHED
            row = conn.execute("SELECT 1 FROM account LIMIT 1").fetchone()
            return Found.ACCOUNT if row is not None else Found.UNFINISHED
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return Found.UNREADABLE  # opening itself failed: say so rather than guess
    except sqlite3.DatabaseError:
        return Found.FOREIGN  # "file is not a database"


def _remove_store(path: Path) -> None:
    """Remove a store: its companions first, so a stale WAL never meets another database."""
    for suffix in COMPANIONS:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _remove_leftovers(profile: Path) -> None:
    """Remove what an interrupted ``sotto init`` left building (the store's lock is held)."""
    for leftover in profile.glob(f"{BUILDING_PREFIX}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


def _move_into_place(built: Path, target: Path) -> None:
    """Rename the finished store into the profile, durably; its WAL must be folded in already."""
    if not built.exists() or any(Path(f"{built}{suffix}").exists() for suffix in ("-wal", "-journal")):
        raise StoreError("the new store was not closed cleanly; run `sotto init` again")
    for suffix in COMPANIONS:  # nothing of an earlier store may pair with the new one
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.rename(built, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
