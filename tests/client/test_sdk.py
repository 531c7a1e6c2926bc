"""The SDK end to end over the in-memory relay: the same flows and background tasks as with the
real server, without sockets (the real server runs in tests/client/test_end_to_end.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import pytest

from sotto.client import events as ev
from sotto.client.flows import receiving
from sotto.client.sdk import Client
from sotto.errors import InviteError, StoreError, UnknownContactError
from sotto.store.interfaces import Store, Transaction
from sotto.store.memory import MemoryStore
from sotto.store.model import Contact, Group, MessageState
from tests.client.fake_relay import FakeNetwork

URL = "http://relay.test"
T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 60))


class SurvivingStore:
    """A memory store that outlives its client (as a file on disk would): close() is a no-op."""

    def __init__(self) -> None:
        self._store = MemoryStore()

    def transaction(self) -> AbstractContextManager[Transaction]:
        return self._store.transaction()

    def close(self) -> None:
        return None


async def client(network: FakeNetwork, name: str, store: Store | None = None) -> Client:
    return await Client.register(store or MemoryStore(), URL, name, network=network, receipt_delay=0.05)


async def connect(a: Client, b: Client, b_calls_a: str | None = None, a_calls_b: str | None = None) -> None:
    """a invites b; both end up with each other as ready contacts."""
    invite = await a.create_invite()
    await b.accept_invite(invite.link, b_calls_a or a.display_name)
    for _ in range(50):
        await a.sync(timeout=1, idle=0.02)
        await b.sync(timeout=1, idle=0.02)
        if b.is_ready(b_calls_a or a.display_name) and a.contacts() and a.is_ready(a.contacts()[-1]):
            return
    raise AssertionError("handshake did not finish")


async def settle(*clients: Client, rounds: int = 3) -> dict[Client, list[ev.Event]]:
    seen: dict[Client, list[ev.Event]] = {c: [] for c in clients}
    for _ in range(rounds):
        for c in clients:
            seen[c].extend(await c.sync(timeout=2, idle=0.05))
    return seen


def texts(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.MessageReceived | ev.GroupMessageReceived)]


def of(kind: type[T], events: list[ev.Event]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def test_invite_then_texts_both_ways() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            assert [c.name for c in alice.contacts()] == ["Bob"]
            assert [c.name for c in bob.contacts()] == ["Alice"]
            await alice.send_text("Bob", "hi Bob")
            await bob.send_text("Alice", "hi Alice")
            seen = await settle(alice, bob)
            assert texts(seen[bob]) == ["hi Bob"]
            assert texts(seen[alice]) == ["hi Alice"]
            assert not of(ev.EnvelopeRejected, seen[alice] + seen[bob])
            # The invite is one-time: its mailbox and access token go at Alice's next chores
            # (the prekey refill first, then the housekeeping, then one deletion each).
            relay = net.relay(URL)
            for _ in range(4):
                await alice.engine.chore()
            assert alice.engine.chores_waiting == 0
            assert all(not a.access for a in relay.accounts.values())

    run(main)


def test_texts_written_before_the_inviter_answers_go_out_after() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            assert not bob.is_ready("Alice")
            first = await bob.send_text("Alice", "written early")
            assert bob.history("Alice")[-1].state is MessageState.QUEUED
            seen = await settle(alice, bob)
            assert texts(seen[alice]) == ["written early"]
            assert of(ev.ContactAdded, seen[alice])
            assert of(ev.ContactAccepted, seen[bob])
            assert any(isinstance(e, ev.MessageSent) and e.message_id == first for e in seen[bob])

    run(main)


def test_invite_is_one_time_and_own_invites_are_refused() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob, carol = [await client(net, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            invite = await alice.create_invite()
            with pytest.raises(InviteError):
                await alice.accept_invite(invite.link, "me")
            with pytest.raises(InviteError):
                await bob.accept_invite("sotto://invite?nonsense", "x")
            await bob.accept_invite(invite.link, "Alice")
            await settle(alice, bob)
            # The access token is revoked at one of Alice's next chores (meanwhile a second
            # request through the used invite is refused by Alice herself).
            for _ in range(4):
                await alice.engine.chore()
            with pytest.raises(InviteError):
                await carol.accept_invite(invite.link, "Alice")
            with pytest.raises(InviteError):
                await bob.accept_invite(invite.link, "Alice again")
            with pytest.raises(UnknownContactError):
                await alice.send_text("nobody", "x")

    run(main)


def test_group_of_three() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob, carol = [await client(net, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await connect(alice, bob)
            await connect(alice, carol)
            await connect(bob, carol)
            group = await alice.create_group("Team", ["Bob", "Carol"])
            await settle(alice, bob, carol)
            assert [g.name for g in bob.groups()] == ["Team"] and [g.name for g in carol.groups()] == ["Team"]
            await alice.send_group_text(group, "hello team")
            await bob.send_group_text("Team", "hi from Bob")
            await carol.send_group_text(group.group_id, "hi from Carol")
            seen = await settle(alice, bob, carol)
            assert sorted(texts(seen[alice])) == ["hi from Bob", "hi from Carol"]
            assert sorted(texts(seen[bob])) == ["hello team", "hi from Carol"]
            assert sorted(texts(seen[carol])) == ["hello team", "hi from Bob"]
            senders = {e.sender.name for e in of(ev.GroupMessageReceived, seen[carol])}
            assert senders == {"Alice", "Bob"}
            assert len(alice.history(group)) == 3

    run(main)


def test_added_member_reads_from_then_on() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob, carol = [await client(net, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await connect(alice, bob)
            await connect(alice, carol)
            group = await alice.create_group("Pair", ["Bob"])
            await alice.send_group_text(group, "before Carol")
            await settle(alice, bob, carol)
            assert await alice.add_to_group(group, "Carol")
            assert not await alice.add_to_group(group, "Carol")
            await alice.send_group_text(group, "after Carol")
            seen = await settle(alice, bob, carol)
            assert texts(seen[carol]) == ["after Carol"]
            assert texts(seen[bob]) == ["after Carol"]
            assert any(e.joined for e in of(ev.GroupUpdated, seen[carol]))

    run(main)


def test_offline_recipient_receives_later_and_relay_outage_is_retried() -> None:
    async def main() -> None:
        net = FakeNetwork()
        bob_store = SurvivingStore()
        alice, bob = await client(net, "Alice"), await client(net, "Bob", bob_store)
        await connect(alice, bob)
        await bob.close()  # Bob goes away; his store stays
        relay = net.relay(URL)
        relay.online = False
        ids = [await alice.send_text("Bob", f"m{i}") for i in range(5)]
        assert alice.pending_outbox() == 5
        relay.online = True
        assert await alice.flush() == 0
        # Five texts, and perhaps Bob's last ack lost when he closed: then it comes again.
        assert relay.pending() in (5, 6)
        bob2 = await Client.attach(bob_store, network=net, receipt_delay=0.05)
        async with alice, bob2:
            seen = await settle(bob2, alice)
            assert texts(seen[bob2]) == [f"m{i}" for i in range(5)]
            delivered = {m for e in of(ev.DeliveryReceiptReceived, seen[alice]) for m in e.message_ids}
            assert delivered == set(ids)
            assert relay.pending() == 0

    run(main)


def test_duplicates_and_dropped_connections_lose_and_repeat_nothing() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            relay = net.relay(URL)
            relay.push_twice = True
            await bob.start()
            got: list[str] = []

            async def listen() -> None:
                async for event in bob.listen():
                    if isinstance(event, ev.MessageReceived):
                        got.append(event.text)

            listener = asyncio.create_task(listen())
            for i in range(60):
                await alice.send_text("Bob", f"n{i}")
                if i % 15 == 7:
                    relay.drop_connections()
            for _ in range(200):
                if len(got) >= 60:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            listener.cancel()
            assert sorted(got) == sorted(f"n{i}" for i in range(60))
            assert len(got) == 60

    run(main)


def test_receipts_and_typing_arrive_end_to_end() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            first = await alice.send_text("Bob", "one")
            second = await alice.send_text("Bob", "two")
            await bob.send_typing("Alice", True)
            seen = await settle(bob, alice)
            delivered = of(ev.DeliveryReceiptReceived, seen[alice])
            assert {m for e in delivered for m in e.message_ids} == {first, second}
            assert len(delivered) == 1  # batched: one receipt message for both
            typing = of(ev.TypingChanged, seen[alice])
            assert typing and typing[0].started and typing[0].contact.name == "Bob"
            assert await bob.mark_read("Alice") == 2
            assert await bob.mark_read("Alice") == 0
            seen = await settle(alice, bob)
            read = of(ev.ReadReceiptReceived, seen[alice])
            assert {m for e in read for m in e.message_ids} == {first, second}
            assert [m.state for m in alice.history("Bob")] == [MessageState.READ, MessageState.READ]

    run(main)


def test_safety_numbers_match_and_verify() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob, carol = [await client(net, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await connect(alice, bob)
            await connect(alice, carol)
            at_alice, at_bob = alice.safety_number("Bob"), bob.safety_number("Alice")
            assert at_alice.displayable == at_bob.displayable
            assert len(at_alice.displayable.replace(" ", "")) == 60
            assert not alice.is_verified("Bob")
            assert await alice.verify("Bob", at_bob.qr_text)
            assert alice.is_verified("Bob")
            assert not await alice.verify("Carol", at_bob.qr_text)
            assert not alice.is_verified("Carol")

    run(main)


def test_mailbox_rotation_keeps_messages_flowing() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            relay = net.relay(URL)
            before = set(relay.mailboxes)
            await bob.send_text("Alice", "before rotation")  # queued for Alice's old mailbox
            assert await alice.rotate_mailboxes() == 1
            await bob.send_text("Alice", "racing the rotation")
            seen = await settle(bob, alice)
            await bob.send_text("Alice", "after rotation")
            seen2 = await settle(bob, alice)
            assert sorted(texts(seen[alice] + seen2[alice])) == [
                "after rotation",
                "before rotation",
                "racing the rotation",
            ]
            assert of(ev.ContactMailboxChanged, seen[bob])
            assert set(relay.mailboxes) - before  # a new mailbox exists
            export = await alice.export()
            # the new one, the retiring one, and the used invite's until a chore deletes it
            assert len(export["mailboxes"]) == 3

    run(main)


def test_concurrent_sends_and_receives_on_one_session() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            # Steps in worker threads, so sends and receives on the one session really interleave.
            alice.offload_transactions = bob.offload_transactions = True
            await alice.start()
            await bob.start()
            sends = [alice.send_text("Bob", f"a{i}") for i in range(100)]
            sends += [bob.send_text("Alice", f"b{i}") for i in range(100)]
            await asyncio.gather(*sends)
            seen = await settle(alice, bob, rounds=4)
            assert sorted(texts(seen[bob])) == sorted(f"a{i}" for i in range(100))
            assert sorted(texts(seen[alice])) == sorted(f"b{i}" for i in range(100))
            assert not of(ev.EnvelopeRejected, seen[alice] + seen[bob])

    run(main)


class FlakyStore(SurvivingStore):
    """Fails the next ``failures`` transactions (a full disk, say), then works again."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def transaction(self) -> AbstractContextManager[Transaction]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("disk full")
        return self._store.transaction()


