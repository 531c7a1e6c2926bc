"""Replies, edits, deletion for everyone, reactions and disappearing timers between real clients
on the real relay (1:1 and in a group), kept in their encrypted SQLite stores."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sotto.client import content as c
from sotto.client import events as ev
from sotto.client.flows import sending
from sotto.client.sdk import Client
from sotto.errors import ClientError
from sotto.store.model import ContactId, Message, MessageId, Quote, Reaction
from tests.client.test_end_to_end import befriend, collect, new_client, run


def _of(events: list[ev.Event], kind: type) -> list[ev.Event]:
    return [e for e in events if isinstance(e, kind)]


def by_text(messages: list[Message], text: str) -> Message:
    return next(m for m in messages if m.text == text)


def test_two_clients_reply_edit_react_delete_and_set_a_timer(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            first = await alice.send_text("Bob", "Lunch at 12:30?")
            await collect([bob], lambda s: bool(_of(s[bob], ev.MessageReceived)))

            reply = await bob.send_reply("Alice", first, "Yes, the usual place")
            await alice.edit_message("Bob", first, "Lunch at 13:00?")
            await bob.react("Alice", first, "👍")
            await bob.react("Alice", first, "❤️")  # replaces the 👍
            seen = await collect(
                [alice, bob],
                lambda s: (
                    len(_of(s[alice], ev.ReactionChanged)) == 2
                    and bool(_of(s[bob], ev.MessageEdited))
                    and bool(_of(s[alice], ev.MessageReceived))
                ),
            )
            await alice.react("Bob", reply, "🎉")
            more = await collect([bob], lambda s: bool(_of(s[bob], ev.ReactionChanged)))
            seen[bob] += more[bob]
            edited = _of(seen[bob], ev.MessageEdited)[0]
            assert isinstance(edited, ev.MessageEdited) and edited.text == "Lunch at 13:00?"

            for client, other in ((alice, bob), (bob, alice)):
                history = client.history(other.display_name)
                ask, answer = by_text(history, "Lunch at 13:00?"), by_text(history, "Yes, the usual place")
                assert ask.edited_ms is not None and ask.message_id == first
                assert answer.quote == Quote(first, alice.account_id)
                assert [r.emoji for r in ask.reactions] == ["❤️"]
                assert [r.emoji for r in answer.reactions] == ["🎉"]
            ours = by_text(alice.history("Bob"), "Lunch at 13:00?").reactions
            bob_id = alice.contact("Bob").contact_id
            assert ours == (Reaction(bob_id, "❤️", ours[0].sent_ms),)

            with pytest.raises(ClientError, match="only your own"):
                await bob.edit_message("Alice", first, "I decide when lunch is")
            with pytest.raises(ClientError, match="only your own"):
                await bob.delete_for_everyone("Alice", first)

            await alice.delete_for_everyone("Bob", first)
            await collect([bob], lambda s: bool(_of(s[bob], ev.MessageDeleted)))
            for client, other in ((alice, bob), (bob, alice)):
                gone = next(m for m in client.history(other.display_name) if m.message_id == first)
                assert gone.deleted and gone.text == "" and gone.reactions == ()

            await bob.set_disappearing_timer("Alice", 2)
            await collect([alice], lambda s: bool(_of(s[alice], ev.TimerChanged)))
            assert alice.disappearing_timer("Bob") == bob.disappearing_timer("Alice") == 2
            await alice.send_text("Bob", "this one disappears")
            await collect([bob], lambda s: "this one disappears" in [m.text for m in bob.history("Alice")])
            assert any(m.timer_s == 2 for m in alice.history("Bob"))
            assert any(m.timer_s == 2 for m in bob.history("Alice"))
            for client, other in ((alice, bob), (bob, alice)):
                for _ in range(200):  # the stores delete it two seconds after they took it
                    if "this one disappears" not in [m.text for m in client.history(other.display_name)]:
                        break
                    await asyncio.sleep(0.05)
                texts = [m.text for m in client.history(other.display_name)]
                assert "this one disappears" not in texts and "Yes, the usual place" in texts
            assert not [e for e in seen[alice] + seen[bob] if isinstance(e, ev.EnvelopeRejected)]

    run(main)


def test_a_group_gets_replies_edits_reactions_deletions_and_a_timer(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob, carol = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            await befriend(bob, carol)
            group = await alice.create_group("Lunch", ["Bob", "Carol"])
            await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
            first = await alice.send_group_text(group, "Table for three")
            await collect(
                [bob, carol],
                lambda s: all(_of(s[x], ev.GroupMessageReceived) for x in (bob, carol)),
            )
            await bob.send_reply("Lunch", first, "I'll bring dessert")
            await carol.react("Lunch", first, "👍")
            await alice.edit_message(group, first, "Table for four")
            await carol.set_disappearing_timer("Lunch", 3600)
            await collect(
                [alice, bob, carol],
                lambda s: (
                    bool(_of(s[alice], ev.ReactionChanged))
                    and bool(_of(s[bob], ev.ReactionChanged))
                    and len(_of(s[carol], ev.MessageEdited)) == 1
                    and bool(_of(s[carol], ev.GroupMessageReceived))
                    and bool(_of(s[alice], ev.TimerChanged))
                    and bool(_of(s[bob], ev.TimerChanged))
                ),
            )
            for client in (alice, bob, carol):
                history = client.history("Lunch")
                table = by_text(history, "Table for four")
                assert table.edited_ms is not None and [r.emoji for r in table.reactions] == ["👍"]
                assert by_text(history, "I'll bring dessert").quote == Quote(first, alice.account_id)
                assert client.disappearing_timer("Lunch") == 3600

            await alice.delete_for_everyone(group, first)
            await collect(
                [bob, carol],
                lambda s: bool(_of(s[bob], ev.MessageDeleted)) and bool(_of(s[carol], ev.MessageDeleted)),
            )
            for client in (alice, bob, carol):
                gone = next(m for m in client.history("Lunch") if m.message_id == first)
                assert gone.deleted and gone.text == "" and gone.reactions == ()

    run(main)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_running_client_deletes_disappearing_messages_by_itself_and_logs_ignored_changes(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            await alice.set_disappearing_timer("Bob", 1)
            await collect([bob], lambda s: bool(_of(s[bob], ev.TimerChanged)))
            sent = await bob.send_text("Alice", "gone in a second")
            await collect([alice], lambda s: bool(_of(s[alice], ev.MessageReceived)))
            bob_id = alice.contact("Bob").contact_id

            def held(client: Client, sender: ContactId | None) -> bool:
                return client.engine.read(lambda tx: tx.messages.find(sender, MessageId(sent))) is not None

            # Neither side reads its history: the clients' own expiry deletes the rows.
            for client, sender in ((alice, bob_id), (bob, None)):
                for _ in range(600):
                    if not held(client, sender):
                        break
                    await asyncio.sleep(0.05)
                assert not held(client, sender)

            # A change the rules refuse (Alice "editing" Bob's message): ignored, logged without a reason.
            bob_at_alice = alice.contact("Bob")
            forged = c.Edit(sent, alice.engine.now_ms(), "not hers to edit")
            client_log, lines = logging.getLogger("sotto.client"), _Lines()
            level = client_log.level
            client_log.addHandler(lines)
            client_log.setLevel(logging.INFO)
            try:
                await alice.engine.transaction(
                    lambda tx: sending.send_control(alice.engine.context(tx), bob_at_alice, forged)
                )
                await alice.flush()
                await collect([bob], lambda s: bool(_of(s[bob], ev.MessageChangeIgnored)))
            finally:
                client_log.removeHandler(lines)
                client_log.setLevel(level)
            assert "a change to a message was ignored" in lines.lines
            assert not any("not hers" in line for line in lines.lines)

    run(main)
