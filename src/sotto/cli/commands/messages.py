"""``sotto send``, ``listen`` and ``history``, and the changes to messages sent: ``edit``,
``unsend``, ``react`` and the disappearing ``timer`` (1:1 conversations and groups alike).

Messages are named by their id as ``sotto history`` shows it (the first 8 hex digits of the
16-byte id both sides store); any unambiguous prefix of 4 digits or more does."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from sotto.cli import listener, render
from sotto.cli.commands import files
from sotto.cli.failures import ExitCode, Where, fail, report_send
from sotto.cli.names import require_contact, require_conversation
from sotto.cli.profile import CadenceOption, ProfileOption, opened, run, where
from sotto.client import content, control, history_export
from sotto.client import events as ev
from sotto.client.content import MAX_TEXT_BYTES
from sotto.client.durations import timer_seconds
from sotto.client.flows.attachments import StoredAttachment
from sotto.client.sdk import Client
from sotto.store.model import Contact, ContactId, Group, Message, MessageRowId

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


ReplyOption = Annotated[
    str | None,
    typer.Option(
        "--reply-to",
        metavar="ID",
        help="Quote this message of the conversation (its id as `sotto history` shows it); "
        "stop `sotto listen` on the profile first.",
        show_default=False,
    ),
]


def send(
    name: Annotated[
        str,
        typer.Argument(help="The contact (or, with --reply-to or --file, a group).", show_default=False),
    ],
    text: TextArgument = None,
    *,
    text_file: TextFileOption = None,
    reply_to: ReplyOption = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            dir_okay=False,
            help="Send this file (at most 100 MiB) to the contact or group instead of a text; "
            "stop `sotto listen` first.",
            show_default=False,
        ),
    ] = None,
    caption: Annotated[
        str | None, typer.Option("--caption", help="A caption for --file.", show_default=False)
    ] = None,
    profile: ProfileOption = None,
    cadence: CadenceOption = False,
) -> None:
    """Send a text to a contact: the words, `-` for standard input, or --text-file PATH; or a
    file to a contact or a group with --file PATH [--caption TEXT].

    While `sotto listen` runs on the profile, the text goes through it, on its schedule."""
    place = where(profile)
    if file is not None:
        if text or text_file is not None or reply_to is not None:
            fail("--file sends a file alone: give its words as --caption", code=ExitCode.USAGE)
        files.send_file(place, name, file, caption or "", cadence)
        return
    if caption is not None:
        fail("--caption goes with --file", code=ExitCode.USAGE)
    message = message_text(text, text_file)
    if reply_to is not None:
        _reply(place, name, reply_to, message, cadence)
        return
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
            if client.waits_for_session(contact):  # a restored profile: no session with them yet
                report_send(
                    place,
                    left,
                    f"queued: waiting for {shown} to answer; it goes out when they do",
                    client.last_refusal,
                )
                render.next_step(
                    f"`sotto listen` to receive the answer (their Sotto must be running once); "
                    f"this profile was restored and asked {shown} for a new session"
                )
                return
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
        line = event_line(event, client.server_url)
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
                    line = event_line(event, client.server_url)
                    if line is not None:
                        render.out.print(line)
    finally:
        watchdog.cancel()


class ExportFormat(enum.StrEnum):
    HTML = "html"
    JSON = "json"


def history(
    name: Annotated[
        str | None,
        typer.Argument(
            help="A contact or a group (with --export: all of them if left out).", show_default=False
        ),
    ] = None,
    *,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest messages.")] = 20,
    mark_read: Annotated[
        bool, typer.Option("--read/--no-read", help="Mark what you see read (sends read receipts).")
    ] = True,
    export: Annotated[
        ExportFormat | None,
        typer.Option(
            "--export",
            help="Write the whole history (of NAME, or of every conversation) as a readable html page "
            "or as json, instead of showing it; marks nothing read.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="The file for --export (made readable by you only); else standard output.",
            show_default=False,
        ),
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Show the latest messages of a conversation (and mark them read), or export your history."""
    place = where(profile)
    if export is None and output is not None:
        fail("--output goes with --export", code=ExitCode.USAGE)
    if export is not None:
        _export(place, name, export, output)
        return
    if name is None:
        fail("name a contact or a group (or give --export to export every conversation)", code=ExitCode.USAGE)

    async def work() -> None:
        async with opened(place) as client:
            conversation = require_conversation(client, name)
            names = {c.contact_id: c.name for c in client.contacts(include_removed=True)}
            messages = client.history(conversation, limit=limit)
            if not messages:
                render.dim("no messages yet")
            for line in history_lines(messages, names, held=client.attachments(messages)):
                render.out.print(line)
            if mark_read and messages:
                await client.mark_read(conversation)

    run(place, work())


