"""Drafts outlive the app: kept encrypted in the profile's store, shown again after a restart."""

from __future__ import annotations

from pathlib import Path

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import seeded_rng
from sotto.store.sqlite import SqliteStore
from sotto.tui.app import ChatApp
from tests.tui.conftest import frozen, open_seeded, run, seeded_app, shown, until
from tests.tui.seed import PASSPHRASE, Seeder

DRAFT = "a thought about Thursday, not finished"


def seeded_profile(path: Path) -> None:
    """An encrypted store with Alice and her contacts Bob and Carol."""
    store = SqliteStore.create(path, PASSPHRASE, kdf=Argon2Params.TESTING)
    try:
        s = Seeder(store, seeded_rng(3))
        s.account("Alice")
        with store.transaction() as tx:
            s.contact(tx, "Bob")
            s.contact(tx, "Carol")
    finally:
        store.close()


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_a_draft_is_there_again_after_quitting_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sotto.db"
    seeded_profile(path)

    async def first() -> None:
        client = await open_seeded(SqliteStore.open(path, PASSPHRASE))
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"open Bob", "enter", "i", *DRAFT)
                assert app.composer.value == DRAFT
                await pilot.press("ctrl+q")
            assert app.return_code == 0
        assert DRAFT.encode() not in store_bytes(path)  # kept, but encrypted

    async def second() -> None:
        client = await open_seeded(SqliteStore.open(path, PASSPHRASE))
        async with client:
            assert client.draft("Bob") == DRAFT
            assert client.draft("Carol") == ""
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"open Carol", "enter")
                assert app.composer.value == ""
                await pilot.press("colon", *"open Bob", "enter")
                assert app.composer.value == DRAFT
                await shown(pilot, app, DRAFT)
                # Emptying the composer forgets the draft (once the typing pauses).
                await pilot.press("i", "ctrl+u")
                assert app.composer.value == ""
                await until(pilot, lambda: client.draft("Bob") == "", "the empty draft to be stored")

    run(first)
    run(second)


def test_a_draft_is_stored_while_typing_pauses_and_when_the_conversation_is_left(tmp_path: Path) -> None:
    """An app that is killed (not quit) keeps what was typed up to a second before."""
    path = tmp_path / "sotto.db"
    seeded_profile(path)

    async def main() -> None:
        client = await open_seeded(SqliteStore.open(path, PASSPHRASE))
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"open Bob", "enter", "i", *"to Bob")
                await until(pilot, lambda: client.draft("Bob") == "to Bob", "the paused draft to be stored")
                await pilot.press("escape", "colon", *"open Carol", "enter", "i", *"to Carol")
                assert client.draft("Bob") == "to Bob"
                await pilot.press("escape", "colon", *"open Bob", "enter")
                await until(pilot, lambda: client.draft("Carol") == "to Carol", "Carol's draft, on leaving")
                assert app.composer.value == "to Bob"

    run(main)


def test_quitting_a_listening_app_with_no_draft_to_write_quits_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sotto.db"
    seeded_profile(path)

    async def main() -> None:
        client = await open_seeded(SqliteStore.open(path, PASSPHRASE))
        async with client:
            app = ChatApp(client, times=frozen(), environ={})  # listening (to a relay that is not there)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("colon", *"open Bob", "enter")
                await pilot.press("ctrl+q")
                await until(pilot, lambda: app.return_code is not None, "the app quits")

    run(main)
