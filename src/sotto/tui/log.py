"""The message log: one conversation, drawn a screen line at a time.

Only a page of the conversation is read when it opens (:data:`PAGE` messages, the newest);
scrolling to the top reads the page before it (``Client.history(before=…)``). A search asks the
store (``Client.search``: a blind index, no reading back through the conversation) and, for a
match far from what is loaded, shows a page around it instead; scrolling to the bottom then reads
the pages after it (``Client.history(after=…)``) and ``G`` goes back to the newest. Lines are
wrapped once per page and width, and Textual asks for the visible ones only
(:meth:`MessageLog.render_line`), so a conversation of 100,000 messages opens as fast as one of
fifty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.message import Message as TextualMessage
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sotto.cli.render import clean
from sotto.store.model import Direction, Message, MessageState
from sotto.store.search import matches, words
from sotto.tui.commands import duration_text, size_text
from sotto.tui.keys import pane_bindings
from sotto.tui.model import TimeFormat

PAGE = 100
"""Messages read per page: more than a tall terminal shows, so a page fills the screen."""
LOAD_MARGIN = 3
"""Read the page before when the view comes this close to the top."""

STATE_MARKS: dict[MessageState, tuple[str, str]] = {
    MessageState.QUEUED: ("… pending", "yellow"),
    MessageState.SENT: ("✓ sent", "dim"),
    MessageState.DELIVERED: ("✓✓ delivered", "dim"),
    MessageState.READ: ("✓✓ read", "blue"),
    MessageState.RECEIVED: ("", ""),
}

Loader = Callable[[int | None, int], list[Message]]
"""``(before_row_id, limit) -> messages`` oldest first: reads one page of the conversation."""
Newer = Callable[[int, int], list[Message]]
"""``(after_row_id, limit) -> messages`` oldest first: the page after a message."""
Finder = Callable[[str, int | None, bool], Message | None]
"""``(query, from_row_id, older) -> message``: the nearest message the query matches, older
(or newer) than the given row (None: from the newest); None if there is none."""
Files = Callable[[list[Message]], Mapping[int, tuple[str, int]]]
"""``messages -> {row id: (file name, size)}`` for those that hold a file."""
QUOTE_CHARS = 60
"""How much of a quoted message's first line a reply shows."""
NEW_MARKER = "── new ──"


@dataclass(frozen=True, slots=True)
class Line:
    """One screen line and the message (by index into the loaded ones) it belongs to."""

    strip: Strip
    owner: int