def _export(place: Where, name: str | None, fmt: ExportFormat, output: Path | None) -> None:
    if output is not None and output.exists():
        fail(f"{output} exists", hint="choose another file name, or remove it first", code=ExitCode.USAGE)

    async def work() -> None:
        async with opened(place) as client:
            conversation = None if name is None else require_conversation(client, name)
            found = client.export_history(conversation)
        text = history_export.to_html(found) if fmt is ExportFormat.HTML else history_export.to_json(found)
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        # Created for its owner only, and never over an existing file.
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        count = sum(len(c.messages) for c in found.conversations)
        render.done(f"{count:,} messages of {len(found.conversations)} conversation(s) written to {output}")

    run(place, work())


# ---------------------------------------------------------------------------- changes to messages
MESSAGE_ID_DIGITS = 8
"""Hex digits of a message id that ``sotto history`` shows."""
HISTORY_SCAN = 10_000
"""How far back a message id given on the command line is looked for."""

IdArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        help="The message: its id as `sotto history` shows it (4 or more hex digits).",
        show_default=False,
    ),
]
ConversationArgument = Annotated[str, typer.Argument(help="A contact or a group.", show_default=False)]


def find_message(client: Client, conversation: Contact | Group, given: str) -> Message:
    """The message of the conversation whose id starts with ``given``; one line of error if
    none or several do."""
    prefix = given.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,32}", prefix):
        fail(
            f"{render.clean(given)!r} is not a message id",
            hint="`sotto history NAME` shows each message's id (4 or more of its hex digits will do)",
            code=ExitCode.USAGE,
        )
    found = [
        m
        for m in client.history(conversation, limit=HISTORY_SCAN)
        if m.timer_s is None and m.message_id.hex().startswith(prefix)
    ]
    if not found:
        fail(
            f"no message {prefix} in this conversation",
            hint="`sotto history NAME` shows each message's id",
            code=ExitCode.UNKNOWN_NAME,
        )
    if len(found) > 1:
        fail(f"{len(found)} messages have ids starting {prefix}: give more digits", code=ExitCode.USAGE)
    return found[0]


async def _sent(client: Client, place: Where, success: str) -> None:
    with render.spinner("Sending…"):
        left = await client.flush()
    report_send(place, left, success, client.last_refusal)


def _reply(place: Where, name: str, reply_to: str, text: str, cadence: bool) -> None:
    async def work() -> None:
        async with opened(place, cadence=cadence) as client:
            conversation = require_conversation(client, name)
            quoted = find_message(client, conversation, reply_to)
            await client.send_reply(conversation, quoted.message_id, text)
            if cadence:
                render.done("queued: it goes out in a tick of `sotto listen --cadence`")
                return
            await _sent(client, place, f"reply sent to {_shown(conversation)}")

    run(place, work())


def _shown(conversation: Contact | Group) -> str:
    return (
        render.clean(conversation.name)
        if isinstance(conversation, Contact)
        else f"#{render.clean(conversation.name)}"
    )


