"""Verification in the chat app over a seeded store (no relay): a changed safety number shown
lastingly in the list, the conversation's header and under its log; ``:verify NAME ok``
acknowledging it, a matching code clearing it, and ``:unverify``."""

from __future__ import annotations

from textual.pilot import Pilot

from sotto.client import events as ev
from sotto.client.flows.safety import QR_PREFIX
from sotto.client.sdk import Client
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.protocol.fingerprint import fingerprint
from sotto.store.memory import MemoryStore
from sotto.tui.app import ChatApp, summaries_of
from sotto.tui.conversations import row
from sotto.tui.screens import ShowScreen
from sotto.wire import b64
from tests.tui.conftest import open_seeded, run, screen_text, seeded_app, shown
from tests.tui.seed import NOW_MS, small_world

BOB_KEY = KeyPair.generate(seeded_rng(42))


def with_bob_trusted(store: MemoryStore, *, changed: bool = False, verified: bool = False) -> MemoryStore:
    """``small_world`` with an identity key trusted for Bob (the seeded contacts have none)."""
    with store.transaction() as tx:
        bob = tx.contacts.by_name("Bob")
        assert bob is not None
        tx.identities.observe(bob.address.name, BOB_KEY.public, NOW_MS)
        tx.identities.set_verified(bob.address.name, verified)
        if changed:
            tx.identities.set_changed(bob.address.name, NOW_MS - 60_000)
    return store


async def key_changed(client: Client, app: ChatApp, name: str) -> None:
    """What the client does when a message for ``name`` came under another key: the flag is set
    in the store (in the transaction that refused it), then the event reaches the app."""
    contact = client.contact(name)
    await client.engine.transaction(lambda tx: tx.identities.set_changed(contact.address.name, NOW_MS))
    await app.handle(ev.IdentityChanged(contact))


def bobs_code(client: Client) -> str:
    """The code Bob's screen shows for Alice (his side of the same safety number)."""
    bob = client.contact("Bob")
    number = fingerprint(
        local_id=bob.account_id,
        local_key=BOB_KEY.public,
        remote_id=client.account_id,
        remote_key=client.engine.account.identity.public,
    )
    return QR_PREFIX + b64.encode(number.scannable.encode())


async def command(app: ChatApp, pilot: Pilot[None], line: str) -> None:
    await pilot.press("colon")
    app.command_line.value = ":" + line
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def flagged(app: ChatApp) -> dict[str, bool]:
    return {s.title: s.safety_changed for s in summaries_of(app)}


def test_a_changed_safety_number_stays_in_the_list_and_header_until_acknowledged() -> None:
    async def main() -> None:
        client = await open_seeded(with_bob_trusted(small_world()))
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter")  # Bob's conversation, the newest
                assert not any(flagged(app).values())
                assert not app.query_one("#header").has_class("shown")
                await key_changed(client, app, "Bob")
                assert flagged(app) == {"Bob": True, "Carol": False, "#Lunch": False, "Dan": False}
                await shown(pilot, app, "Bob ⚠")  # the list
                await shown(pilot, app, "Bob · ⚠ safety number changed")  # the header
                await shown(pilot, app, "⚠ safety number changed 12:30: a message from Bob")  # the log
                assert app.query_one("#header").has_class("shown")

                await pilot.press("right_square_bracket")  # Carol: no header, the mark stays on Bob
                await shown(pilot, app, "In the afternoon, yes")
                assert "safety number changed" not in screen_text(app)
                assert not app.query_one("#header").has_class("shown")
                assert "Bob ⚠" in screen_text(app)
                await pilot.press("left_square_bracket")
                await shown(pilot, app, "Bob · ⚠ safety number changed")

                await command(app, pilot, "verify Bob 123")  # a wrong code changes nothing
                assert "NOT verified" in app.note or "not verified" in app.note
                assert client.trust("Bob").safety_number_changed and flagged(app)["Bob"]

                await command(app, pilot, "verify Bob ok")
                assert app.note == "safety number change acknowledged: Bob is still not verified"
                assert not client.trust("Bob").safety_number_changed
                assert not flagged(app)["Bob"]
                assert "⚠" not in screen_text(app)
                assert not app.query_one("#header").has_class("shown")
                await command(app, pilot, "verify Bob ok")
                assert "nothing to acknowledge" in app.note

    run(main)


def test_the_mark_is_there_when_the_app_starts_and_a_matching_code_clears_it() -> None:
    async def main() -> None:
        client = await open_seeded(with_bob_trusted(small_world(), changed=True))
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)) as pilot:
                assert flagged(app)["Bob"]
                await shown(pilot, app, "Bob ⚠")
                await pilot.press("enter")
                await shown(pilot, app, "Bob · ⚠ safety number changed")
                await pilot.press("v")
                assert isinstance(app.screen, ShowScreen)
                await shown(pilot, app, "⚠ Their safety number changed 12:29")
                await shown(pilot, app, ":verify Bob ok clears the mark")
                await pilot.press("escape")
                await command(app, pilot, f"verify Bob {bobs_code(client)}")
                assert app.note == "Bob verified"
                assert client.trust("Bob").verified and not client.trust("Bob").safety_number_changed
                assert not flagged(app)["Bob"]
                assert "safety number changed" not in screen_text(app)

    run(main)


def test_unverify_marks_the_open_or_named_contact_not_verified() -> None:
    async def main() -> None:
        client = await open_seeded(with_bob_trusted(small_world(), verified=True))
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 40)) as pilot:
                await command(app, pilot, "unverify")
                assert app.note.startswith("open a conversation with a contact first")
                await command(app, pilot, "open Bob")
                await pilot.press("v")
                await shown(pilot, app, "To mark them not verified again: :unverify Bob.")
                await pilot.press("escape")
                await command(app, pilot, "unverify")
                assert app.note == "Bob is marked not verified" and not client.is_verified("Bob")
                await command(app, pilot, "unverify Nobody")
                assert app.note == "no contact named 'Nobody'"
                await command(app, pilot, "unverify Carol")  # no identity key trusted for her
                assert app.note.startswith("not changed:")
                await command(app, pilot, "open #Lunch")
                await command(app, pilot, "unverify")
                assert app.note == "safety numbers are per contact: :unverify NAME"

    run(main)


def test_the_row_marks_a_changed_safety_number() -> None:
    async def main() -> None:
        client = await open_seeded(with_bob_trusted(small_world(), changed=True))
        async with client:
            app = seeded_app(client)
            async with app.run_test(size=(100, 30)):
                bob = next(s for s in summaries_of(app) if s.title == "Bob")
                assert row(bob, open_key=None).plain.startswith("  Bob ⚠")
                carol = next(s for s in summaries_of(app) if s.title == "Carol")
                assert "⚠" not in row(carol, open_key=None).plain

    run(main)
