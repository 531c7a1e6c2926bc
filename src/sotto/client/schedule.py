"""Cadence mode through a forwarder: the next ticks' requests left at the forwarder ahead of
time, so the relay sees the same cadence whether the device is on or off (``docs/metadata.md``,
"Outages").

:class:`ScheduledCadence` keeps, at the forwarder (:mod:`sotto.forwarder.schedule`), the sealed
requests of every tick from the next one to :func:`horizon_ticks` ahead: per tick, one poll per
mailbox we hold and one send per contact, each at its own random instant
(:func:`sotto.client.cadence.plan_tick`), built now and dated with that instant (the gateway's
``Date``; a poll's mailbox signature carries that instant less :data:`SIGN_LEAD_MS`, so a
forwarder clock slightly ahead of the relay's is still in its window). The forwarder sends each
to the relay at its instant and keeps the sealed answer; we collect the answers (each opened
with the context we kept for it), consume what the polls brought and confirm what the sends
delivered.

While we are online, shortly before each tick begins (:data:`REBUILD_LEAD_S`) we build it again
in full and replace its slots at the forwarder: the polls then carry the acknowledgements of what we have
read, a contact with an envelope queued gets it instead of the cover built ahead (the cover is
spent: a skipped message key at the contact), a contact with nothing queued gets the same cover
sealed anew. Every slot of the tick is replaced, real or not, so the forwarder cannot tell which
carry messages. Then we top the schedule up to the horizon.

Offline, nothing of this happens, and the forwarder releases what it holds: polls with no
acknowledgements (the relay hands out the same envelopes again, which we drop as seen when we
consume them later) and covers. Back online, we collect everything kept, consume it, and go on.

The horizon is a night (:data:`HORIZON_S`, 14 h). When it runs out (away for longer, or a
forwarder that holds less: a 507 keeps the schedule as far as it reaches), the forwarder has
nothing left to release: the relay sees every poll and send of ours stop in one tick, a horizon
after our last refresh, and start again in the first tick after we are back. What the relay can
still see within the horizon: envelopes it handed out and that stay unacknowledged while we are
away (our online contacts send one every tick, a cover if nothing else).
What the forwarder sees: our address, when we come and go (it did before, by our requests), the
number of slots per tick, and sizes; it holds no mailbox id and reads nothing it carries.

The schedule's capability is derived from the device's secret (:func:`capability`), so a
restarted client finds its schedule again: its first upload clears every slot held from its
first tick on and puts its own in their place in one request (the tick under way goes out as the
last run left it), and the relay never sees two cadences. What the previous run
left unread is collected and dropped (its contexts were in memory only): a poll's envelopes stay
at the relay until a later poll acknowledges them, an envelope whose answer was lost is sent
again under its id and deduplicated. The fixed capability lets the forwarder tie the device's
requests together across its addresses and restarts (not to an account or contacts).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import httpx

from sotto.client import cadence as cadence_plan
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import sending
from sotto.client.oblivious import ForwarderUnavailableError, ObliviousTransport
from sotto.client.transport import HTTP_TIMEOUT_S, mailbox_auth
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.kdf import hkdf_sha256
from sotto.errors import DecodeError, RelayUnavailableError
from sotto.store.interfaces import Transaction
from sotto.store.model import ContactId, MailboxId, OutboxItem, OutboxItemId, ReceiptKind
from sotto.wire import api, auth, b64, frames, ohttp
from sotto.wire.limits import MAX_ACK_IDS_PER_FRAME

if TYPE_CHECKING:
    from sotto.client.runtime import Engine

__all__ = [
    "HORIZON_S",
    "MAX_HORIZON_TICKS",
    "SCHEDULES_PATH",
    "SIGN_LEAD_MS",
    "ScheduleError",
    "ScheduledCadence",
    "capability",
    "horizon_ticks",
]

log = logging.getLogger("sotto.client")

SCHEDULES_PATH: Final = "/v1/schedules/"
HORIZON_S: Final = 14 * 3600
"""How far ahead the schedule reaches: an outage up to this long (a night) leaves no gap."""
MAX_HORIZON_TICKS: Final = 192
"""Ticks held ahead at most, whatever the tick (a short tick would otherwise mean thousands):
16 h of the default 300 s ticks, so ``horizon_s`` may reach 16 h at that tick."""
NEAR_S: Final = 2 * 3600
MAX_NEAR_TICKS: Final = 48
"""The ticks held ahead that a top-up builds at once, however long it takes: two hours of them,
at most 48 (what the whole schedule was before it reached a night). The rest of the horizon is
built within the time left before the next tick's rebuild, and at the next refresh."""
SIGN_LEAD_MS: Final = 1_000
"""A pre-built poll's signature time is its instant less this."""
REBUILD_LEAD_S: Final = 5.0
"""How long before a tick begins we build it again (at most a quarter tick)."""
COLLECT_AFTER_S: Final = 1.0
"""How long after a slot's instant we ask for its answer (at most a quarter tick)."""
LOST_AFTER_S: Final = 60.0
"""A slot whose answer has not come this long after its instant is given up (its envelope, if
any, is sent again in a later slot; the relay deduplicates it)."""
MAX_REFUSED_TICKS: Final = 3
"""Ticks in a row whose upload the forwarder refused before we stop using it for schedules."""
UPLOAD_BATCH: Final = 256
POLL_LIMIT: Final = 32


