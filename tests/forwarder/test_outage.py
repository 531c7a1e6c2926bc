"""A device that loses its network keeps its cadence at the relay: real processes on loopback.

The relay (``python -m sotto.server``, 1-second ticks, recording its operator's view) and a
forwarder (``python -m sotto.forwarder``) run as processes. Alice and Bob are cadence-mode SDK
clients through the forwarder, so each keeps its coming ticks' requests at the forwarder
(:mod:`sotto.client.schedule`). Alice reaches the forwarder through a cable this test can cut
(a TCP proxy on 127.0.0.1 that drops every connection while cut). Her cable is cut for several
ticks while Bob writes to her and she writes to him; then it is joined again. Later her app is
closed for a few ticks and opened again.

The relay's view shows one poll of each of her mailboxes and one send to Bob for every tick,
through the outage and the restart as before and after; everything written meanwhile arrives
once.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.sdk import Client
from tests.forwarder.cadence import (
    CadenceStack,
    alice_and_bob,
    cadence_requests,
    close_people,
    close_person,
    one_per_tick,
    our_mailboxes,
    reopen,
    run_bounds,
    until,
)

ALICE_ADDR, BOB_ADDR = "127.0.0.2", "127.0.0.3"
OUTAGE_TICKS = 6
TURNS = 7
TO_ALICE = ("written while she was away", "and once more")
TO_BOB = "queued while offline"
AFTER_RESTART = "while your app was closed"


def run_outage(stack: CadenceStack, tmp: Path) -> dict[str, object]:
    async def main() -> dict[str, object]:
        cable, alice_forwarder, alice, bob = await alice_and_bob(stack, tmp, ALICE_ADDR, BOB_ADDR)
        seen: dict[str, list[ev.Event]] = {"Alice": [], "Bob": []}

        async def listen(client: Client) -> None:
            async for event in client.listen():
                seen[client.display_name].append(event)

        def texts(name: str) -> list[str]:
            return [e.text for e in seen[name] if isinstance(e, ev.MessageReceived)]

        listeners = [asyncio.create_task(listen(c)) for c in (alice, bob)]
        try:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            await until(lambda: bob.is_ready("Alice") and alice.is_ready("Bob"), 90)
            # Turns enough that each side's sending chain moves on more often than the other
            # keeps old chains: covers built ahead on an old chain would no longer open.
            for turn in range(TURNS):
                await alice.send_text("Bob", f"a{turn}")
                await until(lambda: len(texts("Bob")) == turn + 1, 60, lambda: seen)  # noqa: B023
                await bob.send_text("Alice", f"b{turn}")
                await until(lambda: len(texts("Alice")) == turn + 1, 60, lambda: seen)  # noqa: B023
            await asyncio.sleep(3)  # the schedule built ahead again for the new contact
            loop = asyncio.get_running_loop()
            cut_at = loop.time()
            cable.set_cut(True)
            cut_unix = alice.engine.now_ms() / 1000
            await bob.send_text("Alice", TO_ALICE[0])
            await alice.send_text("Bob", TO_BOB)  # queued: it leaves when she is back
            await asyncio.sleep(OUTAGE_TICKS / 2)
            await bob.send_text("Alice", TO_ALICE[1])
            await asyncio.sleep(max(0.0, OUTAGE_TICKS - (loop.time() - cut_at)))
            back_unix = alice.engine.now_ms() / 1000
            cable.set_cut(False)
            await until(
                lambda: len(texts("Alice")) >= TURNS + 2 and len(texts("Bob")) >= TURNS + 1,
                60,
                lambda: (seen, cable.cut),
            )
            await asyncio.sleep(4)  # anything duplicated would have come by now
            # Alice's app is closed and opened again: her schedule runs on meanwhile, and the new
            # run takes it over rather than adding a second cadence.
            mailboxes = our_mailboxes(alice)
            listeners[0].cancel()
            await close_person(alice)
            closed_unix = bob.engine.now_ms() / 1000
            await bob.send_text("Alice", AFTER_RESTART)
            await asyncio.sleep(3)
            alice = await reopen(stack.relay, alice_forwarder, tmp, "Alice", ALICE_ADDR)
            listeners[0] = asyncio.create_task(listen(alice))
            await until(lambda: len(texts("Alice")) >= TURNS + 3, 60, lambda: seen)
            await asyncio.sleep(4)
            return {
                "rejected": [
                    e for events in seen.values() for e in events if isinstance(e, ev.EnvelopeRejected)
                ],
                "alice": texts("Alice"),
                "bob": texts("Bob"),
                "closed": closed_unix,
                **run_bounds(alice, bob, mailboxes, cut_unix, back_unix),
            }
        finally:
            await close_people(listeners, (alice, bob), cable)

    return asyncio.run(asyncio.wait_for(main(), 240))


@pytest.fixture(scope="module")
def outage(cadence_stack: CadenceStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return run_outage(cadence_stack, tmp_path_factory.mktemp("people"))


def test_what_was_written_during_the_outage_arrives_once(outage: dict[str, object]) -> None:
    assert outage["alice"] == [*(f"b{i}" for i in range(TURNS)), *TO_ALICE, AFTER_RESTART]
    assert outage["bob"] == [*(f"a{i}" for i in range(TURNS)), TO_BOB]
    assert outage["rejected"] == []  # every cover, built ahead or not, opened at its contact


def test_the_relay_sees_the_same_cadence_through_the_outage(
    cadence_stack: CadenceStack, outage: dict[str, object]
) -> None:
    cut, back = float(outage["cut"]), float(outage["back"])  # type: ignore[arg-type]
    alice_boxes: set[str] = outage["alice_mailboxes"]  # type: ignore[assignment]
    bob_boxes: set[str] = outage["bob_mailboxes"]  # type: ignore[assignment]
    polls, sends = cadence_requests(cadence_stack.view, alice_boxes, bob_boxes)
    end = float(outage["end"])  # type: ignore[arg-type]
    # from before the cut, through the outage, the app closed and opened again, to the end
    ticks = range(math.floor(cut) - 2, math.floor(end) - 1)
    assert len(ticks) >= OUTAGE_TICKS + 12
    assert math.floor(back) < math.floor(float(outage["closed"])) < math.floor(end) - 5  # type: ignore[arg-type]
    for mailbox in alice_boxes:
        one_per_tick(polls[mailbox], ticks, f"polls of {mailbox}")
    one_per_tick(sends, ticks, "sends")