def test_a_transient_store_failure_is_not_acknowledged_and_the_envelope_comes_back() -> None:
    async def main() -> None:
        net = FakeNetwork()
        flaky = FlakyStore()
        alice, bob = await client(net, "Alice"), await client(net, "Bob", flaky)
        async with alice, bob:
            await connect(alice, bob)
            relay = net.relay(URL)
            flaky.failures = 2  # Bob's next transactions fail: the envelope stays unacknowledged
            await alice.send_text("Bob", "survives a full disk")
            seen = await settle(bob, rounds=4)
            assert texts(seen[bob]) == ["survives a full disk"]
            assert not of(ev.EnvelopeRejected, seen[bob])
            assert relay.pending() == 0

    run(main)


def test_an_envelope_that_always_fails_is_dropped_after_a_few_attempts() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            relay = net.relay(URL)

            def broken(*args: object) -> object:
                raise RuntimeError("a bug")

            original = receiving.receive
            receiving.receive = broken  # type: ignore[assignment]
            try:
                await alice.send_text("Bob", "poison")
                seen = await settle(bob, rounds=6)
            finally:
                receiving.receive = original
            rejected = of(ev.EnvelopeRejected, seen[bob])
            assert [r.detail for r in rejected] == ["RuntimeError"]
            assert relay.pending() == 0
            await alice.send_text("Bob", "after the poison")
            # Bob's receipt for it shows Alice that "poison" never arrived: she may send it again.
            assert texts((await settle(bob))[bob])[:1] == ["after the poison"]

    run(main)


