"""The conversation list: contacts and groups, newest activity first, with unread counts."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from sotto.cli.render import clean
from sotto.tui.keys import pane_bindings
from sotto.tui.model import Summary, order


def row(summary: Summary, *, open_key: str | None) -> Text:
    """``▸ Name   3``: the open one marked, unread bold with the count, typing and waiting shown."""
    text = Text()
    text.append("▸ " if summary.key == open_key else "  ")
    style = "bold" if summary.unread else ""
    text.append(clean(summary.title), style=style)
    if summary.typing:
        text.append(" ✎", style="italic dim")
    if not summary.ready:
        text.append(" (waiting)", style="dim")
    if summary.unread:
        text.append(f" {summary.unread_label()}", style="bold reverse")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class ConversationList(OptionList):
    """One option per conversation; its id is the summary's key."""

    DEFAULT_CSS = """
    ConversationList { width: 26; height: 1fr; }
    """
    BINDINGS = pane_bindings("conversations")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.summaries: list[Summary] = []
        self.open_key: str | None = None

    def show(self, summaries: list[Summary]) -> None:
        """Replace every row, keeping the highlighted conversation highlighted."""
        current = self.highlighted_key
        self.summaries = order(summaries)
        self.clear_options()
        self.add_options([Option(row(s, open_key=self.open_key), id=s.key) for s in self.summaries])
        if self.summaries:
            index = next((i for i, s in enumerate(self.summaries) if s.key == current), 0)
            self.highlighted = index

    def put(self, summary: Summary) -> None:
        """Add or change one conversation's row (re-ordered by its activity)."""
        others = [s for s in self.summaries if s.key != summary.key]
        self.show([*others, summary])

    def get(self, key: str) -> Summary | None:
        return next((s for s in self.summaries if s.key == key), None)

    @property
    def highlighted_key(self) -> str | None:
        if self.highlighted is None or not self.summaries or self.highlighted >= len(self.summaries):
            return None
        return self.summaries[self.highlighted].key

    def set_open(self, key: str | None) -> None:
        self.open_key = key
        self.show(self.summaries)
        if key is not None:
            index = next((i for i, s in enumerate(self.summaries) if s.key == key), None)
            if index is not None:
                self.highlighted = index