class MessageLog(ScrollView, can_focus=True):
    """The open conversation (see the module docstring)."""

    DEFAULT_CSS = """
    MessageLog { height: 1fr; }
    """
    BINDINGS = pane_bindings("log")

    class NeedsOlder(TextualMessage):
        """The view reached the top and there may be older messages."""

    class NeedsNewer(TextualMessage):
        """The view reached the bottom of a page shown around a search match, with newer
        messages not loaded."""

    def __init__(self, times: TimeFormat, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.times = times
        self.messages: list[Message] = []
        self.names: dict[int, str] = {}
        """Contact id -> the name shown for their messages."""
        self.loader: Loader | None = None
        self.newer: Newer | None = None
        self.finder: Finder | None = None
        self.complete = True
        """Whether the oldest message is loaded."""
        self.latest = True
        """Whether the newest message is loaded (False after a jump to an old search match)."""
        self.highlight: int | None = None
        """Row id of the message a search found."""
        self.typing: str = ""
        """Who is typing, shown under the last message."""
        self.notice: str = ""
        """A warning shown under the conversation (a safety number that changed)."""
        self.files: Files | None = None
        self._held: dict[int, tuple[str, int] | None] = {}
        """Row id -> the file it holds (name, size), or None: asked of :attr:`files` once per row."""
        self.unread_from: int | None = None
        """Row id of the first message that was unread when the conversation opened: the read
        marker goes above it."""
        self._lines: list[Line] = []
        self._width = 0
        self._cache: dict[int, tuple[Message, tuple[int, bool, str], list[Strip]]] = {}
        """Row id -> the message as drawn, at which (width, highlighted, line quoted), and its lines."""

    # ------------------------------------------------------------------ content
    def open(
        self,
        loader: Loader | None,
        names: dict[int, str],
        *,
        newer: Newer | None = None,
        finder: Finder | None = None,
        files: Files | None = None,
        unread: int = 0,
        notice: str = "",
    ) -> None:
        """Show a conversation: its newest page, scrolled to the end (``None``: nothing open).
        Without ``finder`` a search looks in the loaded messages only; without ``newer`` it
        never leaves the newest page's end. ``unread``: how many of the newest incoming
        messages were unread (the read marker goes above the first of them)."""
        self.loader = loader
        self.newer = newer
        self.finder = finder
        self.files = files
        self.names = names
        self.highlight = None
        self.typing = ""
        self.notice = notice
        self._held.clear()
        self._cache.clear()
        self._newest_page()
        self.unread_from = self._first_unread(unread)
        self._relayout()
        self.scroll_end(animate=False)
        if self.unread_from is not None:
            marker = next((n for n, line in enumerate(self._lines) if line.owner == -2), None)
            if marker is not None and len(self._lines) - marker > self.size.height:
                self.scroll_to(y=marker, animate=False)  # the first unread at the top of the view

    def _first_unread(self, unread: int) -> int | None:
        if unread <= 0:
            return None
        incoming = [m for m in self.messages if m.direction is Direction.INCOMING and m.timer_s is None]
        if not incoming:
            return None
        return incoming[-min(unread, len(incoming))].row_id

    @property
    def selected(self) -> Message | None:
        """The message chosen (by ``J``/``K`` or a search), else None."""
        index = self._highlight_index()
        return None if index is None else self.messages[index]

    def select(self, step: int) -> Message | None:
        """Move the selection ``step`` messages (from the newest when none is chosen)."""
        if not self.messages:
            return None
        index = self._highlight_index()
        if index is None:
            index = len(self.messages) if step < 0 else len(self.messages) - 1
        index = max(0, min(len(self.messages) - 1, index + step))
        return self._show(index)

    def held(self, message: Message) -> tuple[str, int] | None:
        """The file ``message`` holds (name, size), if any."""
        if message.row_id not in self._held:
            self._look_for_files()
        return self._held.get(message.row_id)

    def set_notice(self, notice: str) -> None:
        if notice != self.notice:
            self.notice = notice
            self._relayout()

    def _newest_page(self) -> None:
        self.messages = [] if self.loader is None else self.loader(None, PAGE)
        self.complete = self.loader is None or len(self.messages) < PAGE
        self.latest = True

    def show_latest(self) -> None:
        """Back to the newest page if a search left the view on older ones; scrolled to the end."""
        if not self.latest:
            self._newest_page()
            self._relayout()
        self.scroll_end(animate=False)

    def load_newer(self) -> int:
        """Read the page after the newest loaded message (when a search jumped back); how many
        were added. The view stays where it was."""
        if self.latest or self.newer is None or not self.messages:
            return 0
        page = self.newer(self.messages[-1].row_id, PAGE)
        if len(page) < PAGE:
            self.latest = True
        self.messages.extend(page)
        self._relayout()
        return len(page)

    def load_older(self) -> int:
        """Read the page before the oldest loaded message; how many were added. The view stays
        on what it showed."""
        if self.complete or self.loader is None or not self.messages:
            return 0
        older = self.loader(self.messages[0].row_id, PAGE)
        if len(older) < PAGE:
            self.complete = True
        if not older:
            return 0
        self._prepend(older, complete=self.complete)
        return len(older)

    def _prepend(self, older: list[Message], *, complete: bool) -> None:
        """Put ``older`` (oldest first) before the loaded messages; the view stays on what it showed."""
        before = len(self._lines)
        self.messages[:0] = older
        self.complete = complete
        self._relayout()
        self.scroll_to(y=self.scroll_y + len(self._lines) - before, animate=False)

    def append(self, message: Message) -> None:
        """A new message at the end; the view follows it if it was at the end. Not shown while
        the newest page is not loaded (it is there when the view gets back to the end)."""
        if not self.latest:
            return
        at_end = self.is_vertical_scroll_end
        if any(m.row_id == message.row_id for m in self.messages[-8:]):
            self.update(message)
            return
        self.messages.append(message)
        self._relayout()
        if at_end:
            self.scroll_end(animate=False)

    def update(self, message: Message) -> None:
        """A loaded message changed (its state moved on): redraw it."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].row_id == message.row_id:
                if self.messages[index] != message:
                    self.messages[index] = message
                    self._relayout()
                return

    def refresh_tail(self) -> None:
        """Read the newest page again (states changed: sent, delivered, read)."""
        if self.loader is None or not self.messages or not self.latest:
            return
        fresh = {m.row_id: m for m in self.loader(None, min(len(self.messages), PAGE))}
        changed = False
        for index, message in enumerate(self.messages):
            new = fresh.get(message.row_id)
            if new is not None and new != message:
                self.messages[index] = new
                changed = True
        if changed:
            self._relayout()

    def set_typing(self, who: str) -> None:
        if who != self.typing:
            at_end = self.is_vertical_scroll_end
            self.typing = who
            self._relayout()
            if at_end:
                self.scroll_end(animate=False)

    # ------------------------------------------------------------------ search
    def find(self, term: str, *, older: bool = True) -> Message | None:
        """The next message ``term`` matches (each of its words begins a word of the message:
        :func:`sotto.store.search.matches`) from the highlighted one, older or newer; highlighted
        and scrolled to. Beyond the loaded messages the store's index is asked
        (:attr:`finder`): a match within a page of them is added to them, one further off is
        shown in a page around it."""
        if not words(term) or not self.messages:
            return None
        index = self._highlight_index()
        if older:
            start = len(self.messages) if index is None else index
            for i in range(start - 1, -1, -1):
                if matches(term, self.messages[i].text):
                    return self._show(i)
            if self.complete or self.finder is None:
                return None
            hit = self.finder(term, self.messages[0].row_id, True)
        else:
            start = -1 if index is None else index
            for i in range(start + 1, len(self.messages)):
                if matches(term, self.messages[i].text):
                    return self._show(i)
            if self.latest or self.finder is None:
                return None
            hit = self.finder(term, self.messages[-1].row_id, False)
        if hit is None:
            return None
        return self._show(self._bring(hit, older=older))

    def show_message(self, hit: Message) -> Message | None:
        """Highlight ``hit`` and scroll to it: among the loaded messages, else in a page read
        around it (as a far search match is shown). None if it is not in this conversation
        (any more: deleted, or disappeared)."""
        if self.loader is None:
            return None
        index = next((i for i, m in enumerate(self.messages) if m.row_id == hit.row_id), None)
        if index is None:
            self._around(hit)
            index = next((i for i, m in enumerate(self.messages) if m.row_id == hit.row_id), None)
            if index is None:
                return None
        return self._show(index)

    def _bring(self, hit: Message, *, older: bool) -> int:
        """Load ``hit`` (older or newer than every loaded message); its index."""
        assert self.loader is not None
        if older:
            page = self.loader(self.messages[0].row_id, PAGE)
            if any(m.row_id == hit.row_id for m in page):
                self.messages[:0] = page
                self.complete = len(page) < PAGE
            else:
                self._around(hit)
        elif self.newer is not None:
            page = self.newer(self.messages[-1].row_id, PAGE)
            if any(m.row_id == hit.row_id for m in page):
                self.messages.extend(page)
                self.latest = len(page) < PAGE
            else:
                self._around(hit)
        return next(i for i, m in enumerate(self.messages) if m.row_id == hit.row_id)

    def _around(self, hit: Message) -> None:
        """Load a page around ``hit`` in place of what was loaded."""
        assert self.loader is not None
        half = PAGE // 2
        before = self.loader(hit.row_id + 1, half)  # the match and those before it
        after = [] if self.newer is None else self.newer(hit.row_id, PAGE - half)
        self.messages = before + after
        self.complete = len(before) < half
        self.latest = self.newer is None or len(after) < PAGE - half
        self._cache.clear()

    def _highlight_index(self) -> int | None:
        if self.highlight is None:
            return None
        return next((i for i, m in enumerate(self.messages) if m.row_id == self.highlight), None)

    def _show(self, index: int) -> Message:
        message = self.messages[index]
        self.highlight = message.row_id
        self._relayout()
        first = next(n for n, line in enumerate(self._lines) if line.owner == index)
        self.scroll_to(y=max(0, first - self.size.height // 2), animate=False)
        return message

    # ------------------------------------------------------------------ drawing
    def _text_console(self) -> Console:
        return self.app.console

    def _who(self, sender: int | None) -> str:
        return "you" if sender is None else self.names.get(sender, "?")

    def _quoted(self, message: Message) -> str:
        assert message.quote is not None
        wanted = message.quote.message_id
        quoted = next((m for m in self.messages if m.message_id == wanted), None)
        if quoted is None:
            return "an earlier message"
        if quoted.deleted:
            return "a deleted message"
        first = quoted.text.splitlines()[0] if quoted.text else ""
        cut = f"{first[:QUOTE_CHARS]}{'…' * (len(first) > QUOTE_CHARS)}"
        return f"{self._who(quoted.sender)}: {cut}"

    def render_message(self, message: Message) -> Text:
        """A message as the log shows it: the line it quotes, time, author and text (or that
        it was deleted), the file it holds, its state or ``edited``, and its reactions under it.
        A timer notice is one line in yellow."""
        line = Text()
        when = Text.assemble((self.times.short(message.sent_ms), "dim"), " ")
        if message.timer_s is not None:
            said = (
                f"set disappearing messages to {duration_text(message.timer_s)}"
                if message.timer_s
                else "turned disappearing messages off"
            )
            line.append_text(when)
            line.append(f"{clean(self._who(message.sender))} {said}", style="yellow")
            if message.row_id == self.highlight:
                line.stylize("reverse")
            return line
        if message.quote is not None:
            line.append(f"  ↳ {clean(self._quoted(message))}\n", style="dim")
        line.append_text(when)
        if message.direction is Direction.OUTGOING:
            line.append("you", style="bold green")
        else:
            line.append(clean(self._who(message.sender)), style="bold cyan")
        if message.deleted:
            line.append(": this message was deleted", style="dim italic")
        else:
            line.append(": ")
            line.append(clean(message.text))
            held = self._held.get(message.row_id)
            if held is not None:
                gap = " " if message.text else ""
                line.append(f"{gap}📎 {clean(held[0])} ({size_text(held[1])})", style="magenta")
            if message.edited_ms is not None:
                line.append("  (edited)", style="dim")
        if message.expires_ms is not None:
            line.append("  ⏱", style="yellow")
        if message.direction is Direction.OUTGOING:
            mark, style = STATE_MARKS[message.state]
            line.append(f"  {mark}", style=style)
        if message.reactions:
            shown = " · ".join(f"{r.emoji} {self._who(r.reactor)}" for r in message.reactions)
            line.append(f"\n      {clean(shown)}", style="dim")
        if message.row_id == self.highlight:
            line.stylize("reverse")
        return line

    def _look_for_files(self) -> None:
        """Ask once, for the rows not asked about yet, which hold files."""
        if self.files is None:
            return
        fresh = [m for m in self.messages if m.row_id not in self._held and m.timer_s is None]
        if not fresh:
            return
        found = self.files(fresh)
        for message in fresh:
            self._held[message.row_id] = found.get(message.row_id)

    def _wrapped(self, message: Message, width: int) -> list[Strip]:
        """The message's screen lines at ``width``, from the cache while it has not changed."""
        highlighted = message.row_id == self.highlight
        quoted = "" if message.quote is None else self._quoted(message)  # the quoted one may change
        cached = self._cache.get(message.row_id)
        if cached is not None and cached[0] == message and cached[1] == (width, highlighted, quoted):
            return cached[2]
        console = self._text_console()
        text = self.render_message(message)
        text.end = ""
        if "\n" not in text.plain and text.cell_len <= width:  # most messages: one line, no wrapping
            strips = [Strip(list(text.render(console)), text.cell_len)]
        else:
            strips = [Strip(list(line.render(console)), line.cell_len) for line in text.wrap(console, width)]
        self._cache[message.row_id] = (message, (width, highlighted, quoted), strips)
        return strips

    def _relayout(self) -> None:
        width = max(1, self.scrollable_content_region.width or self.size.width or 80)
        if width != self._width:
            self._cache.clear()
        self._width = width
        self._look_for_files()
        lines: list[Line] = []
        for index, message in enumerate(self.messages):
            if message.row_id == self.unread_from:
                lines.append(Line(Strip([Segment(NEW_MARKER, Style(color="red", bold=True))]), -2))
            lines.extend(Line(strip, index) for strip in self._wrapped(message, width))
        if not self.messages:
            empty = "no conversation open" if self.loader is None else "no messages yet"
            lines.append(Line(Strip([Segment(empty, Style(dim=True))]), -1))
        else:
            if not self.complete:
                lines.insert(0, Line(Strip([Segment("↑ older messages", Style(dim=True))]), -1))
            if not self.latest:
                lines.append(Line(Strip([Segment("↓ newer messages (G: the newest)", Style(dim=True))]), -1))
        if self.notice:
            lines.append(Line(Strip([Segment(clean(self.notice), Style(color="yellow", bold=True))]), -1))
        if self.typing:
            lines.append(
                Line(Strip([Segment(f"{clean(self.typing)} is typing…", Style(italic=True, dim=True))]), -1)
            )
        self._lines = lines
        self.virtual_size = Size(width, len(lines))
        self.refresh()

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width and width != self._width:
            at_end = self.is_vertical_scroll_end
            self._relayout()
            if at_end:
                self.scroll_end(animate=False)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        strip = self._lines[index].strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)
        return strip.apply_style(self.rich_style)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= LOAD_MARGIN and not self.complete and new < old:
            self.post_message(self.NeedsOlder())
        if not self.latest and new > old and new >= self.max_scroll_y - LOAD_MARGIN:
            self.post_message(self.NeedsNewer())

    @property
    def line_count(self) -> int:
        return len(self._lines)

    # ------------------------------------------------------------------ keys
    def action_line_down(self) -> None:
        if not self.latest and self.scroll_y >= self.max_scroll_y:
            self.load_newer()
        self.scroll_down(animate=False)

    def action_line_up(self) -> None:
        if self.scroll_y == 0 and not self.complete:
            self.load_older()
        self.scroll_up(animate=False)

    def action_top(self) -> None:
        self.load_older()
        self.scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.show_latest()

    def action_page_down_half(self) -> None:
        self.scroll_to(y=self.scroll_y + max(1, self.size.height // 2), animate=False)

    def action_page_up_half(self) -> None:
        self.scroll_to(y=max(0, self.scroll_y - max(1, self.size.height // 2)), animate=False)
