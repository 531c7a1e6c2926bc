"""Search across every conversation: the matches listed newest first, each with its
conversation, time and a snippet around the words that matched; ``Enter`` opens the
conversation at that message (:meth:`sotto.tui.app.ChatApp.open_found`).

The matches come from :meth:`Client.search_everywhere <sotto.client.sdk.Client.search_everywhere>`
(the encrypted word index, conversation by conversation); the query matches as in one
conversation (:func:`sotto.store.search.matches`: each word begins a word of the message).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sotto.cli.render import clean
from sotto.store.model import Message
from sotto.store.search import words
from sotto.tui.keys import pane_bindings
from sotto.tui.model import TimeFormat

RESULTS = 50
"""How many matches the list shows at most (the newest)."""
SNIPPET_CHARS = 60
"""About how much of a message a row shows around the first word that matched."""
_LEAD = 16
"""How many characters before that word the snippet keeps."""


@dataclass(frozen=True, slots=True)
class Found:
    """One match: the message, the title of its conversation, and who wrote it."""

    message: Message
    title: str
    author: str


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """One line of ``text`` around the first word that a word of ``query`` begins, cut with
    ``…`` where it was cut."""
    flat = " ".join(clean(text).split())
    if len(flat) <= width:
        return flat
    wanted = words(query)
    lowered = flat.casefold()
    if len(lowered) != len(flat):  # (ß to ss): positions must be the text's
        lowered = flat.lower()
    start = 0
    for index, char in enumerate(lowered):
        begins = (index == 0 or not lowered[index - 1].isalnum()) and char.isalnum()
        if begins and any(lowered.startswith(w, index) for w in wanted):
            start = index
            break
    begin = max(0, start - _LEAD)
    if begin:  # at a word's start when one is near
        space = flat.find(" ", begin, start)
        begin = space + 1 if space >= 0 else begin
    piece = flat[begin : begin + width].rstrip()
    return ("…" if begin else "") + piece + ("…" if begin + width < len(flat) else "")


def describe(found: list[Found], cursor: int, query: str, times: TimeFormat) -> Text:
    """One line per match (the one under the cursor marked): conversation · time · author: snippet."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not found:
        text.append(f"No message matches {clean(query)!r}.", style="dim")
        return text
    for index, item in enumerate(found):
        here = index == cursor
        text.append("▸ " if here else "  ", style="bold")
        text.append(clean(item.title), style="bold" if here else "")
        text.append(f"  {times.short(item.message.stored_ms)}  ", style="dim")
        text.append(f"{clean(item.author)}: ", style="dim")
        text.append(snippet(item.message.text, query))
        if index < len(found) - 1:
            text.append("\n")
    return text


class SearchResultsScreen(ModalScreen[Message | None]):
    """The matches; ``j``/``k`` move, ``Enter`` opens the conversation at one, ``Esc`` closes."""

    DEFAULT_CSS = """
    SearchResultsScreen { align: center middle; }
    SearchResultsScreen > VerticalScroll {
        width: 90%; height: auto; max-height: 90%;
        border: round $accent; padding: 0 1; background: $surface;
    }
    SearchResultsScreen #results-text { width: 100%; }
    """
    BINDINGS = pane_bindings("results")

    def __init__(self, query: str, found: list[Found], times: TimeFormat) -> None:
        super().__init__()
        self.term = query
        self.found = found
        self.times = times
        self.cursor = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            count = f"{len(self.found)} match{'es' * (len(self.found) != 1)}"
            box.border_title = f"Search: {clean(self.term)} · {count}"
            box.border_subtitle = "Enter opens · j/k move · Esc closes"
            yield Static(id="results-text")

    def on_mount(self) -> None:
        self._draw()

    @property
    def selected(self) -> Message | None:
        return self.found[self.cursor].message if 0 <= self.cursor < len(self.found) else None

    def _draw(self) -> None:
        shown = describe(self.found, self.cursor, self.term, self.times)
        self.query_one("#results-text", Static).update(shown)
        box = self.query_one(VerticalScroll)
        box.scroll_to(y=max(0, self.cursor - box.size.height // 2), animate=False)

    def _move(self, step: int) -> None:
        self.cursor = max(0, min(self.cursor + step, len(self.found) - 1))
        self._draw()

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_first(self) -> None:
        self._move(-len(self.found))

    def action_last(self) -> None:
        self._move(len(self.found))

    def action_open(self) -> None:
        self.dismiss(self.selected)

    def action_close(self) -> None:
        self.dismiss(None)
