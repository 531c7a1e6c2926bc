"""Everything the CLI prints: results on stdout, errors and progress on stderr, QR codes, events.

Text that other people chose (messages, display names, group names) is shown through
:func:`clean`, which replaces control characters and bidi embeddings, overrides and isolates: a
contact must not be able to move the cursor, recolour the terminal or reorder what we see. The
rest of Unicode is shown intact, joiners included.
"""

from __future__ import annotations

import contextlib
import time
import unicodedata
from collections.abc import Iterator

import qrcode  # type: ignore[import-untyped]
from rich.console import Console
from rich.text import Text

from sotto.client import events as ev
from sotto.store.model import Direction, Message, MessageState

# soft_wrap: long lines (links, codes, messages) are left for the terminal to wrap, never cut with
# a newline that would break copying them or a script reading them.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_KEEP = {"\n", "\t"}
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""The embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): they reorder
what follows them, even past the end of the text. The marks (LRM, RLM, ALM) only lean one way and
stay, as do the joiners (ZWJ, ZWNJ) that emoji sequences and Persian and Indic scripts need."""


def harmful(ch: str) -> bool:
    """A control character (but newline and tab), a bidi embedding/override/isolate, or a lone
    surrogate (which cannot be printed)."""
    if ch in BIDI_CONTROLS:
        return True
    category = unicodedata.category(ch)
    return (category == "Cc" and ch not in _KEEP) or category == "Cs"


def clean(text: str) -> str:
    """``text`` with control and bidi-override characters replaced by U+FFFD; everything else
    (emoji joined with ZWJ, ZWNJ in Persian, tags in flags, characters newer than this Python's
    Unicode tables) is left as it is."""
    return "".join("\ufffd" if harmful(ch) else ch for ch in text)


def error(message: str, hint: str | None) -> None:
    err.print(Text.assemble(("error: ", "bold red"), clean(message)))
    if hint:
        err.print(Text.assemble(("hint: ", "dim"), hint))


def warn(message: str) -> None:
    err.print(Text(message, style="yellow"))


def done(message: str) -> None:
    out.print(Text.assemble(("✓ ", "green"), message))


def info(message: str) -> None:
    out.print(Text(message))


def dim(message: str) -> None:
    out.print(Text(message, style="dim"))


def next_step(message: str) -> None:
    err.print(Text.assemble(("next: ", "dim"), message))


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner on stderr while a slow step runs (nothing is drawn when stderr is not a terminal)."""
    if not err.is_terminal:
        yield
        return
    with err.status(message, spinner="dots"):
        yield


# ---------------------------------------------------------------------------- QR codes
def qr_lines(data: str, *, border: int = 2) -> list[str]:
    """``data`` as a QR code in half blocks: each character is two modules stacked, so the code is
    about as tall as it is wide in a terminal. Dark modules are drawn, light ones are spaces."""
    code = qrcode.QRCode(border=border, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data.encode())
    code.make(fit=True)
    matrix: list[list[bool]] = [[bool(m) for m in row] for row in code.get_matrix()]
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    return [
        "".join(glyphs[t, b] for t, b in zip(top, bottom, strict=True))
        for top, bottom in zip(*[iter(matrix)] * 2, strict=True)
    ]


def qr(data: str) -> None:
    """Print a QR code, dark on light whatever the terminal's colours (scanners want that)."""
    for line in qr_lines(data):
        out.print(Text(line, style="black on white"), soft_wrap=True)


# ---------------------------------------------------------------------------- times and messages
def clock(ms: int) -> str:
    """Local time of day, with the date when it is not today."""
    moment = time.localtime(ms / 1000)
    if time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


STATE_MARKS = {
    MessageState.QUEUED: ("…", "dim", "queued"),
    MessageState.SENT: ("✓", "dim", "sent"),
    MessageState.DELIVERED: ("✓✓", "", "delivered"),
    MessageState.READ: ("✓✓", "blue", "read"),
    MessageState.RECEIVED: ("", "", ""),
}


