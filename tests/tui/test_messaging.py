"""Two real clients through a real relay on loopback: Alice in the chat app (which runs her
client's receive loop), Bob on the SDK. What one writes reaches the other; receipts, typing,
invites, notifications and a relay that goes away and comes back."""

from __future__ import annotations

from pathlib import Path

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.store.model import MessageState
from sotto.tui.app import ChatApp, summaries_of
from sotto.tui.screens import ShowScreen
from tests.client.running_relay import free_port, running_relay
from tests.tui.conftest import befriend, events_until, new_client, run, screen_text, shown, until


def live_app(client: Client, rung: list[str], environ: dict[str, str] | None = None) -> ChatApp:
    return ChatApp(client, environ={} if environ is None else environ, bell=rung.append)


async def pair(server_url: str, tmp_path: Path) -> tuple[Client, Client]:
    return await new_client(server_url, tmp_path, "Alice"), await new_client(server_url, tmp_path, "Bob")


def unread_of(app: ChatApp, title: str) -> int:
    return next((s.unread for s in summaries_of(app) if s.title == title), -1)


def received(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.MessageReceived | ev.GroupMessageReceived)]


def test_a_message_arrives_with_an_unread_count_and_a_content_free_notification(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            await befriend(alice, bob)
            rung: list[str] = []
            app = live_app(alice, rung)
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await shown(pilot, app, "● connected")
                await bob.send_text("Alice", "the secret plan")
                await until(pilot, lambda: unread_of(app, "Bob") == 1, "Bob's message counted unread")
                assert rung == ["\a\x1b]9;Sotto: new message\x07"]
                await shown(pilot, app, "Bob 1")
                await pilot.press("enter")
                await until(pilot, lambda: unread_of(app, "Bob") == 0, "opening marks it read")
                await shown(pilot, app, "Bob: the secret plan")
                await events_until(
                    bob, lambda seen: any(isinstance(e, ev.ReadReceiptReceived) for e in seen), "read receipt"
                )

    run(main)


def test_a_message_written_in_the_app_reaches_the_other_side_and_shows_its_receipts(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            await befriend(alice, bob)
            app = live_app(alice, [])
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("enter", "i", *"Lunch at 12:30?", "enter")
                await until(pilot, lambda: app.composer.value == "", "the composer empties once queued")
                log = app.log_view
                assert log.messages[-1].text == "Lunch at 12:30?"
                seen = await events_until(bob, lambda s: "Lunch at 12:30?" in received(s), "Bob receives it")
                assert received(seen) == ["Lunch at 12:30?"]
                await until(
                    pilot, lambda: log.messages[-1].state is MessageState.DELIVERED, "delivery receipt shown"
                )
                await shown(pilot, app, "✓✓ delivered")
                await bob.mark_read("Alice")
                await until(pilot, lambda: log.messages[-1].state is MessageState.READ, "read receipt shown")
                await shown(pilot, app, "✓✓ read")

    run(main)


def test_an_open_conversation_shows_what_arrives_and_marks_it_read(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            await befriend(alice, bob)
            rung: list[str] = []
            app = live_app(alice, rung)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter")
                await bob.send_text("Alice", "are you there?")
                await until(pilot, lambda: "Bob: are you there?" in screen_text(app), "shown in the open log")
                await events_until(
                    bob, lambda seen: any(isinstance(e, ev.ReadReceiptReceived) for e in seen), "read at once"
                )
                assert unread_of(app, "Bob") == 0
                assert rung == []  # looking at it: no notification

    run(main)


def test_typing_shows_both_ways(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            await befriend(alice, bob)
            app = live_app(alice, [])
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("enter")
                await bob.send_typing("Alice", True)
                await until(pilot, lambda: "Bob is typing…" in screen_text(app), "Bob's typing shown")
                await bob.send_typing("Alice", False)
                await until(pilot, lambda: "is typing" not in screen_text(app), "and gone when he stops")
                await pilot.press("i", *"hmm")
                seen = await events_until(
                    bob,
                    lambda s: any(isinstance(e, ev.TypingChanged) and e.started for e in s),
                    "Bob sees Alice typing",
                )
                typing = [e for e in seen if isinstance(e, ev.TypingChanged)]
                assert typing[0].contact.name == "Alice"

    run(main)


def test_invite_command_shows_a_link_and_its_qr_code_that_someone_accepts(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            app = live_app(alice, [])
            async with app.run_test(size=(120, 60)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await pilot.press("colon", *"invite", "enter")
                await until(pilot, lambda: isinstance(app.screen, ShowScreen), "the invite shows")
                screen = app.screen
                assert isinstance(screen, ShowScreen)
                link = next(line for line in screen.lines if line.startswith("sotto://invite?"))
                assert screen.qr == link
                await shown(pilot, app, "█")  # the QR code is drawn
                await pilot.press("escape")
                assert not isinstance(app.screen, ShowScreen)
                await bob.accept_invite(link, "Alice")
                # Someone used the invite: a message request (test_requests.py), not yet a conversation.
                await shown(pilot, app, "✉ 1 message request (R)")
                assert "Bob used your invite" in app.note
                assert unread_of(app, "Bob") == -1
                await events_until(bob, lambda _: bob.is_ready("Alice"), "Alice's answer reaches Bob")

    run(main)


def test_accept_command_uses_someone_elses_invite(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            invite = await bob.create_invite()
            app = live_app(alice, [])
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("colon", *f"accept '{invite.link}' Bobby", "enter")
                await until(pilot, lambda: unread_of(app, "Bobby") == 0, "Bobby listed")
                await shown(pilot, app, "Bobby (waiting)")
                await events_until(
                    bob, lambda s: any(isinstance(e, ev.ContactAdded) for e in s), "Bob answers"
                )
                await until(pilot, lambda: "(waiting)" not in screen_text(app), "Bobby answered")
                assert "Bobby answered" in app.note

    run(main)


def test_group_messages_count_in_the_group_and_notifications_are_off_over_ssh(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = await pair(server_url, tmp_path)
        async with alice, bob:
            await befriend(alice, bob)
            await bob.create_group("Lunch", ["Alice"])
            await events_until(
                alice, lambda s: any(isinstance(e, ev.GroupUpdated) for e in s), "Alice joins the group"
            )
            rung: list[str] = []
            app = live_app(alice, rung, environ={"SSH_CONNECTION": "203.0.113.1 5000 203.0.113.2 22"})
            async with app.run_test(size=(80, 24)) as pilot:
                await bob.send_group_text("Lunch", "pizza?")
                await until(pilot, lambda: unread_of(app, "#Lunch") == 1, "the group counts it")
                assert unread_of(app, "Bob") == 0
                assert rung == []
                await pilot.press("colon", *"open #Lunch", "enter")
                await shown(pilot, app, "Bob: pizza?")

    run(main)


def test_a_lost_relay_shows_in_the_status_line_and_what_was_written_goes_out_after(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "relay"

    async def main() -> None:
        with running_relay(data, port) as url:
            alice, bob = await new_client(url, tmp_path, "Alice"), await new_client(url, tmp_path, "Bob")
            await befriend(alice, bob)
        async with alice, bob:
            app = live_app(alice, [])
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: "connecting" in screen_text(app), "no relay yet")
                await pilot.press("enter", "i", *"written offline", "enter")
                await until(pilot, lambda: app.composer.value == "", "queued while offline")
                await shown(pilot, app, "written offline  … pending")
                await shown(pilot, app, " queued")  # envelopes: the text, and a receipt or two
                with running_relay(data, port):
                    await until(pilot, lambda: app.connected, "reconnected")
                    await until(
                        pilot, lambda: app.log_view.messages[-1].state is not MessageState.QUEUED, "sent"
                    )
                    seen = await events_until(bob, lambda s: "written offline" in received(s), "Bob gets it")
                    assert received(seen) == ["written offline"]
                    await until(pilot, lambda: "queued" not in screen_text(app), "nothing queued")
                await until(pilot, lambda: "relay lost" in screen_text(app), "the relay went away")
                await pilot.press("i", *"second", "enter")
                await until(pilot, lambda: "second  … pending" in screen_text(app), "pending again")

    run(main)
