"""The client's engine: store transactions, per-peer locks, and the three background tasks.

Every step is a flow from :mod:`sotto.client.flows` run inside one short store transaction
(:meth:`Runtime._tx`). Work on one peer's session is serialized by that peer's ``asyncio.Lock``,
held around "load, compute, commit" and across the awaits before it (libsignal clients that
encrypted and decrypted one session concurrently got "Bad MAC" in the field); several locks are
always taken in one global order. Between :meth:`Runtime.start` and :meth:`Runtime.close`:

* the **drain** loop keeps one WebSocket subscribed to all our mailboxes; each envelope is
  unsealed, then decrypted and applied under its sender's lock in one transaction, reported, and
  only then acknowledged (a lost ack means a redelivery that the dedupe table drops); it
  reconnects with exponential backoff and jitter, and on each connection re-registers mailboxes
  the relay refuses, uploads pending prekeys and retires old mailboxes and invites;
* the **outbox** worker sends queued envelopes over HTTP in queue order per mailbox, removing
  each only after the relay confirmed it (``sent`` or ``duplicate``), retrying with backoff;
* the **receipt** timer sends the delivery receipts we owe, one message per contact, after a
  randomized delay (``receipt_delay`` × 0.5–1.5), so their timing says little about arrivals.

In **cadence mode** (``cadence=True``, relay-protocol §6) none of these three runs. One cadence
loop follows the relay's ticks and carries out :func:`sotto.client.cadence.plan_tick`'s plan for
each: at its offset, each of our mailboxes is polled over a fresh connection (acknowledging what
its previous poll brought and we committed), and each contact is sent one envelope over a fresh
connection (the oldest queued for them, or cover). Nothing goes out at other times: sends,
receipts and answers wait in the outbox for their contact's next slot, and typing is not sent.
A failed request is retried in a later tick: an envelope leaves the outbox only when the relay
confirmed it, a polled envelope is acknowledged only after its commit.

The receive policy (what is acknowledged when, what is dropped) is in
:mod:`sotto.client.flows.receiving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from functools import partial
from typing import TypeVar

from sotto.client import cadence as cadence_plan
from sotto.client.events import (
    ConnectionChanged,
    EnvelopeRejected,
    Event,
    GroupMessageReceived,
    MessageReceived,
    RejectReason,
    SendFailed,
)
from sotto.client.flows import account as account_flow
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import receiving, repair, reporting, sending
from sotto.client.flows.context import (
    DAY_MS,
    Command,
    Context,
    DeleteMailbox,
    Me,
    Outcome,
    RefillPreKeys,
    RegisterMailbox,
    RevokeAccessToken,
)
from sotto.client.transport import DeviceCredentials, DrainConnection, Network, Relay
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import Rng, system_rng
from sotto.errors import (
    ClientError,
    EnvelopeRejectedError,
    RelayError,
    RelayUnavailableError,
)
from sotto.store.interfaces import Store, Transaction
from sotto.store.model import (
    Account,
    ContactId,
    MailboxId,
    MessageId,
    OutboxItem,
    OutboxItemId,
    ReceiptKind,
)
from sotto.wire import frames

log = logging.getLogger("sotto.client")

DEFAULT_RECEIPT_DELAY_S = 10.0
KEEPALIVE_S = 60.0
"""An empty ack this often keeps the drain connection from the relay's idle timeout."""
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 30.0
OUTBOX_RETRY_MIN_MS = 500
OUTBOX_RETRY_MAX_MS = 15 * 60_000
NOT_FOUND_ATTEMPTS = 8
"""A mailbox the relay does not know may appear shortly (a contact's registration racing our
send); after this many refusals the envelope is dropped and reported."""
CONFIRM_BATCH = 64
"""Confirmed outbox items removed per transaction."""
CADENCE_POLL_LIMIT = 32
"""Envelopes one poll takes; more wait for the mailbox's next tick (the relay says ``more``)."""
CADENCE_HOUSEKEEPING_S = 3_600.0
"""In cadence mode prekeys and old mailboxes are seen to this often (there are no connections
to do it on)."""
POISON_ATTEMPTS = 3
"""An envelope whose processing fails this often for reasons that are not its fault (a bug, a
store error) is dropped as permanently failing rather than blocking the connection forever."""

