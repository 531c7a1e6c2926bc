"""What was committed is reported at least once: real clients on the real relay, SQLite stores.

A client that dies between storing a message and handing its event to the app is played here by
a client whose reports go nowhere (``Mute``); the next client on the same store must report what
it missed, with the same ids, once per run. The SIGKILL version is
``tests/integration/test_event_replay.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sotto.client import events as ev
from sotto.client.flows import groups, reporting
from sotto.client.sdk import Client
from tests.client.peers import connect, people
from tests.client.test_end_to_end import PASSPHRASE, befriend, collect, new_client, run


class Mute(Client):
    """Commits like any client, but its events never reach the app (it "dies" before)."""

    def _emit(self, events: Iterable[ev.Event]) -> None:
        del events


async def reopen(directory: Path, cls: type[Client] = Client) -> Client:
    client = await cls.open(directory, PASSPHRASE, receipt_delay=0.1)
    assert isinstance(client, cls)
    return client


def received(events: list[ev.Event]) -> list[bytes]:
    return [e.message_id for e in events if isinstance(e, ev.MessageReceived | ev.GroupMessageReceived)]


def test_messages_stored_but_never_reported_are_reported_after_reopen_once(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice:
            async with bob:
                await befriend(alice, bob)
                group = await alice.create_group("G", ["Bob"])
                await collect(
                    [alice, bob], lambda seen: any(isinstance(e, ev.GroupUpdated) for e in seen[bob])
                )
            sent = [await alice.send_text("Bob", f"text {i}") for i in range(3)]
            sent.append(await alice.send_group_text(group, "to the group"))
            await alice.flush()

            async with await reopen(tmp_path / "Bob", Mute) as mute:
                for _ in range(50):
                    await mute.sync(timeout=2, idle=0.1)
                    if len(mute.history("Alice")) >= 3 and mute.history("G"):
                        break
                assert [m.text for m in mute.history("Alice")][-3:] == ["text 0", "text 1", "text 2"]

            async with await reopen(tmp_path / "Bob") as bob:
                first_run = await bob.sync(timeout=3, idle=0.1)
                first_run += await bob.sync(timeout=1, idle=0.1)
            assert received(first_run) == sent  # all of them, in order, once
            replayed = [e for e in first_run if isinstance(e, ev.MessageReceived)]
            assert [e.text for e in replayed] == ["text 0", "text 1", "text 2"]
            assert all(e.contact.name == "Alice" for e in replayed)
            (in_group,) = [e for e in first_run if isinstance(e, ev.GroupMessageReceived)]
            assert in_group.group.name == "G" and in_group.text == "to the group"

            async with await reopen(tmp_path / "Bob") as bob:  # taken by sync(): not again
                assert received(await bob.sync(timeout=2, idle=0.1)) == []

    run(main)


def test_contact_events_are_kept_until_taken(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        await alice.close()
        async with bob:
            async with await reopen(tmp_path / "Alice") as alice:
                invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            await bob.flush()
            async with await reopen(tmp_path / "Alice", Mute) as mute:
                for _ in range(50):
                    await mute.sync(timeout=2, idle=0.1)
                    if mute.contacts():
                        break
                assert [c.name for c in mute.contacts()] == ["Bob"]
            async with await reopen(tmp_path / "Alice") as alice:
                events = await alice.sync(timeout=2, idle=0.1)
                added = [e for e in events if isinstance(e, ev.ContactAdded)]
                assert [e.contact.name for e in added] == ["Bob"]
            async with await reopen(tmp_path / "Alice") as alice:
                again = await alice.sync(timeout=2, idle=0.1)
                assert not [e for e in again if isinstance(e, ev.ContactAdded)]

    run(main)


def test_listen_marks_an_event_taken_when_the_next_is_asked_for_or_the_client_closes(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice:
            async with bob:
                await befriend(alice, bob)
            sent = [await alice.send_text("Bob", f"text {i}") for i in range(3)]
            await alice.flush()

            got: list[bytes] = []
            async with await reopen(tmp_path / "Bob") as bob:
                async for event in bob.listen():
                    if isinstance(event, ev.MessageReceived):
                        got.append(event.message_id)
                        if len(got) == 3:
                            break
                # Before the close, the last one handed out is not marked yet: the app may
                # still be working on it (earlier ones may wait for a batch's commit too).
                unreported = [m.message_id for m in bob.engine.read(lambda tx: tx.messages.unreported())]
                assert sent[2] in unreported
            assert got == sent
            async with await reopen(tmp_path / "Bob") as bob:
                assert received(await bob.sync(timeout=2, idle=0.1)) == []

    run(main)


def test_every_kept_kind_is_rebuilt_from_the_store_and_cleared_once_taken() -> None:
    """The flow alone, on the in-memory store: journal, rebuild, take."""
    _, (alice, bob) = people("Alice", "Bob")
    bob_at_alice, _ = connect(alice, bob)
    group = alice.act(lambda ctx: groups.create_group(ctx, "G", [bob_at_alice]))
    kept: list[ev.Event] = [
        ev.ContactAdded(bob_at_alice),
        ev.ContactAccepted(bob_at_alice),
        ev.ContactMailboxChanged(bob_at_alice),
        ev.IdentityChanged(bob_at_alice),
        ev.GroupUpdated(group, bob_at_alice, True),
        ev.ContactMailboxChanged(bob_at_alice),
    ]
    not_kept: list[ev.Event] = [
        ev.TypingChanged(bob_at_alice, True),
        ev.DeliveryReceiptReceived(bob_at_alice, ()),
        ev.ConnectionChanged(True),
    ]
    assert all(reporting.is_kept(e) for e in kept) and not any(reporting.is_kept(e) for e in not_kept)
    alice.act(lambda ctx: reporting.journal(ctx.tx, [*kept, *not_kept]))
    assert alice.read(reporting.unreported) == kept

    alice.read(lambda tx: reporting.mark_taken(tx, [kept[2], kept[4]]))
    assert alice.read(reporting.unreported) == [kept[0], kept[1], kept[3], kept[5]]
    alice.read(lambda tx: reporting.mark_taken(tx, [kept[2], kept[2]]))  # one left of that kind
    assert alice.read(reporting.unreported) == [kept[0], kept[1], kept[3]]
