"""``sotto chat``: the full-screen app. Conversations on the left, the open one's log, the
composer under it, a status line, and a vim-like command line that appears on ``:`` or ``/``.

The app runs the client's receive loop itself (:meth:`Client.listen`) in the same event loop as
the screen, so it receives and sends in one process. What you write is handed to the client,
which keeps it in its encrypted outbox until the relay takes it: a message shows as pending
until then, and a lost relay costs nothing typed. A text that cannot be queued stays in the
composer. Each conversation keeps its own draft, in the client's encrypted store, so a draft
is still there after a restart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Input, Static

from sotto.cli.render import clean
from sotto.client import events as ev
from sotto.client.content import MAX_TEXT_BYTES
from sotto.client.sdk import Client
from sotto.errors import SottoError
from sotto.store.model import Contact, Direction, Group, Message
from sotto.tui import commands, keys
from sotto.tui.conversations import ConversationList
from sotto.tui.log import MessageLog
from sotto.tui.model import Summary, TimeFormat, advance, key_of, load_summaries, summarize, title_of
from sotto.tui.notify import Detail, Notifier, Style
from sotto.tui.requests import PREVIEW, Decision, Request, RequestsScreen
from sotto.tui.results import RESULTS, Found, SearchResultsScreen
from sotto.tui.screens import HelpScreen, ShowScreen

STATUS_EVERY_S = 1.0
"""How often the status line reads the outbox again while the app listens."""
TYPING_SHOWN_S = 15.0
"""Someone's "is typing" shows at most this long after their last "started" (as Signal does)."""
TYPING_IDLE_S = 5.0
"""After this long without a keystroke, the contact is told we stopped typing."""
ACKNOWLEDGE_WORDS = frozenset({"ok", "ack", "seen"})
"""``:verify NAME ok`` (or ``ack``, ``seen``): a changed safety number acknowledged, not verified
(no safety number code is one of these words)."""
DRAFT_SAVE_S = 1.0
"""A draft is written to the store this long after the last keystroke (and at once when the
conversation is left, a message sent or the app quit)."""


class Composer(Input):
    """Where a message is written; Enter sends it."""

    DEFAULT_CSS = """
    Composer { height: 3; }
    """


class Header(Static):
    """Above the log: the open conversation's disappearing timer, shown only while one is set."""

    DEFAULT_CSS = """
    Header { height: 1; padding: 0 1; background: $panel; display: none; }
    Header.shown { display: block; }
    """


class CommandLine(Input):
    """The ``:`` command line and the ``/`` search line; hidden until asked for."""

    DEFAULT_CSS = """
    CommandLine { height: 1; border: none; padding: 0 1; display: none; }
    CommandLine.open { display: block; }
    """


