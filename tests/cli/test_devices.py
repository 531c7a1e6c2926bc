"""``sotto device link``, ``sotto device add`` and ``sotto device list`` on a real relay."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sotto.client.sdk import STORE_FILE, Client, PendingLink
from sotto.crypto.passphrase import Argon2Params
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import PASSPHRASE, Sotto, flat, make_profile


@pytest.fixture(autouse=True)
def fast_links() -> Iterator[None]:
    """Stores made by linking get the test Argon2 setting too."""
    begin = Client.begin_link.__func__  # type: ignore[attr-defined]

    async def fast(cls: type[Client], *args: Any, **kwargs: Any) -> PendingLink:
        kwargs.setdefault("kdf", Argon2Params.TESTING)
        pending: PendingLink = await begin(cls, *args, **kwargs)
        return pending

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Client, "begin_link", classmethod(fast))
        yield


def test_device_add_links_a_new_device_and_both_list_it(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    alice = make_profile(sotto, relay, tmp_path / "alice", "Alice")
    links: queue.Queue[str] = queue.Queue()
    results: list[tuple[str, int, list[int]]] = []

    def new_device() -> None:
        async def main() -> None:
            pending = await Client.begin_link(tmp_path / "laptop", relay.url, PASSPHRASE, "laptop")
            links.put(pending.link)
            async with await pending.complete(timeout=30) as laptop:
                results.append(
                    (laptop.display_name, laptop.device_id, [d.device_id for d in laptop.devices()])
                )

        asyncio.run(main())

    thread = threading.Thread(target=new_device)
    thread.start()
    try:
        added = sotto("device", "add", links.get(timeout=30), "--profile", str(alice))
    finally:
        thread.join(60)
    assert added.exit_code == 0, added.output
    assert "Added device 2: laptop" in flat(added.output)
    assert results == [("Alice", 2, [1, 2])]
    listed = flat(sotto("device", "list", "--profile", str(alice)).output)
    assert "1 first device" in listed and "this device" in listed and "2 laptop" in listed

    refused = sotto("device", "add", "sotto://link#nothing", "--profile", str(alice))
    assert refused.exit_code != 0 and "not a device link" in flat(refused.output)


def test_device_link_waits_for_an_existing_device(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_profile(sotto, relay, tmp_path / "alice", "Alice")
    begin = Client.begin_link

    async def answered(*args: Any, **kwargs: Any) -> PendingLink:
        """The new device's link, answered from Alice's profile while the command waits."""
        pending = await begin(*args, **kwargs)

        async def add() -> None:
            async with await Client.open(alice, PASSPHRASE) as client:
                await client.add_device(pending.link)

        answer = asyncio.ensure_future(add())
        real_complete = pending.complete

        async def complete(*, timeout: float) -> Client:
            await answer
            return await real_complete(timeout=timeout)

        monkeypatch.setattr(pending, "complete", complete)
        return pending

    monkeypatch.setattr(Client, "begin_link", answered)
    laptop = tmp_path / "laptop"
    result = sotto(
        "device",
        "link",
        "--server",
        relay.url,
        "--name",
        "laptop",
        "--no-qr",
        "--wait",
        "30",
        "--profile",
        str(laptop),
    )
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    assert "sotto device add 'sotto://link#" in shown
    assert "Linked: device 2 of Alice's account, 0 contacts" in shown
    assert (laptop / STORE_FILE).exists()
    listed = flat(sotto("device", "list", "--profile", str(laptop)).output)
    assert "2 laptop" in listed and "this device" in listed and "1 first device" in listed

    again = sotto("device", "link", "--server", relay.url, "--name", "x", "--profile", str(laptop))
    assert again.exit_code != 0 and "already a profile" in flat(again.output)
