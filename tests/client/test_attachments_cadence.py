"""Files in cadence mode, straight to the real relay (uvicorn in a thread, 1-second ticks): the
blob goes up and down on connections of its own, and the file's message waits for a tick like
any other. It arrives, and the save is byte-identical."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from tests.client.running_relay import free_port, running_relay
from tests.client.test_end_to_end import PASSPHRASE, befriend, collect, run


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[str]:
    with running_relay(tmp_path / "relay", free_port(), cadence_tick_seconds=1) as url:
        yield url


async def _person(url: str, home: Path, name: str) -> Client:
    return await Client.create(
        home / name, url, PASSPHRASE, name, kdf=Argon2Params.TESTING, cadence=True, receipt_delay=0.1
    )


def test_a_file_in_cadence_mode_arrives_byte_identical(relay: str, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(os.urandom(700_000))
    saves = tmp_path / "saved"
    saves.mkdir()

    async def main() -> None:
        alice, bob = await _person(relay, tmp_path, "Alice"), await _person(relay, tmp_path, "Bob")
        async with alice, bob:
            assert alice.cadence and bob.cadence
            await befriend(alice, bob)
            sent = await alice.send_file("Bob", source, caption="in a tick")
            seen = await collect(
                [alice, bob], lambda s: any(isinstance(e, ev.AttachmentReceived) for e in s[bob])
            )
            (event,) = [e for e in seen[bob] if isinstance(e, ev.AttachmentReceived)]
            assert (event.message_id, event.size, event.text) == (sent, 700_000, "in a tick")
            message = next(m for m in bob.history("Alice") if m.message_id == sent)
            written = await bob.save_attachment(message, saves)
            assert written.read_bytes() == source.read_bytes()

    run(main)
