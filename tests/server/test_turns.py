"""Poll answers take turns (:mod:`sotto.server.turns`): many big answers at once make one piece
per turn of the event loop between them, so other work runs between any two pieces, and a
read asked for meanwhile waits for at most the piece being made. The relay's poll route makes
its answer's pieces and its read in the app's turns."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator

import pytest

from sotto.server import turns as turns_module
from sotto.server.turns import Turns, answer_turns
from tests.server.conftest import Relay, create_mailbox, payload, send
from tests.server.test_cadence import _ids, _poll

Maker = Callable[[Iterator[bytes]], AsyncGenerator[bytes, None]]


def _pieces(name: str, count: int, made: list[str]) -> Iterator[bytes]:
    for n in range(count):
        made.append(f"{name}{n}")
        yield b"x" * 1024


async def _drain(pieces: AsyncGenerator[bytes, None]) -> int:
    return sum([len(piece) async for piece in pieces])


def test_answers_made_at_once_alternate_piece_by_piece() -> None:
    made: list[str] = []

    async def main() -> None:
        turns = Turns()
        await asyncio.gather(*(_drain(turns.pieces(_pieces(name, 3, made))) for name in "abc"))

    asyncio.run(main())
    assert made == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


@pytest.mark.parametrize("taking_turns", [True, False])
def test_other_work_runs_between_any_two_pieces(taking_turns: bool) -> None:
    """Twenty answers of ten pieces and a task that counts turns of the loop: with turns, at
    most one piece is made per turn; without them (the pieces simply made one after the other
    with a pause between, as an answer alone would be), a turn holds a piece of every answer."""
    made: list[str] = []
    ticks_at_piece: list[int] = []
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    def counted(name: str) -> Iterator[bytes]:
        for piece in _pieces(name, 10, made):
            ticks_at_piece.append(ticks)
            yield piece

    async def untaken(pieces: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0)

    async def main() -> None:
        stop = asyncio.Event()
        counting = asyncio.create_task(ticker(stop))
        turns = Turns()
        make: Maker = turns.pieces if taking_turns else untaken
        await asyncio.gather(*(_drain(make(counted(f"{n}."))) for n in range(20)))
        stop.set()
        await counting

    asyncio.run(main())
    assert len(made) == 200
    most_in_one_turn = max(ticks_at_piece.count(tick) for tick in set(ticks_at_piece))
    if taking_turns:
        assert most_in_one_turn == 1
    else:
        assert most_in_one_turn == 20


def test_a_read_waits_for_at_most_the_piece_being_made() -> None:
    made: list[str] = []

    async def main() -> None:
        turns = Turns()
        answers = [asyncio.create_task(_drain(turns.pieces(_pieces(name, 5, made)))) for name in "ab"]
        await asyncio.sleep(0)  # both answers started

        async def read() -> None:
            made.append("read")

        await turns.run(read)
        await asyncio.gather(*answers)

    asyncio.run(main())
    assert made.index("read") <= 3, made


def test_the_poll_route_reads_and_makes_its_answer_in_turns(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox = create_mailbox(relay.client)
    ids = [os.urandom(16) for _ in range(4)]
    for message_id in ids:
        assert send(relay.client, mailbox, message_id, payload(65_536, 1)).status_code == 202
    steps: list[str] = []

    class Counted(Turns):
        async def run(self, step: Callable[[], Awaitable[turns_module.T]]) -> turns_module.T:
            steps.append("read")
            return await super().run(step)

        async def pieces(self, pieces: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
            async for piece in super().pieces(pieces):
                steps.append("piece")
                yield piece

    monkeypatch.setattr(turns_module, "Turns", Counted)
    monkeypatch.setattr("sotto.server.mailboxes.answer_turns", lambda state: answer_turns(_Fresh()))
    assert _ids(_poll(relay, mailbox)) == ids
    # 4 x 87 KB of base64 in pieces of about 64 KiB: the read, then one turn per piece.
    assert steps[0] == "read" and steps.count("read") == 1 and steps.count("piece") >= 4


class _Fresh:
    """An ``app.state`` with nothing on it yet."""
