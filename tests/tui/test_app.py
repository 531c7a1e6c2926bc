"""The chat app over a seeded store (no relay): panes, keys, the command line, search, drafts,
the paged log. Messaging between two real clients is in test_messaging.py."""

from __future__ import annotations

import uuid

import pytest
from textual import events

from sotto.client import events as ev
from sotto.crypto.random import seeded_rng
from sotto.store.memory import MemoryStore
from sotto.store.model import Conversation, GroupId
from sotto.tui import app as app_module
from sotto.tui.app import ChatApp, Composer, summaries_of
from sotto.tui.conversations import ConversationList
from sotto.tui.log import PAGE, MessageLog
from sotto.tui.screens import HelpScreen, ShowScreen
from tests.tui.conftest import open_seeded, run, screen_text, seeded_app, shown, until
from tests.tui.seed import NOW_MS, Seeder, small_world


def highlighted(app: ChatApp) -> list[str]:
    log = app.log_view
    return [m.text for m in log.messages if m.row_id == log.highlight]


def unread(app: ChatApp) -> dict[str, int]:
    return {s.title: s.unread for s in summaries_of(app)}


def test_start_lists_conversations_newest_first_with_unread_counts() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                assert [s.title for s in summaries_of(app)] == ["Bob", "Carol", "#Lunch", "Dan"]
                assert unread(app) == {"Bob": 2, "Carol": 0, "#Lunch": 0, "Dan": 0}
                assert isinstance(app.focused, ConversationList)
                await shown(pilot, app, "Bob 2")
                await shown(pilot, app, "not listening")

    run(main)


def test_enter_opens_a_conversation_and_marks_it_read() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter")
                await pilot.pause()
                assert app.open_target is not None and app.open_target.name == "Bob"
                texts = [m.text for m in app.log_view.messages]
                assert texts[:2] == ["Lunch at 12:30?", "Yes! The usual place?"]
                await pilot.pause(0.1)
                assert unread(app)["Bob"] == 0
                assert all(m.state.name == "READ" for m in client.history("Bob") if m.sender is not None)
                await shown(pilot, app, "See you there")

    run(main)


def test_j_k_g_G_move_in_the_conversation_list() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                listing = app.conversations
                assert listing.highlighted_key == summaries_of(app)[0].key
                await pilot.press("j", "j")
                assert listing.highlighted == 2
                await pilot.press("k")
                assert listing.highlighted == 1
                await pilot.press("G")
                assert listing.highlighted == 3
                await pilot.press("g")
                assert listing.highlighted == 0
                await pilot.press("j", "enter")
                assert app.open_target is not None and app.open_target.name == "Carol"

    run(main)


def test_tab_goes_round_the_panes_and_escape_leaves_the_composer() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                assert isinstance(app.focused, ConversationList)
                await pilot.press("tab")
                assert isinstance(app.focused, MessageLog)
                await pilot.press("tab")
                assert isinstance(app.focused, Composer)
                await pilot.press("tab")
                assert isinstance(app.focused, ConversationList)
                await pilot.press("shift+tab")
                assert isinstance(app.focused, Composer)
                await pilot.press("escape")
                assert isinstance(app.focused, ConversationList)  # nothing open: back to the list
                await pilot.press("enter", "i")
                assert isinstance(app.focused, Composer)
                await pilot.press("escape")
                assert isinstance(app.focused, MessageLog)

    run(main)


def test_letters_go_to_the_composer_not_to_the_keys() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "i", *"jkgG:/nI?")
                assert app.composer.value == "jkgG:/nI?"
                assert not app.command_line.has_class("open")
                assert not isinstance(app.screen, HelpScreen)

    run(main)


def test_square_brackets_step_through_conversations_keeping_drafts() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "i", *"half a thought", "escape")
                await pilot.press("right_square_bracket")
                assert app.open_target is not None
                second = app.open_target.name
                assert second != "Bob"
                assert app.composer.value == ""
                await pilot.press("left_square_bracket")
                assert app.open_target.name == "Bob"
                assert app.composer.value == "half a thought"

    run(main)


def test_a_text_that_cannot_be_queued_stays_in_the_composer() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())  # seeded contacts have no session
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "i", *"keep me", "enter")
                await pilot.pause()
                assert app.composer.value == "keep me"
                assert "not sent" in app.note
                await pilot.press("ctrl+a")
                app.composer.value = "x" * 30_001
                await pilot.press("enter")
                assert app.composer.value == "x" * 30_001
                assert "at most 30,000" in app.note

    run(main)


