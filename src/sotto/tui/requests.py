"""The message-requests screen: people who came through one of our invites and are not accepted
yet (see :mod:`sotto.client.flows.requests`), each with the name they announced and their
latest messages, to accept, block or delete, as Signal shows a first message from someone new.

Until accepted, a request is not among the conversations, and its messages are not marked
read (no read receipts go out) and get no typing indicators from us.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sotto.cli.render import clean
from sotto.store.model import Contact, Message
from sotto.tui.keys import pane_bindings
from sotto.tui.model import TimeFormat

PREVIEW = 3
"""How many of a request's latest messages the screen shows."""
PREVIEW_CHARS = 200
"""A previewed message longer than this is cut (the whole text shows once accepted)."""


class Decision(enum.StrEnum):
    ACCEPT = "accept"
    """They join the conversations; their messages are marked read when opened."""
    BLOCK = "block"
    """Everything they send is dropped unread from now on (``sotto unblock`` undoes it)."""
    DELETE = "delete"
    """The contact, their mailboxes and what they wrote go; only a new invite brings them back."""


@dataclass(frozen=True, slots=True)
class Request:
    contact: Contact
    latest: list[Message]
    """Their latest messages, oldest first (at most :data:`PREVIEW`)."""

    @property
    def last_ms(self) -> int:
        return self.latest[-1].stored_ms if self.latest else self.contact.created_ms


def describe(requests: list[Request], cursor: int, times: TimeFormat) -> Text:
    """What the screen shows: one block per request, the one under the cursor marked."""
    text = Text()
    if not requests:
        text.append("No message requests.", style="dim")
        return text
    for index, request in enumerate(requests):
        contact = request.contact
        text.append("▸ " if index == cursor else "  ", style="bold")
        text.append(clean(contact.name), style="bold" if index == cursor else "")
        if contact.display_name and contact.display_name != contact.name:
            text.append(f"  (calls themselves {clean(contact.display_name)})", style="dim")
        text.append(f"  since {times.short(contact.created_ms)}\n", style="dim")
        if not request.latest:
            text.append("    no message yet\n", style="dim italic")
        for message in request.latest:
            body = clean(message.text)
            if len(body) > PREVIEW_CHARS:
                body = body[:PREVIEW_CHARS] + "…"
            text.append(f"    {times.short(message.stored_ms)} ", style="dim")
            text.append(f"{body}\n")
    text.rstrip()
    return text


Loader = Callable[[], list[Request]]
Decide = Callable[[Contact, Decision], Awaitable[None]]


class RequestsScreen(ModalScreen[None]):
    """The requests, newest first; ``j``/``k`` move, ``a`` accepts, ``b`` blocks, ``d`` deletes."""

    DEFAULT_CSS = """
    RequestsScreen { align: center middle; }
    RequestsScreen > VerticalScroll {
        width: 90%; height: auto; max-height: 90%;
        border: round $accent; padding: 0 1; background: $surface;
    }
    """
    BINDINGS = pane_bindings("requests")

    def __init__(self, load: Loader, decide: Decide, times: TimeFormat) -> None:
        super().__init__()
        self.load = load
        self.decide = decide
        self.times = times
        self.requests: list[Request] = []
        self.cursor = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Message requests"
            box.border_subtitle = "a accept · b block · d delete · j/k move · Esc closes"
            yield Static(id="requests-text")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Read the requests again (one arrived, or was decided), keeping the cursor's person."""
        current = self.selected
        self.requests = sorted(self.load(), key=lambda r: -r.last_ms)
        ids = [r.contact.contact_id for r in self.requests]
        if current is not None and current.contact_id in ids:
            self.cursor = ids.index(current.contact_id)
        self.cursor = max(0, min(self.cursor, len(self.requests) - 1))
        self._draw()

    @property
    def selected(self) -> Contact | None:
        if 0 <= self.cursor < len(self.requests):
            return self.requests[self.cursor].contact
        return None

    def _draw(self) -> None:
        self.query_one("#requests-text", Static).update(describe(self.requests, self.cursor, self.times))

    def action_cursor_down(self) -> None:
        self.cursor = min(self.cursor + 1, max(0, len(self.requests) - 1))
        self._draw()

    def action_cursor_up(self) -> None:
        self.cursor = max(self.cursor - 1, 0)
        self._draw()

    async def _decide(self, decision: Decision) -> None:
        contact = self.selected
        if contact is not None:
            await self.decide(contact, decision)

    async def action_accept(self) -> None:
        await self._decide(Decision.ACCEPT)

    async def action_block(self) -> None:
        await self._decide(Decision.BLOCK)

    async def action_delete(self) -> None:
        await self._decide(Decision.DELETE)

    def action_close(self) -> None:
        self.dismiss(None)
