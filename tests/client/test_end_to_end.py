"""Real clients against the real relay: uvicorn on 127.0.0.1 in a thread, SQLite on both sides.

Everything goes through HTTP and the delivery WebSocket exactly as in production; the clients
keep their state in encrypted SQLite stores (a fast Argon2 setting, for test speed only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from sotto.client import content as c
from sotto.client import events as ev
from sotto.client.flows.context import address_for
from sotto.client.flows.sending import seal_to_contact
from sotto.client.invite import InviteLink
from sotto.client.sdk import Client
from sotto.client.transport import DrainConnection, HttpNetwork, HttpRelay, Relay
from sotto.crypto.keys import KeyPair
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import system_rng
from sotto.errors import InviteError, RelayUnavailableError, StoreLockedError, WrongPassphraseError
from sotto.wire.padding import pad
from tests.client.running_relay import free_port, running_relay

T = TypeVar("T")
PASSPHRASE = "correct horse battery staple"


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 90))


async def new_client(server_url: str, directory: Path, name: str) -> Client:
    return await Client.create(
        directory / name, server_url, PASSPHRASE, name, kdf=Argon2Params.TESTING, receipt_delay=0.1
    )


async def collect(
    clients: list[Client], until: Callable[[dict[Client, list[ev.Event]]], bool]
) -> dict[Client, list[ev.Event]]:
    seen: dict[Client, list[ev.Event]] = {c: [] for c in clients}
    for _ in range(60):
        for client in clients:
            seen[client].extend(await client.sync(timeout=3, idle=0.1))
        if until(seen):
            return seen
    raise AssertionError("events did not arrive")


def texts(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.MessageReceived | ev.GroupMessageReceived)]


async def befriend(a: Client, b: Client) -> None:
    invite = await a.create_invite()
    await b.accept_invite(invite.link, a.display_name)
    await collect([a, b], lambda _: b.is_ready(a.display_name) and any(a.is_ready(x) for x in a.contacts()))


def test_three_people_one_to_one_group_receipts_typing_and_safety_numbers(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob, carol = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            await befriend(bob, carol)

            sent = await alice.send_text("Bob", "Lunch at 12:30?")
            await bob.send_text("Alice", "Yes!")
            await carol.send_typing("Bob")
            seen = await collect(
                [alice, bob, carol],
                lambda s: (
                    "Lunch at 12:30?" in texts(s[bob])
                    and "Yes!" in texts(s[alice])
                    and any(isinstance(e, ev.DeliveryReceiptReceived) for e in s[alice])
                    and any(isinstance(e, ev.TypingChanged) for e in s[bob])
                ),
            )
            receipts = [e for e in seen[alice] if isinstance(e, ev.DeliveryReceiptReceived)]
            assert receipts[0].message_ids == (sent,) and receipts[0].contact.name == "Bob"

            await bob.mark_read("Alice")
            await collect(
                [alice, bob], lambda s: any(isinstance(e, ev.ReadReceiptReceived) for e in s[alice])
            )

            group = await alice.create_group("Lunch", ["Bob", "Carol"])
            await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
            await alice.send_group_text(group, "Table for three")
            await bob.send_group_text("Lunch", "I'll bring dessert")
            await carol.send_group_text("Lunch", "On my way")
            seen = await collect(
                [alice, bob, carol],
                lambda s: len(texts(s[alice])) >= 2 and len(texts(s[bob])) >= 2 and len(texts(s[carol])) >= 2,
            )
            assert sorted(texts(seen[alice])) == ["I'll bring dessert", "On my way"]
            assert sorted(texts(seen[carol])) == ["I'll bring dessert", "Table for three"]

            for x, y in ((alice, bob), (alice, carol), (bob, carol)):
                ours, theirs = x.safety_number(y.display_name), y.safety_number(x.display_name)
                assert ours.displayable == theirs.displayable
                assert await x.verify(y.display_name, theirs.qr_text)

            export = await alice.export()
            # her mailboxes for Bob and Carol, and the two used invites' ones, which the relay
            # holds until a chore deletes them
            assert export["account"] and len(export["mailboxes"]) == 4
            assert not [e for cl in seen.values() for e in cl if isinstance(e, ev.EnvelopeRejected)]

    run(main)


def test_offline_recipient_reads_later_from_a_reopened_store(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob = (
            await new_client(server_url, tmp_path, "Alice"),
            await new_client(server_url, tmp_path, "Bob"),
        )
        async with alice:
            async with bob:
                await befriend(alice, bob)
            for i in range(20):
                await alice.send_text("Bob", f"while you were away {i}")
            assert await alice.flush() == 0
            with pytest.raises(InviteError):  # a link to nowhere is refused cleanly
                await alice.accept_invite(InviteLink(server_url, bytes(16), bytes(32)).encode(), "x")
        bob2 = await Client.open(tmp_path / "Bob", PASSPHRASE, receipt_delay=0.1)
        async with bob2:
            seen = await collect([bob2], lambda s: len(texts(s[bob2])) >= 20)
            assert texts(seen[bob2]) == [f"while you were away {i}" for i in range(20)]
            again = await bob2.sync(timeout=2, idle=0.2)
            assert not texts(again)  # acknowledged: nothing comes twice

    run(main)


def test_bad_envelopes_are_dropped_with_typed_events_and_the_listener_survives(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = (
            await new_client(server_url, tmp_path, "Alice"),
            await new_client(server_url, tmp_path, "Bob"),
        )
        mallory = await new_client(server_url, tmp_path, "Mallory")
        async with alice, bob, mallory:
            await befriend(alice, bob)
            await befriend(mallory, bob)
            relay = alice.engine.relay()
            # Where Alice sends to Bob: Alice's copy of Bob's mailbox and token.
            bob_id = alice.contact("Bob").contact_id
            theirs = alice.engine.read(lambda tx: tx.their_mailboxes.get(bob_id))
            assert theirs is not None
            mailbox, token = theirs.mailbox_id, theirs.delivery_token

            await relay.send(mailbox, token, system_rng(16), pad(b"garbage" * 10))  # not sealed
            await relay.send(mailbox, token, system_rng(16), bytes(512))  # not even padded
            # A real message from Alice, tampered in flight.
            genuine = alice.engine.read(lambda tx: _sealed_text(alice, tx, "tampered"))
            tampered = bytearray(genuine)
            tampered[40] ^= 1
            await relay.send(mailbox, token, system_rng(16), bytes(tampered))
            # Mallory (Bob's contact) writes into the mailbox Bob gave Alice: wrong sender.
            forged = mallory.engine.read(lambda tx: _sealed_text(mallory, tx, "I am Alice"))
            await relay.send(mailbox, token, system_rng(16), forged)
            # A self-issued certificate naming Alice but made with another identity key.
            impostor = KeyPair.generate(system_rng)
            await relay.send(mailbox, token, system_rng(16), _impostor_payload(alice, bob, impostor))
            await alice.send_text("Bob", "still fine")

            seen = await collect([bob], lambda s: "still fine" in texts(s[bob]))
            rejected = [e for e in seen[bob] if isinstance(e, ev.EnvelopeRejected)]
            reasons = [e.reason.value for e in rejected]
            assert reasons == ["unsealable", "malformed", "unsealable", "wrong_sender", "untrusted_identity"]
            changed = [e for e in seen[bob] if isinstance(e, ev.IdentityChanged)]
            assert [e.contact.name for e in changed] == ["Alice"]
            assert texts(seen[bob]) == ["still fine"]
            # Rejected envelopes were acknowledged: nothing is redelivered.
            assert not [e for e in await bob.sync(timeout=2, idle=0.2) if isinstance(e, ev.EnvelopeRejected)]

    run(main)


def _sealed_text(client: Client, tx: object, text: str) -> bytes:
    """A genuine sealed message from ``client`` to its contact Bob (not queued anywhere)."""
    ctx = client.engine.context(tx)  # type: ignore[arg-type]
    bob = ctx.tx.contacts.by_name("Bob")
    assert bob is not None
    return seal_to_contact(ctx, bob, c.Text(system_rng(16), 0, text))


def _impostor_payload(alice: Client, bob: Client, impostor: KeyPair) -> bytes:
    from dataclasses import replace

    from sotto.client.flows.context import issue_certificate
    from sotto.protocol.messages import CiphertextMessageType
    from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, seal_v1

    fake_account = replace(alice.engine.account, identity=impostor)
    certificate = issue_certificate(fake_account, int(time.time() * 1000), system_rng)
    assert certificate.sender_uuid == address_for(alice.account_id).name
    bob_identity = bob.engine.account.identity.public
    usmc = UnidentifiedSenderMessageContent.new(CiphertextMessageType.WHISPER, certificate, b"\x33" * 60)
    return pad(seal_v1(impostor, bob_identity, usmc, system_rng))


def test_clients_ride_out_a_relay_restart(tmp_path: Path) -> None:
    """The relay stops between send and receive; queued sends and the listener recover."""
    port, relay_dir = free_port(), tmp_path / "relay"

    async def main() -> None:
        with running_relay(relay_dir, port) as url:
            alice, bob = await new_client(url, tmp_path, "Alice"), await new_client(url, tmp_path, "Bob")
            await befriend(alice, bob)
            got: list[str] = []

            async def listen() -> None:
                async for event in bob.listen():
                    if isinstance(event, ev.MessageReceived):
                        got.append(event.text)

            listener = asyncio.create_task(listen())
            await alice.send_text("Bob", "before")
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.05)
        # The relay is down: sends wait in the outbox, the listener keeps trying.
        for i in range(10):
            await alice.send_text("Bob", f"during {i}")
        assert alice.pending_outbox() == 10
        with running_relay(relay_dir, port):
            for _ in range(300):
                if len(got) == 11:
                    break
                await asyncio.sleep(0.05)
            listener.cancel()
            assert got == ["before", *(f"during {i}" for i in range(10))]
            assert alice.pending_outbox() == 0
            await alice.close()
            await bob.close()

    run(main)


class LossyNetwork:
    """The real network with two faults: the connection dies instead of sending the next
    ``lose_acks`` acks, and every send is made twice (an uncertain send retried)."""

    def __init__(self) -> None:
        self.inner = HttpNetwork()
        self.lose_acks = 0
        self.duplicates = 0

    def relay(self, url: str) -> Relay:
        return cast(Relay, _LossyRelay(self.inner.relay(url), self))

    async def aclose(self) -> None:
        await self.inner.aclose()


class _LossyRelay:
    def __init__(self, inner: HttpRelay, network: LossyNetwork) -> None:
        self._inner = inner
        self._network = network

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def connect(self) -> DrainConnection:
        return cast(DrainConnection, _LossyDrain(await self._inner.connect(), self._network))

    async def send(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        first = await self._inner.send(mailbox_id, token, message_id, payload)
        self._network.duplicates += await self._inner.send(mailbox_id, token, message_id, payload)
        return first


class _LossyDrain:
    def __init__(self, inner: DrainConnection, network: LossyNetwork) -> None:
        self._inner = inner
        self._network = network

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def ack(self, refs: Sequence[tuple[bytes, bytes]]) -> None:
        if refs and self._network.lose_acks > 0:
            self._network.lose_acks -= 1
            await self._inner.close()
            raise RelayUnavailableError("connection lost before the ack")
        await self._inner.ack(refs)


def test_lost_acks_and_resent_envelopes_are_not_duplicated(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice_net, bob_net = LossyNetwork(), LossyNetwork()
        alice, bob = [
            await Client.create(
                tmp_path / name, server_url, PASSPHRASE, name, kdf=Argon2Params.TESTING, network=net
            )
            for name, net in (("Alice", alice_net), ("Bob", bob_net))
        ]
        async with alice, bob:
            await befriend(alice, bob)
            sent_before = alice_net.duplicates
            bob_net.lose_acks = 3  # three envelopes are committed and never acknowledged
            for i in range(6):
                await alice.send_text("Bob", f"once {i}")
            seen = await collect([alice, bob], lambda s: len(texts(s[bob])) >= 6)
            seen[bob].extend(await bob.sync(timeout=2, idle=0.3))
            assert sorted(texts(seen[bob])) == sorted(f"once {i}" for i in range(6))
            assert bob_net.lose_acks == 0  # the faults happened
            assert alice_net.duplicates - sent_before >= 6  # every resend was a relay duplicate
            assert not [e for e in seen[bob] if isinstance(e, ev.EnvelopeRejected)]

    run(main)


def test_create_against_an_unreachable_relay_leaves_nothing_behind(tmp_path: Path) -> None:
    async def main() -> None:
        url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
        with pytest.raises(RelayUnavailableError):
            await Client.create(tmp_path / "x", url, PASSPHRASE, "X", kdf=Argon2Params.TESTING)
        assert list((tmp_path / "x").iterdir()) == []
        with pytest.raises(ValueError):
            await Client.create(tmp_path / "y", "ftp://nowhere", PASSPHRASE, "Y", kdf=Argon2Params.TESTING)

    run(main)


def test_a_store_opens_with_its_passphrase_only_and_only_once(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        with pytest.raises(StoreLockedError):
            await Client.open(tmp_path / "Alice", PASSPHRASE)
        account_id = alice.account_id
        await alice.close()
        with pytest.raises(WrongPassphraseError):
            await Client.open(tmp_path / "Alice", "wrong")
        async with await Client.open(tmp_path / "Alice", PASSPHRASE) as again:
            assert again.account_id == account_id and again.display_name == "Alice"

    run(main)
