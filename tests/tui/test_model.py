"""The conversation rows: a message that arrives moves the row on without counting again."""

from __future__ import annotations

from sotto.client.sdk import Client
from sotto.crypto.random import seeded_rng
from sotto.store.memory import MemoryStore
from sotto.store.model import Conversation, MessageState
from sotto.tui.model import ADVANCE_PEEK, Summary, advance, load_summaries, summarize
from tests.tui.conftest import open_seeded, run
from tests.tui.seed import NOW_MS, Seeder, small_world


def bob_row(client: Client) -> Summary:
    return next(s for s in load_summaries(client) if s.title == "Bob")


def arrive(store: MemoryStore, count: int, *, ours: bool = False, seed: int = 50) -> None:
    s = Seeder(store, seeded_rng(seed))
    with store.transaction() as tx:
        bob = tx.contacts.by_name("Bob")
        assert bob is not None
        for n in range(count):
            at = NOW_MS + 1000 * (n + 1)
            state = MessageState.QUEUED if ours else MessageState.RECEIVED
            s.message(
                tx, Conversation.direct(bob.contact_id), None if ours else bob, f"new {n}", at, state=state
            )


def test_arrivals_are_added_to_the_count_and_an_event_seen_again_changes_nothing() -> None:
    async def main() -> None:
        store = small_world()
        client = await open_seeded(store)
        async with client:
            before = bob_row(client)
            assert before.unread == 2
            arrive(store, 3)
            after = advance(client, before)
            assert after.unread == 5 and after.last_ms == NOW_MS + 3000
            assert after == summarize(client, before.target)
            assert advance(client, after) is after  # nothing new: a replayed event

    run(main)


def test_more_arrivals_than_it_reads_or_one_of_ours_count_again() -> None:
    async def main() -> None:
        store = small_world()
        client = await open_seeded(store)
        async with client:
            before = bob_row(client)
            arrive(store, ADVANCE_PEEK + 2)
            assert advance(client, before).unread == 2 + ADVANCE_PEEK + 2
            moved = advance(client, before)
            arrive(store, 1, ours=True, seed=51)
            arrive(store, 1, seed=52)
            assert advance(client, moved).unread == 1  # we wrote: only what came after counts

    run(main)
