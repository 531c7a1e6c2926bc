"""Changes to messages, files and groups between the chat app (Alice) and a client on the SDK
(Bob), through a real relay on loopback."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from sotto.client import events as ev
from sotto.store.model import Direction
from sotto.tui.app import ChatApp
from sotto.tui.screens import ShowScreen
from tests.tui.conftest import befriend, events_until, new_client, run, shown, until


def live_app(client: object) -> ChatApp:
    return ChatApp(client, environ={}, bell=lambda _: None)  # type: ignore[arg-type]


async def command(app: ChatApp, pilot: Pilot[None], line: str) -> None:
    await pilot.press("colon")
    app.command_line.value = ":" + line
    await pilot.press("enter")
    await settled(app, pilot)
    await pilot.pause()


async def settled(app: ChatApp, pilot: Pilot[None]) -> None:
    """Wait for the workers a command started (not the receive loop, which runs on)."""
    await pilot.pause()
    started = [w for w in app.workers if w.group in ("files", "groups", "verify")]
    if started:
        await app.workers.wait_for_complete(started)


def test_a_reply_quotes_and_bobs_edit_reaction_and_deletion_show_in_the_log(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice, bob:
            await befriend(alice, bob)
            await bob.send_text("Alice", "lunch at noon?")
            await events_until(alice, lambda s: any(isinstance(e, ev.MessageReceived) for e in s), "arrived")
            app = live_app(alice)
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await pilot.press("enter")
                await shown(pilot, app, "Bob: lunch at noon?")
                await pilot.press("r")
                assert app.command_line.value == ":reply "
                await pilot.press(*"noon is fine", "enter")
                await shown(pilot, app, "↳ Bob: lunch at noon?")
                await shown(pilot, app, "you: noon is fine")
                seen = await events_until(
                    bob, lambda s: any(isinstance(e, ev.MessageReceived) for e in s), "the reply"
                )
                reply = next(e for e in seen if isinstance(e, ev.MessageReceived))
                stored = next(m for m in bob.history("Alice") if m.message_id == reply.message_id)
                assert stored.quote is not None
                asked = next(m for m in bob.history("Alice") if m.text == "lunch at noon?")
                assert stored.quote.message_id == asked.message_id

                await bob.edit_message("Alice", asked.message_id, "lunch at one?")
                await shown(pilot, app, "Bob: lunch at one?  (edited)")
                await bob.react("Alice", stored.message_id, "🎉")
                await shown(pilot, app, "🎉 Bob")
                await bob.delete_for_everyone("Alice", asked.message_id)
                await shown(pilot, app, "Bob: this message was deleted")
                await shown(pilot, app, "↳ a deleted message")
                await bob.set_disappearing_timer("Alice", 3600)
                await shown(pilot, app, "Bob · ⏱ disappearing messages: 1 hour")
                await shown(pilot, app, "Bob set disappearing messages to 1 hour")

    run(main)


def test_a_file_sent_from_the_app_is_saved_by_bob_and_bobs_file_is_saved_from_the_app(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice, bob:
            await befriend(alice, bob)
            notes = tmp_path / "notes.txt"
            notes.write_bytes(b"the agenda\n" * 300)
            app = live_app(alice)
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await pilot.press("enter", "f")
                assert app.command_line.value == ":file "
                app.command_line.value += str(notes)
                await pilot.press("enter")
                await settled(app, pilot)
                await shown(pilot, app, "you: 📎 notes.txt (3.2 KiB)")
                seen = await events_until(
                    bob, lambda s: any(isinstance(e, ev.AttachmentReceived) for e in s), "Bob gets the file"
                )
                got = next(e for e in seen if isinstance(e, ev.AttachmentReceived))
                assert (got.file_name, got.size) == ("notes.txt", 3300)

                photo = tmp_path / "photo.bin"
                photo.write_bytes(bytes(range(256)) * 8)
                await bob.send_file("Alice", photo, caption="the view")
                await shown(pilot, app, "Bob: the view 📎 photo.bin (2.0 KiB)")
                inbox = tmp_path / "inbox"
                inbox.mkdir()
                await command(app, pilot, f"save {inbox}")
                await until(pilot, (inbox / "photo.bin").exists, "saved")
                assert (inbox / "photo.bin").read_bytes() == photo.read_bytes()
                assert app.note == f"saved to {inbox / 'photo.bin'}"

    run(main)


def test_groups_are_made_grown_renamed_and_listed_from_the_app(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        carol = await new_client(server_url, tmp_path, "Carol")
        async with alice, bob, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            app = live_app(alice)
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await command(app, pilot, "group create Picnic Bob")
                await shown(pilot, app, "#Picnic created")
                assert app.open_target is not None and app.open_target.name == "Picnic"
                await events_until(bob, lambda s: any(isinstance(e, ev.GroupUpdated) for e in s), "Bob joins")
                await command(app, pilot, "group add Carol")
                await shown(pilot, app, "added to #Picnic: Carol")
                await events_until(
                    carol, lambda s: any(isinstance(e, ev.GroupUpdated) for e in s), "Carol joins"
                )
                await command(app, pilot, "group rename 'Picnic Sunday'")
                await shown(pilot, app, "the group is #Picnic Sunday now")
                await shown(pilot, app, "▸ #Picnic Sunday")
                await command(app, pilot, "group members")
                assert isinstance(app.screen, ShowScreen)
                await shown(pilot, app, "3 members")
                await shown(pilot, app, "you (admin)")
                await pilot.press("escape")
                await command(app, pilot, "group remove Carol")
                await shown(pilot, app, "removed from #Picnic Sunday: Carol")
                roster = alice.group_roster("Picnic Sunday")
                assert carol.account_id not in roster.members and bob.account_id in roster.members

                await command(app, pilot, "group nonsense")
                assert app.note.startswith("usage: :group")
                await command(app, pilot, "open Bob")
                await command(app, pilot, "group leave")
                assert app.note == "open the group first (:open #NAME)"

    run(main)


def test_a_group_message_naming_you_counts_as_a_mention_on_arrival(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice, bob:
            await befriend(alice, bob)
            await bob.create_group("Lunch", ["Alice"])
            await events_until(alice, lambda s: any(isinstance(e, ev.GroupUpdated) for e in s), "joined")
            app = live_app(alice)
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await bob.send_group_text("Lunch", "pizza?")
                await shown(pilot, app, "#Lunch 1")
                await bob.send_group_text("Lunch", "@Alice pizza?")
                await shown(pilot, app, "#Lunch 2 @1")
                assert all(m.direction is Direction.INCOMING for m in alice.history("Lunch"))

    run(main)


def test_the_code_from_bobs_screen_marks_him_verified(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice, bob:
            await befriend(alice, bob)
            app = live_app(alice)
            async with app.run_test(size=(100, 40)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await pilot.press("enter", "v")
                await shown(pilot, app, "not verified yet")
                await shown(pilot, app, ":verify Bob CODE")
                await pilot.press("escape")
                wrong = alice.safety_number("Bob").qr_text  # our own code is not theirs
                await command(app, pilot, f"verify Bob {wrong}")
                assert "NOT verified" in app.note or app.note.startswith("not verified")
                assert not alice.is_verified("Bob")
                await pilot.press("V")
                assert app.command_line.value == ":verify Bob "
                app.command_line.value += bob.safety_number("Alice").qr_text
                await pilot.press("enter")
                await settled(app, pilot)
                await until(pilot, lambda: app.note == "Bob verified", "verified")
                assert alice.is_verified("Bob")
                await pilot.press("v")
                await shown(pilot, app, "(verified)")

    run(main)