class CountedOutbox:
    """A transaction's outbox that counts reads of the whole queue (one per pass of the outbox worker)."""

    def __init__(self, outbox: Any, store: OutboxPasses) -> None:
        self._outbox = outbox
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._outbox, name)

    def all(self) -> Any:
        self._store.passes += 1
        return self._outbox.all()


class CountedTransaction:
    def __init__(self, tx: Transaction, store: OutboxPasses) -> None:
        self._tx = tx
        self.outbox = CountedOutbox(tx.outbox, store)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class OutboxPasses:
    """A memory store whose transactions count the passes over the outbox."""

    def __init__(self) -> None:
        self._store = MemoryStore()
        self.passes = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._store.transaction() as tx:
            yield CountedTransaction(tx, self)

    def close(self) -> None:
        self._store.close()


def test_the_outbox_backs_off_while_the_relay_is_down() -> None:
    async def main() -> None:
        net = FakeNetwork()
        store = OutboxPasses()
        alice, bob = await client(net, "Alice", store), await client(net, "Bob")
        async with alice, bob:
            await connect(alice, bob)
            await alice.start()
            relay = net.relay(URL)
            relay.online = False
            before = relay.send_attempts
            passes = store.passes
            for i in range(3):
                await alice.send_text("Bob", f"q{i}")
            await asyncio.sleep(1.5)
            # Exponential backoff from 0.5 s, head of line only: a handful of attempts and of
            # passes over the outbox, no spinning on the items waiting behind the first.
            assert 1 <= relay.send_attempts - before <= 6
            assert 1 <= store.passes - passes <= 12, store.passes - passes
            relay.online = True
            assert await alice.flush() == 0
            assert texts((await settle(bob))[bob]) == ["q0", "q1", "q2"]

    run(main)


