"""Notifications for messages that arrive while you look elsewhere: the terminal's bell and an
OSC 9 (or OSC 777) desktop notification, through the terminal itself (no daemon, no library).

Content-free by default: the notification says that a message arrived, never who wrote it or
what (a desktop notification can be read off a locked screen, logged by the desktop, or
mirrored to a phone). ``sender`` adds the contact's or group's name; the text is never shown.
Off when ``SSH_CONNECTION`` is set: the escape would reach the terminal of the machine you
came from, whose notifications may be someone else's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from sotto.cli.render import clean

BEL = "\a"


class Style(enum.StrEnum):
    OFF = "off"
    BELL = "bell"
    OSC9 = "osc9"
    """The bell and ``ESC ] 9 ; text BEL`` (iTerm2, Windows Terminal, kitty, WezTerm, foot…)."""
    OSC777 = "osc777"
    """The bell and ``ESC ] 777 ; notify ; title ; text BEL`` (rxvt-unicode, VTE terminals)."""


class Detail(enum.StrEnum):
    NONE = "none"
    SENDER = "sender"


def escape(style: Style, body: str) -> str:
    """What to write to the terminal for one notification."""
    body = "".join(ch for ch in clean(body) if ch not in ";\ufffd")  # no escape, no field break
    match style:
        case Style.OFF:
            return ""
        case Style.BELL:
            return BEL
        case Style.OSC9:
            return f"{BEL}\x1b]9;{body}\x07"
        case Style.OSC777:
            return f"{BEL}\x1b]777;notify;Sotto;{body}\x07"


def effective_style(wanted: Style, environ: Mapping[str, str]) -> Style:
    """The style to use: off over SSH, whatever was asked."""
    return Style.OFF if environ.get("SSH_CONNECTION") else wanted


class Notifier:
    """Writes notifications with ``write`` (the app's terminal driver)."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        style: Style = Style.OSC9,
        detail: Detail = Detail.NONE,
        environ: Mapping[str, str],
    ) -> None:
        self.write = write
        self.style = effective_style(style, environ)
        self.detail = detail

    def message(self, where: str, *, request: bool = False) -> str:
        """Notify of one message in conversation ``where`` (``request``: from someone not accepted
        yet); what was written ("" when off)."""
        body = "Sotto: new message request" if request else "Sotto: new message"
        if self.detail is Detail.SENDER:
            body += f" from {where}"
        data = escape(self.style, body)
        if data:
            self.write(data)
        return data
