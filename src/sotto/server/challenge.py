"""Adaptive proof of work for anonymous creations of accounts and mailboxes (relay-protocol §8).

The relay asks for no work while the relay-wide rate of creations of a kind is at or below its
free rate; above it, a creation without a solved challenge is answered 428 with a fresh one. The rules
(:class:`WorkGate`) are pure bookkeeping with the time passed in; the route glue is
:func:`require_work` and :func:`work_refused_answer`.

Challenges are stateless: the relay signs each with a key derived from its server key (HKDF,
``info`` :data:`CHALLENGE_KEY_INFO`) and keeps nothing when it issues one. It remembers a
challenge only once answered, until its validity ends, so each is good for one creation; the
memory is bounded (``WorkPolicy.max_spent``). Challenges issued before this process started are
refused, so a restart, which forgets the spent ones, cannot let one be used twice.

Where that memory and the rate of creations live is a :class:`~sotto.server.shared_state.SharedState`:
this process by default, or one every relay node shares (``--shared-state``), so that the rate
is counted relay-wide over all nodes and a challenge answered on one node is spent on all of
them. The shared memory refuses challenges issued before it began, as a process does.

Nothing here is written to disk or to a log.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sized

from fastapi import Request
from fastapi.responses import JSONResponse

from sotto.crypto.kdf import bytes_equal, hmac_sha256
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, RelayError
from sotto.server.config import WorkPolicy
from sotto.server.ratelimit import RateLimitedError, RateMeter
from sotto.server.shared_state import Claim, LocalSingleUse, LocalState, Meter, SharedState
from sotto.wire import api, work

__all__ = [
    "CHALLENGE_KEY_INFO",
    "WorkGate",
    "WorkRefusedError",
    "WorkVerdict",
    "require_work",
    "work_refused_answer",
]

CHALLENGE_KEY_INFO = b"sotto relay work challenge v1"
WORK_STATUS = 428


class WorkVerdict(enum.Enum):
    """What :meth:`WorkGate.admit` found; each refusal is also the 428's ``code``."""

    FREE = "free"
    """No work is asked for now (a ``Sotto-Work`` header is ignored)."""
    SOLVED = "solved"
    """A fresh, genuine challenge for this purpose (account or mailbox), solved; now spent."""
    REQUIRED = "work_required"
    """Work is asked for and none came."""
    INVALID = "work_invalid"
    """Unreadable, not ours, for another purpose, or the nonce does not meet the difficulty."""
    EXPIRED = "work_expired"
    """Genuine, but out of its validity (or issued before this process started)."""
    REPLAYED = "work_replayed"
    """Genuine and solved, but spent already."""
    BUSY = "busy"
    """Every remembered spent challenge is still valid: no room to remember one more."""


_MESSAGES = {
    WorkVerdict.REQUIRED: "the relay is busy: solve the challenge and send the answer in Sotto-Work",
    WorkVerdict.INVALID: "that Sotto-Work answer does not solve a challenge of this relay for this call",
    WorkVerdict.EXPIRED: "that challenge has expired; solve the new one",
    WorkVerdict.REPLAYED: "that challenge was answered already; solve the new one",
}


