"""Solving the relay's proof-of-work challenges (relay-protocol §8) without stalling the loop.

A relay that is busy with account creations answers 428 with a challenge; the transport solves
it here and sends the call again. Easy challenges (below :data:`INLINE_BELOW_BITS`, about a
millisecond) are solved in place; harder ones in a worker thread, one slice of nonces at a time,
so a cancelled call stops within a slice. A challenge harder than the client's cap is refused
with :class:`~sotto.errors.WorkTooHardError` before any hashing.
"""

from __future__ import annotations

import asyncio

from sotto.errors import DecodeError, WorkRequiredError, WorkTooHardError
from sotto.wire import work

__all__ = ["DEFAULT_MAX_WORK_BITS", "INLINE_BELOW_BITS", "solve"]

DEFAULT_MAX_WORK_BITS = 24
"""The most work the client does for one call: about 16 million SHA-256 hashes, some 20 s of
one core in Python (``bench/pow.py``); a relay's default ceiling is 22 bits."""
INLINE_BELOW_BITS = 10
"""Easier challenges are solved on the loop's thread: about 1,000 hashes, a millisecond."""


async def solve(challenge: bytes, *, cap: int = DEFAULT_MAX_WORK_BITS) -> bytes:
    """A nonce that solves ``challenge``; WorkTooHardError above ``cap`` bits, WorkRequiredError
    for a challenge that does not parse."""
    try:
        difficulty = work.Challenge.from_bytes(challenge).difficulty
    except DecodeError:
        raise WorkRequiredError("bad_reply", "the relay's challenge does not parse", 0) from None
    if difficulty > cap:
        raise WorkTooHardError(difficulty, cap)
    if difficulty < INLINE_BELOW_BITS:
        return work.solve(challenge, difficulty)
    start = 0
    while True:
        found = await asyncio.to_thread(work.solve_range, challenge, difficulty, start, work.SLICE)
        if found is not None:
            return found
        start += work.SLICE
