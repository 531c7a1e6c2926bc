"""What the chat app shows, read from the client: one row per conversation, and times of day.

Nothing here draws: the widgets (:mod:`.conversations`, :mod:`.log`) take these values. Texts
and names other people chose go through :func:`sotto.cli.render.clean` before they are shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container
from dataclasses import dataclass, replace

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
    last_row: int = 0
    """The latest message's row id when this was read (0: none), for :func:`advance`."""
    mentions: int = 0
    """Unread group messages naming us (``@`` and our display name): see :func:`mentions_in`."""
    typing: bool = False
    ready: bool = True
    """False for a contact who has not answered our contact request yet."""
    safety_changed: bool = False
    """A contact whose safety number changed (a message came under another identity key), until
    the user verifies them again or acknowledges it (:meth:`Client.trust <sotto.client.sdk.Client.trust>`)."""

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


def mentions_in(messages: list[Message], me: str) -> int:
    """How many of ``messages`` name ``me`` with ``@`` (``@Alice``, any case, not ``@Alicia``)."""
    if not me:
        return 0
    wanted = f"@{me}".casefold()
    count = 0
    for message in messages:
        text = message.text.casefold()
        start = text.find(wanted)
        while start >= 0:
            after = start + len(wanted)
            whole = after >= len(text) or not (text[after].isalnum() or text[after] == "_")
            if whole and (start == 0 or not text[start - 1].isalnum()):  # not a@alice.example
                count += 1
                break
            start = text.find(wanted, after)
    return count


def summarize(client: Client, target: Contact | Group) -> Summary:
    """The row for one conversation (see :func:`load_summaries`)."""
    return _summaries(client, [target])[0]


def load_summaries(
    client: Client, contacts: list[Contact] | None = None, *, requests: Container[int] = ()
) -> list[Summary]:
    """Every conversation with a contact not blocked (of ``contacts``, default all but removed
    ones) and not a message request (contact ids in ``requests``), and every group, newest first."""
    people = client.contacts() if contacts is None else contacts
    targets: list[Contact | Group] = [
        c for c in people if not c.blocked and not c.removed and c.contact_id not in requests
    ]
    targets.extend(client.groups())
    return order(_summaries(client, targets))


def _summaries(client: Client, targets: list[Contact | Group]) -> list[Summary]:
    """Each conversation's latest message, its unread count (reading further back only where
    the newest messages are unread) and, for a contact, whether they answered: a few reads of
    the store for the whole list."""
    latest = client.latest_messages(targets, limit=1)
    unread_ones = [t for t, messages in zip(targets, latest, strict=True) if count_unread(messages)[0]]
    longer = dict(
        zip(
            (key_of(t) for t in unread_ones),
            client.latest_messages(unread_ones, limit=UNREAD_SCAN),
            strict=True,
        )
    )
    contacts = [t for t in targets if isinstance(t, Contact)]
    ready = dict(zip((c.contact_id for c in contacts), client.ready_contacts(contacts), strict=True))
    trusts = client.trusts(contacts)
    changed = {c.contact_id for c, t in zip(contacts, trusts, strict=True) if t.safety_number_changed}
    summaries = []
    for target, messages in zip(targets, latest, strict=True):
        key = key_of(target)
        scanned = longer.get(key, messages)
        unread, capped = count_unread(scanned)
        mentions = 0
        if isinstance(target, Group) and unread:
            mentions = mentions_in(scanned[len(scanned) - unread :], client.display_name)
        summaries.append(
            Summary(
                key=key,
                target=target,
                title=title_of(target),
                unread=unread,
                unread_capped=capped,
                mentions=mentions,
                last_ms=messages[-1].stored_ms if messages else 0,
                last_row=messages[-1].row_id if messages else 0,
                ready=True if isinstance(target, Group) else ready[target.contact_id],
                safety_changed=isinstance(target, Contact) and target.contact_id in changed,
            )
        )
    return summaries


ADVANCE_PEEK = 8
"""How many of a conversation's newest messages :func:`advance` reads."""


def advance(client: Client, summary: Summary) -> Summary:
    """The row once messages arrived in its conversation: the newest few are read and the new
    incoming ones added to the unread count, rather than counting again from the store (up to
    :data:`UNREAD_SCAN` messages decrypted, for each message that arrives). Counted again when
    more arrived than were read, or one of them is ours or read; unchanged when none is new
    (an event reported again after a restart)."""
    newest = client.latest_messages([summary.target], limit=ADVANCE_PEEK)[0]
    fresh = [m for m in newest if m.row_id > summary.last_row]
    if not fresh:
        return summary
    if len(fresh) == len(newest) or any(
        m.direction is Direction.OUTGOING or m.state is MessageState.READ for m in fresh
    ):
        return summarize(client, summary.target)
    return replace(
        summary,
        unread=summary.unread + len(fresh),
        mentions=summary.mentions + (mentions_in(fresh, client.display_name) if summary.is_group else 0),
        last_ms=fresh[-1].stored_ms,
        last_row=fresh[-1].row_id,
    )


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
