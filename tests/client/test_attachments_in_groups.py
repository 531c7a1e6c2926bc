"""Files in a group between three real clients through the real relay (uvicorn in a thread,
SQLite, the blob store on disk): one upload whose pointer travels inside the group message,
every member saves the same blob byte-identical, the relay deletes it after the last member's
fetch, a deletion for everyone takes its key from every member's store, and a member taken out
of the group gets no pointer to a later file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.flows import reporting
from sotto.client.sdk import Client
from sotto.errors import RelayError
from tests.client.running_relay import free_port, running_relay
from tests.client.test_end_to_end import befriend, collect, new_client, run


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "relay"
    with running_relay(data, free_port()) as url:
        yield url, (data / "attachments").resolve()


def _files(events: list[ev.Event]) -> list[ev.GroupAttachmentReceived]:
    return [e for e in events if isinstance(e, ev.GroupAttachmentReceived)]


def _blob_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if len(p.name) == 32 and p.is_file()] if folder.exists() else []


async def _settled(folder: Path, count: int) -> None:
    """Wait until the relay holds ``count`` blobs (it deletes one after the answer that ends the
    last fetch has gone out)."""
    for _ in range(100):
        if len(_blob_files(folder)) == count:
            return
        await asyncio.sleep(0.05)
    assert len(_blob_files(folder)) == count


async def _three(url: str, tmp_path: Path) -> tuple[Client, Client, Client]:
    alice, bob, carol = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
    await befriend(alice, bob)
    await befriend(alice, carol)
    await befriend(bob, carol)
    return alice, bob, carol


def test_a_group_file_is_uploaded_once_and_every_member_saves_it(
    relay: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = relay
    source = tmp_path / "menu.pdf"
    source.write_bytes(os.urandom(400_000))

    async def main() -> None:
        alice, bob, carol = await _three(url, tmp_path)
        async with alice, bob, carol:
            group = await alice.create_group("Lunch", ["Bob", "Carol"])
            await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
            sent = await alice.send_file(group, source, caption="today's menu")
            assert len(_blob_files(folder)) == 1  # one upload for the whole group
            seen = await collect([bob, carol], lambda s: all(_files(s[x]) for x in (bob, carol)))
            for client in (bob, carol):
                (event,) = _files(seen[client])
                assert (event.group.group_id, event.sender.name, event.message_id) == (
                    group.group_id,
                    "Alice",
                    sent,
                )
                assert (event.text, event.file_name, event.size) == ("today's menu", "menu.pdf", 400_000)
                assert event.content_type == "application/pdf" and "menu" not in repr(event)
            # Kept unreported, a group file is reported again as a file, not as its caption only.
            assert all(
                isinstance(e, ev.GroupAttachmentReceived) for e in carol.engine.read(reporting.unreported)
            )

            for client in (bob, carol):
                message = next(m for m in client.history("Lunch") if m.message_id == sent)
                assert message.text == "today's menu"
                saves = tmp_path / f"saved-{client.display_name}"
                saves.mkdir()
                written = await client.save_attachment(message, saves)
                assert written.read_bytes() == source.read_bytes()
            ours = next(m for m in alice.history("Lunch") if m.message_id == sent)
            assert alice.attachment(ours) is not None
            await _settled(folder, 0)  # both members fetched it whole: the relay deleted the blob
            with pytest.raises(RelayError) as gone:
                await bob.save_attachment(
                    next(m for m in bob.history("Lunch") if m.message_id == sent), tmp_path / "again.pdf"
                )
            assert gone.value.status == 404

            # Deleted for everyone, the file's key leaves every member's store.
            await alice.delete_for_everyone(group, sent)
            await collect(
                [bob, carol],
                lambda s: all(any(isinstance(e, ev.MessageDeleted) for e in s[x]) for x in (bob, carol)),
            )
            for client in (alice, bob, carol):
                row = next(m for m in client.history("Lunch") if m.message_id == sent).row_id
                assert client.engine.read(lambda tx: tx.messages.attachment(row) is None)  # noqa: B023

    run(main)


def test_a_member_taken_out_of_the_group_gets_no_later_file(relay: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = relay
    source = tmp_path / "plan.txt"
    source.write_bytes(os.urandom(300_000))

    async def main() -> None:
        alice, bob, carol = await _three(url, tmp_path)
        async with alice, bob, carol:
            group = await alice.create_group("Trip", ["Bob", "Carol"])
            await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
            before = await alice.send_file(group, source, caption="before")
            await collect([bob, carol], lambda s: all(_files(s[x]) for x in (bob, carol)))

            await alice.remove_contact("Carol")  # and so out of Alice's groups
            assert [m.name for m in alice.group_members(group)] == ["Bob"]
            after = await alice.send_file(group, source, caption="after")
            seen = await collect([bob], lambda s: bool(_files(s[bob])))
            assert [e.message_id for e in _files(seen[bob])] == [after]
            late = await collect([carol], lambda _: True)
            for _ in range(5):  # anything on its way to Carol has had time to arrive
                late[carol] += await carol.sync(timeout=0.5, idle=0.1)
            assert not _files(late[carol])
            assert {m.message_id for m in carol.history("Trip")} == {before}
            # The later blob waits for one fetch only (Bob's), and Carol holds no pointer to it.
            message = next(m for m in bob.history("Trip") if m.message_id == after)
            await bob.save_attachment(message, tmp_path / "after.txt")
            assert (tmp_path / "after.txt").read_bytes() == source.read_bytes()
            await _settled(folder, 1)  # "before" still waits for Bob and Carol; "after" is gone

    run(main)
