"""Files through a forwarder: every attachment call (reserve, chunks, offsets, download) is sealed
with Oblivious HTTP like the rest, in default mode and in cadence mode.

Real processes (the ``cadence_stack`` fixture: the relay with its gateway, 1-second ticks, and a
forwarder); SDK clients in this process, each from an address of its own. The file is larger than
one sealed answer may be (the gateway's 1 MiB), so the download goes in bounded ranges; it arrives
byte-identical, and the relay's one fetch counts once, at the blob's end (a second save finds it
gone). No request reached the relay without the gateway: the relay's view holds no client address.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.errors import RelayError
from sotto.server.observer import HttpExchange, read_view
from sotto.wire import bhttp
from tests.forwarder.cadence import CadenceStack, close_person, person, until
from tests.forwarder.test_long_poll import person as default_person

SIZE = 2 * bhttp.DEFAULT_LIMITS.max_content + 12_345
"""More than two sealed answers' worth: the download takes three ranges."""


async def _befriend(alice: Client, bob: Client) -> None:
    invite = await alice.create_invite()
    await bob.accept_invite(invite.link, "Alice")
    await until(lambda: bob.is_ready("Alice") and any(alice.is_ready(c) for c in alice.contacts()), 90)


def _listen(client: Client, events: list[ev.Event]) -> asyncio.Task[None]:
    async def loop() -> None:
        async for event in client.listen():
            events.append(event)

    return asyncio.create_task(loop())


async def _send_and_save(alice: Client, bob: Client, source: Path, saves: Path) -> None:
    events: dict[str, list[ev.Event]] = {"Alice": [], "Bob": []}
    tasks = [_listen(alice, events["Alice"]), _listen(bob, events["Bob"])]
    try:
        await _befriend(alice, bob)
        sent = await alice.send_file("Bob", source, caption="through the forwarder")

        def received() -> list[ev.AttachmentReceived]:
            return [e for e in events["Bob"] if isinstance(e, ev.AttachmentReceived)]

        await until(lambda: bool(received()), 90, lambda: events["Bob"])
        assert (received()[0].message_id, received()[0].size) == (sent, SIZE)
        message = next(m for m in bob.history("Alice") if m.message_id == sent)
        done: list[tuple[int, int]] = []
        written = await bob.save_attachment(message, saves, progress=lambda d, t: done.append((d, t)))
        assert written.read_bytes() == source.read_bytes()
        assert done[-1][0] == done[-1][1] > SIZE
        # The last range reached the blob's end: its one fetch is spent and the blob deleted.
        with pytest.raises(RelayError) as gone:
            await bob.save_attachment(message, saves / "again")
        assert gone.value.status == 404 and not (saves / "again").exists()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _no_client_address(stack: CadenceStack, addresses: tuple[str, ...]) -> None:
    records = [r for r in read_view(stack.view) if isinstance(r, HttpExchange)]
    blob_calls = [r for r in records if r.path.startswith("/v1/attachments")]
    assert blob_calls, "no attachment call reached the relay"
    for record in records:
        assert record.addr not in addresses, record


@pytest.mark.parametrize("cadence", [False, True], ids=["default", "cadence"])
def test_a_file_goes_through_the_forwarder_and_arrives_byte_identical(
    cadence_stack: CadenceStack, tmp_path: Path, cadence: bool
) -> None:
    addresses = ("127.0.0.6", "127.0.0.7") if cadence else ("127.0.0.8", "127.0.0.9")
    source = tmp_path / "scan.pdf"
    source.write_bytes(os.urandom(SIZE))
    saves = tmp_path / "saved"
    saves.mkdir()
    make = person if cadence else default_person

    async def main() -> None:
        alice = await make(cadence_stack.relay, cadence_stack.forwarder, tmp_path, "Alice", addresses[0])
        bob = await make(cadence_stack.relay, cadence_stack.forwarder, tmp_path, "Bob", addresses[1])
        try:
            assert alice.cadence is cadence
            await _send_and_save(alice, bob, source, saves)
        finally:
            await close_person(alice)
            await close_person(bob)

    asyncio.run(asyncio.wait_for(main(), 240))
    _no_client_address(cadence_stack, addresses)
