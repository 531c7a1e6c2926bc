"""One poll answer at a time per mailbox.

A poll's answer costs the relay a read of up to half a megabyte of pending envelopes and the
making of its pieces (:mod:`sotto.server.turns`). A client that never reads its answers can ask
again and again: each poll would read the same envelopes once more, and the clients of one
mailbox could make a mailbox's whole burst allowance of such answers at once (measured: sixty
answers of half a megabyte, 0.7 s of the relay's core).

So a mailbox has at most one answer out: from the read of its pending envelopes until the
client has taken the answer (its last piece handed over and the connection's send queue in the
kernel down to :data:`RELEASE_UNREAD_BYTES`, checked every :data:`RELEASE_CHECK_SECONDS`), or
the connection ended. A poll of a mailbox whose answer is still out gets ``429
poll_in_progress`` with Retry-After, before it reads or deletes anything. An honest client
polls a mailbox one poll after another and has read the last answer before it asks again, so it
meets the refusal at most for the moment the last bytes take to be acknowledged; a client whose
connection died with an answer half sent may meet it longer: an answer stops holding its
mailbox after :data:`CLAIM_SECONDS`, and a later poll goes ahead. A long poll's wait is no
answer: the claim is let go while it waits (one long poll per mailbox is held anyway,
:mod:`sotto.server.longpoll`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sotto.server.ratelimit import RateLimitedError
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


class PollInProgressError(RateLimitedError):
    """429: an answer of this mailbox is still being made or sent."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.code = "poll_in_progress"
        self.message = f"an answer from this mailbox is still being sent; retry in {retry_after} s"
        self.args = (self.message,)


class Claim:
    """A mailbox's answer in flight; :meth:`Answering.release` ends it (once)."""

    __slots__ = ("mailbox_id", "since")

    def __init__(self, mailbox_id: MailboxId, since: float) -> None:
        self.mailbox_id = mailbox_id
        self.since = since


class Answering:
    """The mailboxes with an answer in flight (one registry per event loop)."""

    def __init__(self) -> None:
        self._claims: dict[MailboxId, Claim] = {}
        self._until_sweep = SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._claims)

    def claim(self, mailbox_id: MailboxId, now: float) -> Claim:
        """The mailbox's claim for a new answer, or :class:`PollInProgressError` while an earlier
        answer of it, claimed less than :data:`CLAIM_SECONDS` ago, is out."""
        held = self._claims.get(mailbox_id)
        if held is not None and now - held.since < CLAIM_SECONDS:
            raise PollInProgressError(max(1, round(CLAIM_SECONDS - (now - held.since))))
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._until_sweep = SWEEP_EVERY
            self._claims = {m: c for m, c in self._claims.items() if now - c.since < CLAIM_SECONDS}
        claim = self._claims[mailbox_id] = Claim(mailbox_id, now)
        return claim

    def try_claim(self, mailbox_id: MailboxId, now: float) -> Claim | None:
        """:meth:`claim`, or None instead of the refusal."""
        try:
            return self.claim(mailbox_id, now)
        except PollInProgressError:
            return None

    def release(self, claim: Claim | None) -> None:
        """End ``claim`` (None: nothing), unless a later claim of its mailbox replaced it."""
        if claim is not None and self._claims.get(claim.mailbox_id) is claim:
            del self._claims[claim.mailbox_id]

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
