"""Search across every conversation in the chat app over a seeded store (no relay): ``:search
TEXT`` with no conversation open, ``:find TEXT`` and ``F``; the matches listed with their
conversation, time and snippet; Enter opening the conversation at the match."""

from __future__ import annotations

from textual.pilot import Pilot

from sotto.crypto.random import seeded_rng
from sotto.store.model import Conversation, MessageState
from sotto.tui.app import ChatApp
from sotto.tui.log import PAGE
from sotto.tui.results import SearchResultsScreen, snippet
from tests.tui.conftest import open_seeded, run, screen_text, seeded_app, shown
from tests.tui.seed import NOW_MS, Seeder, small_world


async def command(app: ChatApp, pilot: Pilot[None], line: str) -> None:
    await pilot.press("colon")
    app.command_line.value = ":" + line
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def results(app: ChatApp) -> SearchResultsScreen:
    assert isinstance(app.screen, SearchResultsScreen), type(app.screen)
    return app.screen


def test_search_with_no_conversation_open_lists_every_conversations_matches() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await command(app, pilot, "search yes")
                screen = results(app)
                assert [(f.title, f.author, f.message.text) for f in screen.found] == [
                    ("Carol", "you", "In the afternoon, yes"),
                    ("Bob", "you", "Yes! The usual place?"),
                ]
                assert app.note == "2 matches for 'yes'"
                await shown(pilot, app, "▸ Carol  12:10  you: In the afternoon, yes")
                await shown(pilot, app, "  Bob  11:52  you: Yes! The usual place?")
                await shown(pilot, app, "Search: yes · 2 matches")

                await pilot.press("j", "enter")
                assert not isinstance(app.screen, SearchResultsScreen)
                assert app.open_target is not None and app.open_target.name == "Bob"
                selected = app.log_view.selected
                assert selected is not None and selected.text == "Yes! The usual place?"
                assert app.focused is app.log_view
                assert app.search_term == "yes"  # n and N go on through the matches here

    run(main)


def test_find_and_F_search_every_conversation_even_with_one_open() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter")  # Bob's
                await command(app, pilot, "search you")  # one conversation: Bob's
                assert not isinstance(app.screen, SearchResultsScreen)
                assert app.log_view.selected is not None
                assert app.log_view.selected.text == "See you there"

                await pilot.press("F")
                assert app.command_line.value == ":find "
                await pilot.press(*"you", "enter")
                await app.workers.wait_for_complete()
                await pilot.pause()
                assert [f.title for f in results(app).found] == ["Bob", "Carol"]
                await pilot.press("G", "enter")  # the oldest: Carol's question
                assert app.open_target is not None and app.open_target.name == "Carol"
                assert app.log_view.selected is not None
                assert app.log_view.selected.text == "Are you around tomorrow?"

    run(main)


def test_no_match_and_escape_open_nothing() -> None:
    async def main() -> None:
        client = await open_seeded(small_world())
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await command(app, pilot, "find dinner")
                assert app.note == "no conversation has a message matching 'dinner'"
                assert not isinstance(app.screen, SearchResultsScreen)
                await command(app, pilot, "find who")
                assert [f.title for f in results(app).found] == ["#Lunch"]
                await shown(pilot, app, "#Lunch  11:00  Carol: Who is in?")
                await pilot.press("escape")
                assert not isinstance(app.screen, SearchResultsScreen)
                assert app.open_target is None

    run(main)


def test_a_match_far_back_opens_in_a_page_around_it() -> None:
    store = small_world()
    seeder = Seeder(store, seeded_rng(5))
    with store.transaction() as tx:
        bob = tx.contacts.by_name("Bob")
        assert bob is not None
        where = Conversation.direct(bob.contact_id)
        start = NOW_MS - 10 * 86_400_000
        seeder.message(tx, where, bob, "the old harbour photos", start)
        for n in range(3 * PAGE):
            seeder.message(tx, where, bob, f"filler {n}", start + (n + 1) * 1000, state=MessageState.READ)

    async def main() -> None:
        client = await open_seeded(store)
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await command(app, pilot, "find harbour")
                found = results(app).found
                assert [(f.title, f.author) for f in found] == [("Bob", "Bob")]
                await shown(pilot, app, "Bob  11-27 12:30  Bob: the old harbour photos")
                await pilot.press("enter")
                selected = app.log_view.selected
                assert selected is not None and selected.text == "the old harbour photos"
                assert not app.log_view.latest  # a page around it; G brings the newest back
                await shown(pilot, app, "the old harbour photos")
                assert "filler 299" not in screen_text(app)

    run(main)


def test_a_snippet_is_cut_around_the_first_word_that_matched() -> None:
    text = (
        "We went through the whole list on Thursday and then, much later, found the harbour "
        "photos that everyone had been asking about for weeks"
    )
    cut = snippet(text, "harb", width=30)
    assert cut == "…found the harbour photos that…"
    assert snippet("Short one", "one") == "Short one"
    assert snippet("Lunch\nat noon", "noon") == "Lunch at noon"
    assert snippet("no match here", "zzz", width=5) == "no ma…"
    assert snippet("\x1b[31mred\x1b[0m alert", "alert").endswith("alert")
    assert "\x1b" not in snippet("\x1b[31mred\x1b[0m alert", "alert")
