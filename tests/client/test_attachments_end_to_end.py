"""Files between two real clients through the real relay (uvicorn in a thread, SQLite, the blob
store on disk): a 1 MiB file arrives byte-identical, a blob tampered with at the relay is refused
and leaves no file, an upload whose answer is lost resumes re-sending at most one chunk, and the
refusals (missing file, too large, the relay's quota) are typed and send nothing."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sotto.client import attachments as attachment_io
from sotto.client import events as ev
from sotto.client.flows import reporting
from sotto.client.sdk import Client
from sotto.errors import ClientError, QuotaExceededError, RelayError
from sotto.protocol.attachment import MAX_ATTACHMENT_SIZE, AttachmentIntegrityError, encrypted_size
from sotto.server import attachments as relay_attachments
from sotto.server.attachment_store import BlobStore
from tests.client.running_relay import free_port, running_relay
from tests.client.test_end_to_end import befriend, collect, new_client, run

MIB = 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A relay of this test's own, and its attachment folder (to reach the blobs it holds)."""
    data = tmp_path / "relay"
    with running_relay(data, free_port()) as url:
        yield url, (data / "attachments").resolve()


def _received(events: list[ev.Event]) -> list[ev.AttachmentReceived]:
    return [e for e in events if isinstance(e, ev.AttachmentReceived)]


async def _pair(url: str, tmp_path: Path) -> tuple[Client, Client]:
    alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
    await befriend(alice, bob)
    return alice, bob


def _blob_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if len(p.name) == 32 and p.is_file()]