class ScheduleError(RelayUnavailableError):
    """The forwarder refused a schedule request (``status``), or could not be reached (None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        """The forwarder answered, and not that it or the relay is busy or away."""
        return self.status is not None and self.status not in (429, 502, 503, 504)


def capability(device_secret: bytes, relay_url: str) -> bytes:
    """The device's schedule at the forwarder: the same across restarts, so a restarted client
    replaces what the last one left rather than running a second cadence beside it."""
    return hkdf_sha256(device_secret, 32, info=b"sotto forwarder schedule v1 " + relay_url.encode())


def horizon_ticks(tick_seconds: int, horizon_s: float = HORIZON_S) -> int:
    """Ticks held ahead: ``horizon_s`` of them, at least 2, at most :data:`MAX_HORIZON_TICKS`."""
    return max(2, min(MAX_HORIZON_TICKS, math.ceil(horizon_s / tick_seconds)))


@dataclass(slots=True)
class _Slot:
    """One slot we left at the forwarder (or tried to)."""

    slot_id: bytes
    tick: int
    at: float
    context: ohttp.ResponseContext
    mailbox_id: MailboxId
    poll: bool
    acks: tuple[bytes, ...] = ()
    contact_id: ContactId | None = None
    item: OutboxItem | None = None
    """The envelope a send slot carries."""
    cover: bool = False


@dataclass(slots=True)
class _Built:
    slot: _Slot
    request: bytes
    replaces: bytes | None = None


@dataclass(slots=True)
class _State:
    slots: dict[bytes, _Slot] = field(default_factory=dict)
    acks: dict[MailboxId, list[bytes]] = field(default_factory=dict)
    """Per mailbox: envelopes consumed and not yet acknowledged by a poll that reached the relay."""
    in_flight: dict[OutboxItemId, bytes] = field(default_factory=dict)
    """Queued envelopes placed in a slot whose answer we await (item → slot id)."""
    collected: list[bytes] = field(default_factory=list)
    """Answers handled, to acknowledge to the forwarder on the next collect."""
    built_to: int = 0
    """The last tick built ahead."""


class ScheduledCadence:
    """Cadence mode with the schedule at the forwarder (see the module's note).

    ``plan`` makes a tick's plan in a transaction (the scheduler's); ``sleep_until`` waits until
    a unix time, running the engine's chores on the way; ``tick_done`` is told each tick's
    start once its answers are in."""

    def __init__(
        self,
        engine: Engine,
        oblivious: ObliviousTransport,
        *,
        plan: Callable[..., cadence_plan.TickPlan],
        sleep_until: Callable[[float], Awaitable[None]],
        tick_done: Callable[[float], Awaitable[None]],
        horizon_s: float = HORIZON_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._engine = engine
        self._oblivious = oblivious
        self._plan = plan
        self._sleep_until = sleep_until
        self._tick_done = tick_done
        self._horizon_s = horizon_s
        self._capability = b64.encode(capability(engine.account.device_secret, oblivious.relay_url))
        self._cleared = False
        """Whether an upload of this process replaced what the schedule held from its first tick."""
        self._base = f"{oblivious.forwarder_url}{SCHEDULES_PATH}{self._capability}"
        self._http = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT_S,
            transport=transport
            or oblivious.forwarder_transport
            or httpx.AsyncHTTPTransport(local_address=oblivious.local_address),
            follow_redirects=False,
            headers={"user-agent": "sotto", "accept-encoding": "identity"},
        )
        self._state = _State()
        self._sign_offset_ms = 0
        self._done_to = -1
        self._refused_ticks = 0
        self._cover_chain: dict[OutboxItemId, bytes] = {}
        """Each cover built: our sending ratchet key when it was sealed (its chain)."""
        self._ahead_shape: frozenset[tuple[bool, MailboxId]] | None = None
        """The polls and contact sends of the ticks built ahead."""

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ the loop
    async def run(self, tick_seconds: int) -> None:
        """From the next whole tick on, until the engine closes (it cancels this). Returns only
        if the forwarder keeps no schedule: it does not know the path, or it refused every
        upload for :data:`MAX_REFUSED_TICKS` ticks; the caller then sends each tick itself."""
        self._tick = tick_seconds
        collect_after = min(COLLECT_AFTER_S, tick_seconds / 4)
        lead = min(REBUILD_LEAD_S, tick_seconds / 4)
        tick = cadence_plan.tick_of(self._now(), tick_seconds) + 1
        self._state.built_to = tick - 1
        if not await self._refresh(tick):
            return
        tick += 1
        while True:
            # Tick ``tick`` is built again just before it begins, so its polls acknowledge what
            # the polls of the tick before brought.
            rebuild_at = cadence_plan.tick_start(tick, tick_seconds) - lead
            now = self._now()
            points = [s.at + collect_after for s in self._state.slots.values()]
            upcoming = [p for p in points if now < p < rebuild_at]
            await self._sleep_until(min([rebuild_at, *upcoming]))
            reachable = await self._collect_all()
            if self._now() >= rebuild_at:
                # unreachable: the slots built ahead go out
                if reachable and not await self._refresh(tick):
                    return
                tick = max(tick, cadence_plan.tick_of(self._now() + lead, tick_seconds)) + 1
            await self._report_done()

    async def _refresh(self, tick: int) -> bool:
        """Build ``tick`` again and top up; False once the forwarder keeps no schedule for us
        (then what it holds is deleted, as far as it can be)."""
        try:
            await self._rebuild(tick)
            lead = min(REBUILD_LEAD_S, self._tick / 4)
            await self._top_up(tick, until=cadence_plan.tick_start(tick + 1, self._tick) - lead)
        except ScheduleError as e:
            log.info("schedule not refreshed: %s", e)
            self._refused_ticks = self._refused_ticks + 1 if e.refused else 0
            if e.status in (404, 405, 501) or self._refused_ticks >= MAX_REFUSED_TICKS:
                log.warning("the forwarder keeps no schedule (%s): each tick is sent as it comes", e.status)
                with contextlib.suppress(httpx.HTTPError):
                    await self._http.delete(self._base)
                return False
        except Exception as e:  # the store failed: the slots built ahead go out
            log.info("schedule not refreshed: %s", type(e).__name__)
        else:
            self._refused_ticks = 0
        return True

    def _now(self) -> float:
        return self._engine.now_ms() / 1000

    async def _report_done(self) -> None:
        """Tell the scheduler about each tick whose instants are past and whose answers are in."""
        now = self._now()
        open_ticks = [s.tick for s in self._state.slots.values()]
        current = cadence_plan.tick_of(now, self._tick)
        done = min([*open_ticks, current]) - 1
        if done > self._done_to:
            self._done_to = done
            await self._tick_done(cadence_plan.tick_start(done, self._tick))

    # ------------------------------------------------------------------ building
    async def _rebuild(self, tick: int) -> None:
        """Build ``tick`` in full from the state now and replace its slots at the forwarder;
        nothing once it has begun (what was built ahead goes out as it is)."""
        engine = self._engine
        if self._now() >= cadence_plan.tick_start(tick, self._tick):
            return
        plan: cadence_plan.TickPlan = await engine.transaction(
            partial(self._plan, tick=tick, tick_seconds=self._tick)
        )
        old = [s for s in self._state.slots.values() if s.tick == tick]
        old_polls = {s.mailbox_id: s for s in old if s.poll}
        old_sends = {s.mailbox_id: s for s in old if not s.poll}
        seeds = await engine.transaction(lambda tx: mailbox_flow.to_drain(tx, engine.now_ms()))
        chains = await engine.transaction(self._chains)
        built: list[_Built] = []
        for step in plan.steps:
            if isinstance(step, cadence_plan.Poll):
                seed = seeds.get(step.mailbox_id)
                if seed is None:
                    continue
                acks = tuple(self._state.acks.get(step.mailbox_id, ())[:MAX_ACK_IDS_PER_FRAME])
                slot = self._poll_slot(tick, step.at, step.mailbox_id, SigningKey(seed), acks)
                replaced = old_polls.pop(step.mailbox_id, None)
            else:
                replaced = old_sends.pop(step.mailbox_id, None)
                item, cover = await self._envelope_for(step, replaced, chains)
                if item is None:
                    continue
                slot = self._send_slot(tick, step.at, item, step.contact_id, cover=cover)
            built.append(_Built(slot[0], slot[1], None if replaced is None else replaced.slot_id))
        cancel = [s.slot_id for s in (*old_polls.values(), *old_sends.values())]
        await self._upload(built, cancel)
        if self._ahead_shape is not None and _shape(plan) != self._ahead_shape:
            # A contact or a mailbox came or went: the ticks built ahead no longer look like
            # ours. Build them again (their covers are spent).
            later = [s.slot_id for s in self._state.slots.values() if s.tick > tick]
            await self._upload([], later)
            self._state.built_to = tick
            self._ahead_shape = None
        else:
            await self._rechain(tick, chains)
        live = {s.item.item_id for s in self._state.slots.values() if s.cover and s.item is not None}
        self._cover_chain = {i: c for i, c in self._cover_chain.items() if i in live}

    def _chains(self, tx: Transaction) -> dict[ContactId, bytes]:
        """Each contact's sending chain now: our ratchet key of the session with them."""
        chains: dict[ContactId, bytes] = {}
        for contact in tx.contacts.all():
            record = tx.sessions.get(contact.address)
            if record is not None and record.current is not None:
                chains[contact.contact_id] = record.current.sender_chain.ratchet_key.public.to_bytes()
        return chains

    async def _rechain(self, tick: int, chains: dict[ContactId, bytes]) -> None:
        """Seal again the covers held for ticks after ``tick`` whose sending chain is no longer
        ours (a message from the contact moved the ratchet on): the contact keeps only the last
        few chains, and a cover on an older one would not open there."""
        stale = [
            s
            for s in self._state.slots.values()
            if s.tick > tick
            and s.cover
            and s.item is not None
            and s.contact_id is not None
            and self._cover_chain.get(s.item.item_id) != chains.get(s.contact_id)
        ]
        built: list[_Built] = []
        for old in sorted(stale, key=lambda s: s.at):
            assert old.contact_id is not None
            cover = await self._new_cover(old.contact_id)
            if cover is not None:
                slot, request = self._send_slot(old.tick, old.at, cover, old.contact_id, cover=True)
                built.append(_Built(slot, request, old.slot_id))
        if built:
            await self._upload(built, [])

    async def _top_up(self, rebuilt: int, until: float = math.inf) -> None:
        """Build the ticks after the last one built (and after ``rebuilt``, the tick the refresh
        built in full) up to the horizon, each with covers and polls that acknowledge nothing.

        The nearest tick goes alone, then batches of twice as many ticks, each within one upload
        (a device back from a night builds its whole horizon in a few requests, nearest first).
        Past the near ticks (:data:`NEAR_S`) it stops at ``until`` (unix seconds: the next
        tick's rebuild, which must not wait for the far ticks) once it has built two batches;
        the next refresh goes on. A
        forwarder that holds no more (507) keeps the schedule as far as it reaches: the next
        refresh tries again, one tick at a time. Any other refusal is raised (ScheduleError)."""
        now = self._now()
        current = cadence_plan.tick_of(now, self._tick)
        last = current + horizon_ticks(self._tick, self._horizon_s)
        near = current + min(
            horizon_ticks(self._tick, self._horizon_s),
            max(2, min(MAX_NEAR_TICKS, math.ceil(NEAR_S / self._tick))),
        )
        tick = max(self._state.built_to + 1, rebuilt + 1, current + 1)
        ticks = 1
        while tick <= last:
            built = await self._ahead(tick)
            per_tick = max(len(built), 1)
            upto = tick
            while upto < min(last, tick + ticks - 1) and len(built) + per_tick <= UPLOAD_BATCH:
                upto += 1
                built += await self._ahead(upto)
            try:
                await self._upload(built, [])
            except ScheduleError as e:
                if e.status != 507:
                    raise
                ahead = self._state.built_to - cadence_plan.tick_of(now, self._tick)
                log.info("the forwarder holds the schedule %d ticks ahead, and no more", ahead)
                return
            self._state.built_to = upto
            tick, ticks = upto + 1, ticks * 2
            if upto >= near and self._now() >= until and ticks > 2:
                return  # at least three ticks a refresh: the horizon grows even when time is short

    async def _ahead(self, tick: int) -> list[_Built]:
        engine = self._engine
        plan: cadence_plan.TickPlan = await engine.transaction(
            partial(self._plan, tick=tick, tick_seconds=self._tick)
        )
        self._ahead_shape = _shape(plan)
        seeds = await engine.transaction(lambda tx: mailbox_flow.to_drain(tx, engine.now_ms()))
        built: list[_Built] = []
        for step in plan.steps:
            if isinstance(step, cadence_plan.Poll):
                seed = seeds.get(step.mailbox_id)
                if seed is not None:
                    slot, request = self._poll_slot(tick, step.at, step.mailbox_id, SigningKey(seed), ())
                    built.append(_Built(slot, request))
            elif step.contact_id is not None:
                cover = await self._new_cover(step.contact_id)
                if cover is not None:
                    slot, request = self._send_slot(tick, step.at, cover, step.contact_id, cover=True)
                    built.append(_Built(slot, request))
        return built

    async def _envelope_for(
        self, step: cadence_plan.Send, replaced: _Slot | None, chains: dict[ContactId, bytes]
    ) -> tuple[OutboxItem | None, bool]:
        """The envelope for a send step: the oldest queued for its mailbox and not already in a
        slot; else (a contact's step) the cover built ahead for it, or a new cover."""
        engine = self._engine
        busy = set(self._state.in_flight)
        if replaced is not None and replaced.item is not None and not replaced.cover:
            busy.discard(replaced.item.item_id)  # it is being replaced: it may go again here
        item = await engine.transaction(partial(_oldest_free, mailbox_id=step.mailbox_id, busy=busy))
        if item is not None:
            return item, False
        if step.contact_id is None:
            return None, False
        kept = replaced.item if replaced is not None and replaced.cover else None
        current = chains.get(step.contact_id)
        if (
            kept is not None
            and kept.mailbox_id == step.mailbox_id
            and self._cover_chain.get(kept.item_id) == current
        ):
            return kept, True
        return await self._new_cover(step.contact_id), True

    async def _new_cover(self, contact_id: ContactId) -> OutboxItem | None:
        engine = self._engine
        contact = engine.read(lambda tx: tx.contacts.get(contact_id))
        if contact is None:
            return None
        async with engine.peers([contact.address.name]):
            return await engine.transaction(partial(self._cover_in, contact_id=contact_id))

    def _cover_in(self, tx: Transaction, *, contact_id: ContactId) -> OutboxItem | None:
        """A cover envelope for the contact, sealed now and kept in memory only."""
        contact = tx.contacts.get(contact_id)
        theirs = tx.their_mailboxes.get(contact_id)
        if contact is None or theirs is None:
            return None
        before = {i.item_id for i in tx.outbox.all()}
        if not sending.send_cover(self._engine.context(tx), contact):
            return None
        made = [i for i in tx.outbox.all() if i.item_id not in before]
        for item in made:
            tx.outbox.remove(item.item_id)
        if not made:
            return None
        record = tx.sessions.get(contact.address)
        if record is not None and record.current is not None:
            self._cover_chain[made[-1].item_id] = record.current.sender_chain.ratchet_key.public.to_bytes()
        return made[-1]

    def _poll_slot(
        self, tick: int, at: float, mailbox_id: MailboxId, key: SigningKey, acks: tuple[bytes, ...]
    ) -> tuple[_Slot, bytes]:
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/poll"
        body = api.Poll(ack=list(acks), limit=POLL_LIMIT).model_dump_json().encode()
        sign_ms = int(at * 1000) - SIGN_LEAD_MS + self._sign_offset_ms
        header = mailbox_auth(key, "POST", path, body, unix_ms=sign_ms)
        headers = ((b"content-type", b"application/json"), (b"sotto-mailbox-auth", header.encode("ascii")))
        request, context = self._seal("POST", path, headers, body, at)
        slot = _Slot(self._engine.rng(16), tick, at, context, mailbox_id, poll=True, acks=acks)
        return slot, request

    def _send_slot(
        self, tick: int, at: float, item: OutboxItem, contact_id: ContactId | None, *, cover: bool
    ) -> tuple[_Slot, bytes]:
        path = f"/v1/mailboxes/{b64.encode(item.mailbox_id)}/messages"
        body = (
            api.SendMessage(message_id=item.message_id, payload=self._engine.wire_payload(item))
            .model_dump_json()
            .encode()
        )
        headers = (
            (b"content-type", b"application/json"),
            (b"sotto-delivery-token", b64.encode(item.delivery_token).encode("ascii")),
        )
        request, context = self._seal("POST", path, headers, body, at)
        slot = _Slot(
            self._engine.rng(16),
            tick,
            at,
            context,
            item.mailbox_id,
            poll=False,
            contact_id=contact_id,
            item=item,
            cover=cover,
        )
        return slot, request

    def _seal(
        self, method: str, path: str, headers: tuple[tuple[bytes, bytes], ...], body: bytes, at: float
    ) -> tuple[bytes, ohttp.ResponseContext]:
        return self._oblivious.seal(method, path, headers, body, at + self._oblivious.date_offset)

    # ------------------------------------------------------------------ the forwarder
    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(self._base + path, json=body)
        except httpx.HTTPError as e:
            raise ScheduleError(f"the forwarder was not reached: {type(e).__name__}") from None
        if response.status_code != 200:
            code = "http_error"
            with contextlib.suppress(ValueError, AttributeError):
                code = str(response.json().get("code", code))[:64]
            raise ScheduleError(
                f"the forwarder refused the schedule request: {response.status_code} {code}",
                response.status_code,
            )
        try:
            answer = response.json()
        except ValueError:
            raise ScheduleError("the forwarder's answer is not JSON", response.status_code) from None
        if not isinstance(answer, dict):
            raise ScheduleError("the forwarder's answer is not an object", response.status_code)
        return answer

    async def _upload(self, built: list[_Built], cancel: list[bytes]) -> None:
        """Leave ``built`` at the forwarder (replacing what each names) and cancel ``cancel``.
        Nothing is recorded as held unless the forwarder said so."""
        state = self._state
        clear = not self._cleared
        if clear:
            # The first upload of this process clears every slot held from its first tick on.
            cancel = []
            next_tick = cadence_plan.tick_of(self._now(), self._tick) + 1
            clear_from = int(cadence_plan.tick_start(next_tick, self._tick) * 1000)
            clear_from = min([clear_from, *(int(b.slot.at * 1000) for b in built)])
        while len(cancel) > UPLOAD_BATCH:
            await self._upload([], cancel[:UPLOAD_BATCH])
            cancel = cancel[UPLOAD_BATCH:]
        for start in range(0, max(len(built), 1), UPLOAD_BATCH):
            batch = built[start : start + UPLOAD_BATCH]
            body = {
                "slots": [
                    {
                        "id": b64.encode(b.slot.slot_id),
                        "at": int(b.slot.at * 1000),
                        "request": b64.encode(b.request),
                        **({"replaces": b64.encode(b.replaces)} if b.replaces is not None else {}),
                    }
                    for b in batch
                ],
                "cancel": [b64.encode(i) for i in cancel] if start == 0 else [],
            }
            if clear and start == 0:
                del body["cancel"]
                body["clear_from"] = clear_from
            try:
                answer = await self._call("/slots", body)
            except ScheduleError as e:
                if e.status is not None:
                    raise
                # No answer (the connection dropped): the upload may or may not have been
                # applied. Once more, in a form that means the same either way.
                answer = await self._call("/slots", _either_way(body))
            self._cleared = True
            held = set(_ids(answer.get("held")))
            replaced = {b.replaces for b in batch if b.replaces is not None and b.slot.slot_id in held}
            gone = replaced | (set(cancel) if start == 0 else set())
            released = set(_ids(answer.get("released")))
            for slot_id in gone - released:
                self._forget(slot_id)
            for b in batch:
                if b.slot.slot_id in held:
                    state.slots[b.slot.slot_id] = b.slot
                    if b.slot.item is not None and not b.slot.cover:
                        state.in_flight[b.slot.item.item_id] = b.slot.slot_id

    def _forget(self, slot_id: bytes) -> None:
        slot = self._state.slots.pop(slot_id, None)
        item_id = None if slot is None or slot.item is None or slot.cover else slot.item.item_id
        if item_id is not None and self._state.in_flight.get(item_id) == slot_id:
            del self._state.in_flight[item_id]

    async def _collect_all(self) -> bool:
        """Collect and handle every answer the forwarder kept; whether it answered. The
        forwarder being away is no error: the slots go on without us."""
        state = self._state
        for _ in range(64):
            try:
                answer = await self._call("/collect", {"ack": [b64.encode(i) for i in state.collected]})
            except ScheduleError as e:
                log.info("schedule answers not collected: %s", e)
                return e.refused  # refused: the forwarder is there (the upload will tell more)
            state.collected = []
            replies = answer.get("replies")
            for reply in replies if isinstance(replies, list) else []:
                try:
                    slot_id = b64.decode(reply["id"], length=16)
                    status, media, body = int(reply["status"]), str(reply["type"]), b64.decode(reply["body"])
                except (KeyError, TypeError, ValueError, DecodeError):
                    continue
                try:
                    await self._handle(slot_id, status, media, body)
                except Exception as e:  # not acknowledged: it comes again
                    log.warning("a scheduled answer failed: %s", type(e).__name__)
                    continue
                state.collected.append(slot_id)
            if not answer.get("more"):
                break
        now = self._now()
        for slot in list(state.slots.values()):
            if slot.at + LOST_AFTER_S < now:
                self._forget(slot.slot_id)
        return True

    async def _handle(self, slot_id: bytes, status: int, media: str, body: bytes) -> None:
        slot = self._state.slots.get(slot_id)
        if slot is None:
            return  # from a slot we gave up on: only acknowledged
        try:
            response = self._oblivious.open_sealed(slot.context, status, media, body)
        except ForwarderUnavailableError:
            self._forget(slot_id)
            return
        if slot.poll:
            await self._polled(slot, response)
        else:
            await self._sent(slot, response)
        self._forget(slot_id)

    async def _polled(self, slot: _Slot, response: httpx.Response) -> None:
        engine = self._engine
        if response.status_code != 200:
            named = auth.decode_sign_time(response.headers.get(auth.SIGN_TIME_HEADER))
            if response.status_code == 401 and named is not None:
                self._sign_offset_ms = named - engine.now_ms()
            elif response.status_code == 404:
                await engine.register_again(slot.mailbox_id)
            return
        try:
            result = api.PollResult.model_validate_json(response.content)
        except ValueError:
            return
        pending = self._state.acks.setdefault(slot.mailbox_id, [])
        acked = set(slot.acks)
        pending[:] = [i for i in pending if i not in acked]
        committed = 0
        for polled in result.envelopes:
            if polled.id in pending:
                continue  # consumed already (polls built ahead hand the same envelopes out again)
            envelope = frames.Envelope(slot.mailbox_id, polled.id, polled.day, polled.payload)
            outcome = await engine.consume(envelope)
            pending.append(polled.id)
            engine.emit(outcome.events)
            await engine.finish(outcome)
            committed += 1
        if committed:
            await engine.send_receipts(ReceiptKind.DELIVERED)

    async def _sent(self, slot: _Slot, response: httpx.Response) -> None:
        item = slot.item
        if item is None or slot.cover:
            return
        engine = self._engine
        if response.is_success:  # 202: stored; 200 with duplicate: it was already
            await engine.confirm([item.item_id])
        elif response.status_code in (400, 404, 413, 422):
            # Possibly refused for good: one attempt of the engine's own, which drops and
            # reports it, or keeps it for later, as a live send would.
            self._forget(slot.slot_id)
            current = engine.read(lambda tx: tx.outbox.get(item.item_id))
            if current is not None and await engine.send_item(current):
                await engine.confirm([item.item_id])


