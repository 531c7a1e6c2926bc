"""``sotto send``, ``sotto listen`` and ``sotto history``: 1:1 conversations."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from sotto.cli import listener, render
from sotto.cli.failures import ExitCode, Where, fail, report_send
from sotto.cli.names import require_contact, require_conversation
from sotto.cli.profile import CadenceOption, ProfileOption, opened, run, where
from sotto.client import control
from sotto.client import events as ev
from sotto.client.content import MAX_TEXT_BYTES
from sotto.client.sdk import Client

CONNECT_WAIT_S = 5.0
"""How long ``listen --once`` waits for the relay before failing."""
OFFLINE_WARNING_S = 3.0
"""How long ``listen`` waits for the relay before warning (it keeps trying)."""
ONCE_TIMEOUT_S = 10.0

TextArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="The text (several words need no quotes); `-` reads it from standard input.",
        show_default=False,
    ),
]
TextFileOption = Annotated[
    Path | None,
    typer.Option(
        "--text-file",
        dir_okay=False,
        help=f"Read the text from this UTF-8 file (at most {MAX_TEXT_BYTES:,} bytes).",
        show_default=False,
    ),
]


def message_text(words: list[str] | None, text_file: Path | None) -> str:
    """The text to send: the words, standard input (``-``) or a file; one line of error if it is
    empty, unreadable, not UTF-8 or longer than a message holds (checked before the store opens)."""
    words = words or []
    if text_file is not None:
        if words:
            fail("give the text or --text-file, not both", code=ExitCode.USAGE)
        try:
            data = text_file.read_bytes()
        except OSError as error:
            fail(f"cannot read {text_file}: {error.strerror or error}", code=ExitCode.USAGE)
        text = _decoded(data, str(text_file))
    elif words == ["-"]:
        if sys.stdin.isatty():
            render.err.print("Type the text, then Ctrl-D on a line of its own:")
        try:
            data = sys.stdin.buffer.read()
        except KeyboardInterrupt:
            fail("interrupted", code=ExitCode.INTERRUPTED)
        text = _decoded(data, "standard input")
    else:
        text = " ".join(words)
    text = text.rstrip("\r\n")  # the newline that ends a file or `echo` is not part of the text
    if not text.strip():
        fail("nothing to send", code=ExitCode.USAGE)
    size = len(text.encode())
    if size > MAX_TEXT_BYTES:
        fail(
            f"the text is {size:,} bytes of UTF-8; a message holds at most {MAX_TEXT_BYTES:,}",
            hint="split it into several messages",
            code=ExitCode.USAGE,
        )
    return text


def _decoded(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{source} is not UTF-8 text", code=ExitCode.USAGE)


def send(
    name: Annotated[str, typer.Argument(help="The contact.", show_default=False)],
    text: TextArgument = None,
    text_file: TextFileOption = None,
    profile: ProfileOption = None,
    cadence: CadenceOption = False,
) -> None:
    """Send a text to a contact: the words, `-` for standard input, or --text-file PATH.

    While `sotto listen` runs on the profile, the text goes through it, on its schedule."""
    place = where(profile)
    message = message_text(text, text_file)
    answer = listener.hand_over(place, control.SendText(name, message, cadence))
    if answer is not None:
        listener.report(place, answer)
        return

    async def work() -> None:
        async with opened(place, cadence=cadence) as client:
            contact = require_contact(client, name)
            shown = render.clean(contact.name)
            if cadence:
                await client.send_text(contact, message)
                render.done(f"queued for {shown}: it goes out in a tick of `sotto listen --cadence`")
                return
            if not client.is_ready(contact):
                await client.send_text(contact, message)
                render.done(f"kept for {shown}: it goes out when {shown} answers your contact request")
                render.next_step("`sotto listen` to receive their answer (it sends what you wrote)")
                return
            with render.spinner(f"Sending to {shown}…"):
                await client.send_text(contact, message)
                left = await client.flush()
            report_send(place, left, f"sent to {shown}", client.last_refusal)

    run(place, work())


def listen(
    once: Annotated[
        bool, typer.Option("--once", help="Receive what is waiting, send the receipts owed, and exit.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Stop after this many seconds (with --once: the most it waits).", show_default=False
        ),
    ] = None,
    profile: ProfileOption = None,
    cadence: CadenceOption = False,
) -> None:
    """Print messages, receipts and typing as they arrive, until Ctrl-C (or --once / --timeout)."""
    place = where(profile)

    async def work() -> None:
        async with opened(place, cadence=cadence, push=True) as client:
            if once:
                await _listen_once(client, place, timeout)
            else:
                async with listener.serving(client, place):
                    await _listen(client, timeout)

    run(place, work(), until_interrupted=not once)


async def _listen_once(client: Client, place: Where, timeout: float | None) -> None:
    await client.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout or ONCE_TIMEOUT_S, CONNECT_WAIT_S)
    while not client.connected and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if not client.connected:
        fail(
            f"cannot reach the relay at {place.relay}",
            hint="is it running? Start one with `sotto server`",
            code=ExitCode.RELAY_UNREACHABLE,
        )
    if timeout is None:
        # In cadence mode: long enough for one whole tick after the current one.
        ticks = client.tick_seconds
        timeout = ONCE_TIMEOUT_S if ticks is None else 2 * ticks + ONCE_TIMEOUT_S
    shown = 0
    for event in await client.sync(timeout=timeout):
        if isinstance(event, ev.ConnectionChanged):
            continue
        line = render.event_line(event, client.server_url)
        if line is not None:
            render.out.print(line)
            shown += 1
    if not shown:
        render.dim("nothing new")


async def _listen(client: Client, timeout: float | None) -> None:
    render.err.print(
        Text.assemble(
            "Listening as ",
            (render.clean(client.display_name), "bold"),
            f" on {client.server_url} · Ctrl-C to stop",
        )
    )

    async def warn_if_offline() -> None:
        await asyncio.sleep(OFFLINE_WARNING_S)
        if not client.connected:
            render.warn(
                f"cannot reach the relay at {client.server_url}; still trying (is `sotto server` running?)"
            )

    watchdog = asyncio.create_task(warn_if_offline())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for event in client.listen():
                    line = render.event_line(event, client.server_url)
                    if line is not None:
                        render.out.print(line)
    finally:
        watchdog.cancel()


def history(
    name: Annotated[str, typer.Argument(help="A contact or a group.", show_default=False)],
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest messages.")] = 20,
    mark_read: Annotated[
        bool, typer.Option("--read/--no-read", help="Mark what you see read (sends read receipts).")
    ] = True,
    profile: ProfileOption = None,
) -> None:
    """Show the latest messages of a conversation (and mark them read)."""
    place = where(profile)

    async def work() -> None:
        async with opened(place) as client:
            conversation = require_conversation(client, name)
            names = {c.contact_id: c.name for c in client.contacts(include_removed=True)}
            messages = client.history(conversation, limit=limit)
            if not messages:
                render.dim("no messages yet")
            for message in messages:
                sender = names.get(message.sender, "?") if message.sender is not None else "you"
                render.out.print(render.message_line(message, sender))
            if mark_read and messages:
                await client.mark_read(conversation)

    run(place, work())
