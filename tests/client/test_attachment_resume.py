"""An upload cut short by the sending client's end goes on after it is opened again: real
clients, the real relay (uvicorn in a thread, SQLite). What is needed to go on (the key and IV,
the digest, the relay's id and token) is kept in the encrypted store; the same file sent again to
the same conversation is encrypted again to the same blob and sent from where the relay got to,
so no more than one chunk is sent twice. A file changed meanwhile goes as a new upload, and a
removed contact's upload state goes with them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.client import attachment_uploads
from sotto.client import events as ev
from sotto.client.attachments import UPLOAD_CHUNK
from sotto.client.sdk import Client
from sotto.client.transport import HttpRelay
from sotto.protocol.attachment import encrypted_size
from tests.client.running_relay import free_port, running_relay
from tests.client.test_end_to_end import PASSPHRASE, befriend, collect, new_client, run

SIZE = 8 * UPLOAD_CHUNK + 1000  # nine chunks


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with running_relay(tmp_path / "relay", free_port()) as relay_url:
        yield relay_url


class _Chunks:
    """Counts the bytes of every chunk handed to the relay; with ``stop_at``, the call that
    sends the chunk at or past that offset lets the relay take it, then hangs, as a process
    killed before it read the answer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = 0
        self.stop_at: int | None = None
        self.stopped = asyncio.Event()
        real = HttpRelay.upload_attachment_chunk
        chunks = self

        async def counted(
            relay: HttpRelay, attachment_id: bytes, token: bytes, offset: int, data: bytes
        ) -> int:
            chunks.sent += len(data)
            reached = await real(relay, attachment_id, token, offset, data)
            if chunks.stop_at is not None and offset >= chunks.stop_at:
                chunks.stopped.set()
                await asyncio.Event().wait()  # never answers: cancelled with the client
            return reached

        monkeypatch.setattr(HttpRelay, "upload_attachment_chunk", counted)


def _pending(client: Client) -> list[attachment_uploads.UploadState]:
    return client.engine.read(lambda tx: attachment_uploads.pending(tx, client.engine.now_ms()))


async def _cut_short(alice: Client, source: Path, chunks: _Chunks) -> None:
    """Start sending ``source`` to Bob and end it half way, with the relay holding more than the
    client was told."""
    chunks.stop_at, chunks.stopped = SIZE // 2, asyncio.Event()
    sending = asyncio.create_task(alice.send_file("Bob", source, caption="half way"))
    await asyncio.wait_for(chunks.stopped.wait(), 30)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    chunks.stop_at = None
    (state,) = _pending(alice)
    assert state.file.size == SIZE and "key" not in repr(state).replace("key=<hidden>", "")


def test_an_upload_cut_short_goes_on_after_the_client_is_opened_again(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(os.urandom(SIZE))
    saves = tmp_path / "saved"
    saves.mkdir()
    chunks = _Chunks(monkeypatch)

    async def main() -> None:
        alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
        async with bob:
            async with alice:
                await befriend(alice, bob)
                await _cut_short(alice, source, chunks)
            sent_before = chunks.sent
            assert 0 < sent_before < encrypted_size(SIZE)

            again = await Client.open(tmp_path / "Alice", PASSPHRASE, receipt_delay=0.1)
            async with again:
                steps: list[int] = []
                sent = await again.send_file(
                    "Bob", source, caption="whole", progress=lambda d, t: steps.append(d)
                )
                # It went on from the relay's offset: nothing before it was sent again, and at
                # most one chunk was sent twice over both runs.
                assert steps[0] >= sent_before - UPLOAD_CHUNK and steps[-1] == encrypted_size(SIZE)
                assert chunks.sent - encrypted_size(SIZE) <= UPLOAD_CHUNK
                assert _pending(again) == []

                seen = await collect(
                    [bob], lambda s: any(isinstance(e, ev.AttachmentReceived) for e in s[bob])
                )
                (event,) = [e for e in seen[bob] if isinstance(e, ev.AttachmentReceived)]
                assert (event.message_id, event.text, event.size) == (sent, "whole", SIZE)
                message = next(m for m in bob.history("Alice") if m.message_id == sent)
                written = await bob.save_attachment(message, saves)
                assert written.read_bytes() == source.read_bytes()

    run(main)


def test_a_file_changed_before_it_goes_on_is_sent_as_a_new_upload(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(os.urandom(SIZE))
    saves = tmp_path / "saved"
    saves.mkdir()
    chunks = _Chunks(monkeypatch)

    async def main() -> None:
        alice, bob = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            await _cut_short(alice, source, chunks)
            (begun,) = _pending(alice)
            source.write_bytes(os.urandom(SIZE))  # same size, other bytes
            os.utime(source, ns=(begun.file.mtime_ns, begun.file.mtime_ns))  # even the same mtime
            chunks.sent = 0
            sent = await alice.send_file("Bob", source)
            assert chunks.sent == encrypted_size(SIZE)  # all of it, to a new blob
            assert _pending(alice) == []
            await collect([bob], lambda s: any(isinstance(e, ev.AttachmentReceived) for e in s[bob]))
            message = next(m for m in bob.history("Alice") if m.message_id == sent)
            assert message.message_id == sent
            written = await bob.save_attachment(message, saves)
            assert written.read_bytes() == source.read_bytes()

            await _cut_short(alice, source, chunks)
            await alice.remove_contact("Bob")
            assert _pending(alice) == []

    run(main)