def test_slash_searches_the_open_conversation_and_n_N_step_through_matches() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "slash")
                assert app.command_line.has_class("open") and app.command_line.value == "/"
                await pilot.press(*"the", "enter")
                log = app.log_view
                found = [m for m in log.messages if m.row_id == log.highlight]
                assert found and "the notes" in found[0].text  # newest match first
                await pilot.press("n")
                assert highlighted(app) == ["See you there"]
                await pilot.press("n")
                assert highlighted(app) == ["Yes! The usual place?"]
                await pilot.press("n")
                assert "no older match" in app.note
                await pilot.press("N")
                assert highlighted(app) == ["See you there"]
                await pilot.press("N")
                assert "the notes" in next(m.text for m in log.messages if m.row_id == log.highlight)

    run(main)


def test_command_line_reports_unknown_commands_and_missing_arguments() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"frobnicate", "enter")
                assert "no command 'frobnicate'" in app.note
                assert not app.command_line.has_class("open")
                await pilot.press("colon", *"accept", "enter")
                assert "usage: :accept LINK NAME" in app.note
                await pilot.press("colon", *"open Carol", "enter")
                assert app.open_target is not None and app.open_target.name == "Carol"
                await pilot.press("colon", *"open #Lunch", "enter")
                assert app.open_target.name == "Lunch"
                await pilot.press("colon", *"open Nobody", "enter")
                assert "no contact or group named 'Nobody'" in app.note
                await pilot.press("colon", "escape")
                assert not app.command_line.has_class("open")

    run(main)


def test_a_key_opens_the_accept_command() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("a")
                assert app.command_line.value == ":accept "
                await pilot.press(*"sotto://nonsense Eve", "enter")
                await pilot.pause(0.2)
                assert "not accepted" in app.note

    run(main)


def test_help_lists_every_key_and_command_and_q_closes_it() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 60)) as pilot:
                await pilot.press("question_mark")
                assert isinstance(app.screen, HelpScreen)
                text = "\n".join(app.screen.lines)
                for shown in ("Ctrl+Q", ":accept LINK NAME", "j ↓ (log)", "Ctrl+P", "/"):
                    assert shown in text
                await pilot.press("q")
                assert not isinstance(app.screen, HelpScreen)
                assert app.is_running

    run(main)


def test_v_shows_no_safety_number_without_an_identity_and_the_command_palette_opens() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "tab", "v")
                assert "no safety number" in app.note
                assert not isinstance(app.screen, ShowScreen)
                await pilot.press("ctrl+p")
                await pilot.pause()
                assert app.screen.__class__.__name__ == "CommandPalette"
                await pilot.press(*"Keys and commands", "enter")
                await pilot.pause(0.2)
                assert isinstance(app.screen, HelpScreen)

    run(main)


def test_a_long_conversation_opens_one_page_and_reads_older_pages_on_the_way_up() -> None:
    async def main() -> None:
        store = MemoryStore()
        seeder = Seeder(store, seeded_rng(3))
        seeder.account()
        total = PAGE * 3 + 17
        with store.transaction() as tx:
            bob = seeder.contact(tx, "Bob")
            where = Conversation.direct(bob.contact_id)
            for n in range(total):
                seeder.message(tx, where, bob if n % 2 else None, f"line {n}", NOW_MS - (total - n) * 1000)
        client = await open_seeded(store)
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "tab")
                log = app.log_view
                assert len(log.messages) == PAGE
                assert log.messages[-1].text == f"line {total - 1}"
                await shown(pilot, app, f"line {total - 1}")
                await pilot.press("g")
                assert PAGE < len(log.messages) < total  # a page or two more, not everything
                for _ in range(3):
                    await pilot.press("g")
                assert len(log.messages) == total and log.complete
                assert log.messages[0].text == "line 0"
                await shown(pilot, app, "line 0")
                await pilot.press("G")
                await shown(pilot, app, f"line {total - 1}")

    run(main)


