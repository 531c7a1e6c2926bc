"""`sotto send` reaches a running `sotto chat`: the app serves the profile's control socket
(as `sotto listen` does), and what is written through it shows in the open conversation."""

from __future__ import annotations

from pathlib import Path

from sotto.client import control
from sotto.client import events as ev
from sotto.tui.app import ChatApp
from tests.tui.conftest import befriend, events_until, new_client, run, shown, until


def test_a_text_handed_to_the_control_socket_is_sent_and_shows_in_the_open_conversation(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice, bob:
            await befriend(alice, bob)
            app = ChatApp(alice, environ={}, bell=lambda _: None)
            async with control.serving(alice, tmp_path / "Alice"), app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: app.connected, "connected")
                await pilot.press("enter")
                answer = await control.ask(
                    tmp_path / "Alice", control.SendText("Bob", "through the socket", False)
                )
                assert isinstance(answer, control.Handled), answer
                assert answer.outcome is control.Outcome.SENT
                await shown(pilot, app, "you: through the socket")
                await events_until(
                    bob,
                    lambda seen: any(
                        isinstance(e, ev.MessageReceived) and e.text == "through the socket" for e in seen
                    ),
                    "Bob receives it",
                )

    run(main)
