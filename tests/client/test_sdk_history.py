"""``Client.history(before=…)``: paging back through a conversation, as the chat app does."""

from __future__ import annotations

import asyncio

from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork
from sotto.crypto.random import seeded_rng
from sotto.store.memory import MemoryStore
from sotto.store.model import Conversation
from tests.tui.seed import NOW_MS, Seeder


def test_history_pages_back_from_a_message_oldest_first() -> None:
    store = MemoryStore()
    seeder = Seeder(store, seeded_rng(5))
    seeder.account()
    with store.transaction() as tx:
        bob = seeder.contact(tx, "Bob")
        where = Conversation.direct(bob.contact_id)
        for n in range(25):
            seeder.message(tx, where, bob if n % 2 else None, f"m{n}", NOW_MS + n)

    async def main() -> None:
        async with await Client.attach(store, network=HttpNetwork()) as client:
            newest = client.history("Bob", limit=10)
            assert [m.text for m in newest] == [f"m{n}" for n in range(15, 25)]
            older = client.history("Bob", limit=10, before=newest[0].row_id)
            assert [m.text for m in older] == [f"m{n}" for n in range(5, 15)]
            oldest = client.history("Bob", limit=10, before=older[0].row_id)
            assert [m.text for m in oldest] == [f"m{n}" for n in range(5)]
            assert client.history("Bob", limit=10, before=oldest[0].row_id) == []

    asyncio.run(asyncio.wait_for(main(), 30))


def test_latest_messages_and_ready_contacts_read_many_conversations_at_once() -> None:
    store = MemoryStore()
    seeder = Seeder(store, seeded_rng(6))
    seeder.account()
    with store.transaction() as tx:
        bob = seeder.contact(tx, "Bob")
        carol = seeder.contact(tx, "Carol")
        dan = seeder.contact(tx, "Dan")
        tx.their_mailboxes.delete(dan.contact_id)  # Dan has not answered yet
        for n in range(5):
            seeder.message(tx, Conversation.direct(bob.contact_id), bob, f"b{n}", NOW_MS + n)
        seeder.message(tx, Conversation.direct(carol.contact_id), None, "c0", NOW_MS)

    async def main() -> None:
        async with await Client.attach(store, network=HttpNetwork()) as client:
            people = client.contacts()
            latest = client.latest_messages(people, limit=2)
            assert [[m.text for m in messages] for messages in latest] == [["b3", "b4"], ["c0"], []]
            assert client.latest_messages([], limit=2) == []
            assert client.ready_contacts(people) == [True, True, False]
            assert [client.is_ready(c) for c in people] == [True, True, False]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_history_pages_forward_and_search_finds_word_beginnings_either_way() -> None:
    store = MemoryStore()
    seeder = Seeder(store, seeded_rng(7))
    seeder.account()
    with store.transaction() as tx:
        bob = seeder.contact(tx, "Bob")
        where = Conversation.direct(bob.contact_id)
        for n in range(25):
            seeder.message(
                tx, where, bob if n % 2 else None, f"m{n} {'lunch' if n % 5 == 0 else 'tea'}", NOW_MS + n
            )

    async def main() -> None:
        async with await Client.attach(store, network=HttpNetwork()) as client:
            first = client.history("Bob", limit=3, before=client.history("Bob", limit=25)[0].row_id + 1)
            assert [m.text for m in first] == ["m0 lunch"]
            after = client.history("Bob", limit=3, after=first[0].row_id)
            assert [m.text for m in after] == ["m1 tea", "m2 tea", "m3 tea"]
            found = client.search("Bob", "LUN")
            assert [m.text for m in found] == [f"m{n} lunch" for n in (20, 15, 10, 5, 0)]
            older = client.search("Bob", "lunch", limit=2, before=found[1].row_id)
            assert [m.text for m in older] == ["m10 lunch", "m5 lunch"]
            newer = client.search("Bob", "lunch", limit=1, after=found[2].row_id, newest_first=False)
            assert [m.text for m in newer] == ["m15 lunch"]
            assert client.search("Bob", "unch") == []  # inside a word
            assert [m.text for m in client.search("Bob", "tea m2")] == [
                "m24 tea",
                "m23 tea",
                "m22 tea",
                "m21 tea",
                "m2 tea",
            ]

    asyncio.run(asyncio.wait_for(main(), 30))
