"""What the CLI prints: QR codes that hold their data, and other people's text made harmless."""

from __future__ import annotations

import io
import unicodedata
import uuid

import qrcode  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from sotto.cli import render
from sotto.client import events as ev
from sotto.protocol.address import ProtocolAddress
from sotto.store.model import (
    Contact,
    ContactId,
    Conversation,
    Direction,
    Group,
    GroupId,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
)

ESCAPES = "\x1b[2J\x1b]0;owned\x07\r\u202egnp.exe\u2066\x9b2J"
JOINED = (
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # 👩‍👩‍👧, one family emoji made of three
    "\U0001f3f3\ufe0f\u200d\U0001f308",  # 🏳️‍🌈
    "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # 🏴 England: tag characters
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian "می‌خواهم": ZWNJ after the prefix
    "\u0915\u094d\u200d\u0937",  # Devanagari क्‍ष: ZWJ asks for the half form
    "\u0d28\u0d4d\u200d",  # Malayalam chillu with ZWJ
    "\u05e9\u05dc\u05d5\u05dd \u200fabc\u200e",  # Hebrew with RLM and LRM, marks that reorder nothing
)


def contact(name: str) -> Contact:
    return Contact(ContactId(1), name, bytes(16), ProtocolAddress(str(uuid.UUID(int=0)), 1), 0, name)


def printed(text: object) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    console.print(text)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


@given(st.text())
def test_clean_leaves_no_control_or_bidi_override_characters(text: str) -> None:
    cleaned = render.clean(text)
    assert len(cleaned) == len(text)
    for before, after in zip(text, cleaned, strict=True):
        control = unicodedata.category(before) in ("Cc", "Cs") and before not in "\n\t"
        reorders = before in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        assert after == ("\ufffd" if control or reorders else before)


def test_joined_emoji_and_the_joiners_scripts_need_are_shown_intact() -> None:
    for text in JOINED:
        assert render.clean(text) == text
        received = ev.MessageReceived(contact(text), MessageId(bytes(16)), text, 0)
        line = render.event_line(received, "http://relay.test")
        assert line is not None
        assert line.plain.count(text) == 2  # the sender's name and the text
        assert text in printed(line)
    assert render.clean("a\u200db\u200cc") == "a\u200db\u200cc"


def test_other_peoples_text_cannot_drive_the_terminal() -> None:
    received = ev.MessageReceived(
        contact(f"Mallory{ESCAPES}"), MessageId(bytes(16)), f"hi{ESCAPES}[bold]x[/]", 0
    )
    line = render.event_line(received, "http://relay.test")
    assert line is not None
    shown = printed(line)
    for bad in ("\x1b]", "\x1b[2J", "\x07", "\r", "\u202e", "\u2066", "\x9b"):
        assert bad not in shown
    assert "[bold]x[/]" in line.plain  # Rich markup in a message is shown as typed, not applied
    group = Group(GroupId(bytes(16)), f"Team{ESCAPES}", uuid.UUID(int=1), 0)
    for event in (
        ev.GroupMessageReceived(group, contact("Bob"), MessageId(bytes(16)), ESCAPES, 0),
        ev.TypingChanged(contact(ESCAPES), True, group),
        ev.GroupUpdated(group, contact(ESCAPES), joined=True),
        ev.IdentityChanged(contact(ESCAPES)),
    ):
        text = render.event_line(event, "http://relay.test")
        assert text is not None and "\x1b" not in text.plain and "\u202e" not in text.plain


def test_each_event_has_a_line_or_is_quiet_on_purpose() -> None:
    bob = contact("Bob")
    ids = (MessageId(bytes(16)),)
    assert "Bob received 1 message" in str(render.event_line(ev.DeliveryReceiptReceived(bob, ids), ""))
    assert "Bob read 1 message" in str(render.event_line(ev.ReadReceiptReceived(bob, ids), ""))
    assert "Bob is typing" in str(render.event_line(ev.TypingChanged(bob, True), ""))
    assert "accepted your invite" in str(render.event_line(ev.ContactAdded(bob), ""))
    assert "answered" in str(render.event_line(ev.ContactAccepted(bob), ""))
    assert "sotto verify Bob" in str(render.event_line(ev.IdentityChanged(bob), ""))
    assert "session with Bob re-established" in str(render.event_line(ev.SessionRepaired(bob, True), ""))
    assert "connected to http://r" in str(render.event_line(ev.ConnectionChanged(True), "http://r"))
    assert render.event_line(ev.MessageSent(ids[0]), "") is None
    held = str(render.event_line(ev.SendHeld(ids[0], "mailbox_full"), ""))
    assert "no room" in held and "mailbox_full" in held and "kept" in held


def test_message_lines_show_who_and_the_state_of_ours() -> None:
    def message(direction: Direction, state: MessageState) -> Message:
        return Message(
            MessageRowId(1),
            MessageId(bytes(16)),
            Conversation.direct(ContactId(1)),
            direction,
            None if direction is Direction.OUTGOING else ContactId(1),
            "see you",
            0,
            0,
            state,
        )

    ours = render.message_line(message(Direction.OUTGOING, MessageState.READ), "you").plain
    assert "you: see you" in ours and "✓✓ read" in ours
    theirs = render.message_line(message(Direction.INCOMING, MessageState.RECEIVED), "Bob").plain
    assert "Bob: see you" in theirs and "✓" not in theirs


@given(st.text(min_size=1, max_size=300))
def test_qr_lines_hold_exactly_the_code_matrix(data: str) -> None:
    lines = render.qr_lines(data)
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data.encode())
    code.make(fit=True)
    matrix = [[bool(m) for m in row] for row in code.get_matrix()]
    top = {"█": True, "▀": True, "▄": False, " ": False}
    bottom = {"█": True, "▀": False, "▄": True, " ": False}
    rebuilt = []
    for line in lines:
        assert len(line) == len(matrix[0])
        rebuilt.append([top[ch] for ch in line])
        rebuilt.append([bottom[ch] for ch in line])
    assert rebuilt[: len(matrix)] == matrix
    assert not any(any(row) for row in rebuilt[len(matrix) :])
