"""Files: ``sotto send NAME --file PATH [--caption TEXT]`` and ``sotto save ID [--to PATH]``.

A file is encrypted under a key of its own, uploaded to your relay in chunks (a progress bar
shows how far), and its key goes to the contact inside the end-to-end encryption (to a group
``NAME``: one upload, its key in one group message that every member fetches the blob with). ``sotto save``
fetches it, checks it whole, and only then writes it (readable by you only). Refusals are one
line each: a missing or too large file, the relay's quota or upload budget, a blob that fails
its check (nothing is written then)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from sotto.cli import render
from sotto.cli.failures import ExitCode, Where, fail, report_send
from sotto.cli.names import require_conversation
from sotto.cli.profile import ProfileOption, opened, run, where
from sotto.client import attachments as attachment_io
from sotto.client.content import MAX_CAPTION_BYTES
from sotto.client.flows.attachments import StoredAttachment
from sotto.client.sdk import Client
from sotto.errors import ClientError, RelayError
from sotto.protocol.attachment import AttachmentIntegrityError, AttachmentSizeError
from sotto.store.model import Contact, Direction, Group, Message

HISTORY_SCAN = 10_000
"""How far back in each conversation ``sotto save`` looks for the message."""
PROGRESS_FROM_BYTES = 1024 * 1024
"""Files smaller than this go without a progress bar (it would only flash)."""


def size_text(size: int) -> str:
    """``1.0 MiB``, ``12 KiB``, ``512 bytes``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} byte{'s' * (size != 1)}"


def file_words(held: StoredAttachment) -> str:
    """How a file is named in ``listen`` and ``history``: 📎 name (size)."""
    return f"📎 {render.clean(held.file_name or 'a file')} ({size_text(held.size)})"


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[attachment_io.Progress | None]:
    """A progress bar on stderr for a transfer of ``total`` bytes (none for a small one)."""
    if total < PROGRESS_FROM_BYTES:
        with render.spinner(f"{label}…"):
            yield None
        return
    bar = Progress(
        f"[progress.description]{label}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        console=render.err,
        transient=True,
    )
    task = bar.add_task(label, total=total)
    with bar:
        yield lambda done, whole: bar.update(task, completed=done, total=whole)


def _refused(error: RelayError, place: Where) -> NoReturn:
    """One line for the relay's refusals of an upload."""
    if error.status == 507:
        fail(
            f"the relay at {place.relay} has no room for this file now ({error.code})",
            hint="nothing was sent; try again later",
            code=ExitCode.REFUSED,
        )
    if error.status == 429:
        fail(
            f"you have uploaded as much as the relay at {place.relay} allows for now",
            hint="nothing was sent; try again later (the budget refills over a day)",
            code=ExitCode.REFUSED,
        )
    if error.status == 413:
        fail(f"the relay at {place.relay} takes no file this large", code=ExitCode.REFUSED)
    raise error


def send_file(place: Where, name: str, path: Path, caption: str, cadence: bool) -> None:
    """``sotto send NAME --file PATH``: checks the file before the store opens. With
    ``cadence``, the blob is uploaded now (the upload is not on the tick) and the file's message
    waits for a tick of ``sotto listen --cadence``."""
    try:
        size = attachment_io.check_source(path)
    except (attachment_io.AttachmentFileError, attachment_io.AttachmentTooLargeError) as error:
        fail(str(error), code=ExitCode.USAGE)
    if len(caption.encode()) > MAX_CAPTION_BYTES:
        fail(f"a caption is at most {MAX_CAPTION_BYTES:,} bytes of UTF-8", code=ExitCode.USAGE)

    async def work() -> None:
        async with opened(place, cadence=cadence) as client:
            conversation = require_conversation(client, name)
            if isinstance(conversation, Contact):
                shown = render.clean(conversation.name)
                if not client.is_ready(conversation):
                    fail(
                        f"{shown} has not answered your contact request yet",
                        hint="`sotto listen` to receive their answer, then send the file",
                        code=ExitCode.REFUSED,
                    )
            else:
                shown = f"#{render.clean(conversation.name)}"
            try:
                with _progress(f"Uploading {render.clean(path.name)}", size) as progress:
                    await client.send_file(conversation, path, caption=caption, progress=progress)
            except RelayError as error:
                _refused(error, place)
            except ClientError as error:  # a group none of whose members has answered yet
                fail(str(error), hint="`sotto listen` to receive their answers", code=ExitCode.REFUSED)
            if cadence:
                render.done(
                    f"{render.clean(path.name)} ({size_text(size)}) uploaded; its message to {shown} "
                    "goes out in a tick of `sotto listen --cadence`"
                )
                render.dim("the upload itself went now, not on a tick: the relay sees when and how large")
                return
            with render.spinner(f"Sending to {shown}…"):
                left = await client.flush()
            report_send(
                place,
                left,
                f"{render.clean(path.name)} ({size_text(size)}) sent to {shown}",
                client.last_refusal,
            )

    run(place, work())


def _received_files(client: Client, prefix: str) -> list[tuple[Message, StoredAttachment]]:
    found: list[tuple[Message, StoredAttachment]] = []
    conversations: list[Contact | Group] = [*client.contacts(include_removed=True), *client.groups()]
    for conversation in conversations:
        messages = [
            m
            for m in client.history(conversation, limit=HISTORY_SCAN)
            if m.direction is Direction.INCOMING and m.message_id.hex().startswith(prefix)
        ]
        held = client.attachments(messages)
        found.extend((m, held[m.row_id]) for m in messages if m.row_id in held)
    return found


def save(
    message: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="The file's message: its id as `sotto history` or `sotto listen` shows it (4+ hex digits).",
            show_default=False,
        ),
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Where to write it: a new file, or a folder to write it in under its own name "
            "(default: the current folder).",
            show_default=False,
        ),
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Fetch a file someone sent you, check it, and write it (readable by you only)."""
    place = where(profile)
    prefix = message.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,32}", prefix):
        fail(
            f"{render.clean(message)!r} is not a message id",
            hint="`sotto history NAME` shows each message's id",
            code=ExitCode.USAGE,
        )
    destination = Path.cwd() if to is None else to

    async def work() -> None:
        async with opened(place) as client:
            found = _received_files(client, prefix)
            if not found:
                fail(
                    f"no file received in a message {prefix}",
                    hint="`sotto history NAME` shows each message's id; files show with 📎",
                    code=ExitCode.UNKNOWN_NAME,
                )
            if len(found) > 1:
                fail(
                    f"{len(found)} files have message ids starting {prefix}: give more digits",
                    code=ExitCode.USAGE,
                )
            (chosen, held) = found[0]
            target = (
                destination / (held.file_name or f"attachment-{prefix[:8]}")
                if destination.is_dir()
                else destination
            )
            if target.exists():
                fail(f"{target} exists", hint="choose another --to, or remove it first", code=ExitCode.USAGE)
            try:
                with _progress(f"Fetching {render.clean(target.name)}", held.size) as progress:
                    written = await client.save_attachment(chosen, target, progress=progress)
            except (AttachmentIntegrityError, AttachmentSizeError):
                fail(
                    "the file failed its integrity check: it was changed at the relay or on the way",
                    hint="nothing was written; ask the sender to send it again",
                    code=ExitCode.REFUSED,
                )
            except RelayError as error:
                if error.status == 404:
                    fail(
                        "the relay no longer holds this file",
                        hint="a file is deleted once fetched, and after 30 days: ask for it again",
                        code=ExitCode.REFUSED,
                    )
                raise
            render.done(f"saved {render.clean(str(written))} ({size_text(held.size)})")

    run(place, work())
