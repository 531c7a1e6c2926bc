"""A contact's trust through the SDK: verified, unverified again, and the lasting "safety number
changed" flag that a message under another identity key sets (sotto.client.flows.trust)."""

from __future__ import annotations

import dataclasses

import pytest

from sotto.client import Trust
from sotto.client import events as ev
from sotto.client.flows.context import issue_certificate
from sotto.client.sdk import Client
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import UnknownContactError
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, seal_v1
from sotto.wire.padding import pad
from tests.client.fake_relay import FakeNetwork
from tests.client.test_sdk import SurvivingStore, client, connect, of, run, settle, texts


async def impostor_writes(alice: Client, bob: Client, seed: int = 1) -> None:
    """A message into the mailbox Bob gave Alice, naming Alice but under another identity key."""
    bob_id = alice.contact("Bob").contact_id
    theirs = alice.engine.read(lambda tx: tx.their_mailboxes.get(bob_id))
    assert theirs is not None
    rng = seeded_rng(seed)
    impostor = KeyPair.generate(rng)
    certificate = issue_certificate(
        dataclasses.replace(alice.engine.account, identity=impostor), alice.engine.now_ms(), rng
    )
    usmc = UnidentifiedSenderMessageContent.new(CiphertextMessageType.WHISPER, certificate, b"\x33" * 60)
    payload = pad(seal_v1(impostor, bob.engine.account.identity.public, usmc, rng))
    relay = alice.engine.relay()
    duplicate = await relay.send(theirs.mailbox_id, theirs.delivery_token, rng(16), payload)
    assert not duplicate


def test_a_contact_is_verified_then_unverified_again() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            assert alice.trust("Bob") == Trust(verified=False, changed_ms=None)
            assert await alice.verify("Bob", bob.safety_number("Alice").qr_text)
            assert alice.trust("Bob").verified and alice.is_verified("Bob")
            assert await alice.unverify("Bob") == Trust(verified=False, changed_ms=None)
            assert not alice.is_verified("Bob")
            await alice.unverify("Bob")  # twice is fine
            with pytest.raises(UnknownContactError):
                await alice.unverify("Nobody")

    run(main)


def test_a_changed_safety_number_stays_flagged_until_verified_or_acknowledged() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            assert await bob.verify("Alice", alice.safety_number("Bob").qr_text)
            await impostor_writes(alice, bob)
            seen = await settle(bob)
            assert [e.contact.name for e in of(ev.IdentityChanged, seen[bob])] == ["Alice"]
            flagged = bob.trust("Alice")
            assert flagged.safety_number_changed and flagged.changed_ms is not None
            assert flagged.verified  # the key we trust is still the one compared
            assert [t.safety_number_changed for t in bob.trusts(bob.contacts())] == [True]

            # Sending is not held by the flag; it goes on under the trusted key, both ways.
            await bob.send_text("Alice", "still you?")
            await alice.send_text("Bob", "yes")
            seen = await settle(bob, alice, bob)
            assert texts(seen[alice]) == ["still you?"] and texts(seen[bob]) == ["yes"]
            assert bob.trust("Alice").safety_number_changed  # only a verify or an acknowledgement clears it

            # Unverifying keeps the flag; a matching code clears both.
            await bob.unverify("Alice")
            assert bob.trust("Alice") == Trust(verified=False, changed_ms=flagged.changed_ms)
            assert not await bob.verify("Alice", bob.safety_number("Alice").qr_text)  # our own code
            assert bob.trust("Alice").safety_number_changed
            assert await bob.verify("Alice", alice.safety_number("Bob").qr_text)
            assert bob.trust("Alice") == Trust(verified=True, changed_ms=None)

            # Flagged again, then acknowledged without verifying: verified as it was.
            await bob.unverify("Alice")
            await impostor_writes(alice, bob, seed=2)
            await settle(bob)
            assert bob.trust("Alice").safety_number_changed
            assert await bob.acknowledge_safety_number_change("Alice")
            assert not await bob.acknowledge_safety_number_change("Alice")
            assert bob.trust("Alice") == Trust(verified=False, changed_ms=None)

    run(main)


def test_the_flag_is_kept_in_the_store_across_a_restart() -> None:
    async def main() -> None:
        net = FakeNetwork()
        store = SurvivingStore()
        alice, bob = await client(net, "Alice"), await client(net, "Bob", store)
        async with alice:
            async with bob:
                await connect(alice, bob)
                await impostor_writes(alice, bob)
                await settle(bob)
                changed = bob.trust("Alice").changed_ms
                assert changed is not None
            again = await Client.attach(store, network=net)
            async with again:
                assert again.trust("Alice").changed_ms == changed

    run(main)
