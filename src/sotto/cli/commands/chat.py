"""``sotto chat``: the full-screen chat app (:mod:`sotto.tui`) on a profile."""

from __future__ import annotations

from typing import Annotated

import typer

from sotto.cli import listener
from sotto.cli.profile import CadenceOption, ProfileOption, opened, run, where
from sotto.tui.notify import Detail, Style


def chat(
    profile: ProfileOption = None,
    cadence: CadenceOption = False,
    notify: Annotated[
        Style,
        typer.Option(
            help="How a message that arrives while you look elsewhere is announced: the bell, and "
            "for osc9/osc777 a desktop notification through the terminal. Off over SSH.",
            case_sensitive=False,
        ),
    ] = Style.OSC9,
    notify_sender: Annotated[
        bool,
        typer.Option(
            "--notify-sender",
            help="Name the contact or group in notifications (never the text). Default: content-free.",
        ),
    ] = False,
) -> None:
    """Chat full-screen: conversations, messages and a composer; receives and sends at once.
    While it runs, `sotto send` and the other commands that write go through it."""
    place = where(profile)

    async def work() -> None:
        from sotto.tui.app import ChatApp  # noqa: PLC0415 (Textual loads only for this command)
        from sotto.tui.upgrade import upgrade_in_app  # noqa: PLC0415

        # A store older than this version is upgraded on a screen that counts its progress.
        opening = opened(place, cadence=cadence, push=True, upgrading=upgrade_in_app)
        async with opening as client, listener.serving(client, place):
            # Other commands (`sotto send`, `invite`, `accept`...) go through the control socket.
            app = ChatApp(client, notify=notify, detail=Detail.SENDER if notify_sender else Detail.NONE)
            await app.run_async()

    run(place, work(), until_interrupted=True)
