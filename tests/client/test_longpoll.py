"""The long-poll drain on a scripted relay: first polls answer subscribe (refused ones named),
each mailbox polls again only after its envelopes were acknowledged and carries those acks,
busy answers are waited out, other failures end the drain, and the waits asked for are drawn
within their range, independently per mailbox."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sotto.client.longpoll import WAIT_S, LongPollDrain
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.errors import RelayError, RelayUnavailableError
from sotto.wire import api

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16
KEY = SigningKey.generate(system_rng)


def envelope(i: int) -> api.PolledEnvelope:
    return api.PolledEnvelope(id=bytes([i]) * 16, day=1, payload=b"\0" * 256)


class ScriptedRelay:
    """Answers each mailbox's polls from a script; records (mailbox, acks, wait_ms)."""

    def __init__(self, script: dict[bytes, list[api.PollResult | Exception]]) -> None:
        self.script = script
        self.calls: list[tuple[bytes, list[bytes], int]] = []
        self.idle = asyncio.Event()

    async def poll(
        self, mailbox: bytes, key: SigningKey, acks: Sequence[bytes], limit: int, wait_ms: int
    ) -> api.PollResult:
        self.calls.append((mailbox, list(acks), wait_ms))
        answers = self.script.get(mailbox, [])
        if not answers:
            self.idle.set()
            await asyncio.Event().wait()  # held for ever
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def result(*envelopes: api.PolledEnvelope) -> api.PollResult:
    return api.PollResult(envelopes=list(envelopes), more=False)


def run(main: object) -> None:
    asyncio.run(asyncio.wait_for(main, 20))  # type: ignore[arg-type]


def test_subscribe_names_the_mailboxes_the_relay_does_not_know() -> None:
    async def main() -> None:
        relay = ScriptedRelay({A: [result()], B: [RelayError(404, "not_found", "no")]})
        drain = LongPollDrain(relay.poll, sleep=no_sleep)
        answer = await drain.subscribe({A: KEY, B: KEY})
        assert (answer.mailboxes, answer.refused) == ((A,), (B,))
        assert drain.mailboxes == {A}
        # registered again, it is polled anew
        relay.script[B] = [result()]
        again = await drain.subscribe({B: KEY})
        assert again.mailboxes == (B,) and drain.mailboxes == {A, B}
        await drain.close()

    run(main())


def test_a_mailbox_polls_again_only_after_its_acks_and_sends_them() -> None:
    async def main() -> None:
        relay = ScriptedRelay({A: [result(envelope(1), envelope(2)), result(envelope(3))]})
        drain = LongPollDrain(relay.poll, sleep=no_sleep)
        await drain.subscribe({A: KEY})
        first = await drain.receive(5)
        second = await drain.receive(5)
        assert first is not None and second is not None
        assert [first.id, second.id] == [envelope(1).id, envelope(2).id]
        await drain.ack([(A, first.id)])
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(relay.calls) == 1  # one still outstanding: no poll yet
        await drain.ack([(A, second.id)])
        third = await drain.receive(5)
        assert third is not None and third.id == envelope(3).id
        assert relay.calls[1][1] == [envelope(1).id, envelope(2).id]
        assert relay.calls[0][2] == 0  # the first poll answers at once
        low, high = WAIT_S
        assert low * 1000 <= relay.calls[1][2] <= high * 1000
        await drain.close()
        with pytest.raises(RelayUnavailableError):
            await drain.receive(1)

    run(main())


def test_busy_answers_are_waited_out_and_keep_the_acks() -> None:
    async def main() -> None:
        busy = RelayError(503, "polls_busy", "busy")
        relay = ScriptedRelay({A: [result(envelope(1)), busy, result(envelope(2))]})
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            await asyncio.sleep(0)

        drain = LongPollDrain(relay.poll, sleep=sleep)
        await drain.subscribe({A: KEY})
        got = await drain.receive(5)
        assert got is not None
        await drain.ack([(A, got.id)])
        again = await drain.receive(5)
        assert again is not None and again.id == envelope(2).id
        assert relay.calls[1][1] == relay.calls[2][1] == [envelope(1).id]
        assert any(s >= 1.0 for s in slept)
        await drain.close()

    run(main())


def test_another_failure_ends_the_drain() -> None:
    async def main() -> None:
        relay = ScriptedRelay({A: [result(), RelayUnavailableError("gone")], B: [result()]})
        drain = LongPollDrain(relay.poll, sleep=no_sleep)
        await drain.subscribe({A: KEY, B: KEY})
        with pytest.raises(RelayUnavailableError):
            await drain.receive(5)
        with pytest.raises(RelayUnavailableError):  # and stays ended
            await drain.receive(5)
        await drain.close()

    run(main())


def test_each_mailbox_draws_its_own_waits() -> None:
    async def main() -> None:
        relay = ScriptedRelay({m: [result(), result(), result()] for m in (A, B, C)})
        offsets: list[float] = []

        async def sleep(seconds: float) -> None:
            offsets.append(seconds)
            await asyncio.sleep(0)

        drain = LongPollDrain(relay.poll, sleep=sleep, spread_s=3.0)
        await drain.subscribe({A: KEY, B: KEY, C: KEY})
        await relay.idle.wait()
        for _ in range(50):
            await asyncio.sleep(0)
        await drain.close()
        assert len(offsets) == 3 and all(0 <= o < 3.0 for o in offsets) and len(set(offsets)) == 3
        waits = [w for _, _, w in relay.calls if w]
        assert len(waits) >= 6 and len(set(waits)) == len(waits)

    run(main())


def test_waits_beyond_the_relays_limit_are_refused() -> None:
    relay = ScriptedRelay({})
    with pytest.raises(ValueError):
        LongPollDrain(relay.poll, wait_s=(10.0, 30.0))
