"""A device asleep for longer than the old two-hour horizon keeps its cadence at the relay: real
processes on loopback, as in ``test_outage.py`` (with its helpers, :mod:`tests.forwarder.cadence`).

The relay (1-second ticks, recording its operator's view) and a forwarder run as processes;
Alice and Bob are cadence-mode SDK clients through the forwarder. Once Alice's schedule reaches
past the sleep, her cable to the forwarder is cut for :data:`SLEEP_TICKS` ticks, more than the
48 ticks the schedule held before (two hours, at most 48 ticks), while Bob writes to her. The
relay's view shows one poll of each of her mailboxes and one send to Bob in every tick through
the sleep, and what Bob wrote arrives once when she is back. With the old horizon
(``MAX_HORIZON_TICKS = 48``) her schedule runs out inside the sleep and the relay's view has
a gap of about 16 ticks before she is back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from sotto.client import events as ev
from sotto.client.schedule import SCHEDULES_PATH, capability, horizon_ticks
from sotto.client.sdk import Client
from sotto.wire import b64
from tests.forwarder.cadence import (
    CadenceStack,
    alice_and_bob,
    cadence_requests,
    close_people,
    one_per_tick,
    our_mailboxes,
    run_bounds,
    until,
)

ALICE_ADDR, BOB_ADDR = "127.0.0.4", "127.0.0.5"
OLD_HORIZON_TICKS = 48
SLEEP_TICKS = 60
TO_ALICE = ("good night", "still asleep?", "good morning")


async def held_slots(client: Client, forwarder: str, relay: str) -> int:
    """How many slots the forwarder holds for the client's schedule (a collect that forgets nothing)."""
    cap = b64.encode(capability(client.engine.account.device_secret, relay))
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{forwarder}{SCHEDULES_PATH}{cap}/collect", json={"ack": []})
    count: int = answer.json()["slots"] if answer.status_code == 200 else 0
    return count


def run_sleep(stack: CadenceStack, tmp: Path) -> dict[str, object]:
    relay, forwarder, _ = stack

    async def main() -> dict[str, object]:
        cable, _, alice, bob = await alice_and_bob(stack, tmp, ALICE_ADDR, BOB_ADDR)
        seen: list[ev.Event] = []

        async def listen(client: Client, into: list[ev.Event]) -> None:
            async for event in client.listen():
                into.append(event)

        def texts() -> list[str]:
            return [e.text for e in seen if isinstance(e, ev.MessageReceived)]

        listeners = [asyncio.create_task(listen(alice, seen)), asyncio.create_task(listen(bob, []))]
        try:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            await until(lambda: bob.is_ready("Alice") and alice.is_ready("Bob"), 180)
            # Her schedule reaches past the whole sleep before she goes, or as far as its
            # horizon lets it (a tick's slots are one poll per mailbox and one send to Bob).
            per_tick = len(our_mailboxes(alice)) + 1
            reach = min(SLEEP_TICKS + 8, horizon_ticks(1) - 4)
            deadline = asyncio.get_running_loop().time() + 120
            while (held := await held_slots(alice, forwarder, relay)) < reach * per_tick:
                assert asyncio.get_running_loop().time() < deadline, ("schedule not built", held, per_tick)
                await asyncio.sleep(0.5)
            mailboxes = our_mailboxes(alice)
            loop = asyncio.get_running_loop()
            asleep_at = loop.time()
            cable.set_cut(True)
            cut_unix = alice.engine.now_ms() / 1000
            for i, text in enumerate(TO_ALICE):
                await asyncio.sleep(max(0.0, asleep_at + i * SLEEP_TICKS / 3 - loop.time()))
                await bob.send_text("Alice", text)
            await asyncio.sleep(max(0.0, asleep_at + SLEEP_TICKS - loop.time()))
            back_unix = alice.engine.now_ms() / 1000
            cable.set_cut(False)
            await until(lambda: len(texts()) >= len(TO_ALICE), 240, lambda: seen)
            await asyncio.sleep(4)  # anything duplicated would have come by now
            return {
                "rejected": [e for e in seen if isinstance(e, ev.EnvelopeRejected)],
                "alice": texts(),
                **run_bounds(alice, bob, mailboxes, cut_unix, back_unix),
            }
        finally:
            await close_people(listeners, (alice, bob), cable)

    return asyncio.run(asyncio.wait_for(main(), 900))


@pytest.fixture(scope="module")
def sleep(cadence_stack: CadenceStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return run_sleep(cadence_stack, tmp_path_factory.mktemp("people"))


def test_the_sleep_is_longer_than_the_old_horizon_and_within_the_new() -> None:
    assert SLEEP_TICKS > OLD_HORIZON_TICKS
    assert horizon_ticks(1) >= SLEEP_TICKS + 8


def test_what_was_written_during_the_sleep_arrives_once(sleep: dict[str, object]) -> None:
    assert sleep["alice"] == list(TO_ALICE)
    assert sleep["rejected"] == []


def test_the_relay_sees_the_same_cadence_through_a_sleep_longer_than_the_old_horizon(
    cadence_stack: CadenceStack, sleep: dict[str, object]
) -> None:
    cut, back, end = (float(sleep[k]) for k in ("cut", "back", "end"))  # type: ignore[arg-type]
    assert back - cut >= SLEEP_TICKS - 1
    alice_boxes: set[str] = sleep["alice_mailboxes"]  # type: ignore[assignment]
    bob_boxes: set[str] = sleep["bob_mailboxes"]  # type: ignore[assignment]
    polls, sends = cadence_requests(cadence_stack.view, alice_boxes, bob_boxes)
    ticks = range(int(cut) - 2, int(end) - 1)
    assert len(ticks) >= SLEEP_TICKS + 4
    for mailbox in alice_boxes:
        one_per_tick(polls[mailbox], ticks, f"polls of {mailbox}")
    one_per_tick(sends, ticks, "sends")
