"""One poll answer at a time per mailbox.

A poll's answer costs the relay a read of up to half a megabyte of pending envelopes and the
making of its pieces (:mod:`sotto.server.turns`). Clients that never read their answers can ask
again and again, and the clients of one mailbox could make the mailbox's whole burst allowance of
such answers at once (measured: sixty answers of half a megabyte, 0.7 s of the relay's core).

So a mailbox has at most one answer out: from the read of its pending envelopes until the
client has taken the answer (its last piece handed over and the connection's send queue in the
kernel down to :data:`RELEASE_UNREAD_BYTES`, checked every :data:`RELEASE_CHECK_SECONDS`), or
the connection ended. A poll of a mailbox whose answer is out waits, before it reads or deletes
anything, until that answer is taken, or for :data:`CLAIM_SECONDS` at most: an answer never
taken (a client that does not read, or whose connection died mid-answer) stops holding its
mailbox then. A waiting poll costs a suspended request and nothing more, and while it waits its
connection's next request is not read either. An honest client polls a mailbox one poll after
another, having read the last answer, so it does not wait. A long poll's wait is no answer: the
claim is let go while it waits (one long poll per mailbox is held anyway,
:mod:`sotto.server.longpoll`), and one that wakes while another answer is out answers empty.

Times are the event loop's (virtual in a simulation).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sotto.server.storage.base import MailboxId

CLAIM_SECONDS = 5.0
"""How long an answer keeps other polls of its mailbox waiting at most."""
RELEASE_UNREAD_BYTES = 4_096
"""An answer counts as taken once no more than this of it waits in the kernel's send queue."""
RELEASE_CHECK_SECONDS = 0.25
UNREAD_EXTENSION = "sotto.unread"
"""The ASGI scope extension by which the relay's HTTP protocol tells the app how many bytes of a
connection's answers its peer has not taken yet (a function; absent elsewhere)."""
SWEEP_EVERY = 1_024
"""Claims between two sweeps of claims older than :data:`CLAIM_SECONDS` (left behind by answers
that were never sent, so that nothing grows without bound)."""


class Claim:
    """A mailbox's answer out; :meth:`Answering.release` ends it (once)."""

    __slots__ = ("ended", "mailbox_id", "since")

    def __init__(self, mailbox_id: MailboxId, since: float) -> None:
        self.mailbox_id = mailbox_id
        self.since = since
        self.ended: asyncio.Event | None = None
        """Made by the first poll that waits for this answer."""


class Answering:
    """The mailboxes with an answer out (one registry per event loop)."""

    def __init__(self) -> None:
        self._claims: dict[MailboxId, Claim] = {}
        self._until_sweep = SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._claims)

    async def claim(self, mailbox_id: MailboxId) -> Claim:
        """The mailbox's claim for a new answer, once no earlier answer of it claimed less than
        :data:`CLAIM_SECONDS` ago is out."""
        loop = asyncio.get_running_loop()
        while True:
            claim = self.try_claim(mailbox_id)
            if claim is not None:
                return claim
            held = self._claims[mailbox_id]
            if held.ended is None:
                held.ended = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.ended.wait(), held.since + CLAIM_SECONDS - loop.time())

    def try_claim(self, mailbox_id: MailboxId) -> Claim | None:
        """The mailbox's claim now, or None while an earlier answer of it is out."""
        now = asyncio.get_running_loop().time()
        held = self._claims.get(mailbox_id)
        if held is not None and now - held.since < CLAIM_SECONDS:
            return None
        if held is not None:
            self._end(held)  # never taken: whoever waits for it goes on
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._until_sweep = SWEEP_EVERY
            for stale in [c for c in self._claims.values() if now - c.since >= CLAIM_SECONDS]:
                self._end(stale)
        claim = self._claims[mailbox_id] = Claim(mailbox_id, now)
        return claim

    def release(self, claim: Claim | None) -> None:
        """End ``claim`` (None: nothing), unless a later claim of its mailbox replaced it."""
        if claim is not None and self._claims.get(claim.mailbox_id) is claim:
            self._end(claim)

    def _end(self, claim: Claim) -> None:
        del self._claims[claim.mailbox_id]
        if claim.ended is not None:
            claim.ended.set()

    def release_when_taken(self, claim: Claim | None, unread: Callable[[], int] | None) -> None:
        """End ``claim`` once its answer's last piece is handed over (now) and the peer has taken
        it (``unread``: bytes not taken yet; None: unknown, end it now). Checked again every
        :data:`RELEASE_CHECK_SECONDS` until then; an answer never taken stops holding its mailbox
        after :data:`CLAIM_SECONDS` all the same."""
        if claim is None:
            return
        checks = int(CLAIM_SECONDS / RELEASE_CHECK_SECONDS)

        def check() -> None:
            nonlocal checks
            checks -= 1
            if unread is None or unread() <= RELEASE_UNREAD_BYTES or checks <= 0:
                self.release(claim)
            elif self._claims.get(claim.mailbox_id) is claim:
                asyncio.get_running_loop().call_later(RELEASE_CHECK_SECONDS, check)

        check()


def answers_in_flight(state: object) -> Answering:
    """The app's registry (on ``app.state``), one per event loop: an app served again on a new
    loop gets a new one."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, Answering] | None = getattr(state, "answers_in_flight", None)
    if held is None or held[0] is not loop:
        held = (loop, Answering())
        state.answers_in_flight = held  # type: ignore[attr-defined]
    return held[1]
