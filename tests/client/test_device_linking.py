"""Linking a device through the real relay: the new device ends with the account's identity key,
its contacts (trusted keys, verification, blocks and mailboxes) and a device list with both
devices, and the relay holds two unrelated logins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from sotto.client import events as ev
from sotto.client import linking
from sotto.client.device_linking import post_provisioning
from sotto.client.flows import devices as device_flow
from sotto.client.flows.sending import NoSessionError
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.errors import ClientError, InviteError, LinkError
from sotto.wire import b64
from tests.client.test_end_to_end import PASSPHRASE, befriend, new_client

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 90))


def test_a_linked_device_has_the_account_key_contacts_and_both_devices(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob, carol = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            assert await alice.verify("Bob", bob.safety_number("Alice").qr_text)
            await alice.block_contact("Carol")

            pending = await Client.begin_link(
                tmp_path / "laptop", server_url, PASSPHRASE, "Alice's laptop", kdf=Argon2Params.TESTING
            )
            assert pending.link.startswith("sotto://link#") and "secret" in repr(pending)
            waiting = asyncio.ensure_future(pending.complete(timeout=30))
            added = await alice.add_device(pending.link)
            laptop = await waiting
            async with laptop:
                assert added.device_id == 2 and added.name == "Alice's laptop"
                assert laptop.device_id == 2 and laptop.account_id == alice.account_id
                assert laptop.display_name == "Alice"
                ours = laptop.engine.account.identity.public
                assert ours == alice.engine.account.identity.public
                assert [(d.device_id, d.name) for d in laptop.devices()] == [
                    (1, device_flow.FIRST_DEVICE_NAME),
                    (2, "Alice's laptop"),
                ]
                assert [d.key for d in laptop.devices()] == [d.key for d in alice.devices()]

                names = {c.name: c for c in laptop.contacts()}
                assert set(names) == {"Bob", "Carol"} and names["Carol"].blocked
                assert names["Bob"].account_id == bob.account_id
                assert laptop.is_ready("Bob") and laptop.is_ready("Carol")
                assert laptop.trust("Bob").verified and not laptop.trust("Carol").verified
                # the same safety numbers as on the first device
                assert laptop.safety_number("Bob").displayable == alice.safety_number("Bob").displayable

                # each device logs in to the relay as its own account: nothing joins the two
                assert laptop.engine.credentials().account_id != alice.engine.credentials().account_id
                # ...and in a dump of what the relay holds for each login, neither names the
                # other's relay account, and the laptop's holds the account's identity key nowhere
                laptop_dump = json.dumps(await laptop.export())
                alice_dump = json.dumps(await alice.export())
                assert b64.encode(laptop.engine.credentials().account_id) in laptop_dump
                assert b64.encode(alice.account_id) not in laptop_dump
                assert b64.encode(ours.to_bytes()) in alice_dump
                assert b64.encode(ours.to_bytes()) not in laptop_dump
                assert b64.encode(laptop.engine.credentials().account_id) not in alice_dump

                # it cannot write yet: asking Bob for a session would hand him the laptop's
                # prekeys as those of Alice's first device
                with pytest.raises(NoSessionError, match="linked"):
                    await laptop.send_text("Bob", "hello from the laptop")
                await bob.sync(timeout=1, idle=0.2)
                assert laptop.engine.read(lambda tx: tx.outbox.all()) == []

                with pytest.raises(InviteError, match="linked device"):
                    await laptop.create_invite()
                invite = await carol.create_invite()
                with pytest.raises(InviteError, match="linked device"):
                    await laptop.accept_invite(invite.link, "Carol again")

                # it runs: its prekeys are on the relay under its own login, nothing is refused
                assert not [
                    e for e in await laptop.sync(timeout=2, idle=0.2) if isinstance(e, ev.EnvelopeRejected)
                ]
                counts = await laptop.engine.relay().key_counts(laptop.engine.credentials())
                assert counts.one_time > 0 and counts.kyber > 0

                # the same link again: the device is on the list already
                with pytest.raises(ClientError, match="already"):
                    await alice.add_device(pending.link)
                assert len(alice.devices()) == 2

            # opened again, it is still device 2 under its own relay login
            again = await Client.open(tmp_path / "laptop", PASSPHRASE)
            async with again:
                assert again.device_id == 2 and again.account_id == alice.account_id
                assert again.engine.credentials().account_id not in (alice.account_id, None)
                assert [d.device_id for d in again.devices()] == [1, 2]

    run(main)


def test_a_third_device_gets_the_next_id_and_the_list_chains(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        async with alice:
            first = await Client.begin_link(
                tmp_path / "laptop", server_url, PASSPHRASE, "laptop", kdf=Argon2Params.TESTING
            )
            waiting = asyncio.ensure_future(first.complete(timeout=30))
            await alice.add_device(first.link)
            async with await waiting as laptop:
                # any device links: the laptop adds a desktop
                second = await Client.begin_link(
                    tmp_path / "desk", server_url, PASSPHRASE, "desk", kdf=Argon2Params.TESTING
                )
                waiting = asyncio.ensure_future(second.complete(timeout=30))
                added = await laptop.add_device(second.link)
                async with await waiting as desk:
                    assert added.device_id == 3
                    assert [d.device_id for d in desk.devices()] == [1, 2, 3]
                    assert desk.engine.account.identity.public == alice.engine.account.identity.public
                    held = desk.engine.read(device_flow.stored_list)
                    assert held is not None and held.version == 3
                    held.verify(alice.engine.account.identity.public)
                    # the first device has not heard of the desktop yet (device-list sync is to come)
                    assert [d.device_id for d in alice.devices()] == [1, 2]

    run(main)


def test_a_wrong_answer_is_refused_and_no_store_is_left(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        async with alice:
            pending = await Client.begin_link(
                tmp_path / "new", server_url, PASSPHRASE, "new", kdf=Argon2Params.TESTING
            )
            request = linking.parse_link(pending.link)
            # someone who knows the mailbox but not the link's keys: a link with another secret
            # and the same mailbox cannot be made, so post a message sealed to another link
            other = linking.DeviceLink(
                request.server_url, request.secret, request.device_key, request.ephemeral, "x"
            )
            offer = alice.engine.read(
                lambda tx: device_flow.provisioning_for(alice.engine.context(tx), request)
            )
            await post_provisioning(alice.engine.network, other, offer.provisioning, alice.engine.rng)
            with pytest.raises(LinkError, match="does not check"):
                await pending.complete(timeout=10)
            assert not (tmp_path / "new" / "sotto.db").exists()
            assert alice.devices()[0].device_id == 1 and len(alice.devices()) == 1

            with pytest.raises(LinkError):
                await alice.add_device("sotto://invite?s=x")

            idle = await Client.begin_link(
                tmp_path / "idle", server_url, PASSPHRASE, "idle", kdf=Argon2Params.TESTING
            )
            with pytest.raises(LinkError, match="in time"):
                await idle.complete(timeout=0.2)

    run(main)


def test_begin_link_refuses_a_directory_with_a_store(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        await alice.close()
        with pytest.raises(ClientError, match="already holds"):
            await Client.begin_link(tmp_path / "Alice", server_url, PASSPHRASE, "x", kdf=Argon2Params.TESTING)

    run(main)
