"""Every key of the chat app, in one table: the app binds from it, help and the command palette
list it, and a test checks that every action has a key.

The navigation keys follow scli (and vim): ``j``/``k`` down and up, ``g``/``G`` first and last,
``Tab`` to the next pane, ``/`` to search, ``:`` for the command line; ``i`` to write and
``Escape`` to stop. Letters go to the composer while it has the focus.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True, slots=True)
class Key:
    keys: str
    """Textual key names, comma-separated."""
    action: str
    description: str
    shown: str
    """How help shows the keys."""
    pane: str = "app"
    """``app``: anywhere (unless the composer takes the letter); else the pane that binds it."""
    palette: bool = True
    """Listed in the command palette."""
    first: bool = False
    """Handled by the app before the focused pane sees the key (see :func:`app_bindings`)."""


APP_KEYS: tuple[Key, ...] = (
    Key("tab", "focus_next", "Next pane", "Tab", palette=False),
    Key("shift+tab", "focus_previous", "Previous pane", "Shift+Tab", palette=False),
    Key("colon", "command_line", "Command line", ":"),
    Key("slash", "search", "Search the open conversation", "/"),
    Key("F", "search_everywhere", "Search every conversation", "F"),
    Key("n", "search_next", "Next match (older)", "n"),
    Key("N", "search_previous", "Previous match (newer)", "N"),
    Key("i", "compose", "Write a message", "i"),
    Key("escape", "leave", "Leave the composer or command line", "Esc", palette=False),
    Key("enter", "open_highlighted", "Open the highlighted conversation", "Enter", palette=False, first=True),
    Key("right_square_bracket", "next_conversation", "Next conversation", "]"),
    Key("left_square_bracket", "previous_conversation", "Previous conversation", "["),
    Key("I", "invite", "New invite link (QR code)", "I"),
    Key("a", "accept", "Accept an invite link", "a"),
    Key("v", "verify", "Safety number with this contact", "v"),
    Key("R", "requests", "Message requests (first contact)", "R"),
    Key("K", "select_previous", "Select the message above (for e D r + s)", "K"),
    Key("J", "select_next", "Select the message below", "J"),
    Key("e", "edit", "Edit your selected (or last) message", "e"),
    Key("D", "delete", "Delete your selected (or last) message for everyone", "D"),
    Key("r", "reply", "Reply to the selected (or last) message", "r"),
    Key("plus", "react", "React to the selected (or last) message", "+"),
    Key("t", "timer", "Disappearing messages timer", "t"),
    Key("f", "send_file", "Send a file", "f"),
    Key("s", "save_file", "Save the selected (or last) file received", "s"),
    Key("V", "verify_code", "Mark this contact verified (their code)", "V"),
    Key("ctrl+r", "retry", "Send queued messages now", "Ctrl+R"),
    Key("question_mark", "help", "Keys and commands", "?"),
    Key("ctrl+q", "quit", "Quit", "Ctrl+Q"),
)
"""Bound on the app."""

PANE_KEYS: tuple[Key, ...] = (
    Key("j,down", "cursor_down", "Down", "j ↓", pane="conversations", palette=False),
    Key("k,up", "cursor_up", "Up", "k ↑", pane="conversations", palette=False),
    Key("g,home", "first", "First conversation", "g", pane="conversations", palette=False),
    Key("G,end", "last", "Last conversation", "G", pane="conversations", palette=False),
    Key("enter", "select", "Open the conversation", "Enter", pane="conversations", palette=False),
    Key("j,down", "line_down", "Scroll down", "j ↓", pane="log", palette=False),
    Key("k,up", "line_up", "Scroll up", "k ↑", pane="log", palette=False),
    Key("g,home", "top", "Oldest (reads older pages)", "g", pane="log", palette=False),
    Key("G,end", "bottom", "Newest", "G", pane="log", palette=False),
    Key("ctrl+d,pagedown", "page_down_half", "Half a page down", "Ctrl+D", pane="log", palette=False),
    Key("ctrl+u,pageup", "page_up_half", "Half a page up", "Ctrl+U", pane="log", palette=False),
    Key("enter", "submit", "Send", "Enter", pane="composer", palette=False),
    Key("j,down", "cursor_down", "Next request", "j ↓", pane="requests", palette=False),
    Key("k,up", "cursor_up", "Previous request", "k ↑", pane="requests", palette=False),
    Key("a", "accept", "Accept: they join your conversations", "a", pane="requests", palette=False),
    Key("b", "block", "Block: drop what they send", "b", pane="requests", palette=False),
    Key("d", "delete", "Delete them and what they wrote", "d", pane="requests", palette=False),
    Key("escape,q", "close", "Close the requests", "Esc", pane="requests", palette=False),
    Key("j,down", "cursor_down", "Next match", "j ↓", pane="results", palette=False),
    Key("k,up", "cursor_up", "Previous match", "k ↑", pane="results", palette=False),
    Key("g,home", "first", "First (newest) match", "g", pane="results", palette=False),
    Key("G,end", "last", "Last (oldest) match", "G", pane="results", palette=False),
    Key("enter", "open", "Open the conversation at the match", "Enter", pane="results", palette=False),
    Key("escape,q", "close", "Close the matches", "Esc", pane="results", palette=False),
)
"""Bound by the panes themselves (:mod:`.conversations`, :mod:`.log`, the composer), the
message-requests screen (:mod:`.requests`) and the search results (:mod:`.results`)."""

PALETTE_KEY = Key("ctrl+p", "command_palette", "Command palette", "Ctrl+P", palette=False)
"""Textual's own command palette, listing :data:`APP_KEYS`."""


def is_typed(key: Key) -> bool:
    """A key that is also text (a letter or a sign): the composer and command line take it."""
    return not any("+" in name or name in ("tab", "escape", "enter") for name in key.keys.split(","))


TYPED_ACTIONS = frozenset(k.action for k in APP_KEYS if is_typed(k))
"""Actions whose keys are text: off while a text field has the focus (see ``ChatApp.check_action``)."""


def app_bindings() -> list[BindingType]:
    """The app's bindings. Keys that are text, and Enter on the list, are priority bindings,
    handled by the app before the key reaches a pane: one that opens a conversation or moves the
    focus (``i``, ``:``, ``/``) has done so before the next key of a burst (a paste, a fast
    typist, tmux) is handled, and no key of the burst is lost."""
    return [
        Binding(k.keys, k.action, k.description, show=False, priority=k.first or is_typed(k))
        for k in APP_KEYS
    ]


def help_rows() -> list[tuple[str, str]]:
    rows = [(k.shown, k.description) for k in (*APP_KEYS, PALETTE_KEY)]
    for pane in ("conversations", "log", "composer", "requests", "results"):
        rows.extend((f"{k.shown} ({pane})", k.description) for k in PANE_KEYS if k.pane == pane)
    return rows


def pane_bindings(pane: str) -> list[BindingType]:
    return [Binding(k.keys, k.action, k.description, show=False) for k in PANE_KEYS if k.pane == pane]
