"""Message requests: someone who used Alice's invite shows on the requests screen, not among her
conversations, until she accepts, blocks or deletes them. Alice runs the app, Bob (and Carol)
the SDK, through a real relay on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.store.model import Direction, MessageState
from sotto.tui.app import ChatApp, summaries_of
from sotto.tui.requests import RequestsScreen
from tests.tui.conftest import PASSPHRASE, WAIT_S, events_until, new_client, run, screen_text, shown, until


def live_app(client: Client, rung: list[str]) -> ChatApp:
    return ChatApp(client, environ={}, bell=rung.append)


def titles(app: ChatApp) -> list[str]:
    return [s.title for s in summaries_of(app)]


async def request_from(alice: Client, other: Client, text: str) -> None:
    """``other`` uses an invite of Alice's and writes ``text`` once she has answered."""
    invite = await alice.create_invite()
    await other.accept_invite(invite.link, "Alice")
    await events_until(other, lambda _: other.is_ready("Alice"), "Alice's client answers")
    await other.send_text("Alice", text)


def incoming_states(client: Client, name: str) -> list[MessageState]:
    return [m.state for m in client.history(name) if m.direction is Direction.INCOMING]


def test_a_request_shows_on_its_screen_unread_until_accepted_then_opens(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice, bob:
            rung: list[str] = []
            app = live_app(alice, rung)
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await request_from(alice, bob, "hello, it is Bob from the conference")
                await shown(pilot, app, "✉ 1 message request (R)")
                assert "Bob" not in titles(app)
                await until(pilot, lambda: len(rung) == 2, "a request and its message notified")
                assert rung == ["\a\x1b]9;Sotto: new message request\x07"] * 2  # content-free
                await until(pilot, lambda: incoming_states(alice, "Bob") != [], "the message is stored")
                await pilot.press("R")
                await until(pilot, lambda: isinstance(app.screen, RequestsScreen), "the requests screen")
                await shown(pilot, app, "hello, it is Bob from the conference")
                await shown(pilot, app, "▸ Bob")
                assert incoming_states(alice, "Bob") == [MessageState.RECEIVED]  # no read receipt yet
                await pilot.press("a")
                await until(pilot, lambda: not isinstance(app.screen, RequestsScreen), "the screen closes")
                assert app.open_target is not None and app.open_target.name == "Bob"
                assert titles(app) == ["Bob"]
                assert alice.message_requests() == []
                await shown(pilot, app, "Bob: hello, it is Bob from the conference")
                assert "message request" not in screen_text(app)
                await events_until(
                    bob, lambda seen: any(isinstance(e, ev.ReadReceiptReceived) for e in seen), "read receipt"
                )
                assert incoming_states(alice, "Bob") == [MessageState.READ]
                await pilot.press(*"hi Bob", "enter")  # the composer has the focus
                await events_until(
                    bob,
                    lambda seen: any(isinstance(e, ev.MessageReceived) and e.text == "hi Bob" for e in seen),
                    "Bob gets the answer",
                )

    run(main)


def test_block_and_delete_a_request_and_the_list_stays_without_them(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        carol = await new_client(server_url, tmp_path, "Carol")
        async with alice, bob, carol:
            app = live_app(alice, [])
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await request_from(alice, bob, "buy my crypto course")
                await request_from(alice, carol, "a spam from Carol")
                await shown(pilot, app, "✉ 2 message requests (R)")
                await until(pilot, lambda: len(alice.history("Carol")) == 1, "Carol's message stored")
                await until(pilot, lambda: len(alice.history("Bob")) == 1, "Bob's message stored")
                await pilot.press("colon", *"requests", "enter")
                await until(pilot, lambda: isinstance(app.screen, RequestsScreen), "the requests screen")
                screen = app.screen
                assert isinstance(screen, RequestsScreen)
                await shown(pilot, app, "buy my crypto course")
                await shown(pilot, app, "a spam from Carol")
                # Newest first: Carol wrote last.
                assert [r.contact.name for r in screen.requests] == ["Carol", "Bob"]
                await pilot.press("j")
                assert screen.selected is not None and screen.selected.name == "Bob"
                await pilot.press("b")
                await until(pilot, lambda: [r.contact.name for r in screen.requests] == ["Carol"], "Bob gone")
                assert alice.contact("Bob").blocked
                await shown(pilot, app, "✉ 1 message request (R)")
                await pilot.press("d")
                await until(pilot, lambda: screen.requests == [], "Carol gone")
                await shown(pilot, app, "No message requests.")
                assert [c.name for c in alice.contacts()] == ["Bob"]  # Carol removed, Bob blocked
                # Deleted with what she wrote: no row is left for her.
                assert "Carol" not in [c.name for c in alice.contacts(include_removed=True)]
                await pilot.press("escape")
                assert not isinstance(app.screen, RequestsScreen)
                assert titles(app) == []
                assert "message request" not in screen_text(app)
                # Blocked: what Bob sends now is dropped; no request comes back.
                await bob.send_text("Alice", "are you there?")
                await asyncio.wait_for(bob.sync(timeout=5, idle=0.5), WAIT_S)
                await pilot.pause(0.5)
                assert titles(app) == [] and alice.message_requests() == []

    run(main)


def test_writing_to_someone_first_makes_no_request_and_requests_survive_a_restart(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        dora = await new_client(server_url, tmp_path, "Dora")
        async with bob, dora:
            async with alice:
                invite = await bob.create_invite()
                await alice.accept_invite(invite.link, "Bob")  # Alice asked: Bob is no request
                mine = await alice.create_invite()
                await dora.accept_invite(mine.link, "Alice")
                for _ in range(40):
                    await alice.sync(timeout=3, idle=0.1)
                    await dora.sync(timeout=3, idle=0.1)
                    if dora.is_ready("Alice"):
                        break
                await dora.send_text("Alice", "hi from Dora")
                await events_until(alice, lambda _: len(alice.history("Dora")) == 1, "Dora's message")
                assert [c.name for c in alice.message_requests()] == ["Dora"]
            again = await Client.open(tmp_path / "Alice", PASSPHRASE)
            async with again:
                app = ChatApp(again, live=False, environ={})
                async with app.run_test(size=(100, 30)) as pilot:
                    await shown(pilot, app, "✉ 1 message request (R)")
                    assert titles(app) == ["Bob"]
                    await pilot.press("colon", *"open Dora", "enter")
                    await shown(pilot, app, "no contact or group named 'Dora'")
                    await pilot.press("R")
                    await shown(pilot, app, "hi from Dora")

    run(main)
