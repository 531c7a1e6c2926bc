"""Modal screens: a code to show (an invite link or a safety number, with its QR code) and help."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sotto.cli.render import qr_lines


def qr_text(data: str) -> Text:
    """A QR code drawn dark on light, whatever the theme (scanners want that)."""
    return Text("\n".join(qr_lines(data)), style="black on white", no_wrap=True)


class ShowScreen(ModalScreen[None]):
    """A title, lines of text to copy, and optionally a QR code; any of Escape, q, Enter closes."""

    DEFAULT_CSS = """
    ShowScreen { align: center middle; }
    ShowScreen > VerticalScroll {
        width: 90%; height: auto; max-height: 90%;
        border: round $accent; padding: 0 1; background: $surface;
    }
    ShowScreen #show-text { width: 100%; }
    ShowScreen #show-qr { width: auto; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]  # noqa: RUF012

    def __init__(self, title: str, lines: list[str], qr: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.qr = qr

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = self.title_text
            box.border_subtitle = "Esc closes"
            # A link longer than the screen is folded, not cut: every character stays on screen.
            yield Static(Text("\n".join(self.lines), overflow="fold"), id="show-text")
            if self.qr is not None:
                yield Static(qr_text(self.qr), id="show-qr")

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ShowScreen):
    """The keys and the commands."""

    def __init__(self, keys: list[tuple[str, str]], commands: list[tuple[str, str]]) -> None:
        width = max(len(k) for k, _ in keys)
        lines = ["Keys"] + [f"  {k.ljust(width)}  {d}" for k, d in keys]
        cwidth = max(len(c) for c, _ in commands)
        lines += ["", "Commands (after :)"] + [f"  {c.ljust(cwidth)}  {d}" for c, d in commands]
        super().__init__("Help", lines)
