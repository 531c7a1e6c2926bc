"""The conversation list: contacts and groups, newest activity first, with unread counts.

One line per conversation, drawn only while on the screen (Textual's line API), so a thousand
conversations cost what the visible ones do.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sotto.cli.render import clean
from sotto.tui.keys import pane_bindings
from sotto.tui.model import Summary, order


def row(summary: Summary, *, open_key: str | None) -> Text:
    """``▸ Name 3``: the open one marked, unread bold with the count, typing and waiting shown,
    ``⚠`` after a contact whose safety number changed."""
    text = Text()
    text.append("▸ " if summary.key == open_key else "  ")
    style = "bold" if summary.unread else ""
    text.append(clean(summary.title), style=style)
    if summary.safety_changed:
        text.append(" ⚠", style="bold red")
    if summary.typing:
        text.append(" ✎", style="italic dim")
    if not summary.ready:
        text.append(" (waiting)", style="dim")
    if summary.unread:
        text.append(f" {summary.unread_label()}", style="bold reverse")
    if summary.mentions:
        text.append(f" @{summary.mentions}", style="bold magenta")
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.end = ""
    return text


class ConversationList(ScrollView, can_focus=True):
    """One line per conversation; ``highlighted`` is the cursor, Enter opens it."""

    DEFAULT_CSS = """
    ConversationList { width: 26; height: 1fr; }
    ConversationList > .conversation-list--cursor { background: $accent 40%; }
    ConversationList:focus > .conversation-list--cursor { background: $accent; color: $text; }
    """
    COMPONENT_CLASSES = {"conversation-list--cursor"}  # noqa: RUF012 (Textual's class attribute)
    BINDINGS = pane_bindings("conversations")

    class Selected(Message):
        """Enter (or a click) on a conversation."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.summaries: list[Summary] = []
        self.open_key: str | None = None
        self.highlighted: int | None = None
        self._strips: dict[str, tuple[Summary, str | None, int, Strip]] = {}

    # ------------------------------------------------------------------ content
    def show(self, summaries: list[Summary]) -> None:
        """Replace every row, keeping the highlighted conversation highlighted."""
        current = self.highlighted_key
        self.summaries = order(summaries)
        index = next((i for i, s in enumerate(self.summaries) if s.key == current), 0)
        self.highlighted = index if self.summaries else None
        self.virtual_size = Size(self.size.width, len(self.summaries))
        self.refresh()

    def put(self, summary: Summary) -> None:
        """Add or change one conversation's row (re-ordered by its activity)."""
        others = [s for s in self.summaries if s.key != summary.key]
        self.show([*others, summary])

    def drop(self, key: str) -> None:
        """Take one conversation's row out (a contact blocked, deleted, or now a request)."""
        if self.get(key) is not None:
            self.show([s for s in self.summaries if s.key != key])

    def get(self, key: str) -> Summary | None:
        return next((s for s in self.summaries if s.key == key), None)

    @property
    def highlighted_key(self) -> str | None:
        if self.highlighted is None or not 0 <= self.highlighted < len(self.summaries):
            return None
        return self.summaries[self.highlighted].key

    def set_open(self, key: str | None) -> None:
        """Mark the open conversation and move the cursor to it."""
        self.open_key = key
        index = next((i for i, s in enumerate(self.summaries) if s.key == key), None)
        if index is not None:
            self._move(index)
        self.refresh()

    # ------------------------------------------------------------------ drawing
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if not 0 <= index < len(self.summaries):
            return Strip.blank(width, self.rich_style)
        summary = self.summaries[index]
        cached = self._strips.get(summary.key)
        if cached is not None and cached[:3] == (summary, self.open_key, width):
            strip = cached[3]
        else:
            text = row(summary, open_key=self.open_key)
            text.truncate(width, overflow="ellipsis", pad=True)
            strip = Strip(list(text.render(self.app.console)), width)
            self._strips[summary.key] = (summary, self.open_key, width, strip)
        style = self.rich_style
        if index == self.highlighted:
            style += self.get_component_rich_style("conversation-list--cursor")
        return strip.crop_extend(scroll_x, scroll_x + width, None).apply_style(style)

    def on_resize(self, _: events.Resize) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.summaries))

    # ------------------------------------------------------------------ moving
    def _move(self, index: int) -> None:
        if not self.summaries:
            return
        self.highlighted = max(0, min(index, len(self.summaries) - 1))
        width = self.scrollable_content_region.width
        self.scroll_to_region(Region(0, self.highlighted, max(1, width), 1), animate=False, immediate=True)
        self.refresh()

    def action_cursor_down(self) -> None:
        self._move(0 if self.highlighted is None else self.highlighted + 1)

    def action_cursor_up(self) -> None:
        self._move(0 if self.highlighted is None else self.highlighted - 1)

    def action_first(self) -> None:
        self._move(0)

    def action_last(self) -> None:
        self._move(len(self.summaries) - 1)

    def action_select(self) -> None:
        key = self.highlighted_key
        if key is not None:
            self.post_message(self.Selected(key))

    def on_click(self, event: events.Click) -> None:
        index = self.scroll_offset.y + event.y
        if 0 <= index < len(self.summaries):
            self._move(index)
            self.action_select()