def test_a_contact_request_to_a_vanished_invite_fails_visibly() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob = await client(net, "Alice"), await client(net, "Bob")
        async with alice, bob:
            invite = await alice.create_invite()
            relay = net.relay(URL)
            relay.mailboxes.clear()  # the invite's mailbox is gone (expired) before Bob writes
            await bob.accept_invite(invite.link, "Alice")
            bob_outbox = bob.pending_outbox()
            for _ in range(10):
                await bob.flush()
            events = await bob.sync(timeout=1, idle=0.05)
            failed = of(ev.SendFailed, events)
            assert bob_outbox == 1 and bob.pending_outbox() == 0
            assert [f.reason for f in failed] == ["not_found"]
            assert not bob.is_ready("Alice")

    run(main)


def test_search_everywhere_finds_matches_in_every_conversation_newest_first() -> None:
    async def main() -> None:
        net = FakeNetwork()
        alice, bob, carol = [await client(net, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await connect(alice, bob)
            await connect(alice, carol)
            await bob.send_text("Alice", "lunch at noon?")
            await settle(bob, alice)
            await carol.send_text("Alice", "no lunch for me today")
            await settle(carol, alice)
            await alice.send_text("Bob", "the launch is at noon")
            group = await alice.create_group("Team", ["Bob", "Carol"])
            await alice.send_group_text(group, "Lunch together?")
            found = alice.search_everywhere("lunch")
            assert [m.text for m in found] == ["Lunch together?", "no lunch for me today", "lunch at noon?"]
            assert found[0].conversation.group_id == group.group_id
            assert found[1].conversation.contact_id == alice.contact("Carol").contact_id
            assert [m.text for m in alice.search_everywhere("lunch", limit=2)] == [
                "Lunch together?",
                "no lunch for me today",
            ]
            # Whatever the order the conversations are given in, the last stored are found.
            orders: list[list[Contact | Group]] = [
                [alice.contact("Bob"), alice.contact("Carol"), group],
                [group, alice.contact("Carol")],
            ]
            for order in orders:
                shown = alice.search_everywhere("lunch", conversations=order[::-1], limit=2)
                assert [m.text for m in shown] == ["Lunch together?", "no lunch for me today"]
            only_bob = alice.search_everywhere("noon", conversations=[alice.contact("Bob")])
            assert [m.text for m in only_bob] == ["the launch is at noon", "lunch at noon?"]
            assert alice.search_everywhere("dinner") == []

    run(main)