def test_a_search_far_back_shows_a_page_around_the_match_and_g_goes_back_to_the_newest() -> None:
    async def main() -> None:
        store = MemoryStore()
        seeder = Seeder(store, seeded_rng(4))
        seeder.account()
        total = 2 * 1000 + PAGE + 5
        with store.transaction() as tx:
            bob = seeder.contact(tx, "Bob")
            where = Conversation.direct(bob.contact_id)
            for n in range(total):
                seeder.message(tx, where, bob if n % 2 else None, f"line {n}", NOW_MS - (total - n) * 1000)
        client = await open_seeded(store)
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter", "slash", *"nowhere", "enter")
                log = app.log_view
                assert "no older match" in app.note
                assert len(log.messages) == PAGE and log.latest  # found nothing, loaded nothing
                await pilot.press("slash", *"line 7", "enter")  # the newest: line 799
                assert highlighted(app) == ["line 799"]
                assert not log.complete and not log.latest and len(log.messages) == PAGE
                await shown(pilot, app, "line 799")
                await pilot.press("n")  # the next older match is on the page
                assert highlighted(app) == ["line 798"]
                await pilot.press("slash", *"line 0", "enter")  # only the oldest
                assert highlighted(app) == ["line 0"]
                assert log.complete and not log.latest and log.messages[0].text == "line 0"
                await shown(pilot, app, "line 0")
                await pilot.press("slash", *"line 7", "enter")
                assert "no older match" in app.note
                await pilot.press("N")  # newer than line 0: line 7, on the page
                assert highlighted(app) == ["line 7"]
                await pilot.press("N", "N", "N")  # line 70, 71, 72: the page after is read
                assert highlighted(app) == ["line 72"]
                assert [m.text for m in log.messages[:2]] == ["line 0", "line 1"]
                loaded = len(log.messages)
                log.scroll_end(animate=False)  # to the foot of the page: the next one is read
                for _ in range(500):  # a hang bound, not a speed test
                    await pilot.pause(0.01)
                    if len(log.messages) > loaded:
                        break
                assert len(log.messages) == loaded + PAGE and not log.latest
                await pilot.press("G")
                assert log.latest and log.messages[-1].text == f"line {total - 1}"
                assert len(log.messages) == PAGE
                await shown(pilot, app, f"line {total - 1}")

    run(main)


def test_group_conversations_show_who_wrote_each_message() -> None:
    async def main() -> None:
        store = small_world()
        client = await open_seeded(store)
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"open #Lunch", "enter")
                await shown(pilot, app, "Carol: Who is in?")
                await shown(pilot, app, "you: Me")

    run(main)


def test_queued_messages_show_as_pending() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"open Carol", "enter")
                await shown(pilot, app, "In the afternoon, yes  … pending")

    run(main)


def test_a_conversation_with_no_messages_says_so() -> None:
    async def main() -> None:
        store = small_world()
        with store.transaction() as tx:
            tx.groups.create(
                group_id=GroupId(bytes(16)), name="Quiet", distribution_id=uuid.UUID(int=2), created_ms=NOW_MS
            )
        client = await open_seeded(store)
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await shown(pilot, app, "no conversation open")
                await pilot.press("colon", *"open Dan", "enter")
                await shown(pilot, app, "no messages yet")

    run(main)


def test_a_burst_of_keys_after_enter_and_i_lands_whole_in_the_composer() -> None:
    """As a paste or tmux delivers them: every key queued before the first is handled."""

    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                burst = ["enter", "i", *"and a note from Thursday: /n:a[I]?"]
                names = {" ": "space", ":": "colon", "/": "slash", "?": "question_mark"}
                names |= {"[": "left_square_bracket", "]": "right_square_bracket"}
                for key in burst:
                    name = names.get(key, key)
                    app.post_message(events.Key(name, None if key == "enter" else key))
                await pilot.pause(0.2)
                assert app.open_target is not None and app.open_target.name == "Bob"
                assert app.composer.value == "and a note from Thursday: /n:a[I]?"
                assert not app.command_line.has_class("open")

    run(main)


def test_someone_typing_shows_until_they_stop_or_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shown on the screen while it lasts: long enough for any frame to be drawn on a busy machine.
    monkeypatch.setattr(app_module, "TYPING_SHOWN_S", 120.0)

    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter")
                bob = client.contact("Bob")
                await app.handle(ev.TypingChanged(bob, True))
                await shown(pilot, app, "Bob is typing…")
                assert next(s for s in summaries_of(app) if s.title == "Bob").typing
                await app.handle(ev.TypingChanged(bob, False))
                await until(pilot, lambda: "is typing" not in screen_text(app), "typing gone")
                # No "stopped" comes: it goes by itself. Whether a frame showed it before it
                # expired depends on the machine's load (a 0.3 s expiry can come before the next
                # frame), so what it set is checked, not the screen.
                monkeypatch.setattr(app_module, "TYPING_SHOWN_S", 0.3)
                await app.handle(ev.TypingChanged(bob, True))
                assert app.log_view.typing == "Bob"
                assert next(s for s in summaries_of(app) if s.title == "Bob").typing
                await until(pilot, lambda: not app.log_view.typing, "typing expired")
                assert not next(s for s in summaries_of(app) if s.title == "Bob").typing
                await until(pilot, lambda: "is typing" not in screen_text(app), "and gone from the screen")

    run(main)
