"""A file's key goes with its message, across two real clients and a real relay (uvicorn in a
thread, SQLite): when the message disappears on its timer, is deleted for everyone, or its
contact is removed with the history, the sealed pointer (key and digest) leaves both stores,
and the send log no longer holds it once the file's message is delivered. The history export
lists files (name, size, caption, whether saved) and none of their key material."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.client import content as c
from sotto.client import events as ev
from sotto.client import history_export
from sotto.client.sdk import STORE_FILE, Client
from sotto.store.interfaces import Transaction
from sotto.store.model import Message
from tests.client.running_relay import free_port, running_relay
from tests.client.test_end_to_end import befriend, collect, new_client, run


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with running_relay(tmp_path / "relay", free_port()) as relay_url:
        yield relay_url


def _held_rows(client: Client, tmp_path: Path) -> int:
    """Attachment rows in the client's store file, counted without the store's help."""
    path = tmp_path / client.display_name / STORE_FILE
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM message_attachments").fetchone()[0])


def _file_message(client: Client, other: str, message_id: bytes) -> Message:
    return next(m for m in client.history(other) if m.message_id == message_id)


def _logged_files(client: Client) -> int:
    """File messages in the client's send log (kept for resending after a session repair)."""

    def count(tx: Transaction) -> int:
        entries = [e for contact in tx.contacts.all() for e in tx.send_log.for_contact(contact.contact_id)]
        return sum(isinstance(c.decode(e.content), c.Attachment) for e in entries)

    return client.engine.read(count)


async def _send_and_receive(alice: Client, bob: Client, source: Path) -> bytes:
    sent = await alice.send_file("Bob", source, caption="the plan")
    await collect([bob], lambda s: any(isinstance(e, ev.AttachmentReceived) for e in s[bob]))
    assert alice.attachment(_file_message(alice, "Bob", sent)) is not None
    assert bob.attachment(_file_message(bob, "Alice", sent)) is not None
    return sent


def test_a_deleted_for_everyone_file_loses_its_key_on_both_sides(url: str, tmp_path: Path) -> None:
    source = tmp_path / "plan.pdf"
    source.write_bytes(os.urandom(50_000))

    async def main() -> None:
        alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            sent = await _send_and_receive(alice, bob, source)
            keep = await _send_and_receive(alice, bob, source)
            assert _held_rows(alice, tmp_path) == _held_rows(bob, tmp_path) == 2

            await alice.delete_for_everyone("Bob", sent)
            await collect([bob], lambda s: any(isinstance(e, ev.MessageDeleted) for e in s[bob]))
            for client, other in ((alice, "Bob"), (bob, "Alice")):
                gone = _file_message(client, other, sent)
                assert gone.deleted and client.attachment(gone) is None
                row = gone.row_id
                assert client.engine.read(lambda tx: tx.messages.attachment(row) is None)  # noqa: B023
                assert client.attachment(_file_message(client, other, keep)) is not None
                assert _held_rows(client, tmp_path) == 1

    run(main)


def test_a_disappearing_file_loses_its_key_when_its_time_comes(url: str, tmp_path: Path) -> None:
    source = tmp_path / "plan.pdf"
    source.write_bytes(os.urandom(50_000))

    async def main() -> None:
        alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            await alice.set_disappearing_timer("Bob", 1)
            await collect([bob], lambda s: any(isinstance(e, ev.TimerChanged) for e in s[bob]))
            sent = await _send_and_receive(alice, bob, source)
            assert _held_rows(alice, tmp_path) == _held_rows(bob, tmp_path) == 1
            # Bob's delivery receipt takes the file out of Alice's send log.
            for _ in range(100):
                await alice.sync(timeout=0.2, idle=0.05)
                if _logged_files(alice) == 0:
                    break
            assert _logged_files(alice) == 0

            # Neither side reads its history: each client's own expiry deletes the rows.
            for client in (alice, bob):
                for _ in range(600):
                    if _held_rows(client, tmp_path) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert _held_rows(client, tmp_path) == 0
            assert sent not in [m.message_id for m in alice.history("Bob") + bob.history("Alice")]

    run(main)


def test_removing_a_contact_with_the_history_removes_their_files_keys(url: str, tmp_path: Path) -> None:
    source = tmp_path / "plan.pdf"
    source.write_bytes(os.urandom(50_000))

    async def main() -> None:
        alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            await _send_and_receive(alice, bob, source)
            await bob.remove_contact("Alice")  # the history stays, and the file with it
            assert _held_rows(bob, tmp_path) == 1
            await alice.remove_contact("Bob", forget_history=True)
            assert _held_rows(alice, tmp_path) == 0

    run(main)


def _spellings(secret: bytes) -> list[str]:
    """The ways a key could appear in a text file: hex (either case), base64 and its URL form,
    and each of those cut to 12 characters (a piece of the key is a leak too)."""
    whole = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
    ]
    return whole + [w[:12] for w in whole]


def test_the_history_export_lists_files_without_their_keys(url: str, tmp_path: Path) -> None:
    source = tmp_path / "minutes <1>.txt"
    source.write_bytes(os.urandom(70_000))
    saves = tmp_path / "saved"
    saves.mkdir()

    async def main() -> None:
        alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            first = await alice.send_file("Bob", source, caption="the plan <b>")
            second = await alice.send_file("Bob", source)
            await collect([bob], lambda s: sum(isinstance(e, ev.AttachmentReceived) for e in s[bob]) == 2)
            held = bob.attachment(_file_message(bob, "Alice", first))
            assert held is not None and held.saved_ms is None
            await bob.save_attachment(_file_message(bob, "Alice", first), saves)
            saved = bob.attachment(_file_message(bob, "Alice", first))
            assert saved is not None and saved.saved_ms is not None

            secrets = [held.pointer.key, held.pointer.digest, held.pointer.attachment_id]
            for client, other in ((alice, "Bob"), (bob, "Alice")):
                export = client.export_history(other)
                as_json = history_export.to_json(export)
                as_html = history_export.to_html(export)
                for text in (as_json, as_html):
                    assert not any(s in text for k in secrets for s in _spellings(k))
                    assert held.server_url not in text
                (conversation,) = json.loads(as_json)["conversations"]
                files = [(m["id"], m["text"], m["file"]) for m in conversation["messages"] if "file" in m]
                expected = {"name": "minutes <1>.txt", "size": 70_000, "content_type": "text/plain"}
                if client is bob:
                    assert files == [
                        (
                            first.hex(),
                            "the plan <b>",
                            {**expected, "saved": True, "saved_at": files[0][2]["saved_at"]},
                        ),
                        (second.hex(), "", {**expected, "saved": False}),
                    ]
                    assert "not saved" in as_html and "saved 20" in as_html
                else:
                    assert files == [(first.hex(), "the plan <b>", expected), (second.hex(), "", expected)]
                assert "minutes &lt;1&gt;.txt" in as_html and "the plan &lt;b&gt;" in as_html
                assert "70,000 bytes" in as_html

    run(main)
