"""Notifications: content-free by default, the name only when asked, never the text, off over SSH."""

from __future__ import annotations

from sotto.tui.notify import BEL, Detail, Notifier, Style, escape


def test_the_default_says_only_that_a_message_arrived() -> None:
    written: list[str] = []
    notifier = Notifier(written.append, environ={})
    assert notifier.message("Bob") == "\a\x1b]9;Sotto: new message\x07"
    assert written == ["\a\x1b]9;Sotto: new message\x07"]
    assert "Bob" not in written[0]


def test_the_sender_only_when_asked() -> None:
    written: list[str] = []
    Notifier(written.append, detail=Detail.SENDER, style=Style.OSC777, environ={}).message("#Lunch")
    assert written == ["\a\x1b]777;notify;Sotto;Sotto: new message from #Lunch\x07"]


def test_a_name_cannot_break_out_of_the_escape() -> None:
    hostile = "Eve\x07\x1b]52;c;ZXZpbA==\x07;x"
    data = escape(Style.OSC9, f"Sotto: new message from {hostile}")
    body = data.removeprefix(f"{BEL}\x1b]9;").removesuffix("\x07")
    assert body == "Sotto: new message from Eve]52cZXZpbA==x"  # no BEL, ESC or field break left


def test_off_over_ssh_and_when_asked() -> None:
    written: list[str] = []
    over_ssh = Notifier(written.append, environ={"SSH_CONNECTION": "198.51.100.1 1 198.51.100.2 22"})
    assert over_ssh.style is Style.OFF
    assert over_ssh.message("Bob") == ""
    Notifier(written.append, style=Style.OFF, environ={}).message("Bob")
    assert written == []


def test_bell_only() -> None:
    written: list[str] = []
    Notifier(written.append, style=Style.BELL, environ={}).message("Bob")
    assert written == [BEL]
