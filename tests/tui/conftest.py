"""Fixtures for the chat app's tests: a real relay on loopback for the tests that message, fast
stores, and a helper that waits (with a deadline) for the app to show something."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.app import App
from textual.pilot import Pilot

from sotto.client import events as ev
from sotto.client.runtime import Engine
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.store.interfaces import Store
from sotto.tui.app import ChatApp
from sotto.tui.model import TimeFormat
from tests.client.running_relay import free_port, running_relay
from tests.tui.seed import NOW_MS, offline_client

T = TypeVar("T")
PASSPHRASE = "a tui test passphrase"
WAIT_S = 30.0
"""The most any test waits for something to arrive (it fails then)."""


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_relay(tmp_path_factory.mktemp("tui-relay"), free_port()) as url:
        yield url


@pytest.fixture(autouse=True)
def no_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """No seconds-long waits between an invite's two requests (tests/client/test_chores.py
    covers them on virtual time)."""
    monkeypatch.setattr(Engine, "spread_s", (0.0, 0.0))


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 120))


def frozen() -> TimeFormat:
    return TimeFormat(lambda: NOW_MS, dt.UTC)


def seeded_app(client: Client, **options: object) -> ChatApp:
    """The app over a seeded store: not listening, frozen clock, no notifications written."""
    return ChatApp(client, live=False, times=frozen(), environ={}, **options)  # type: ignore[arg-type]


async def open_seeded(store: Store) -> Client:
    return await offline_client(store)


async def new_client(server_url: str, directory: Path, name: str) -> Client:
    return await Client.create(
        directory / name, server_url, PASSPHRASE, name, kdf=Argon2Params.TESTING, receipt_delay=0.1
    )


async def befriend(a: Client, b: Client) -> None:
    """``a`` invites ``b``; both sides sync until each can write to the other, and ``a`` accepts
    ``b``'s message request."""
    invite = await a.create_invite()
    await b.accept_invite(invite.link, a.display_name)
    for _ in range(40):
        await a.sync(timeout=3, idle=0.1)
        await b.sync(timeout=3, idle=0.1)
        if b.is_ready(a.display_name) and a.is_ready(b.display_name):
            await a.accept_request(b.display_name)  # b came through a's invite: a message request
            return
    raise AssertionError("the invite did not complete")


async def until(pilot: Pilot[None], check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Let the app run until ``check()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await pilot.pause(0.05)


async def events_until(
    client: Client, check: Callable[[list[ev.Event]], bool], what: str, timeout: float = WAIT_S
) -> list[ev.Event]:
    """``client.sync()`` until the events so far satisfy ``check``; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[ev.Event] = []
    while not check(seen):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        seen.extend(await client.sync(timeout=2, idle=0.1))
    return seen


async def shown(pilot: Pilot[Any], app: App[Any], text: str, timeout: float = WAIT_S) -> None:
    """Let the app run until its screen shows ``text``; fail after ``timeout`` seconds with what it
    shows. A change of state is drawn at the app's next refresh, not at once: a check of the screen
    made as soon as the state changed can see the frame before it (or none, on a screen just
    pushed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in (seen := screen_text(app)):
        if loop.time() > deadline:
            raise AssertionError(f"the screen never showed {text!r}; it shows:\n{seen}")
        await pilot.pause(0.05)


def screen_text(app: App[Any]) -> str:
    """What the screen shows, as plain text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)