def message_line(message: Message, sender: str) -> Text:
    """One line of a conversation: time, who, text, and for our own messages their state."""
    line = Text.assemble((clock(message.sent_ms), "dim"), " ")
    if message.direction is Direction.OUTGOING:
        mark, style, word = STATE_MARKS[message.state]
        line.append("you", style="bold")
        line.append(f": {clean(message.text)}  ")
        line.append(f"{mark} {word}", style=style or "none")
    else:
        line.append(clean(sender), style="bold cyan")
        line.append(f": {clean(message.text)}")
    return line


def event_line(e: ev.Event, server: str) -> Text | None:
    """How ``sotto listen`` shows an event; None for the ones it keeps quiet about."""
    match e:
        case ev.MessageReceived():
            return Text.assemble(
                (clock(e.sent_ms), "dim"), " ", (clean(e.contact.name), "bold cyan"), f": {clean(e.text)}"
            )
        case ev.GroupMessageReceived():
            return Text.assemble(
                (clock(e.sent_ms), "dim"),
                " ",
                (clean(e.sender.name), "bold cyan"),
                (f" in #{clean(e.group.name)}", "cyan"),
                f": {clean(e.text)}",
            )
        case ev.DeliveryReceiptReceived():
            return Text(f"✓✓ {clean(e.contact.name)} received {_count(e.message_ids)}", style="dim")
        case ev.ReadReceiptReceived():
            return Text(f"✓✓ {clean(e.contact.name)} read {_count(e.message_ids)}", style="blue")
        case ev.TypingChanged():
            where = f" in #{clean(e.group.name)}" if e.group is not None else ""
            doing = "is typing…" if e.started else "stopped typing"
            return Text(f"{clean(e.contact.name)} {doing}{where}", style="dim italic")
        case ev.ContactAdded():
            return Text(
                f"+ {clean(e.contact.name)} accepted your invite: you can write to them now", style="green"
            )
        case ev.ContactAccepted():
            return Text(f"+ {clean(e.contact.name)} answered: you can write to them now", style="green")
        case ev.ContactMailboxChanged():
            return Text(f"{clean(e.contact.name)} moved to a fresh mailbox", style="dim")
        case ev.IdentityChanged():
            name = clean(e.contact.name)
            return Text(
                f"! a message claiming to be from {name} came with another identity key and was refused;"
                f" compare safety numbers with `sotto verify {name}`",
                style="bold red",
            )
        case ev.SessionRepaired():
            return Text(
                f"↻ secure session with {clean(e.contact.name)} re-established automatically", style="yellow"
            )
        case ev.GroupUpdated():
            group, sender = clean(e.group.name), clean(e.sender.name)
            if e.joined:
                return Text(f"{sender} added you to #{group}", style="green")
            return Text(f"#{group} updated by {sender}", style="dim")
        case ev.MessageSent():
            return None
        case ev.SendFailed():
            if e.reason == "not_found" and e.contact is not None:
                return Text(
                    f"! a message to {clean(e.contact.name)} could not be delivered: the relay no longer "
                    "knows where they receive (their account is gone, or they were away longer than "
                    "the relay keeps a mailbox)",
                    style="red",
                )
            return Text(f"! a message could not be delivered ({e.reason})", style="red")
        case ev.SendHeld():
            return Text(
                f"… the relay has no room for a message now ({e.reason}); it is kept and goes out by itself",
                style="yellow",
            )
        case ev.EnvelopeRejected():
            return Text(f"dropped an envelope that cannot be read ({e.reason.value})", style="yellow")
        case ev.ConnectionChanged():
            return Text(
                f"connected to {server}" if e.connected else "connection lost; reconnecting…", style="dim"
            )
    return None


def _count(message_ids: tuple[bytes, ...]) -> str:
    return f"{len(message_ids)} message{'s' * (len(message_ids) != 1)}"


def short_id(value: bytes) -> str:
    return value.hex()[:12]