def _either_way(body: dict[str, Any]) -> dict[str, Any]:
    """An upload whose outcome is the same whether ``body`` was applied before or not: each slot
    replaces itself (held again if it was held), and the slots it replaced are cancelled (gone
    already if it was applied). Otherwise a lost answer would leave slots at the forwarder that
    we do not know of, to go out beside the ones built again in their place."""
    slots = body["slots"]
    replaced = [slot["replaces"] for slot in slots if "replaces" in slot]
    again: dict[str, Any] = {"slots": [{**slot, "replaces": slot["id"]} for slot in slots]}
    if "clear_from" in body:
        again["clear_from"] = body["clear_from"]  # it clears the replaced slots too, if due after it
    else:
        again["cancel"] = [*body["cancel"], *replaced]
    return again


def _shape(plan: cadence_plan.TickPlan) -> frozenset[tuple[bool, MailboxId]]:
    return frozenset(
        (isinstance(step, cadence_plan.Poll), step.mailbox_id)
        for step in plan.steps
        if isinstance(step, cadence_plan.Poll) or step.contact_id is not None
    )


def _oldest_free(tx: Transaction, *, mailbox_id: MailboxId, busy: set[OutboxItemId]) -> OutboxItem | None:
    return next(
        (item for item in tx.outbox.all() if item.mailbox_id == mailbox_id and item.item_id not in busy), None
    )


def _ids(value: Any) -> list[bytes]:
    if not isinstance(value, list):
        return []
    found: list[bytes] = []
    for text in value:
        try:
            found.append(b64.decode(text, length=16))
        except DecodeError:
            continue
    return found
