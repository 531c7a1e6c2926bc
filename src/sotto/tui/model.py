"""What the chat app shows, read from the client: one row per conversation, and times of day.

Nothing here draws: the widgets (:mod:`.conversations`, :mod:`.log`) take these values. Texts
and names other people chose go through :func:`sotto.cli.render.clean` before they are shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sotto.client.sdk import Client
from sotto.store.model import Contact, Direction, Group, Message, MessageState

UNREAD_SCAN = 200
"""How many of a conversation's latest messages are read to count its unread ones at start-up;
a conversation with more unread than that shows ``UNREAD_SCAN+``."""


@dataclass(frozen=True, slots=True)
class Summary:
    """One row of the conversation list."""

    key: str
    """``c:<contact id>`` or ``g:<group id hex>``: stable while the app runs."""
    target: Contact | Group
    title: str
    unread: int = 0
    unread_capped: bool = False
    """More unread than were counted (see :data:`UNREAD_SCAN`)."""
    last_ms: int = 0
    """When the latest message was stored (0: none yet); the list is newest first."""
    typing: bool = False
    ready: bool = True
    """False for a contact who has not answered our contact request yet."""

    @property
    def is_group(self) -> bool:
        return isinstance(self.target, Group)

    def unread_label(self) -> str:
        if not self.unread:
            return ""
        return f"{self.unread}+" if self.unread_capped else str(self.unread)


def key_of(target: Contact | Group) -> str:
    if isinstance(target, Group):
        return f"g:{target.group_id.hex()}"
    return f"c:{target.contact_id}"


def title_of(target: Contact | Group) -> str:
    return f"#{target.name}" if isinstance(target, Group) else target.name


def count_unread(messages: list[Message]) -> tuple[int, bool]:
    """Unread incoming messages at the end of ``messages`` (oldest first): counted back from the
    newest until a message already read or one of ours (whoever wrote last had seen what came
    before); and whether the count may be short (all of ``messages`` were unread)."""
    unread = 0
    for message in reversed(messages):
        if message.direction is Direction.OUTGOING or message.state is MessageState.READ:
            return unread, False
        unread += 1
    return unread, len(messages) >= UNREAD_SCAN


def summarize(client: Client, target: Contact | Group) -> Summary:
    """The row for one conversation: its latest message, and its unread count, which reads
    further back only while the newest messages are unread."""
    latest = client.history(target, limit=1)
    unread, capped = count_unread(latest)
    if unread:
        latest = client.history(target, limit=UNREAD_SCAN)
        unread, capped = count_unread(latest)
    ready = True if isinstance(target, Group) else client.is_ready(target)
    return Summary(
        key=key_of(target),
        target=target,
        title=title_of(target),
        unread=unread,
        unread_capped=capped,
        last_ms=latest[-1].stored_ms if latest else 0,
        ready=ready,
    )


def load_summaries(client: Client) -> list[Summary]:
    """Every conversation with someone not removed or blocked, and every group, newest first."""
    targets: list[Contact | Group] = [c for c in client.contacts() if not c.blocked]
    targets.extend(client.groups())
    return order([summarize(client, t) for t in targets])


def order(summaries: list[Summary]) -> list[Summary]:
    """Newest activity first; conversations with no messages after, by title."""
    return sorted(summaries, key=lambda s: (-s.last_ms, s.title.casefold()))


@dataclass(frozen=True, slots=True)
class TimeFormat:
    """Times of day as the app shows them: ``now_ms`` and ``tz`` are given (tests freeze both)."""

    now_ms: Callable[[], int]
    tz: dt.tzinfo | None = None
    """None: the local time zone."""

    def moment(self, ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ms / 1000, tz=self.tz or dt.UTC).astimezone(self.tz)

    def short(self, ms: int) -> str:
        """``HH:MM`` today, ``MM-DD HH:MM`` this year, else the date."""
        then, now = self.moment(ms), self.moment(self.now_ms())
        if then.date() == now.date():
            return then.strftime("%H:%M")
        if then.year == now.year:
            return then.strftime("%m-%d %H:%M")
        return then.strftime("%Y-%m-%d")
