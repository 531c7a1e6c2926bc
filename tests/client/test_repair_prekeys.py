"""Prekeys after a restore, on the real relay: a store put back to an older copy reuses prekey ids
that a later copy already uploaded with other keys; the relay refuses that (409), and the client
issues its keys again under fresh ids, so new contacts can still start sessions with it."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sotto.client import events as ev
from sotto.client.flows.repair import PREKEY_ID_JUMP
from sotto.client.sdk import STORE_FILE, Client
from sotto.crypto.passphrase import Argon2Params
from sotto.store.model import PreKeyKind

PASSPHRASE = "restore passphrase"
WEEK_MS = 7 * 86_400_000


@dataclass
class Clock:
    offset_ms: int = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def copy_store(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for leftover in target.glob(f"{STORE_FILE}*"):
        leftover.unlink()
    for path in source.glob(f"{STORE_FILE}*"):
        shutil.copy2(path, target / path.name)


async def until(clients: list[Client], done: Callable[[], bool], timeout: float = 30.0) -> list[ev.Event]:
    """Sync the clients in turn until ``done()`` holds; the events seen (wall-clock bound only)."""
    seen: list[ev.Event] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        if loop.time() > deadline:
            raise AssertionError("did not happen in time")
        for client in clients:
            seen.extend(await client.sync(timeout=2, idle=0.1))
    return seen


def test_a_restored_store_issues_its_prekeys_again_and_new_contacts_still_reach_it(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        clock = Clock()
        home = tmp_path / "alice"
        alice = await Client.create(
            home, server_url, PASSPHRASE, "Alice", kdf=Argon2Params.TESTING, clock=clock
        )
        await alice.sync(timeout=3, idle=0.1)
        await alice.close()
        copy_store(home, tmp_path / "backup")

        # A week later the live copy rotates its signed and last-resort prekeys (and uploads them).
        clock.offset_ms += WEEK_MS + 60_000
        alice = await Client.open(home, PASSPHRASE, clock=clock)
        await alice.sync(timeout=3, idle=0.1)
        await alice.engine.chore()  # the housekeeping, at a random instant of its own in the app
        rotated = alice.engine.read(lambda tx: tx.prekeys.latest_signed())
        assert rotated is not None and rotated.id == 2
        await alice.close()

        # The old copy comes back: it rotates too, under the same ids with other keys.
        copy_store(tmp_path / "backup", home)
        alice = await Client.open(home, PASSPHRASE, clock=clock)
        bob = await Client.create(
            tmp_path / "bob", server_url, PASSPHRASE, "Bob", kdf=Argon2Params.TESTING, clock=clock
        )
        async with alice, bob:
            await alice.sync(timeout=3, idle=0.1)
            await alice.engine.chore()

            def settled() -> bool:
                return bool(alice.engine.read(lambda tx: tx.prekeys.pending_upload().is_empty()))

            await until([alice], settled)
            signed = alice.engine.read(lambda tx: tx.prekeys.latest_signed())
            assert signed is not None and signed.id > PREKEY_ID_JUMP
            assert alice.engine.read(lambda tx: tx.prekeys.ids(PreKeyKind.SIGNED))[0] == 1

            # Someone new accepts an invite: the bundle the relay hands out is one Alice holds.
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            seen = await until([bob, alice], lambda: _ready(alice, bob))
            assert not [e for e in seen if isinstance(e, ev.EnvelopeRejected)]
            await bob.send_text("Alice", "hello after the restore")
            await until([bob, alice], lambda: _got(alice))

    asyncio.run(asyncio.wait_for(main(), 120))


def _ready(alice: Client, bob: Client) -> bool:
    names = [c.name for c in alice.contacts()]
    return "Bob" in names and alice.is_ready("Bob") and bob.is_ready("Alice")


def _got(alice: Client) -> bool:
    return any(m.text == "hello after the restore" for m in alice.history("Bob"))