class StatusLine(Static):
    """Connection, what is queued, and the last thing that happened."""

    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $panel; }
    """


class ChatCommands(Provider):
    """The command palette lists every app action that has a key."""

    def _entries(self) -> list[keys.Key]:
        return [k for k in keys.APP_KEYS if k.palette]

    async def discover(self) -> Hits:
        for key in self._entries():
            yield DiscoveryHit(
                f"{key.description} ({key.shown})", partial(self.app.run_action, key.action), help=key.action
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for key in self._entries():
            label = f"{key.description} ({key.shown})"
            score = matcher.match(label)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(label), partial(self.app.run_action, key.action), help=key.action
                )


class ChatApp(App[None]):
    """The chat app over one open :class:`~sotto.client.sdk.Client` (see the module docstring).

    ``live``: run the client's receive loop (off only for tests of the layout). ``times``: how
    times of day are shown (tests freeze the clock). ``notify``/``detail``: see
    :mod:`sotto.tui.notify`; ``environ`` decides whether we are over SSH. ``bell``: where the
    notification escapes go (default: the terminal).
    """

    TITLE = "Sotto"
    CSS = """
    Screen { layout: vertical; }
    #panes { height: 1fr; }
    #right { width: 1fr; }
    ConversationList { border-right: solid $panel-lighten-2; }
    """
    BINDINGS = keys.app_bindings()
    COMMANDS = App.COMMANDS | {ChatCommands}
    COMMAND_PALETTE_BINDING = keys.PALETTE_KEY.keys
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        client: Client,
        *,
        live: bool = True,
        times: TimeFormat | None = None,
        notify: Style = Style.OSC9,
        detail: Detail = Detail.NONE,
        environ: Mapping[str, str] | None = None,
        bell: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.live = live
        self.times = times or TimeFormat(client.engine.now_ms)
        self.notifier = Notifier(
            bell or self._write_terminal,
            style=notify,
            detail=detail,
            environ=os.environ if environ is None else environ,
        )
        self.open_target: Contact | Group | None = None
        self.drafts: dict[str, str] = {}
        """Conversation key -> its draft, as read from or written to the store."""
        self._draft_timer: Timer | None = None
        self.connected = False
        self.ever_connected = False
        self.note = ""
        self.search_term = ""
        self._typing_to: str | None = None
        self._typing_timer: Timer | None = None
        self._typing_shown: dict[str, Timer] = {}
        """Conversation key -> when its "is typing" goes away unless renewed."""
        self._names: dict[int, str] = {}
        self.requests: dict[int, Contact] = {}
        """Contact id -> a message request (see :mod:`sotto.tui.requests`), kept out of the list."""

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="panes"):
            yield ConversationList(id="conversations")
            with Vertical(id="right"):
                yield Header(id="header")
                yield MessageLog(self.times, id="log")
                hint = "Write a message · Enter sends · Esc leaves"
                yield Composer(placeholder=hint, id="composer", select_on_focus=False)
        yield StatusLine(id="status")
        yield CommandLine(id="command", select_on_focus=False)

    @property
    def conversations(self) -> ConversationList:
        return self.query_one(ConversationList)

    @property
    def log_view(self) -> MessageLog:
        return self.query_one(MessageLog)

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    @property
    def command_line(self) -> CommandLine:
        return self.query_one(CommandLine)

    def on_mount(self) -> None:
        everyone = self.client.contacts(include_removed=True)
        self._names = {c.contact_id: c.name for c in everyone}
        self.requests = {c.contact_id: c for c in self.client.message_requests()}
        self.conversations.show(load_summaries(self.client, everyone, requests=self.requests))
        self.conversations.focus()
        self.log_view.open(None, self._names)
        self.connected = self.ever_connected = self.live and self.client.connected
        self.refresh_status()
        if self.live:
            self.receive()
            # Receipts and retries leave the outbox without an event: the queued count is read
            # again; and what `sotto send` wrote through the control socket is shown.
            self.set_interval(STATUS_EVERY_S, self._tick)

    # ------------------------------------------------------------------ receiving
    @work(exclusive=True, group="receive", exit_on_error=False)
    async def receive(self) -> None:
        """The client's receive loop, for as long as the app runs. A failure stops receiving and
        says so in the status line; what was typed stays, and the app keeps running."""
        try:
            async for event in self.client.listen():
                try:
                    await self.handle(event)
                except SottoError as e:  # one event that cannot be shown must not stop the rest
                    self.say(f"could not show an event: {type(e).__name__}")
        except SottoError as e:
            self.connected = False
            self.say(f"receiving stopped: {e} (restart sotto chat)")

    async def handle(self, event: ev.Event) -> None:
        """One event from the client: update the list, the log, the status; notify."""
        match event:
            case ev.MessageReceived() if event.contact.contact_id in self.requests:
                self.notifier.message(title_of(event.contact), request=True)
                self._requests_changed()
            case ev.TypingChanged() if event.group is None and event.contact.contact_id in self.requests:
                pass  # not shown before they are accepted
            case ev.MessageReceived():
                self._typing(ev.TypingChanged(event.contact, False))  # what they typed arrived
                await self._arrived(event.contact)
            case ev.GroupMessageReceived():
                self._typing(ev.TypingChanged(event.sender, False, event.group))
                await self._arrived(event.group)
            case ev.DeliveryReceiptReceived() | ev.ReadReceiptReceived() | ev.MessageSent() | ev.SendHeld():
                self.log_view.refresh_tail()
                if isinstance(event, ev.SendHeld):
                    self.note = f"the relay has no room now ({event.reason}); kept, goes out by itself"
            case ev.SendFailed():
                self.log_view.refresh_tail()
                self.note = f"a message could not be delivered ({event.reason})"
            case ev.TypingChanged():
                self._typing(event)
            case ev.MessageEdited() | ev.MessageDeleted() | ev.ReactionChanged() | ev.TimerChanged():
                target: Contact | Group = event.group if event.group is not None else event.contact
                if self.open_target is not None and key_of(self.open_target) == key_of(target):
                    self.log_view.refresh_tail()
                    self.catch_up()
                    self._show_header()
                if isinstance(event, ev.TimerChanged):
                    said = f"set to {commands.duration_text(event.seconds)}" if event.seconds else "off"
                    who = clean(event.contact.name)
                    self.note = f"{who}: disappearing messages {said} in {clean(title_of(target))}"
            case ev.ContactAdded() if event.contact.contact_id in self._request_ids():
                self._names[event.contact.contact_id] = event.contact.name
                self.requests[event.contact.contact_id] = event.contact
                self.conversations.drop(key_of(event.contact))
                self.notifier.message(title_of(event.contact), request=True)
                self.note = f"{clean(event.contact.name)} used your invite: a message request (R)"
                self._requests_changed()
            case ev.ContactAdded() | ev.ContactAccepted():
                self._names[event.contact.contact_id] = event.contact.name
                self.conversations.put(summarize(self.client, event.contact))
                verb = "accepted your invite" if isinstance(event, ev.ContactAdded) else "answered"
                self.note = f"{clean(event.contact.name)} {verb}: you can write to them now"
            case ev.GroupUpdated():
                self.conversations.put(summarize(self.client, event.group))
                if self.open_target is not None and key_of(self.open_target) == key_of(event.group):
                    self.open_target = event.group  # a new name, or members
                    self.catch_up()
                if event.joined:
                    self.note = f"{clean(event.sender.name)} added you to #{clean(event.group.name)}"
            case ev.IdentityChanged():
                self._trust_changed(event.contact)
                self.note = (
                    f"a message from {clean(event.contact.name)} came with another identity key and was "
                    f"refused: compare safety numbers (:verify {clean(event.contact.name)})"
                )
            case ev.SessionRepaired():
                self.note = f"secure session with {clean(event.contact.name)} re-established"
            case ev.ConnectionChanged():
                self.connected = event.connected
                self.ever_connected = self.ever_connected or event.connected
        self.refresh_status()

    async def _arrived(self, target: Contact | Group) -> None:
        key = key_of(target)
        if self.open_target is not None and key_of(self.open_target) == key:
            self.catch_up()
            if self.app_focus:
                await self.client.mark_read(target)
                summary = summarize(self.client, target)
            else:
                summary = summarize(self.client, target)
                self.notifier.message(title_of(target))
        else:
            known = self.conversations.get(key)
            summary = summarize(self.client, target) if known is None else advance(self.client, known)
            self.notifier.message(title_of(target))
        self.conversations.put(summary)

    def _typing(self, event: ev.TypingChanged) -> None:
        target: Contact | Group = event.group if event.group is not None else event.contact
        key = key_of(target)
        expiry = self._typing_shown.pop(key, None)
        if expiry is not None:
            expiry.stop()
        if event.started:  # a "stopped" that never comes (their app died) must not show forever
            stopped = ev.TypingChanged(event.contact, False, event.group)
            self._typing_shown[key] = self.set_timer(TYPING_SHOWN_S, partial(self._typing, stopped))
        summary = self.conversations.get(key)
        if summary is not None and summary.typing != event.started:
            self.conversations.put(replace(summary, typing=event.started))
        if self.open_target is not None and key_of(self.open_target) == key:
            self.log_view.set_typing(event.contact.name if event.started else "")

    def catch_up(self) -> None:
        """Show what the open conversation gained since it was read (and states that moved)."""
        if self.open_target is None:
            return
        log = self.log_view
        if not log.latest:
            return  # a page around a search match: the newest come back with G or a send
        last = log.messages[-1].row_id if log.messages else 0
        newest = self.client.history(self.open_target, limit=50)
        for message in newest:
            if message.row_id > last:
                log.append(message)
        log.refresh_tail()

    def _tick(self) -> None:
        self._written_elsewhere()
        self.refresh_status()

    def _written_elsewhere(self) -> None:
        """Show a message that another process (`sotto send`, through the control socket) wrote
        in the open conversation: one message read to look."""
        target = self.open_target
        if target is None or not self.log_view.latest:
            return
        newest = self.client.latest_messages([target], limit=1)[0]
        shown = self.log_view.messages[-1].row_id if self.log_view.messages else 0
        if newest and newest[-1].row_id > shown:
            self.catch_up()
            self.conversations.put(summarize(self.client, target))

    # ------------------------------------------------------------------ status
    def refresh_status(self) -> None:
        status = Text()
        if not self.live:
            status.append("○ not listening", style="dim")
        elif self.connected:
            status.append("● connected", style="green")
        elif self.ever_connected:
            status.append("○ relay lost · reconnecting…", style="bold yellow")
        else:
            status.append("○ connecting…", style="yellow")
        queued = self.client.pending_outbox()
        if queued:
            status.append(f" · {queued} queued", style="yellow")
        if self.requests:
            plural = "s" if len(self.requests) > 1 else ""
            status.append(f" · ✉ {len(self.requests)} message request{plural} (R)", style="bold")
        if self.note:
            status.append(" · ")
            status.append(clean(self.note))
        self.query_one(StatusLine).update(status)

    def say(self, note: str) -> None:
        self.note = note
        self.refresh_status()

    # ------------------------------------------------------------------ message requests
    def _request_ids(self) -> set[int]:
        return {c.contact_id for c in self.client.message_requests()}

    def _requests_changed(self) -> None:
        if isinstance(self.screen, RequestsScreen):
            self.screen.reload()
        self.refresh_status()

    def load_requests(self) -> list[Request]:
        """The requests with their latest messages (for :class:`RequestsScreen`)."""
        contacts = list(self.requests.values())
        latest = self.client.latest_messages(contacts, limit=PREVIEW)
        return [Request(c, m) for c, m in zip(contacts, latest, strict=True)]

    async def decide_request(self, contact: Contact, decision: Decision) -> None:
        """Accept, block or delete a message request; an accepted one opens."""
        try:
            match decision:
                case Decision.ACCEPT:
                    await self.client.accept_request(contact)
                case Decision.BLOCK:
                    await self.client.block_contact(contact)
                case Decision.DELETE:
                    await self.client.remove_contact(contact, forget_history=True)
        except SottoError as e:
            self.say(f"could not {decision.value} {clean(contact.name)}: {e}")
            return
        self.requests.pop(contact.contact_id, None)
        done = {Decision.ACCEPT: "accepted", Decision.BLOCK: "blocked", Decision.DELETE: "deleted"}
        self.note = f"{clean(contact.name)} {done[decision]}"
        if decision is Decision.ACCEPT:
            self.conversations.put(summarize(self.client, contact))
            if isinstance(self.screen, RequestsScreen):
                self.screen.dismiss(None)
            self.open_conversation(contact)
            self.focus_now(self.composer)
        self._requests_changed()

    # ------------------------------------------------------------------ opening conversations
    def on_conversation_list_selected(self, event: ConversationList.Selected) -> None:
        summary = self.conversations.get(event.key)
        if summary is not None:
            self.open_conversation(summary.target)

    def open_conversation(self, target: Contact | Group) -> None:
        """Show a conversation (its newest page), mark it read, and move to the composer."""
        key = key_of(target)
        typed = self.composer.value
        if self.open_target is not None:
            self._stop_typing()
            self._keep_draft(self.open_target, typed)
            typed = ""
        # With nothing open, what was typed (keys can overtake the Enter that opens a
        # conversation) stays in the composer, for the conversation that opens.
        draft = self._draft_of(target) or typed
        self.open_target = target
        summary = self.conversations.get(key)
        self.log_view.open(
            partial(self._page, target),
            self._names,
            newer=partial(self._page_after, target),
            finder=partial(self._search, target),
            files=self._files,
            unread=0 if summary is None else summary.unread,
            notice=self._notice_of(target),
        )
        self._show_header()
        if summary is not None and summary.typing:
            self.log_view.set_typing(clean(target.name))
        self.composer.value = draft
        self.conversations.set_open(key)
        self.search_term = ""
        self._mark_read(target)

    def _files(self, messages: list[Message]) -> dict[int, tuple[str, int]]:
        held = self.client.attachments(messages)
        return {row: (found.file_name or "a file", found.size) for row, found in held.items()}

    def _show_header(self) -> None:
        """The line above the log, shown while there is something to say: a safety number that
        changed (until verified or acknowledged) and the disappearing timer."""
        header = self.query_one(Header)
        target = self.open_target
        seconds, changed = 0, False
        if target is not None:
            try:
                seconds = self.client.disappearing_timer(target)
                changed = isinstance(target, Contact) and self.client.trust(target).safety_number_changed
            except SottoError:
                seconds = 0
        if target is not None and (seconds or changed):
            line = Text.assemble((clean(title_of(target)), "bold"))
            if changed:
                ok = f":verify {clean(commands.quoted(target.name))} ok"
                line.append(f" · ⚠ safety number changed: v compares, {ok} acknowledges", "bold red")
            if seconds:
                line.append(f" · ⏱ disappearing messages: {commands.duration_text(seconds)}", "yellow")
            line.no_wrap, line.overflow = True, "ellipsis"
            header.update(line)
        header.set_class(bool(target is not None and (seconds or changed)), "shown")

    def _notice_of(self, target: Contact | Group) -> str:
        """The warning under a conversation with a contact whose safety number changed."""
        if not isinstance(target, Contact):
            return ""
        try:
            trust = self.client.trust(target)
        except SottoError:
            return ""
        if not trust.safety_number_changed:
            return ""
        name = commands.quoted(target.name)
        return (
            f"⚠ safety number changed {self.times.short(trust.changed_ms or 0)}: a message from "
            f"{target.name} came with another identity key and was refused. Compare safety numbers (v) "
            f"and :verify {name} CODE, or :verify {name} ok once you have seen this"
        )

    def _trust_changed(self, contact: Contact) -> None:
        """Show a contact's trust as the store has it now: its row, and the header and warning
        when their conversation is open."""
        key = key_of(contact)
        if self.conversations.get(key) is not None:
            self.conversations.put(summarize(self.client, contact))
        if self.open_target is not None and key_of(self.open_target) == key:
            self.log_view.set_notice(self._notice_of(contact))
            self._show_header()

    def _page(self, target: Contact | Group, before: int | None, limit: int) -> list[Message]:
        return self.client.history(target, limit=limit, before=before)

    def _page_after(self, target: Contact | Group, after: int, limit: int) -> list[Message]:
        return self.client.history(target, limit=limit, after=after)

    def _search(self, target: Contact | Group, query: str, row: int | None, older: bool) -> Message | None:
        found = self.client.search(
            target,
            query,
            limit=1,
            before=row if older else None,
            after=None if older else row,
            newest_first=older,
        )
        return found[0] if found else None

    @work(group="read")
    async def _mark_read(self, target: Contact | Group) -> None:
        summary = self.conversations.get(key_of(target))
        if summary is None or not summary.unread:
            return
        try:
            await self.client.mark_read(target)
        except SottoError as e:  # marked here; the read receipts go out with a later send
            self.say(f"read receipts not sent yet: {type(e).__name__}")
        self.conversations.put(summarize(self.client, target))

    def on_message_log_needs_older(self, _: MessageLog.NeedsOlder) -> None:
        self.log_view.load_older()

    def on_message_log_needs_newer(self, _: MessageLog.NeedsNewer) -> None:
        self.log_view.load_newer()

    # ------------------------------------------------------------------ writing
    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self.command_line:
            await self._command_submitted(event.value)
            return
        if event.input is self.composer:
            await self.send(event.value)

    async def send(self, text: str) -> bool:
        """Queue ``text`` for the open conversation; the composer is cleared only once it is."""
        target = self.open_target
        if target is None:
            self.say("open a conversation first (Enter on one in the list)")
            return False
        text = text.rstrip("\r\n")
        if not text.strip():
            return False
        size = len(text.encode())
        if size > MAX_TEXT_BYTES:
            self.say(f"the text is {size:,} bytes; a message holds at most {MAX_TEXT_BYTES:,}")
            return False
        try:
            if isinstance(target, Group):
                await self.client.send_group_text(target, text)
            else:
                await self.client.send_text(target, text)
        except (SottoError, ValueError) as e:
            self.say(f"not sent: {e}")
            return False
        self.composer.value = ""
        self._keep_draft(target, "")
        self._stop_typing(send=False)
        self.log_view.show_latest()
        self.catch_up()
        self.log_view.scroll_end(animate=False, immediate=True)
        self.conversations.put(summarize(self.client, target))
        self.refresh_status()
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is not self.composer or self.open_target is None:
            return
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_SAVE_S, partial(self._keep_draft, self.open_target, None))
        if not self.live:
            return
        if not event.value:
            self._stop_typing()
            return
        key = key_of(self.open_target)
        if self._typing_to != key:
            self._typing_to = key
            self._send_typing(self.open_target, True)
        if self._typing_timer is not None:
            self._typing_timer.stop()
        self._typing_timer = self.set_timer(TYPING_IDLE_S, self._stop_typing)

    def _stop_typing(self, *, send: bool = True) -> None:
        if self._typing_timer is not None:
            self._typing_timer.stop()
            self._typing_timer = None
        if self._typing_to is not None:
            target = self.open_target
            self._typing_to = None
            if send and target is not None:
                self._send_typing(target, False)

    def _draft_of(self, target: Contact | Group) -> str:
        key = key_of(target)
        if key not in self.drafts:
            try:
                self.drafts[key] = self.client.draft(target)
            except SottoError as e:  # shown as no draft; writing one replaces it
                self.say(f"could not read the draft: {type(e).__name__}")
                self.drafts[key] = ""
        return self.drafts[key]

    def _keep_draft(self, target: Contact | Group, text: str | None) -> None:
        """Keep ``text`` (None: what the composer holds, if ``target`` is open) as the draft of
        ``target``, and write it to the store unless it is there already."""
        if text is None:
            if self.open_target is None or key_of(self.open_target) != key_of(target):
                return
            text = self.composer.value
        if (
            self._draft_timer is not None
            and self.open_target is not None
            and key_of(target) == key_of(self.open_target)
        ):
            self._draft_timer.stop()
            self._draft_timer = None
        key = key_of(target)
        if self.drafts.get(key) == text:
            return
        self.drafts[key] = text
        self._store_draft(target, text)

    @work(group="drafts")
    async def _store_draft(self, target: Contact | Group, text: str) -> None:
        try:
            await self.client.save_draft(target, text)
        except SottoError as e:
            self.say(f"the draft is not saved: {type(e).__name__}")

    @work(group="typing")
    async def _send_typing(self, target: Contact | Group, started: bool) -> None:
        with contextlib.suppress(SottoError):  # typing indicators are best effort
            await self.client.send_typing(target, started)

    # ------------------------------------------------------------------ the command line
    def _open_line(self, prefix: str, value: str = "") -> None:
        line = self.command_line
        line.add_class("open")
        line.value = prefix + value
        line.cursor_position = len(line.value)
        self.focus_now(line)

    def _close_line(self) -> None:
        line = self.command_line
        line.remove_class("open")
        line.value = ""

    async def _command_submitted(self, value: str) -> None:
        self._close_line()
        self.focus_now(self.log_view)
        if value.startswith("/"):
            self.search_term = value[1:]
            self._find(older=True)
            return
        try:
            parsed = commands.parse(value)
        except commands.CommandError as e:
            self.say(str(e))
            return
        await self.run_command(parsed)

    async def run_command(self, parsed: commands.Parsed) -> None:
        match parsed.name:
            case "invite":
                self.make_invite()
            case "accept":
                self.accept_invite(parsed.args[0], parsed.args[1])
            case "open":
                self._open_named(parsed.args[0])
            case "verify" if len(parsed.args) == 2:
                self.verify_code(parsed.args[0], parsed.args[1])
            case "verify":
                self.show_safety_number(parsed.args[0] if parsed.args else None)
            case "unverify":
                self.unverify(parsed.args[0] if parsed.args else None)
            case "search" if self.open_target is None:
                self.search_everywhere(parsed.args[0])
            case "search":
                self.search_term = parsed.args[0]
                self._find(older=True)
            case "find":
                self.search_everywhere(parsed.args[0])
            case "edit" | "delete" | "react" | "reply" | "timer":
                await self.change(parsed.name, parsed.args)
            case "file":
                self.send_file(parsed.args[0])
            case "save":
                self.save_file(parsed.args[0] if parsed.args else None)
            case "group":
                try:
                    what, words = commands.group_command(parsed.args)
                except commands.CommandError as e:
                    self.say(str(e))
                    return
                self.change_group(what, words)
            case "requests":
                self.action_requests()
            case "retry":
                self.retry()
            case "help":
                self.action_help()
            case "quit":
                await self.action_quit()

    # ------------------------------------------------------------------ changes to messages
    def _chosen(self, *, own: bool = False, file: bool = False) -> Message:
        """The message a change applies to: the one selected (``J``/``K``, a search), else the
        last one that fits (``own``: of ours; ``file``: received, holding a file)."""
        log = self.log_view

        def fits(m: Message) -> bool:
            if m.timer_s is not None or m.deleted:
                return False
            if own and m.direction is not Direction.OUTGOING:
                return False
            return not file or (m.direction is Direction.INCOMING and log.held(m) is not None)

        selected = log.selected
        if selected is not None:
            if not fits(selected):
                wanted = "one of yours" if own else "a file received" if file else "a message"
                raise commands.CommandError(f"the selected message is not {wanted}")
            return selected
        found = next((m for m in reversed(log.messages) if fits(m)), None)
        if found is None:
            wanted = "message of yours" if own else "file received" if file else "message"
            raise commands.CommandError(f"no {wanted} here to do that to")
        return found

    async def change(self, name: str, args: tuple[str, ...]) -> bool:
        """``:edit``, ``:delete``, ``:react``, ``:reply``, ``:timer`` on the open conversation."""
        target = self.open_target
        if target is None:
            self.say("open a conversation first (Enter on one in the list)")
            return False
        try:
            match name:
                case "timer":
                    seconds = commands.parse_duration(args[0])
                    await self.client.set_disappearing_timer(target, seconds)
                    said = f"set to {commands.duration_text(seconds)}" if seconds else "off"
                    note = f"disappearing messages {said}"
                case "edit":
                    message = self._chosen(own=True)
                    self._check_size(args[0])
                    await self.client.edit_message(target, message.message_id, args[0])
                    note = "edited, for everyone"
                case "delete":
                    message = self._chosen(own=True)
                    await self.client.delete_for_everyone(target, message.message_id)
                    note = "deleted, for everyone"
                case "react":
                    message = self._chosen()
                    await self.client.react(target, message.message_id, args[0] if args else "")
                    note = "reaction sent" if args else "reaction taken back"
                case "reply":
                    message = self._chosen()
                    self._check_size(args[0])
                    await self.client.send_reply(target, message.message_id, args[0])
                    note = "reply queued"
                case _:
                    raise commands.CommandError(f"no change {name!r}")
        except commands.CommandError as e:
            self.say(str(e))
            return False
        except (SottoError, ValueError) as e:
            self.say(f"not done: {e}")
            return False
        self.log_view.highlight = None
        if name == "reply":
            self.log_view.show_latest()
        self.log_view.refresh_tail()
        self.catch_up()
        if name in ("reply", "timer"):
            self.log_view.scroll_end(animate=False, immediate=True)
        self._show_header()
        self.conversations.put(summarize(self.client, target))
        self.say(note)
        return True

    @staticmethod
    def _check_size(text: str) -> None:
        size = len(text.encode())
        if size > MAX_TEXT_BYTES:
            raise commands.CommandError(
                f"the text is {size:,} bytes; a message holds at most {MAX_TEXT_BYTES:,}"
            )

    @work(group="files")
    async def send_file(self, path: str) -> None:
        """Upload and send a file to the open conversation (``:file PATH``)."""
        target = self.open_target
        if target is None:
            self.say("open a conversation first (Enter on one in the list)")
            return
        source = Path(path).expanduser()
        self.say(f"sending {clean(source.name)}…")
        try:
            await self.client.send_file(target, source)
        except (SottoError, ValueError, OSError) as e:
            self.say(f"not sent: {e}")
            return
        self.log_view.show_latest()
        self.catch_up()
        self.log_view.scroll_end(animate=False, immediate=True)
        self.conversations.put(summarize(self.client, target))
        self.say(f"{clean(source.name)} sent")

    @work(group="files")
    async def save_file(self, folder: str | None) -> None:
        """Fetch the chosen received file into ``folder`` (default: the current one)."""
        if self.open_target is None:
            self.say("open a conversation first (Enter on one in the list)")
            return
        try:
            message = self._chosen(file=True)
        except commands.CommandError as e:
            self.say(str(e))
            return
        destination = Path.cwd() if folder is None else Path(folder).expanduser()
        self.say("fetching the file…")
        try:
            written = await self.client.save_attachment(message, destination)
        except (SottoError, OSError) as e:
            self.say(f"not saved: {e}")
            return
        self.say(f"saved to {written}")

    # ------------------------------------------------------------------ groups
    @work(group="groups", exclusive=True)
    async def change_group(self, what: str, words: tuple[str, ...]) -> None:
        """``:group create NAME MEMBER…``, or a change to the open group."""
        if what == "create":
            try:
                made = await self.client.create_group(words[0], list(words[1:]))
            except SottoError as e:
                self.say(f"no group: {e}")
                return
            self.conversations.put(summarize(self.client, made))
            self.open_conversation(made)
            self.say(f"#{clean(made.name)} created")
            return
        opened = self.open_target
        if not isinstance(opened, Group):
            self.say("open the group first (:open #NAME)")
            return
        group: Group = opened
        try:
            match what:
                case "add":
                    for name in words:
                        await self.client.add_to_group(group, name)
                    note = f"added to #{clean(group.name)}: {clean(', '.join(words))}"
                case "remove":
                    for name in words:
                        group = await self.client.remove_from_group(group, name)
                    note = f"removed from #{clean(group.name)}: {clean(', '.join(words))}"
                case "admin":
                    group = await self.client.make_group_admin(group, words[0])
                    note = f"{clean(words[0])} is an admin of #{clean(group.name)}"
                case "leave":
                    group = await self.client.leave_group(group)
                    note = f"you left #{clean(group.name)}"
                case "rename":
                    group = await self.client.rename_group(group, words[0])
                    note = f"the group is #{clean(group.name)} now"
                case _:
                    self.show_members(group)
                    return
        except SottoError as e:
            self.say(f"not done: {e}")
            return
        self.open_target = group
        self.conversations.put(summarize(self.client, group))
        self.conversations.set_open(key_of(group))
        self.catch_up()
        self.say(note)

    def show_members(self, group: Group) -> None:
        roster = self.client.group_roster(group)
        by_account = {c.account_id: c.name for c in self.client.contacts(include_removed=True)}
        me = self.client.account_id
        rows = []
        for account in sorted(roster.members, key=lambda a: (a != me, by_account.get(a, ""))):
            who = "you" if account == me else clean(by_account.get(account, "someone you do not know"))
            rows.append(f"{who}{' (admin)' if account in roster.admins else ''}")
        self.push_screen(ShowScreen(f"#{clean(roster.name)}: {len(rows)} members", rows))

    def _open_named(self, name: str) -> None:
        wanted = name.removeprefix("#") if name.startswith("#") else name
        for summary in self.conversations.summaries:
            if summary.title == name or summary.target.name == wanted:
                self.open_conversation(summary.target)
                return
        self.say(f"no contact or group named {name!r}")

    @work(group="invite", exclusive=True)
    async def make_invite(self) -> None:
        self.say("making an invite link…")
        try:
            invite = await self.client.create_invite()
        except SottoError as e:
            self.say(f"no invite: {e}")
            return
        self.say("invite ready: give it to one person")
        await self.push_screen(
            ShowScreen(
                "Invite: for one person",
                [
                    "Give this link to one person (it works once); they run :accept LINK NAME",
                    "in `sotto chat`, or `sotto accept 'LINK'`:",
                    "",
                    invite.link,
                ],
                qr=invite.qr_text,
            )
        )

    @work(group="accept", exclusive=True)
    async def accept_invite(self, link: str, name: str) -> None:
        self.say(f"fetching {clean(name)}'s keys and sending a contact request…")
        try:
            contact = await self.client.accept_invite(link, name)
        except SottoError as e:
            self.say(f"not accepted: {e}")
            return
        self._names[contact.contact_id] = contact.name
        self.conversations.put(summarize(self.client, contact))
        self.say(f"{clean(contact.name)} added: you can write now; it goes out when they answer")

    def _contact_named(self, name: str | None, usage: str) -> Contact | None:
        """The contact ``name``, else the open conversation's; None (said why) if neither."""
        if name is not None:
            try:
                return self.client.contact(name)
            except SottoError:
                self.say(f"no contact named {name!r}")
                return None
        if isinstance(self.open_target, Contact):
            return self.open_target
        if self.open_target is None:
            self.say(f"open a conversation with a contact first, or {usage}")
        else:
            self.say(f"safety numbers are per contact: {usage}")
        return None

    def show_safety_number(self, name: str | None) -> None:
        target = self._contact_named(name, ":verify NAME")
        if target is None:
            return
        try:
            number = self.client.safety_number(target)
            trust = self.client.trust(target)
        except SottoError as e:
            self.say(f"no safety number: {e}")
            return
        verified = "verified" if trust.verified else "not verified yet"
        lines = [number.displayable, "", f"Compare it with theirs, or scan their code ({verified})."]
        quoted = commands.quoted(target.name)
        if trust.safety_number_changed:
            lines += [
                "",
                f"⚠ Their safety number changed {self.times.short(trust.changed_ms or 0)}: a message came"
                " with another identity key and was refused. Compare it again.",
                f"Seen it, and not verifying now? :verify {quoted} ok clears the mark.",
            ]
        lines += [f"To mark them verified, type the code their screen shows: V, or :verify {quoted} CODE."]
        if trust.verified:
            lines += [f"To mark them not verified again: :unverify {quoted}."]
        self.push_screen(ShowScreen(f"Safety number with {clean(target.name)}", lines, qr=number.qr_text))

    @work(group="verify", exclusive=True)
    async def verify_code(self, name: str, code: str) -> None:
        """``:verify NAME CODE``: compare the code from their screen; a match marks them verified
        (and clears a changed safety number). ``:verify NAME ok`` acknowledges a changed safety
        number without verifying."""
        if code.casefold() in ACKNOWLEDGE_WORDS:
            await self._acknowledge(name)
            return
        try:
            matched = await self.client.verify(name, code)
        except SottoError as e:
            self.say(f"not verified: {e}")
            return
        if not matched:
            self.say(f"the code does not match: {clean(name)} is NOT verified (compare in person)")
            return
        self._trust_changed(self.client.contact(name))
        self.say(f"{clean(name)} verified")

    async def _acknowledge(self, name: str) -> None:
        try:
            contact = self.client.contact(name)
            cleared = await self.client.acknowledge_safety_number_change(contact)
        except SottoError as e:
            self.say(f"not acknowledged: {e}")
            return
        if not cleared:
            self.say(f"{clean(name)}'s safety number has not changed: nothing to acknowledge")
            return
        self._trust_changed(contact)
        state = "verified" if self.client.is_verified(contact) else "not verified"
        self.say(f"safety number change acknowledged: {clean(name)} is still {state}")

    @work(group="verify", exclusive=True)
    async def unverify(self, name: str | None) -> None:
        """``:unverify [NAME]``: mark the contact (default: the open one) not verified again."""
        contact = self._contact_named(name, ":unverify NAME")
        if contact is None:
            return
        try:
            await self.client.unverify(contact)
        except SottoError as e:
            self.say(f"not changed: {e}")
            return
        self._trust_changed(contact)
        self.say(f"{clean(contact.name)} is marked not verified")

    @work(group="retry", exclusive=True)
    async def retry(self) -> None:
        try:
            left = await self.client.flush()
        except SottoError as e:
            self.say(f"could not send: {e}")
            return
        self.catch_up()
        self.say(
            "everything queued was sent" if not left else f"{left} still queued: the relay did not take them"
        )

    def search_everywhere(self, query: str) -> None:
        """``:find TEXT`` (or ``:search TEXT`` with no conversation open): the newest matches in
        every conversation of the list, in a screen where Enter opens one at its message."""
        if not query.strip():
            self.say("nothing to search for: :find TEXT")
            return
        targets = [s.target for s in self.conversations.summaries]
        try:
            messages = self.client.search_everywhere(query, conversations=targets, limit=RESULTS)
        except SottoError as e:
            self.say(f"could not search: {e}")
            return
        if not messages:
            self.say(f"no conversation has a message matching {query!r}")
            return
        titles = {s.key: s.title for s in self.conversations.summaries}
        found = [Found(m, titles.get(self._key_of_message(m), "?"), self._author(m)) for m in messages]
        plural = "es" if len(found) != 1 else ""
        more = " (the newest)" if len(found) == RESULTS else ""
        self.say(f"{len(found)} match{plural}{more} for {query!r}")
        self.push_screen(SearchResultsScreen(query, found, self.times), partial(self.open_found, query))

    @staticmethod
    def _key_of_message(message: Message) -> str:
        where = message.conversation
        if where.group_id is not None:
            return f"g:{bytes(where.group_id).hex()}"
        return f"c:{where.contact_id}"

    def _author(self, message: Message) -> str:
        if message.direction is Direction.OUTGOING:
            return "you"
        return "?" if message.sender is None else self._names.get(message.sender, "?")

    def open_found(self, query: str, message: Message | None) -> None:
        """Open the conversation of a match at that message (highlighted); ``n``/``N`` then go
        on through the matches of the same query in it."""
        if message is None:
            return
        summary = self.conversations.get(self._key_of_message(message))
        if summary is None:
            self.say("that conversation is no longer in the list")
            return
        self.open_conversation(summary.target)
        self.search_term = query
        self.focus_now(self.log_view)
        # After the opening's own scroll to the newest message has been drawn.
        self.call_after_refresh(self._show_found, query, message)

    def _show_found(self, query: str, message: Message) -> None:
        if self.log_view.show_message(message) is None:
            self.say("that message is no longer there (deleted, or it disappeared)")
            return
        self.say(f"/{query}: n older, N newer")

    def _find(self, *, older: bool) -> None:
        if not self.search_term:
            self.say("nothing to search for: / TEXT")
            return
        if self.open_target is None:
            self.say("open a conversation to search it")
            return
        found = self.log_view.find(self.search_term, older=older)
        where = "older" if older else "newer"
        self.say(f"/{self.search_term}" if found is not None else f"/{self.search_term}: no {where} match")

    # ------------------------------------------------------------------ actions (each has a key in keys.py)
    def action_command_line(self) -> None:
        self._open_line(":")

    def action_search(self) -> None:
        self._open_line("/")

    def action_search_everywhere(self) -> None:
        self._open_line(":", "find ")

    def action_search_next(self) -> None:
        self._find(older=True)

    def action_search_previous(self) -> None:
        self._find(older=False)

    def action_open_highlighted(self) -> None:
        summary = self.conversations.get(self.conversations.highlighted_key or "")
        if summary is not None:
            self.open_conversation(summary.target)

    def action_compose(self) -> None:
        self.focus_now(self.composer)

    def action_leave(self) -> None:
        if self.command_line.has_class("open"):
            self._close_line()
        self.focus_now(self.log_view if self.open_target is not None else self.conversations)

    def _step_conversation(self, step: int) -> None:
        summaries = self.conversations.summaries
        if not summaries:
            return
        keys_now = [s.key for s in summaries]
        current = key_of(self.open_target) if self.open_target is not None else None
        index = keys_now.index(current) + step if current in keys_now else 0
        self.open_conversation(summaries[index % len(summaries)].target)

    def action_next_conversation(self) -> None:
        self._step_conversation(1)

    def action_previous_conversation(self) -> None:
        self._step_conversation(-1)

    def action_invite(self) -> None:
        self.make_invite()

    def action_accept(self) -> None:
        self._open_line(":", "accept ")

    def action_verify(self) -> None:
        self.show_safety_number(None)

    def action_select_previous(self) -> None:
        self.log_view.select(-1)

    def action_select_next(self) -> None:
        self.log_view.select(1)

    def action_edit(self) -> None:
        if self.open_target is None:
            self.say("open a conversation first (Enter on one in the list)")
            return
        try:
            message = self._chosen(own=True)
        except commands.CommandError as e:
            self.say(str(e))
            return
        self._open_line(":", f"edit {message.text}")

    def action_delete(self) -> None:
        self._open_line(":", "delete")

    def action_reply(self) -> None:
        self._open_line(":", "reply ")

    def action_react(self) -> None:
        self._open_line(":", "react ")

    def action_timer(self) -> None:
        self._open_line(":", "timer ")

    def action_send_file(self) -> None:
        self._open_line(":", "file ")

    def action_save_file(self) -> None:
        self._open_line(":", "save")

    def action_verify_code(self) -> None:
        name = self.open_target.name if isinstance(self.open_target, Contact) else ""
        self._open_line(":", f"verify {commands.quoted(name)} " if name else "verify ")

    def action_requests(self) -> None:
        if not isinstance(self.screen, RequestsScreen):
            self.push_screen(RequestsScreen(self.load_requests, self.decide_request, self.times))

    def action_retry(self) -> None:
        self.retry()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(keys.help_rows(), [(s.usage, s.help) for s in commands.SPECS]))

    async def action_quit(self) -> None:
        """Quit, keeping the open conversation's draft."""
        if self.open_target is not None:
            text = self.composer.value
            self._keep_draft(self.open_target, text)
            saving = [w for w in self.workers if w.group == "drafts"]
            if saving:  # (an empty list would wait for every worker, the receive loop too)
                await self.workers.wait_for_complete(saving)
        self.exit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that are text go into a text field that has the focus, not to their action."""
        if action in keys.TYPED_ACTIONS and (
            isinstance(self.focused, Input) or isinstance(self.screen, ModalScreen)
        ):
            return False  # a modal screen's own keys (a, b, d on the requests) come first
        if action == "open_highlighted":
            return self.focused is self.conversations
        return True

    def focus_now(self, widget: Widget) -> None:
        """Move the focus before the next key is handled (``Widget.focus`` waits a turn, and keys
        typed in one burst would still go to the old pane)."""
        self.screen.set_focus(widget)

    # ------------------------------------------------------------------ terminal
    def _write_terminal(self, data: str) -> None:
        driver = self._driver
        if driver is not None:
            driver.write(data)
            driver.flush()

    def on_app_focus(self, _: events.AppFocus) -> None:
        if self.open_target is not None:
            self._mark_read(self.open_target)


def summaries_of(app: ChatApp) -> list[Summary]:
    """The conversation rows as shown (for tests and tools)."""
    return list(app.conversations.summaries)