def test_a_one_mib_file_arrives_byte_identical(relay: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = relay
    source = tmp_path / "holiday photo.jpg"
    source.write_bytes(os.urandom(MIB))
    saves = tmp_path / "saved"
    saves.mkdir()

    async def main() -> None:
        alice, bob = await _pair(url, tmp_path)
        async with alice, bob:
            steps: list[tuple[int, int]] = []
            sent = await alice.send_file(
                "Bob", source, caption="the beach", progress=lambda d, t: steps.append((d, t))
            )
            assert steps[0] == (0, steps[0][1]) and steps[-1][0] == steps[-1][1] > MIB
            assert [d for d, _ in steps] == sorted(d for d, _ in steps) and len(steps) > 2

            seen = await collect([bob], lambda s: bool(_received(s[bob])))
            event = _received(seen[bob])[0]
            assert (event.message_id, event.file_name, event.size, event.text) == (
                sent,
                "holiday photo.jpg",
                MIB,
                "the beach",
            )
            assert event.content_type == "image/jpeg"
            assert "holiday" not in repr(event) and "beach" not in repr(event)

            message = next(m for m in bob.history("Alice") if m.message_id == sent)
            held = bob.attachment(message)
            assert held is not None and (held.file_name, held.size) == ("holiday photo.jpg", MIB)
            assert message.text == "the beach"
            ours = next(m for m in alice.history("Bob") if m.message_id == sent)
            assert alice.attachments([ours]).keys() == {ours.row_id}

            done: list[int] = []
            written = await bob.save_attachment(message, saves, progress=lambda d, t: done.append(d))
            assert written == saves / "holiday photo.jpg"
            assert written.read_bytes() == source.read_bytes()
            assert stat.S_IMODE(written.stat().st_mode) == 0o600
            assert sorted(p.name for p in saves.iterdir()) == ["holiday photo.jpg"]
            assert done and done[-1] > MIB

            with pytest.raises(FileExistsError):
                await bob.save_attachment(message, written)
            # One recipient, one complete fetch: the relay has deleted the blob.
            with pytest.raises(RelayError) as gone:
                await bob.save_attachment(message, saves / "again.jpg")
            assert gone.value.status == 404 and not (saves / "again.jpg").exists()
            with pytest.raises(ClientError, match="its recipient"):
                await alice.save_attachment(ours, saves / "mine.jpg")

    run(main)


def test_a_blob_tampered_at_the_relay_is_refused_and_leaves_no_file(
    relay: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = relay
    source = tmp_path / "report.pdf"
    source.write_bytes(os.urandom(300_000))
    saves = tmp_path / "saved"
    saves.mkdir()

    async def main() -> None:
        alice, bob = await _pair(url, tmp_path)
        async with alice, bob:
            await alice.send_file("Bob", source)
            async with asyncio.timeout(60):
                async for event in bob.listen():
                    if isinstance(event, ev.AttachmentReceived):
                        break
            assert isinstance(event, ev.AttachmentReceived)
            # Handed out, not yet taken: after a crash now it would be reported again, as a file.
            assert event in bob.engine.read(reporting.unreported)
            sent = event.message_id
            (blob,) = _blob_files(folder)
            # The relay keeps blobs under AES-CTR: a flipped byte on its disk is a flipped byte
            # in what it serves.
            with open(blob, "r+b") as file:
                file.seek(150_000)
                byte = file.read(1)
                file.seek(150_000)
                file.write(bytes((byte[0] ^ 0x01,)))
            message = next(m for m in bob.history("Alice") if m.message_id == sent)
            with pytest.raises(AttachmentIntegrityError):
                await bob.save_attachment(message, saves / "report.pdf")
            assert list(saves.iterdir()) == []

    run(main)


def test_refusals_are_typed_and_send_nothing(relay: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = relay
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as file:
        file.truncate(MAX_ATTACHMENT_SIZE + 1)  # sparse: no disk used
    small = tmp_path / "note.txt"
    small.write_bytes(b"x" * 5000)

    async def main() -> None:
        alice, bob = await _pair(url, tmp_path)
        async with alice, bob:
            before = len(alice.history("Bob"))
            with pytest.raises(attachment_io.AttachmentFileError, match="no file"):
                await alice.send_file("Bob", tmp_path / "missing.txt")
            with pytest.raises(attachment_io.AttachmentFileError, match="not a regular file"):
                await alice.send_file("Bob", tmp_path)
            with pytest.raises(attachment_io.AttachmentTooLargeError):
                await alice.send_file("Bob", huge)
            with pytest.raises(ValueError, match="caption"):
                await alice.send_file("Bob", small, caption="x" * 5000)
            # The relay's store is full: its 507 reaches the caller typed.
            relay_attachments.STORES[folder] = BlobStore(folder, quota_bytes=1000, min_free_disk_bytes=0)
            try:
                with pytest.raises(QuotaExceededError):
                    await alice.send_file("Bob", small)
            finally:
                del relay_attachments.STORES[folder]
            assert len(alice.history("Bob")) == before
            assert _blob_files(folder) == []

    run(main)


def test_an_upload_whose_answer_is_lost_resumes_resending_at_most_one_chunk(tmp_path: Path) -> None:
    """The third chunk reaches the relay's disk, but its answer is replaced by a 503: the client
    asks where the upload is and goes on from there."""
    patched: list[int] = []

    def wrap(app: App) -> App:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] != "PATCH":
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            patched.append(int(headers.get(b"content-length", b"0")))
            if len(patched) != 3:
                await app(scope, receive, send)
                return

            async def swallow(message: dict[str, Any]) -> None:
                pass

            await app(scope, receive, swallow)
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        return watched

    source = tmp_path / "video.mp4"
    source.write_bytes(os.urandom(MIB))
    with running_relay(tmp_path / "relay", free_port(), wrap=wrap) as url:

        async def main() -> None:
            alice, bob = await _pair(url, tmp_path)
            async with alice, bob:
                await alice.send_file("Bob", source)
                seen = await collect([bob], lambda s: bool(_received(s[bob])))
                sent = _received(seen[bob])[0].message_id
                message = next(m for m in bob.history("Alice") if m.message_id == sent)
                written = await bob.save_attachment(message, tmp_path / "saved.mp4")
                assert written.read_bytes() == source.read_bytes()

        run(main)
    # The blob went whole, its third chunk once or twice, never more.
    blob_length = encrypted_size(MIB)
    assert len(patched) > blob_length // attachment_io.UPLOAD_CHUNK
    assert blob_length <= sum(patched) <= blob_length + attachment_io.UPLOAD_CHUNK