class WorkGate:
    """The difficulty asked for now, challenges issued and answers admitted, per purpose.

    ``key`` is the challenge key (32 bytes from the server key), ``started`` when the process
    started (unix seconds); ``shared`` where the counts and the spent challenges live (this
    process unless given)."""

    def __init__(
        self, policy: WorkPolicy, key: bytes, started: float, *, shared: SharedState | None = None
    ) -> None:
        self.policy = policy
        self._key = key
        self._started_ms = math.floor(started * 1000)
        self._shared = shared or LocalState()
        self._meters: dict[int, Meter] = {}
        self._spent = self._shared.single_use("work", capacity=policy.max_spent)
        self._spent.begin(started)

    def _meter(self, purpose: int) -> Meter:
        meter = self._meters.get(purpose)
        if meter is None:
            meter = self._meters[purpose] = self._shared.meter(f"work{purpose}", self.policy.window_seconds)
        return meter

    def _local_meter(self, purpose: int) -> RateMeter:
        meter = self._meter(purpose)
        if not isinstance(meter, RateMeter):
            raise TypeError("a gate on shared state is asked with its coroutines (adifficulty, ...)")
        return meter

    async def abegin(self) -> None:
        """Tell the shared memory, if any, that this gate started (see ``SingleUse.abegin``)."""
        await self._spent.abegin()

    async def adifficulty(self, purpose: int, now: float) -> int:
        """Bits asked for now: 0 at or below the free count, then ``base + ⌊log2(count / free)⌋``,
        at most ``max_bits`` (the curve of relay-protocol §8)."""
        return self._bits(purpose, await self._meter(purpose).acount(now))

    def difficulty(self, purpose: int, now: float) -> int:
        """:meth:`adifficulty` for a gate that counts in this process."""
        return self._bits(purpose, self._local_meter(purpose).count(now))

    def _bits(self, purpose: int, count: float) -> int:
        policy = self.policy
        per_minute = (
            policy.mailbox_free_per_minute if purpose == work.Purpose.MAILBOX else policy.free_per_minute
        )
        free = per_minute * policy.window_seconds / 60
        if count <= free:
            return 0
        return min(policy.max_bits, policy.base_bits + math.floor(math.log2(count / free)))

    async def acreated(self, purpose: int, now: float) -> None:
        """One creation went through: it counts toward the rate."""
        await self._meter(purpose).aadd(now)

    def created(self, purpose: int, now: float) -> None:
        """:meth:`acreated` for a gate that counts in this process."""
        self._local_meter(purpose).add(now)

    def challenge(self, purpose: int, difficulty: int, now: float, rng: Rng) -> bytes:
        """A fresh challenge: signed, never stored."""
        unsigned = work.Challenge(purpose, difficulty, math.floor(now * 1000), rng(work.SALT_LENGTH), b"")
        tag = hmac_sha256(self._key, unsigned.signed_bytes())[: work.TAG_LENGTH]
        return unsigned.signed_bytes() + tag

    async def aadmit(self, purpose: int, header: str | None, now: float) -> WorkVerdict:
        """Check a ``Sotto-Work`` header for one creation, and spend its challenge if it passes.

        Costs one HMAC and one SHA-256 at most; the tag is compared in constant time and checked
        before anything else is believed."""
        if await self.adifficulty(purpose, now) == 0:
            return WorkVerdict.FREE
        checked = self._check(purpose, header, now)
        if isinstance(checked, WorkVerdict):
            return checked
        salt, expires, dated = checked
        return _VERDICTS[await self._spent.aclaim(salt, expires, now, dated=dated)]

    def admit(self, purpose: int, header: str | None, now: float) -> WorkVerdict:
        """:meth:`aadmit` for a gate that counts and spends in this process."""
        if self.difficulty(purpose, now) == 0:
            return WorkVerdict.FREE
        checked = self._check(purpose, header, now)
        if isinstance(checked, WorkVerdict):
            return checked
        if not isinstance(self._spent, LocalSingleUse):
            raise TypeError("a gate on shared state is asked with its coroutines (aadmit, ...)")
        salt, expires, dated = checked
        return _VERDICTS[self._spent.claim(salt, expires, now, dated=dated)]

    def _check(
        self, purpose: int, header: str | None, now: float
    ) -> WorkVerdict | tuple[bytes, float, float]:
        """A refusal, or what to spend: the salt, until when, dated when."""
        if header is None:
            return WorkVerdict.REQUIRED
        try:
            raw, nonce = work.decode_header(header)
            challenge = work.Challenge.from_bytes(raw)
        except DecodeError:
            return WorkVerdict.INVALID
        expected = hmac_sha256(self._key, challenge.signed_bytes())[: work.TAG_LENGTH]
        if not bytes_equal(expected, challenge.tag) or challenge.purpose != purpose:
            return WorkVerdict.INVALID
        now_ms = math.floor(now * 1000)
        expires_ms = challenge.issued_ms + math.floor(self.policy.challenge_seconds * 1000)
        if not self._started_ms <= challenge.issued_ms <= now_ms or now_ms >= expires_ms:
            return WorkVerdict.EXPIRED
        if not work.meets(raw, nonce, challenge.difficulty):
            return WorkVerdict.INVALID
        return challenge.salt, expires_ms / 1000, challenge.issued_ms / 1000

    def retry_after(self, now: float) -> int:
        """Whole seconds until a remembered challenge expires (for a BUSY answer)."""
        soonest = self._spent.next_expiry()
        if soonest is None:
            return 1
        return max(1, math.ceil(soonest - now))

    def __len__(self) -> int:
        """Spent challenges remembered in this process (0 when the memory is shared)."""
        return len(self._spent) if isinstance(self._spent, Sized) else 0

    def __repr__(self) -> str:
        return f"WorkGate(spent={len(self)}, <key>)"


_VERDICTS = {
    Claim.FIRST: WorkVerdict.SOLVED,
    Claim.SEEN: WorkVerdict.REPLAYED,
    Claim.FULL: WorkVerdict.BUSY,
    Claim.BEFORE_EPOCH: WorkVerdict.EXPIRED,
}


class WorkRefusedError(RelayError):
    """428: a creation that needs work came without a good answer; carries a fresh challenge."""

    def __init__(self, verdict: WorkVerdict, challenge: bytes, difficulty: int) -> None:
        super().__init__(WORK_STATUS, verdict.value, _MESSAGES[verdict])
        self.challenge = challenge
        self.difficulty = difficulty


async def require_work(gate: WorkGate, purpose: int, header: str | None, now: float, rng: Rng) -> None:
    """Let a creation through, or raise :class:`WorkRefusedError` (a new challenge at today's
    difficulty), :class:`RateLimitedError` (no room to remember another answer) or a 422 for a
    header that is not ``<challenge>.<nonce>`` (refused whether or not work is asked for)."""
    if header is not None:
        try:
            work.decode_header(header)
        except DecodeError:
            raise RelayError(
                422, "invalid_request", "Sotto-Work must be <challenge>.<nonce> in base64url"
            ) from None
    verdict = await gate.aadmit(purpose, header, now)
    if verdict in (WorkVerdict.FREE, WorkVerdict.SOLVED):
        return
    if verdict is WorkVerdict.BUSY:
        raise RateLimitedError(gate.retry_after(now))
    # An answer to a harder challenge than today's still counts; a new one is at today's level.
    difficulty = max(1, await gate.adifficulty(purpose, now))
    raise WorkRefusedError(verdict, gate.challenge(purpose, difficulty, now, rng), difficulty)


async def work_refused_answer(request: Request, exc: Exception) -> JSONResponse:
    """The 428 answer: the refusal's code and message, and the challenge to solve."""
    assert isinstance(exc, WorkRefusedError)
    relay = getattr(request.app.state, "relay", None)
    if relay is not None:
        relay.stats.count(f"http_{WORK_STATUS}")
    body = api.WorkRequired(
        code=exc.code, message=exc.message, challenge=exc.challenge, difficulty=exc.difficulty
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=WORK_STATUS)
