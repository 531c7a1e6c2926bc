"""Changes to messages in the chat app over a seeded store (no relay): ``:edit``, ``:delete``,
``:react``, ``:timer`` and their keys, the message chosen (``J``/``K`` or the last one), the
read marker, mention counts and the safety number screen (a changed safety number: see
test_verification.py)."""

from __future__ import annotations

from textual.pilot import Pilot

from sotto.crypto.random import seeded_rng
from sotto.store.model import Conversation, Direction, Group, MessageState
from sotto.tui.app import ChatApp, summaries_of
from sotto.tui.log import NEW_MARKER
from sotto.tui.model import mentions_in, summarize
from sotto.tui.screens import ShowScreen
from tests.tui.conftest import open_seeded, run, screen_text, seeded_app, shown
from tests.tui.seed import NOW_MS, Seeder, small_world


async def command(app: ChatApp, pilot: Pilot[None], line: str) -> None:
    """Type ``line`` on the command line and run it (every worker done after)."""
    await pilot.press("colon")
    app.command_line.value = ":" + line
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def test_edit_and_delete_apply_to_your_last_message_and_show_in_the_log() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter")
                await command(app, pilot, "edit Yes! The usual place, at 12:30")
                await shown(pilot, app, "you: Yes! The usual place, at 12:30  (edited)")
                mine = [m for m in client.history("Bob") if m.direction is Direction.OUTGOING]
                assert mine[-1].text == "Yes! The usual place, at 12:30" and mine[-1].edited_ms is not None
                await command(app, pilot, "delete")
                await shown(pilot, app, "you: this message was deleted")
                assert "usual place" not in screen_text(app)
                assert [m for m in client.history("Bob") if m.direction is Direction.OUTGOING][-1].deleted

    run(main)


def test_edit_refuses_a_selected_message_of_someone_else() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter", "K")  # the newest message, Bob's
                assert app.log_view.selected is not None
                assert app.log_view.selected.text.startswith("And bring the notes")
                await command(app, pilot, "edit not mine")
                assert app.note == "the selected message is not one of yours"
                assert all(m.edited_ms is None for m in client.history("Bob"))

    run(main)


def test_e_opens_the_command_line_with_the_text_to_edit() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter", "e")
                assert app.command_line.value == ":edit Yes! The usual place?"
                await pilot.press("backspace", *" at 12:30?", "enter")
                await app.workers.wait_for_complete()
                await shown(pilot, app, "you: Yes! The usual place at 12:30?  (edited)")

    run(main)


def test_a_reaction_on_the_selected_message_shows_under_it_and_can_be_taken_back() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter", "K", "K", "K")  # Bob's "Sure. I'll book a table."
                assert app.log_view.selected is not None
                assert app.log_view.selected.text == "Sure. I'll book a table."
                await pilot.press("plus")
                assert app.command_line.value == ":react "
                app.command_line.value += "👍"  # (the test driver types no emoji)
                await pilot.press("enter")
                await app.workers.wait_for_complete()
                await shown(pilot, app, "👍 you")
                reacted = next(m for m in client.history("Bob") if m.text == "Sure. I'll book a table.")
                assert [r.emoji for r in reacted.reactions] == ["👍"]
                await command(app, pilot, "react")  # the selection moved to the last: none chosen
                newest = client.history("Bob")[-1]
                assert [r.emoji for r in newest.reactions] == []
                assert app.note == "reaction taken back"

    run(main)


def test_the_timer_shows_in_the_header_and_as_a_notice_in_the_log() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter")
                assert "disappearing" not in screen_text(app)
                await command(app, pilot, "timer 8h")
                await shown(pilot, app, "Bob · ⏱ disappearing messages: 8 hours")
                await shown(pilot, app, "you set disappearing messages to 8 hours")
                assert client.disappearing_timer("Bob") == 8 * 3600
                await command(app, pilot, "timer soon")
                assert "is not a timer" in app.note
                await command(app, pilot, "timer off")
                await shown(pilot, app, "you turned disappearing messages off")
                assert "⏱ disappearing" not in screen_text(app)
                assert client.disappearing_timer("Bob") == 0

    run(main)


def test_changes_need_an_open_conversation_and_something_to_change() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await command(app, pilot, "delete")
                assert app.note.startswith("open a conversation first")
                await command(app, pilot, "open Dan")  # nothing written yet
                assert app.open_target is not None and app.open_target.name == "Dan"
                await command(app, pilot, "delete")
                assert app.note == "no message of yours here to do that to"
                await command(app, pilot, "save")
                assert app.note == "no file received here to do that to"

    run(main)


def test_the_read_marker_stands_above_the_first_unread_message() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter")
                await shown(pilot, app, NEW_MARKER)
                lines = screen_text(app).splitlines()
                at = next(n for n, line in enumerate(lines) if NEW_MARKER in line)
                assert "Sure. I'll book a table." in lines[at - 1]
                assert "See you there" in lines[at + 1]
                await pilot.press("right_square_bracket")  # Carol: nothing unread
                await shown(pilot, app, "In the afternoon, yes")
                assert NEW_MARKER not in screen_text(app)
                await pilot.press("left_square_bracket")  # Bob again: read now
                await shown(pilot, app, "See you there")
                assert NEW_MARKER not in screen_text(app)

    run(main)


def test_a_group_message_naming_you_counts_as_a_mention() -> None:
    store = small_world()
    s = Seeder(store, seeded_rng(55))
    with store.transaction() as tx:
        group = tx.groups.all()[0]
        carol = tx.contacts.by_name("Carol")
        assert carol is not None
        lunch = Conversation.group(group.group_id)
        s.message(tx, lunch, carol, "@alice are you coming?", NOW_MS - 60_000, state=MessageState.RECEIVED)
        s.message(tx, lunch, carol, "and @Alicia?", NOW_MS - 50_000, state=MessageState.RECEIVED)

    async def main() -> None:
        client = await open_seeded(store)
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                row = next(s for s in summaries_of(app) if s.title == "#Lunch")
                assert (row.unread, row.mentions) == (2, 1)
                await shown(pilot, app, "#Lunch 2 @1")
                await command(app, pilot, "open #Lunch")
                await pilot.pause()
                row = next(s for s in summaries_of(app) if s.title == "#Lunch")
                assert (row.unread, row.mentions) == (0, 0)

    run(main)


def test_mentions_name_you_whole() -> None:
    class M:
        def __init__(self, text: str) -> None:
            self.text = text

    said = [M("hi @Alice!"), M("@alicia"), M("@Alice_2"), M("email a@alice"), M("@ALICE and @alice")]
    assert mentions_in(said, "Alice") == 2  # type: ignore[arg-type]
    assert mentions_in(said, "") == 0  # type: ignore[arg-type]


def test_v_shows_whether_the_contact_is_verified_and_V_asks_for_their_code() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 40)) as pilot:
                await pilot.press("enter", "V")
                assert app.command_line.value == ":verify Bob "
                await pilot.press("escape")
                await command(app, pilot, "verify Bob")
                if isinstance(app.screen, ShowScreen):
                    await shown(pilot, app, "not verified yet")
                else:  # a seeded contact may hold no identity key
                    assert app.note.startswith("no safety number")

    run(main)


def test_summaries_count_mentions_only_in_groups() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            group = client.groups()[0]
            assert isinstance(group, Group)
            assert summarize(client, group).mentions == 0
            assert summarize(client, client.contact("Bob")).mentions == 0

    run(main)
