"""How the demo prints: Rich sections, people's events as they arrive, the relay's tables and exports."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sotto.client import events as ev
from sotto.demo.evidence import Cell, TableDump

console = Console(highlight=False, soft_wrap=True)

COLORS = {"Alice": "magenta", "Bob": "cyan", "Carol": "green"}
SAMPLE_ROWS = 2
"""Rows shown per table and per exported list; the counts are always shown in full."""
SHORT_B64 = 12
EXPORT_FIELDS = 3
"""Fields of an exported table's first row that are printed (the table dump shows them all)."""


def section(number: int, title: str) -> None:
    console.print()
    console.rule(f"[bold]{number}. {title}", align="left")


def note(text: str) -> None:
    console.print(Text(text, style="dim"))


def say(text: str) -> None:
    console.print(text)


def who(name: str) -> str:
    return f"[bold {COLORS.get(name, 'white')}]{name}[/]"


def quoted(text: str) -> str:
    return "“" + text.replace("[", r"\[") + "”"


def event(person: str, happened: ev.Event) -> None:
    """One line for an event a person's client reported, or nothing for the routine ones."""
    line = _event_line(happened)
    if line is not None:
        console.print(f"  {who(person)} {line}")


def _event_line(e: ev.Event) -> str | None:
    match e:
        case ev.MessageReceived():
            return f"← {who(e.contact.name)}: {quoted(e.text)}"
        case ev.GroupMessageReceived():
            return f"← {who(e.sender.name)} in #{e.group.name}: {quoted(e.text)}"
        case ev.DeliveryReceiptReceived():
            return f"sees ✓✓ delivered: {_messages(e.message_ids)} to {who(e.contact.name)}"
        case ev.ReadReceiptReceived():
            return f"sees ✓✓ read: {_messages(e.message_ids)} by {who(e.contact.name)}"
        case ev.TypingChanged():
            return f"sees {who(e.contact.name)} {'typing…' if e.started else 'stop typing'}"
        case ev.ContactAdded():
            return f"adds {who(e.contact.name)}, who used the invite (and answers with a mailbox)"
        case ev.ContactAccepted():
            return f"hears back from {who(e.contact.name)}: messages can flow"
        case ev.GroupUpdated():
            return f"joins #{e.group.name}, created by {who(e.sender.name)}" if e.joined else None
        case ev.IdentityChanged():
            return f"[red]refused a message: {e.contact.name}'s identity key changed[/]"
        case ev.SendFailed():
            return f"[red]could not send a message: {e.reason}[/]"
        case ev.EnvelopeRejected():
            return f"[yellow]dropped an envelope: {e.reason.value}[/]"
    return None


def _messages(ids: tuple[bytes, ...]) -> str:
    return f"{len(ids)} message{'s' * (len(ids) != 1)}"


# ---------------------------------------------------------------------------- relay data
def short_bytes(value: bytes) -> str:
    """The first bytes in hex and the length: enough to recognise a value across tables."""
    head = value[:6].hex()
    return f"{head}…({len(value)} B)" if len(value) > 6 else f"{head} ({len(value)} B)"


def cell(value: Cell) -> str:
    if isinstance(value, bytes):
        return short_bytes(value)
    return "null" if value is None else str(value)


def table_dump(dump: TableDump) -> None:
    """A table turned on its side (one line per column, one column per sample row), so that wide
    tables stay readable in 80 columns."""
    if not dump.rows:
        console.print(f"[bold]{dump.name}[/]: 0 rows [dim](columns {', '.join(dump.columns)})[/]")
        return
    shown = dump.rows[:SAMPLE_ROWS]
    more = f", {SAMPLE_ROWS} shown" if dump.row_count > SAMPLE_ROWS else ""
    title = f"[bold]{dump.name}[/]: {dump.row_count} row{'s' * (dump.row_count != 1)}{more}"
    table = Table(title=title, title_justify="left", show_header=bool(shown), header_style="dim")
    table.add_column("column", style="bold", no_wrap=True)
    for i in range(len(shown)):
        table.add_column(f"row {i + 1}", no_wrap=True, overflow="ellipsis")
    for index, column in enumerate(dump.columns):
        table.add_row(column, *(cell(row[index]) for row in shown))
    console.print(table)


def short_text(value: object) -> str:
    if isinstance(value, str) and len(value) > SHORT_B64:
        return f"{value[:SHORT_B64]}…"
    return "null" if value is None else str(value)


def export(person: str, data: dict[str, Any]) -> None:
    """Per exported table: its row count and the start of its first row (bytes are base64url, cut)."""
    console.print(f"  {who(person)}'s export")
    parts = [("account: GET /v1/export", data["account"])]
    parts += [
        (f"mailbox {mailbox_id[:8]}…: GET /v1/mailboxes/{{id}}/export", held)
        for mailbox_id, held in data["mailboxes"].items()
    ]
    for heading, held in parts:
        console.print(f"    [dim]{heading}[/]")
        for name, rows in held["tables"].items():
            fields = [f"{k}={short_text(v)}" for k, v in rows[0].items()] if rows else []
            extra = len(fields) - EXPORT_FIELDS
            first = " ".join(fields[:EXPORT_FIELDS]) + (f" (+{extra} more)" if extra > 0 else "")
            line = Text(f"      {name:<18}{len(rows):>3} row{'s' * (len(rows) != 1):<1}  ")
            line.append(first, style="dim")
            console.print(line, no_wrap=True, overflow="ellipsis")