T = TypeVar("T")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Runtime:
    """The engine under :class:`~sotto.client.sdk.Client` (see the module docstring)."""

    offload_transactions = False
    """Run store transactions in worker threads rather than on the event loop."""

    def __init__(
        self,
        store: Store,
        network: Network,
        account: Account,
        *,
        rng: Rng = system_rng,
        clock: Callable[[], int] = wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
        owns_network: bool = True,
        cadence: bool = False,
    ) -> None:
        self._store = store
        self._network = network
        self._account = account
        self._rng = rng
        self._clock = clock
        self._receipt_delay = receipt_delay
        self._owns_network = owns_network
        self._me: Me | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._connection: DrainConnection | None = None
        self._connected = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._receipts_owed = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._failures: dict[tuple[bytes, bytes], int] = {}
        self._last_envelope = 0.0
        self._closed = False
        self._cadence = cadence
        self._cadence_acks: dict[MailboxId, list[bytes]] = {}
        """Per mailbox: envelopes committed since its last poll, acknowledged on its next."""
        self._tick_seconds: int | None = None
        self._ticks_done = asyncio.Condition()
        self._last_tick_start = 0.0
        self._replayed = False
        self._handed: list[Event] = []
        """Events ``listen()`` handed to the app and not yet marked taken."""

    async def close(self) -> None:
        """Stop the background tasks, close the connection, the network and the store."""
        if self._closed:
            return
        with contextlib.suppress(Exception):  # the store may be failing: then they come again
            self._mark_handed()
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._connection is not None:
            await self._connection.close()
        self._events.put_nowait(None)
        if self._owns_network:
            await self._network.aclose()
        self._store.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def cadence(self) -> bool:
        """Whether this client runs in cadence mode (see the module docstring)."""
        return self._cadence

    @property
    def tick_seconds(self) -> int | None:
        """In cadence mode, the relay's tick once it was read (None before, and otherwise)."""
        return self._tick_seconds

    # ------------------------------------------------------------------ plumbing
    def _now(self) -> int:
        return self._clock()

    def _uniform(self, low: float, high: float) -> float:
        """A uniform draw in ``[low, high)`` from the client's randomness (jitter of retries and
        receipts: from ``rng``, so a seeded client replays its timing too)."""
        return low + (high - low) * (int.from_bytes(self._rng(7)) >> 3) / (1 << 53)

    def _current_me(self) -> Me:
        self._me = Me.current(self._me, self._account, self._now(), self._rng)
        return self._me

    def _ctx(self, tx: Transaction) -> Context:
        return Context(tx, self._current_me(), self._now(), self._rng)

    async def _tx(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` in one store transaction, on the event loop thread.

        A step is a few hundred microseconds of cryptography and a few SQLite statements. In a
        worker thread it would be slower, not faster: the work holds the GIL, and the event loop
        then waits up to the interpreter's 5 ms switch interval for every reply it handles
        (measured: 3x less throughput end to end). With :attr:`offload_transactions` set, steps
        run in worker threads instead (a store on a slow disk; the tests, to interleave steps for
        real and show the per-peer locks hold).
        """
        if self.offload_transactions:
            return await asyncio.to_thread(run_transaction, self._store, fn)
        return run_transaction(self._store, fn)

    def _read(self, fn: Callable[[Transaction], T]) -> T:
        """A short read in the caller's thread (for the synchronous query methods)."""
        return run_transaction(self._store, fn)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def _peers(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Hold the session locks of several peers, taken in one global order (no deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for name in sorted(set(names)):
                await stack.enter_async_context(self._lock(name))
            yield

    def _relay(self, url: str | None = None) -> Relay:
        return self._network.relay(url or self._account.server_url)

    def _credentials(self) -> DeviceCredentials:
        a = self._account
        return DeviceCredentials(a.account_id, a.device_id, a.device_secret)

    def _emit(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived | GroupMessageReceived):
                self._receipts_owed.set()
            self._events.put_nowait(event)

    # ------------------------------------------------------------------ reporting at least once
    def _replay_unreported(self) -> None:
        """Report again what was committed but not taken by the app before (see
        :mod:`sotto.client.flows.reporting`); runs once, before anything new is received."""
        if self._replayed:
            return
        self._replayed = True
        self._emit(self._read(reporting.unreported))

    def _mark_taken(self, events: list[Event]) -> None:
        """The app has these events: they are not reported again after a restart."""
        kept = [e for e in events if reporting.is_kept(e)]
        if kept and not self._closed:
            self._read(partial(reporting.mark_taken, events=kept))

    def _mark_handed(self) -> None:
        """The app is done with what ``listen()`` handed it (it asked for more, or closes us)."""
        handed, self._handed = self._handed, []
        self._mark_taken(handed)

    async def _after_send(self) -> None:
        if self._cadence:
            return  # the next tick takes it
        if self._tasks:
            self._outbox_wake.set()
        else:
            await self._flush_outbox()

    # ------------------------------------------------------------------ receiving
    async def start(self) -> None:
        """Start the drain, outbox and receipt tasks (idempotent)."""
        if self._closed:
            raise ClientError("the client is closed")
        if self._tasks:
            return
        self._replay_unreported()
        if self._cadence:
            self._tasks = [asyncio.create_task(self._cadence_loop(), name="sotto-cadence")]
            return
        self._tasks = [
            asyncio.create_task(self._drain_loop(), name="sotto-drain"),
            asyncio.create_task(self._outbox_loop(), name="sotto-outbox"),
            asyncio.create_task(self._receipt_loop(), name="sotto-receipts"),
        ]

    async def _outbox_settled(self) -> bool:
        now = self._now()
        due = await self._tx(lambda tx: tx.outbox.due(now, 1))
        return not due

    async def _drain_loop(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closed:
            try:
                connection = await self._relay().connect()
            except (RelayUnavailableError, RelayError) as e:
                log.info("delivery connection failed: %s", type(e).__name__)
            else:
                self._connection = connection
                try:
                    await self._serve(connection)
                except (RelayUnavailableError, RelayError) as e:
                    log.info("delivery connection ended: %s", type(e).__name__)
                except Exception as e:  # a store failure or a bug: reconnect rather than die
                    log.warning("receiving failed: %s", type(e).__name__)
                finally:
                    self._connection = None
                    was_connected = self._connected.is_set()
                    self._connected.clear()
                    await connection.close()
                    if was_connected:
                        self._emit([ConnectionChanged(False)])
                        delay = RECONNECT_MIN_S
            await asyncio.sleep(delay * self._uniform(0.5, 1.5))
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _serve(self, connection: DrainConnection) -> None:
        await self._housekeeping()
        keys = await self._tx(lambda tx: mailbox_flow.to_drain(tx, self._now()))
        await self._subscribe_on(connection, {m: SigningKey(s) for m, s in keys.items()})
        self._connected.set()
        self._last_envelope = asyncio.get_running_loop().time()  # "idle" counts from here
        self._emit([ConnectionChanged(True)])
        self._outbox_wake.set()
        while not self._closed:
            envelope = await connection.receive(timeout=KEEPALIVE_S)
            if envelope is None:
                await connection.ack([])  # keep-alive
                continue
            self._last_envelope = asyncio.get_running_loop().time()
            await self._process(connection, envelope)
            self._last_envelope = asyncio.get_running_loop().time()

    async def _subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> None:
        connection = self._connection
        if connection is not None and mailboxes:
            with contextlib.suppress(RelayUnavailableError):
                await self._subscribe_on(connection, mailboxes)

    async def _subscribe_on(self, connection: DrainConnection, mailboxes: Mapping[bytes, SigningKey]) -> None:
        """Subscribe; a mailbox the relay refuses but we hold is registered again and retried once."""
        if not mailboxes:
            return
        answer = await connection.subscribe(mailboxes)
        retry: dict[bytes, SigningKey] = {}
        for mailbox_id in answer.refused:
            command = await self._tx(
                partial(_registration, mailbox_id=MailboxId(mailbox_id), now_ms=self._now())
            )
            if command is None:
                continue
            try:
                await self._relay().create_mailbox(command.request())
            except RelayError:
                continue
            retry[mailbox_id] = mailboxes[mailbox_id]
        if retry:
            await connection.subscribe(retry)

    async def _process(self, connection: DrainConnection, envelope: frames.Envelope) -> None:
        """Unseal, then decrypt and apply under the sender's lock; ack after the commit."""
        outcome = await self._consume(envelope)
        # The commit is what counts: report it and carry out its commands even if the ack is
        # lost with the connection (the relay then redelivers, and the copy is dropped as seen).
        self._emit(outcome.events)
        try:
            await connection.ack([(envelope.mailbox, envelope.id)])
        finally:
            await self._finish(outcome)

    async def _consume(self, envelope: frames.Envelope) -> Outcome:
        """Unseal, decrypt and apply one envelope, committed (or recorded as rejected): its outcome.

        Raises when processing failed for a reason that is not the envelope's fault (then it is
        not acknowledged, and comes again), unless that keeps happening.
        """
        key = (envelope.mailbox, envelope.id)
        mailbox_id, envelope_id = MailboxId(envelope.mailbox), MessageId(envelope.id)
        now = self._now()
        me = self._current_me()
        unsealed: receiving.Unsealed | None = None
        try:
            try:
                if self.offload_transactions:
                    unsealed = await asyncio.to_thread(receiving.unseal, me, envelope.payload, now)
                else:
                    unsealed = receiving.unseal(me, envelope.payload, now)
                async with self._peers([unsealed.sender_name]):
                    outcome = await self._tx(
                        lambda tx: _journaled(
                            tx, receiving.receive(self._ctx(tx), mailbox_id, envelope_id, unsealed)
                        )
                    )
            except EnvelopeRejectedError as rejection:
                outcome = await self._record_rejection(envelope, rejection)
                if unsealed is not None and outcome.events and rejection.reason == RejectReason.UNDECRYPTABLE:
                    await self._request_repair(envelope, unsealed)
        except Exception as error:
            # Not the envelope's fault as far as we can tell: leave it unacknowledged so the
            # relay redelivers it, unless it keeps failing.
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            log.warning("processing an envelope failed (%d): %s", failures, type(error).__name__)
            if failures < POISON_ATTEMPTS:
                raise
            failed = EnvelopeRejectedError(RejectReason.UNDECRYPTABLE.value, type(error).__name__)
            outcome = await self._record_rejection(envelope, failed)
        self._failures.pop(key, None)
        return outcome

    async def _request_repair(self, envelope: frames.Envelope, unsealed: receiving.Unsealed) -> None:
        """A 1:1 message that did not decrypt: ask its sender for a new session (rate-limited;
        see :mod:`sotto.client.flows.repair`). The rejection is already committed; if this
        fails, the next message that fails asks again."""
        mailbox_id = MailboxId(envelope.mailbox)

        def ask(tx: Transaction) -> bool:
            return repair.request_repair(
                self._ctx(tx),
                mailbox_id=mailbox_id,
                envelope_id=envelope.id,
                sender_name=unsealed.sender_name,
                sender_identity=unsealed.sender_identity,
                usmc=unsealed.content,
            )

        async with self._peers([unsealed.sender_name]):
            asked = await self._tx(ask)
        if asked:
            log.info("asked a contact for a new session")

    async def _record_rejection(self, envelope: frames.Envelope, rejection: EnvelopeRejectedError) -> Outcome:
        mailbox_id, envelope_id = MailboxId(envelope.mailbox), MessageId(envelope.id)
        events: list[Event] = [e for e in rejection.events if isinstance(e, Event)]

        def record(tx: Transaction) -> bool:
            fresh = tx.seen.add(mailbox_id, envelope_id, self._now() // DAY_MS)
            if fresh:
                reporting.journal(tx, events)  # an identity change must reach the app
            return fresh

        if not await self._tx(record):
            return Outcome()
        log.info("envelope dropped: %s (%s)", rejection.reason, rejection.detail)
        events.append(
            EnvelopeRejected(envelope.mailbox, envelope.id, RejectReason(rejection.reason), rejection.detail)
        )
        return Outcome(events=events)

    async def _finish(self, outcome: Outcome) -> None:
        """After a commit: carry out the commands, then let the outbox go."""
        await self._run_commands(outcome.commands)
        await self._after_send()

    async def _run_commands(self, commands: Iterable[Command]) -> None:
        relay = self._relay()
        for command in commands:
            try:
                match command:
                    case RegisterMailbox():
                        await relay.create_mailbox(command.request())
                        await self._subscribe({command.mailbox_id: SigningKey(command.signing_seed)})
                    case DeleteMailbox():
                        await relay.delete_mailbox(command.mailbox_id, SigningKey(command.signing_seed))
                    case RevokeAccessToken():
                        await relay.delete_access_token(self._credentials(), command.token)
                    case RefillPreKeys():
                        await self._refill_prekeys()
            except (RelayUnavailableError, RelayError) as e:
                # Each heals later: registration on the next subscription, deletions by expiry,
                # prekeys on the next connection.
                log.info("relay command %s failed: %s", type(command).__name__, type(e).__name__)

    # ------------------------------------------------------------------ housekeeping and prekeys
    async def _housekeeping(self) -> None:
        """On each connection: retire old mailboxes and invites, keep the prekeys published."""
        outcome = await self._tx(lambda tx: mailbox_flow.retire(self._ctx(tx)))
        await self._run_commands(outcome.commands)
        now = self._now()
        await self._tx(lambda tx: account_flow.rotate_prekeys(tx, self._account, now_ms=now, rng=self._rng))
        try:
            await self._upload_prekeys()
            await self._refill_prekeys()
        except RelayError as e:  # a refusal must not keep us from receiving; retried next time
            log.warning("prekey upload refused: %s", e.code)

    async def _upload_prekeys(self) -> None:
        pending = await self._tx(lambda tx: tx.prekeys.pending_upload())
        reissued = False
        while not pending.is_empty():
            body = account_flow.upload_request(pending)
            try:
                await self._relay().upload_keys(self._credentials(), body)
            except RelayError as e:
                # 409: the relay holds other keys under our ids, uploaded from a later copy of
                # this store (we were restored from an older one). Issue ours under fresh ids.
                if e.status != 409 or reissued:
                    raise
                reissued = True
                await self._tx(
                    partial(repair.reissue_prekeys, account=self._account, now_ms=self._now(), rng=self._rng)
                )
                log.info("prekey ids taken on the relay (restored store): issued new ones")
            else:
                await self._tx(partial(account_flow.mark_uploaded, body=body))
            pending = await self._tx(lambda tx: tx.prekeys.pending_upload())

    async def _refill_prekeys(self) -> None:
        counts = await self._relay().key_counts(self._credentials())
        missing = account_flow.refill_count(counts)
        if missing:
            now = self._now()
            await self._tx(
                lambda tx: account_flow.generate_prekeys(
                    tx, self._account, now_ms=now, rng=self._rng, one_time=missing
                )
            )
            await self._upload_prekeys()

    # ------------------------------------------------------------------ outbox
    async def _outbox_loop(self) -> None:
        while not self._closed:
            # Cleared before the pass, not after: a send queued while the pass runs sets it
            # again, so its wake-up cannot be lost.
            self._outbox_wake.clear()
            next_due: int | None = None
            try:
                next_due = await self._flush_outbox()
            except Exception as e:  # the worker must outlive a failed attempt
                log.warning("outbox failed: %s", type(e).__name__)
                next_due = self._now() + OUTBOX_RETRY_MIN_MS
            wait = None if next_due is None else max(0.05, (next_due - self._now()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wake.wait(), wait)

    async def _flush_outbox(self, *, force: bool = False) -> int | None:
        """Send what is due (everything, with ``force``), in queue order per mailbox; one attempt
        each. Returns when the next waiting item is due (ms), or None if the outbox is empty.

        Confirmed items leave the outbox in batches (one transaction per :data:`CONFIRM_BATCH`):
        if we die before that, they are sent again under the same ids and the relay answers
        "duplicate", which confirms them then.
        """
        async with self._flush_lock:
            now = self._now()
            items = await self._tx(lambda tx: tx.outbox.all())
            blocked: set[bytes] = set()
            next_due: int | None = None
            confirmed: list[OutboxItemId] = []
            try:
                for item in items:
                    if item.mailbox_id in blocked:
                        continue
                    waiting = item.next_attempt_ms > now and not force
                    sent = None if waiting else await self._send_item(item)
                    if sent is None:
                        blocked.add(item.mailbox_id)  # later items wait: order within a mailbox holds
                        retry_at = item.next_attempt_ms if waiting else self._now() + OUTBOX_RETRY_MIN_MS
                        next_due = retry_at if next_due is None else min(next_due, retry_at)
                    elif sent:
                        confirmed.append(item.item_id)
                        if len(confirmed) >= CONFIRM_BATCH:
                            await self._confirm(confirmed)
                            confirmed = []
            finally:
                if confirmed:
                    await self._confirm(confirmed)
            return next_due

    async def _confirm(self, item_ids: list[OutboxItemId]) -> None:
        self._emit(await self._tx(lambda tx: sending.confirm_sent_all(self._ctx(tx), item_ids)))

    async def _send_item(self, item: OutboxItem) -> bool | None:
        """One attempt: True if the relay took it (confirm it), False if it was refused for good
        (dropped and reported), None if it should be tried again later (rescheduled)."""
        relay = self._network.relay(item.server_url)
        send = relay.send_alone if self._cadence else relay.send
        try:
            await send(item.mailbox_id, item.delivery_token, item.message_id, item.payload)
        except (RelayUnavailableError, RelayError) as e:
            refused = isinstance(e, RelayError) and (
                e.status in (400, 413, 422) or (e.status == 404 and item.attempts + 1 >= NOT_FOUND_ATTEMPTS)
            )
            if refused:
                dropped = await self._tx(partial(_drop, item_id=item.item_id))
                reason = e.code if isinstance(e, RelayError) else type(e).__name__
                self._emit([SendFailed(m, reason) for m in dropped])
                return False
            delay = min(OUTBOX_RETRY_MIN_MS * 2**item.attempts, OUTBOX_RETRY_MAX_MS)
            retry_at = self._now() + int(delay * self._uniform(0.75, 1.25))
            await self._tx(lambda tx: tx.outbox.reschedule(item.item_id, retry_at))
            return None
        return True

    # ------------------------------------------------------------------ receipts
    async def _receipt_loop(self) -> None:
        while not self._closed:
            await self._receipts_owed.wait()
            await asyncio.sleep(self._receipt_delay * self._uniform(0.5, 1.5))
            self._receipts_owed.clear()
            try:
                await self._send_receipts(ReceiptKind.DELIVERED)
            except Exception as e:
                log.warning("receipts failed: %s", type(e).__name__)

    async def _send_receipts(self, kind: ReceiptKind) -> None:
        def owed(tx: Transaction) -> set[str]:
            names = set()
            for receipt in tx.messages.pending_receipts(10_000):
                contact = tx.contacts.get(receipt.contact_id)
                if receipt.kind is kind and contact is not None:
                    names.add(contact.address.name)
            return names

        names = await self._tx(owed)
        if not names:
            return
        async with self._peers(names):
            await self._tx(lambda tx: sending.flush_receipts(self._ctx(tx), kind))
        self._outbox_wake.set()

    # ------------------------------------------------------------------ cadence mode
    async def _cadence_loop(self) -> None:
        """Follow the relay's ticks (module docstring): from the next whole tick on, each tick's
        plan, step by step at its offset. Never stops before :meth:`close`."""
        delay = RECONNECT_MIN_S
        tick_seconds = 0
        while not self._closed and not tick_seconds:
            try:
                tick_seconds = (await self._relay().cadence()).tick_seconds
            except (RelayUnavailableError, RelayError) as e:
                log.info("cadence unavailable: %s", type(e).__name__)
                await asyncio.sleep(delay * self._uniform(0.5, 1.5))
                delay = min(delay * 2, RECONNECT_MAX_S)
        self._tick_seconds = tick_seconds
        self._connected.set()
        self._emit([ConnectionChanged(True)])
        housekept = -CADENCE_HOUSEKEEPING_S
        tick = cadence_plan.tick_of(self._now() / 1000, tick_seconds) + 1
        while not self._closed:
            loop_time = asyncio.get_running_loop().time()
            if loop_time - housekept >= CADENCE_HOUSEKEEPING_S:
                housekept = loop_time
                try:
                    await self._housekeeping()
                except Exception as e:  # retried in an hour; the ticks must go on
                    log.info("housekeeping failed: %s", type(e).__name__)
            # Wait for the tick to begin, then plan it with the state at its start.
            await self._sleep_until(cadence_plan.tick_start(tick, tick_seconds))
            try:
                plan = await self._tx(partial(self._plan, tick=tick, tick_seconds=tick_seconds))
            except Exception as e:  # the store failed: this tick is lost, not the loop
                log.warning("cadence plan failed: %s", type(e).__name__)
                tick += 1
                continue
            for step in plan.steps:
                await self._sleep_until(step.at)
                try:
                    if isinstance(step, cadence_plan.Poll):
                        await self._cadence_poll(step.mailbox_id)
                    else:
                        await self._cadence_send(step)
                except Exception as e:  # a step that failed is retried in a later tick
                    log.warning("cadence step failed: %s", type(e).__name__)
            async with self._ticks_done:
                self._last_tick_start = plan.start
                self._ticks_done.notify_all()
            # After an overrun (a slow relay), the next tick runs late; ticks missed whole are
            # skipped, not caught up.
            tick = max(tick + 1, cadence_plan.tick_of(self._now() / 1000, tick_seconds))

    async def _sleep_until(self, unix_seconds: float) -> None:
        wait = unix_seconds - self._now() / 1000
        if wait > 0:
            await asyncio.sleep(wait)

    def _plan(self, tx: Transaction, *, tick: int, tick_seconds: int) -> cadence_plan.TickPlan:
        ours = list(mailbox_flow.to_drain(tx, self._now()))
        contacts: dict[ContactId, MailboxId] = {}
        for contact in tx.contacts.all():
            theirs = tx.their_mailboxes.get(contact.contact_id)
            if theirs is not None:
                contacts[contact.contact_id] = theirs.mailbox_id
        queue = [(item.item_id, item.mailbox_id) for item in tx.outbox.all()]
        return cadence_plan.plan_tick(tick, tick_seconds, ours, contacts, queue=queue, rng=self._rng)

    async def _cadence_poll(self, mailbox_id: MailboxId) -> None:
        """Poll one mailbox: acknowledge what its last poll brought, then consume what it brings."""
        seeds = await self._tx(lambda tx: mailbox_flow.to_drain(tx, self._now()))
        seed = seeds.get(mailbox_id)
        if seed is None:
            return  # retired since the plan was made
        acks = self._cadence_acks.get(mailbox_id, [])
        try:
            result = await self._relay().poll(mailbox_id, SigningKey(seed), acks, CADENCE_POLL_LIMIT)
        except RelayError as e:
            if e.status == 404:  # expired or never created: register it again for the next tick
                await self._register_again(mailbox_id)
            raise
        self._cadence_acks[mailbox_id] = []
        committed = 0
        for polled in result.envelopes:
            envelope = frames.Envelope(mailbox_id, polled.id, polled.day, polled.payload)
            self._last_envelope = asyncio.get_running_loop().time()
            outcome = await self._consume(envelope)
            self._cadence_acks.setdefault(mailbox_id, []).append(polled.id)
            self._emit(outcome.events)
            await self._finish(outcome)
            committed += 1
        if committed:
            # Owed delivery receipts join the outbox: they leave in the contacts' next slots.
            await self._send_receipts(ReceiptKind.DELIVERED)

    async def _register_again(self, mailbox_id: MailboxId) -> None:
        command = await self._tx(partial(_registration, mailbox_id=mailbox_id, now_ms=self._now()))
        if command is not None:
            with contextlib.suppress(RelayUnavailableError, RelayError):
                await self._relay().create_mailbox(command.request())

    async def _cadence_send(self, step: cadence_plan.Send) -> None:
        """Send the oldest envelope queued for the step's mailbox now, else cover to its contact."""
        item: OutboxItem | None
        if step.contact_id is None:
            item = await self._tx(partial(_oldest, mailbox_id=step.mailbox_id))
        else:
            contact_id = step.contact_id
            contact = self._read(lambda tx: tx.contacts.get(contact_id))
            if contact is None:
                return
            async with self._peers([contact.address.name]):
                item = await self._tx(partial(self._oldest_or_cover, contact_id=contact.contact_id))
        if item is None:
            return
        if await self._send_item(item):
            await self._confirm([item.item_id])

    def _oldest_or_cover(self, tx: Transaction, *, contact_id: ContactId) -> OutboxItem | None:
        theirs = tx.their_mailboxes.get(contact_id)
        contact = tx.contacts.get(contact_id)
        if theirs is None or contact is None:
            return None
        item = _oldest(tx, mailbox_id=theirs.mailbox_id)
        if item is None and sending.send_cover(self._ctx(tx), contact):
            item = _oldest(tx, mailbox_id=theirs.mailbox_id)
        return item

    async def _wait_for_tick(self, after_unix_s: float, timeout: float) -> None:
        """Until a tick that started at or after ``after_unix_s`` is done (or ``timeout``)."""
        async with self._ticks_done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._ticks_done.wait_for(lambda: self._last_tick_start >= after_unix_s), timeout
                )


def _oldest(tx: Transaction, *, mailbox_id: MailboxId) -> OutboxItem | None:
    return next((item for item in tx.outbox.all() if item.mailbox_id == mailbox_id), None)


def _registration(tx: Transaction, *, mailbox_id: MailboxId, now_ms: int) -> RegisterMailbox | None:
    return mailbox_flow.registration_for(tx, mailbox_id, now_ms)


def _journaled(tx: Transaction, outcome: Outcome) -> Outcome:
    """Keep the outcome's events that must reach the app, in the transaction that made them."""
    reporting.journal(tx, outcome.events)
    return outcome


def run_transaction(store: Store, fn: Callable[[Transaction], T]) -> T:
    with store.transaction() as tx:
        return fn(tx)


def _drop(tx: Transaction, *, item_id: OutboxItemId) -> list[MessageId]:
    """Remove a refused envelope; the id to report: its message's, or the envelope's own for one
    that carried no history entry (a contact request, a receipt)."""
    item = tx.outbox.get(item_id)
    if item is None:
        return []
    tx.outbox.remove(item_id)
    message = None if item.message_row is None else tx.messages.get(item.message_row)
    return [item.message_id if message is None else message.message_id]