def edit(
    name: ConversationArgument,
    message: IdArgument,
    text: TextArgument = None,
    text_file: TextFileOption = None,
    profile: ProfileOption = None,
) -> None:
    """Change the text of one of your messages, for everyone (within 24 hours of sending it)."""
    place = where(profile)
    new_text = message_text(text, text_file)

    async def work() -> None:
        async with opened(place) as client:
            conversation = require_conversation(client, name)
            target = find_message(client, conversation, message)
            await client.edit_message(conversation, target.message_id, new_text)
            await _sent(client, place, f"edited for {_shown(conversation)}")

    run(place, work())


def unsend(
    name: ConversationArgument,
    message: IdArgument,
    profile: ProfileOption = None,
) -> None:
    """Delete one of your messages for everyone (within 24 hours of sending it); a placeholder stays."""
    place = where(profile)

    async def work() -> None:
        async with opened(place) as client:
            conversation = require_conversation(client, name)
            target = find_message(client, conversation, message)
            await client.delete_for_everyone(conversation, target.message_id)
            await _sent(client, place, f"deleted for {_shown(conversation)}")

    run(place, work())


def react(
    name: ConversationArgument,
    message: IdArgument,
    emoji: Annotated[
        str | None, typer.Argument(help="One emoji; leave it out with --remove.", show_default=False)
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Take your reaction back.")] = False,
    profile: ProfileOption = None,
) -> None:
    """React to a message with an emoji (one reaction per person: a new one replaces yours)."""
    place = where(profile)
    if remove == (emoji is not None):
        fail("give an emoji, or --remove", code=ExitCode.USAGE)
    chosen = emoji or ""
    try:
        content.encode(content.Reaction(bytes(16), bytes(16), chosen, 0))
    except ValueError:
        fail(
            f"a reaction is one emoji (at most {content.MAX_REACTION_BYTES} bytes, no spaces)",
            code=ExitCode.USAGE,
        )

    async def work() -> None:
        async with opened(place) as client:
            conversation = require_conversation(client, name)
            target = find_message(client, conversation, message)
            await client.react(conversation, target.message_id, chosen)
            await _sent(
                client, place, f"reaction {'removed' if remove else 'sent'} to {_shown(conversation)}"
            )

    run(place, work())


def parse_duration(value: str) -> int:
    """``off``/``0``, or a number and a unit (``30s``, ``5m``, ``8h``, ``1d``, ``4w``): seconds."""
    seconds = timer_seconds(value)
    if seconds is None:
        fail(
            f"{render.clean(value)!r} is not a timer",
            hint="a number and a unit, 30s, 5m, 8h, 1d or 4w (four weeks at most), or off",
            code=ExitCode.USAGE,
        )
    return seconds


def duration_text(seconds: int) -> str:
    for unit, size in (("week", 7 * 86_400), ("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' * (count != 1)}"
    return f"{seconds} second{'s' * (seconds != 1)}"


def timer(
    name: ConversationArgument,
    duration: Annotated[str, typer.Argument(help="30s, 5m, 8h, 1d, 4w … or off.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Set the conversation's disappearing messages (or turn them off), for everyone in it.

    What anyone writes from then on is deleted from every side that long after it arrives."""
    place = where(profile)
    seconds = parse_duration(duration)

    async def work() -> None:
        async with opened(place) as client:
            conversation = require_conversation(client, name)
            await client.set_disappearing_timer(conversation, seconds)
            state = f"set to {duration_text(seconds)}" if seconds else "off"
            await _sent(client, place, f"disappearing messages {state} for {_shown(conversation)}")

    run(place, work())


# ---------------------------------------------------------------------------- how changes are shown
def change_line(e: ev.Event) -> Text | None:
    """How ``sotto listen`` shows a change to a message or a file; None for other events."""
    group: Group | None = getattr(e, "group", None)
    where = "" if group is None else f" in #{render.clean(group.name)}"
    match e:
        case ev.AttachmentReceived() | ev.GroupAttachmentReceived():
            sender = e.contact if isinstance(e, ev.AttachmentReceived) else e.sender
            line = Text.assemble(
                (render.clock(e.sent_ms), "dim"),
                " ",
                (render.clean(sender.name), "bold cyan"),
                f" sent 📎 {render.clean(e.file_name or 'a file')} ({files.size_text(e.size)}){where}",
            )
            if e.text:
                line.append(f": {render.clean(e.text)}")
            line.append(f"  · sotto save {e.message_id.hex()[:MESSAGE_ID_DIGITS]}", style="dim")
            return line
        case ev.MessageEdited():
            who = render.clean(e.contact.name)
            return Text.assemble((who, "bold cyan"), f" edited a message{where}: {render.clean(e.text)}")
        case ev.MessageDeleted():
            return Text(f"{render.clean(e.contact.name)} deleted a message{where}", style="dim")
        case ev.ReactionChanged():
            did = f"reacted {render.clean(e.emoji)} to" if e.emoji else "took back a reaction to"
            return Text(
                f"{render.clean(e.contact.name)} {did} {e.message_id.hex()[:MESSAGE_ID_DIGITS]}{where}"
            )
        case ev.TimerChanged():
            return Text(f"{render.clean(e.contact.name)} {_timer_words(e.seconds)}{where}", style="yellow")
        case ev.MessageChangeIgnored():
            return Text(
                f"a change to a message from {render.clean(e.contact.name)} was ignored{where}", style="dim"
            )
    return None


def _timer_words(seconds: int) -> str:
    if seconds:
        return f"set disappearing messages to {duration_text(seconds)}"
    return "turned disappearing messages off"


def event_line(e: ev.Event, server: str) -> Text | None:
    return change_line(e) or render.event_line(e, server)


def history_lines(
    messages: list[Message],
    names: Mapping[ContactId, str],
    *,
    me: str = "you",
    held: Mapping[MessageRowId, StoredAttachment] | None = None,
) -> list[Text]:
    """A conversation as ``sotto history`` prints it: each message with its id, the line it
    quotes, an edited mark, a placeholder for a deleted one, its reactions; timer notices; the
    file a message holds (``held``: by row), its caption as its text."""
    by_id = {m.message_id: m for m in messages}
    lines: list[Text] = []
    for message in messages:
        sender = me if message.sender is None else names.get(message.sender, "?")
        short = message.message_id.hex()[:MESSAGE_ID_DIGITS]
        if message.timer_s is not None:
            lines.append(
                Text.assemble(
                    (f"{short} {render.clock(message.sent_ms)} ", "dim"),
                    (f"{render.clean(sender)} {_timer_words(message.timer_s)}", "yellow"),
                )
            )
            continue
        if message.quote is not None:
            quoted = by_id.get(message.quote.message_id)
            if quoted is None or quoted.deleted:
                said = "an earlier message" if quoted is None else "a deleted message"
            else:
                who = me if quoted.sender is None else names.get(quoted.sender, "?")
                first = quoted.text.splitlines()[0] if quoted.text else ""
                said = f"{who}: {first[:60]}{'…' * (len(first) > 60)}"
            lines.append(Text(f"{' ' * MESSAGE_ID_DIGITS} ↳ replying to {render.clean(said)}", style="dim"))
        if message.deleted:
            line = Text.assemble((f"{short} {render.clock(message.sent_ms)} ", "dim"))
            line.append(render.clean(sender), style="bold" if message.sender is None else "bold cyan")
            line.append(": this message was deleted", style="dim italic")
        else:
            line = Text(f"{short} ", style="dim") + render.message_line(message, sender)
            if held is not None and message.row_id in held:
                line.append(f"  {files.file_words(held[message.row_id])}", style="magenta")
            if message.edited_ms is not None:
                line.append("  (edited)", style="dim")
        if message.expires_ms is not None:
            line.append("  ⏱", style="yellow")
        lines.append(line)
        if message.reactions:
            shown = " · ".join(
                f"{r.emoji} {me if r.reactor is None else names.get(r.reactor, '?')}"
                for r in message.reactions
            )
            lines.append(Text(f"{' ' * MESSAGE_ID_DIGITS}   {render.clean(shown)}", style="dim"))
    return lines
