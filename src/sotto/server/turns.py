"""Poll answers take turns, so that many of them at once cannot hold up everyone else.

A cadence-mode poll may answer half a megabyte: reading it from the store and encoding it cost
a few milliseconds of the relay's one event loop. Sixty such polls arriving together (a
client's burst allowance, or many clients reconnecting at once) would each run their
milliseconds back to back, and a message for an online person, which needs several turns of
the loop between its arrival and its push, would wait behind all of them at every turn:
measured, a quarter of a second.

So the expensive steps of a poll answer (the read of pending envelopes, and the making of
each piece of the answer) take a turn from one relay-wide :class:`Turns`: one step at a time,
first come first served, and each step hands the loop back before the next answer's step
runs. Everything else (sends, pushes, WebSocket fetches) runs between the steps. What a turn
never covers is a wait of the client's making: not a long poll's wait, and not a send waiting
for a client's full socket, so a client that never reads holds no turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

AT_ONCE = 1
"""Steps of poll answers that run at the same time."""


class Turns:
    """First come, first served turns for steps of work (one loop, one :class:`Turns`)."""

    def __init__(self, at_once: int = AT_ONCE) -> None:
        self._slots = asyncio.Semaphore(at_once)

    async def run(self, step: Callable[[], Awaitable[T]]) -> T:
        """``await step()`` in a turn."""
        async with self._slots:
            return await step()

    async def pieces(self, pieces: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
        """The pieces of ``pieces``, each made in a turn of its own; the caller sends each
        outside of any turn."""
        while True:
            async with self._slots:
                piece = next(pieces, None)
                # The turn lasts until the loop has gone round once: an answer that asks while
                # it is held waits behind those already waiting, even at the very first piece.
                await asyncio.sleep(0)
            if piece is None:
                return
            yield piece


def answer_turns(state: object) -> Turns:
    """The app's turns for poll answers (on ``app.state``), one per event loop: an app served
    again on a new loop gets new ones."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, Turns] | None = getattr(state, "answer_turns", None)
    if held is None or held[0] is not loop:
        held = (loop, Turns())
        state.answer_turns = held  # type: ignore[attr-defined]
    return held[1]
