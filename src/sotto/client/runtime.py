"""The client's engine: store transactions, per-peer locks, and the background work.

:class:`Engine` is what :class:`~sotto.client.sdk.Client` holds (the client is the API and the
app's event stream on top of it). It is handed everything it touches outside itself: the
store, the network (:class:`~sotto.client.transport.Network`: the real HTTP and WebSocket
transport, a test's fake relay, or the simulation's in-process one), the clock
(:class:`~sotto.client.clock.Clock`: the wall clock and the event loop's timers, or virtual
ones), the randomness (``rng``), and where its events go (``report``). So the same engine runs
in the app, in the tests and in the leakage simulation.

Every step is a flow from :mod:`sotto.client.flows` run inside one short store transaction
(:meth:`Engine.transaction`). Work on one peer's session is serialized by that peer's
``asyncio.Lock``, held around "load, compute, commit" and across the awaits before it (libsignal
clients that encrypted and decrypted one session concurrently got "Bad MAC" in the field);
several locks are always taken in one global order (:meth:`Engine.peers`).

The engine holds the steps: :meth:`Engine.consume` (unseal, decrypt and apply one envelope,
committed or recorded as rejected, and ask for a session repair when a 1:1 message does not
decrypt), :meth:`Engine.send_item` (one attempt at one outbox item, rescheduled with backoff or
dropped and reported), :meth:`Engine.flush_outbox`, :meth:`Engine.send_receipts`,
:meth:`Engine.chore` (one account request or deletion, or the housekeeping: retire old
mailboxes and invites, rotate, upload and refill prekeys). When they run is its scheduler's
business (:mod:`sotto.client.scheduler`): in default mode a drain connection, an outbox worker,
a receipt timer and chores at random instants; in **cadence mode**
(``cadence=True``, relay-protocol §6) the relay's ticks, each carried out as
:func:`sotto.client.cadence.plan_tick` plans it, and nothing at other times.

The receive policy (what is acknowledged when, what is dropped) is in
:mod:`sotto.client.flows.receiving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

from sotto.client.clock import Clock, LoopClock
from sotto.client.events import (
    ConnectionChanged,
    EnvelopeRejected,
    Event,
    GroupMessageReceived,
    MessageChangeIgnored,
    MessageReceived,
    RejectReason,
    SendFailed,
    SendHeld,
)
from sotto.client.flows import account as account_flow
from sotto.client.flows import devices as device_flow
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import receiving, repair, reporting, sending, trust
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
from sotto.client.scheduler import CadenceScheduler, InteractiveScheduler, Scheduler
from sotto.client.sizes import EnvelopeSizes
from sotto.client.stopping import stop_tasks
from sotto.client.transport import DeviceCredentials, Network, Relay
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import Rng, system_rng
from sotto.errors import (
    ClientError,
    EnvelopeRejectedError,
    MailboxFullError,
    QuotaExceededError,
    RelayError,
    RelayFullError,
    RelayUnavailableError,
)
from sotto.store.interfaces import Store, Transaction
from sotto.store.model import (
    Account,
    Contact,
    MailboxId,
    MessageId,
    OutboxItem,
    OutboxItemId,
    ReceiptKind,
)
from sotto.wire import frames

log = logging.getLogger("sotto.client")

DEFAULT_RECEIPT_DELAY_S = 10.0
OUTBOX_RETRY_MIN_MS = 500
OUTBOX_RETRY_MAX_MS = 15 * 60_000
HELD_RETRY_MIN_MS = 30_000
"""The first retry of an envelope the relay has no room for (a 507): a full mailbox empties when
its owner reads, not within the half second an unreachable relay may take to come back."""
NOT_FOUND_ATTEMPTS = 8
"""A mailbox the relay does not know may appear shortly (a contact's registration racing our
send); after this many refusals the envelope is dropped and reported."""
CONFIRM_BATCH = 64
"""Confirmed outbox items removed per transaction."""
POISON_ATTEMPTS = 3
"""An envelope whose processing fails this often for reasons that are not its fault (a bug, a
store error) is dropped as permanently failing rather than blocking the connection forever."""

HOUSEKEEPING_MEAN_S = 3_600.0
"""Account chores (prekey checks and refills, revoking used invites' access tokens, deleting
mailboxes whose grace ended) run one at a time, at random instants: the waits between them are
exponential with this mean, drawn from the engine's ``rng`` (a Poisson process, so an instant
says nothing about what the device did just before or after)."""

SPREAD_S = (2.0, 12.0)
"""Between two requests of one user action that the relay must not see together (an invite's
mailbox creation and its access-token update; the creations of ``sotto rotate``), the engine
waits a uniform draw in this range, in seconds."""

T = TypeVar("T")
Report = Callable[[list[Event]], None]
"""Where the engine's events go (the client queues them for the app)."""


class Engine:
    """One account's engine (see the module docstring)."""

    offload_transactions = False
    """Run store transactions in worker threads rather than on the event loop."""

    spread_s: tuple[float, float] = SPREAD_S
    """The range of :meth:`spread`'s waits."""

    def __init__(
        self,
        store: Store,
        network: Network,
        account: Account,
        *,
        report: Report,
        rng: Rng = system_rng,
        clock: Clock | None = None,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
        owns_network: bool = True,
        cadence: bool = False,
    ) -> None:
        self._store = store
        self._network = network
        self._account = account
        self._report = report
        self._rng = rng
        self._clock = clock or LoopClock()
        self._receipt_delay = receipt_delay
        self._owns_network = owns_network
        self._me: Me | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._failures: dict[tuple[bytes, bytes], int] = {}
        self._held: set[OutboxItemId] = set()
        self._chores: deque[Command] = deque()
        """Account and deletion commands waiting for a chore instant (:meth:`chore`)."""
        self._last_refusal: RelayError | None = None
        self._closed = False
        self._replayed = False
        self._relay_login: tuple[bytes, int] | None = None
        """The relay account and device id this device logs in as (read once from the store)."""
        self._scheduler: Scheduler = (
            CadenceScheduler(self) if cadence else InteractiveScheduler(self, receipt_delay=receipt_delay)
        )
        self._sizes = EnvelopeSizes(cadence=cadence, rng=rng)
        self._expiry_wake = asyncio.Event()
        """Set when a message may have been stored with an expiry time (see :meth:`_expiry_loop`)."""

    async def close(self) -> None:
        """Stop the background tasks, close the connection, the network and the store."""
        if self._closed:
            return
        self._closed = True
        await stop_tasks(self._tasks)
        self._tasks.clear()
        await self._scheduler.close()
        if self._owns_network:
            await self._network.aclose()
        self._store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def account(self) -> Account:
        return self._account

    @property
    def network(self) -> Network:
        return self._network

    @property
    def rng(self) -> Rng:
        return self._rng

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def last_refusal(self) -> RelayError | None:
        """The 507 (or the 404 of a mailbox the relay does not know) that held an envelope in the
        last outbox pass (None if none did)."""
        return self._last_refusal

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def cadence(self) -> bool:
        """Whether this engine runs in cadence mode (see the module docstring)."""
        return isinstance(self._scheduler, CadenceScheduler)

    @property
    def tick_seconds(self) -> int | None:
        """In cadence mode, the relay's tick once it was read (None before, and otherwise)."""
        return self._scheduler.tick_seconds

    # ------------------------------------------------------------------ plumbing
    def now_ms(self) -> int:
        return self._clock.now_ms()

    def uniform(self, low: float, high: float) -> float:
        """A uniform draw in ``[low, high)`` from the client's randomness (jitter of retries and
        receipts: from ``rng``, so a seeded client replays its timing too)."""
        return low + (high - low) * (int.from_bytes(self._rng(7)) >> 3) / (1 << 53)

    def current_me(self) -> Me:
        self._me = Me.current(self._me, self._account, self.now_ms(), self._rng)
        return self._me

    def context(self, tx: Transaction) -> Context:
        return Context(tx, self.current_me(), self.now_ms(), self._rng)

    async def transaction(self, fn: Callable[[Transaction], T]) -> T:
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

    def read(self, fn: Callable[[Transaction], T]) -> T:
        """A short read in the caller's thread (for the synchronous query methods)."""
        return run_transaction(self._store, fn)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def peers(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Hold the session locks of several peers, taken in one global order (no deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for name in sorted(set(names)):
                await stack.enter_async_context(self._lock(name))
            yield

    def relay(self, url: str | None = None) -> Relay:
        return self._network.relay(url or self._account.server_url)

    def credentials(self) -> DeviceCredentials:
        """The account's first device logs in as the account; a linked device as the relay
        account of its own that it registered (:mod:`sotto.client.flows.devices`)."""
        a = self._account
        if self._relay_login is None:
            self._relay_login = self.read(device_flow.relay_login) or (a.account_id, a.device_id)
        account_id, device_id = self._relay_login
        return DeviceCredentials(account_id, device_id, a.device_secret)

    def emit(self, events: Iterable[Event]) -> None:
        """Hand events to ``report``; a message received means a delivery receipt is owed (the
        scheduler decides when it goes)."""
        batch = list(events)
        if any(isinstance(event, MessageReceived | GroupMessageReceived) for event in batch):
            self._scheduler.receipts_owed()
            self._expiry_wake.set()
        for _ in (e for e in batch if isinstance(e, MessageChangeIgnored)):
            log.info("a change to a message was ignored")  # no reason: see flows.changes
        if batch:
            self._report(batch)

    # ------------------------------------------------------------------ reporting at least once
    def _replay_unreported(self) -> None:
        """Report again what was committed but not taken by the app before (see
        :mod:`sotto.client.flows.reporting`); runs once, before anything new is received."""
        if self._replayed:
            return
        self._replayed = True
        self.emit(self.read(reporting.unreported))

    def mark_connected(self) -> None:
        """The relay answers (a drain connection is subscribed, or cadence's tick was read)."""
        self._connected.set()
        self.emit([ConnectionChanged(True)])

    def mark_disconnected(self) -> None:
        """The drain connection ended (reported only if it had been up)."""
        if self._connected.is_set():
            self._connected.clear()
            self.emit([ConnectionChanged(False)])

    async def wait_connected(self, timeout: float) -> None:
        """Until :meth:`mark_connected` (or ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), max(0.0, timeout))

    async def until_connected(self) -> None:
        """Until :meth:`mark_connected`, however long that takes."""
        await self._connected.wait()

    async def wait_for_tick(self, after_unix_s: float, timeout: float) -> None:
        """Cadence mode: until a tick that started at or after ``after_unix_s`` is done (or
        ``timeout``). At once otherwise."""
        await self._scheduler.wait_for_tick(after_unix_s, timeout)

    async def settle(self, timeout: float, idle: float) -> None:
        """Until connected, nothing has arrived for ``idle`` seconds of this call and the outbox
        has nothing due, or ``timeout`` passes (default mode; cadence mode: at once)."""
        await self._scheduler.settle(timeout, idle)

    async def outbox_settled(self) -> bool:
        """Whether nothing in the outbox is due now."""
        now = self.now_ms()
        due = await self.transaction(lambda tx: tx.outbox.due(now, 1))
        return not due

    async def after_send(self) -> None:
        """Something was queued: the scheduler sends it when it may (before :meth:`start`, in
        default mode: now)."""
        self._expiry_wake.set()
        await self._scheduler.after_send(started=bool(self._tasks))

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> None:
        """New mailboxes of ours: receive on them too (default mode: on the live connection)."""
        await self._scheduler.subscribe(mailboxes)

    # ------------------------------------------------------------------ receiving
    async def start(self) -> None:
        """Start the scheduler's background work (idempotent)."""
        if self._closed:
            raise ClientError("the client is closed")
        if self._tasks:
            return
        self._replay_unreported()
        self._tasks = [asyncio.create_task(loop, name=name) for name, loop in self._scheduler.loops()]
        self._tasks.append(asyncio.create_task(self._expiry_loop(), name="sotto-expiry"))

    async def _expiry_loop(self) -> None:
        """Delete disappearing messages when their time comes (secure deletion, as every store
        deletion): sleeps until the earliest expiry, or until a message is stored or sent."""
        while True:
            self._expiry_wake.clear()
            due = self.read(lambda tx: tx.messages.next_expiry())
            if due is not None and due <= self.now_ms():
                await self.transaction(lambda tx: tx.messages.expire(self.now_ms()))
                continue
            waits: set[asyncio.Task[Any]] = {asyncio.create_task(self._expiry_wake.wait())}
            if due is not None:
                waits.add(asyncio.create_task(self._clock.sleep((due - self.now_ms()) / 1000)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()

    async def consume(self, envelope: frames.Envelope) -> Outcome:
        """Unseal, decrypt and apply one envelope, committed (or recorded as rejected): its outcome.

        Raises when processing failed for a reason that is not the envelope's fault (then it is
        not acknowledged, and comes again), unless that keeps happening.
        """
        key = (envelope.mailbox, envelope.id)
        mailbox_id, envelope_id = MailboxId(envelope.mailbox), MessageId(envelope.id)
        now = self.now_ms()
        me = self.current_me()
        unsealed: receiving.Unsealed | None = None
        try:
            try:
                if self.offload_transactions:
                    unsealed = await asyncio.to_thread(receiving.unseal, me, envelope.payload, now)
                else:
                    unsealed = receiving.unseal(me, envelope.payload, now)
                async with self.peers([unsealed.sender_name]):
                    outcome = await self.transaction(
                        lambda tx: _journaled(
                            tx, receiving.receive(self.context(tx), mailbox_id, envelope_id, unsealed)
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
                self.context(tx),
                mailbox_id=mailbox_id,
                envelope_id=envelope.id,
                sender_name=unsealed.sender_name,
                sender_identity=unsealed.sender_identity,
                usmc=unsealed.content,
            )

        async with self.peers([unsealed.sender_name]):
            asked = await self.transaction(ask)
        if asked:
            log.info("asked a contact for a new session")

    async def _record_rejection(self, envelope: frames.Envelope, rejection: EnvelopeRejectedError) -> Outcome:
        mailbox_id, envelope_id = MailboxId(envelope.mailbox), MessageId(envelope.id)
        events: list[Event] = [e for e in rejection.events if isinstance(e, Event)]

        def record(tx: Transaction) -> bool:
            fresh = tx.seen.add(mailbox_id, envelope_id, self.now_ms() // DAY_MS)
            if fresh:
                reporting.journal(tx, events)  # an identity change must reach the app
                trust.flag_changes(tx, events, self.now_ms())  # and stays shown until acknowledged
            return fresh

        if not await self.transaction(record):
            return Outcome()
        log.info("envelope dropped: %s (%s)", rejection.reason, rejection.detail)
        events.append(
            EnvelopeRejected(envelope.mailbox, envelope.id, RejectReason(rejection.reason), rejection.detail)
        )
        return Outcome(events=events)

    async def finish(self, outcome: Outcome) -> None:
        """After a commit: carry out the commands, then let the outbox go."""
        await self.run_commands(outcome.commands)
        await self.after_send()

    async def run_commands(self, commands: Iterable[Command]) -> None:
        """Carry out the commands of a commit: registrations now (a contact may write to the
        mailbox at once); account requests and deletions wait for their chore instants
        (:meth:`chore`), so none of them follows the poll, send or call that caused it."""
        for command in commands:
            if isinstance(command, RegisterMailbox):
                await self._run_command(command)
            elif command not in self._chores:
                self._chores.append(command)

    async def _run_command(self, command: Command) -> None:
        relay = self.relay()
        try:
            match command:
                case RegisterMailbox():
                    await relay.create_mailbox(command.request())
                    await self.subscribe({command.mailbox_id: SigningKey(command.signing_seed)})
                case DeleteMailbox():
                    try:
                        await relay.delete_mailbox(command.mailbox_id, SigningKey(command.signing_seed))
                    except RelayError as e:
                        if e.status != 404:  # gone already (expired, or deleted by an earlier try)
                            raise
                    await self.transaction(partial(mailbox_flow.deleted, mailbox_id=command.mailbox_id))
                case RevokeAccessToken():
                    await relay.delete_access_token(self.credentials(), command.token)
                case RefillPreKeys():
                    await self._refill_prekeys()
        except (RelayUnavailableError, RelayError) as e:
            # Each heals later: registration on the next subscription, deletions by expiry,
            # prekeys on the next chore.
            log.info("relay command %s failed: %s", type(command).__name__, type(e).__name__)

    async def register_again(self, mailbox_id: MailboxId) -> None:
        """Register one of our mailboxes that the relay does not know (expired, or never created)."""
        command = await self.transaction(partial(_registration, mailbox_id=mailbox_id, now_ms=self.now_ms()))
        if command is not None:
            with contextlib.suppress(RelayUnavailableError, RelayError):
                await self.relay().create_mailbox(command.request())

    # ------------------------------------------------------------------ housekeeping and prekeys
    def chore_delay(self) -> float:
        """Seconds until the next chore: exponential with mean :data:`HOUSEKEEPING_MEAN_S`."""
        return -HOUSEKEEPING_MEAN_S * math.log(1.0 - self.uniform(0.0, 1.0))

    @property
    def chores_waiting(self) -> int:
        """Commands waiting for a chore instant."""
        return len(self._chores)

    async def spread(self) -> None:
        """Wait a random while (:attr:`spread_s`) between two requests of one action."""
        low, high = self.spread_s
        if high > 0:
            await self._clock.sleep(self.uniform(low, high))

    async def chore(self) -> None:
        """One chore, at an instant the scheduler drew with :meth:`chore_delay`: the oldest
        waiting command if there is one (each on a request of its own), else a mailbox whose
        rotation is due (:func:`~sotto.client.flows.mailboxes.rotation_due`), else
        :meth:`housekeeping`."""
        if self._chores:
            await self._run_command(self._chores.popleft())
        elif not await self.rotate_due():
            await self.housekeeping()

    async def rotate_due(self) -> bool:
        """Rotate one contact's mailbox if one is due: stored, announced, created now; the old
        one is deleted when its grace ends. Whether one was."""
        contact = self.read(lambda tx: mailbox_flow.rotation_due(tx, self.now_ms()))
        if contact is None:
            return False
        async with self.peers([contact.address.name]):
            outcome = await self.transaction(
                lambda tx: mailbox_flow.rotate_mailbox(self.context(tx), contact)
            )
        await self.run_commands(outcome.commands)
        await self.after_send()
        return True

    async def housekeeping(self) -> None:
        """Retire old mailboxes and invites (their deletions become chores), keep the prekeys
        published."""
        outcome = await self.transaction(lambda tx: mailbox_flow.retire(self.context(tx)))
        await self.run_commands(outcome.commands)
        now = self.now_ms()
        await self.transaction(
            lambda tx: account_flow.rotate_prekeys(tx, self._account, now_ms=now, rng=self._rng)
        )
        try:
            await self.upload_prekeys()
            await self._refill_prekeys()
        except RelayError as e:  # a refusal must not keep us from receiving; retried next time
            log.warning("prekey upload refused: %s", e.code)

    async def upload_prekeys(self) -> None:
        pending = await self.transaction(lambda tx: tx.prekeys.pending_upload())
        reissued = False
        while not pending.is_empty():
            body = account_flow.upload_request(pending)
            try:
                await self.relay().upload_keys(self.credentials(), body)
            except RelayError as e:
                # 409: the relay holds other keys under our ids, uploaded from a later copy of
                # this store (we were restored from an older one). Issue ours under fresh ids.
                if e.status != 409 or reissued:
                    raise
                reissued = True
                await self.transaction(
                    partial(
                        repair.reissue_prekeys, account=self._account, now_ms=self.now_ms(), rng=self._rng
                    )
                )
                log.info("prekey ids taken on the relay (restored store): issued new ones")
            else:
                await self.transaction(partial(account_flow.mark_uploaded, body=body))
            pending = await self.transaction(lambda tx: tx.prekeys.pending_upload())

    async def _refill_prekeys(self) -> None:
        counts = await self.relay().key_counts(self.credentials())
        missing = account_flow.refill_count(counts)
        if missing:
            now = self.now_ms()
            await self.transaction(
                lambda tx: account_flow.generate_prekeys(
                    tx, self._account, now_ms=now, rng=self._rng, one_time=missing
                )
            )
            await self.upload_prekeys()

    # ------------------------------------------------------------------ outbox
    async def flush_outbox(self, *, force: bool = False) -> int | None:
        """Send what is due (everything, with ``force``), in queue order per mailbox; one attempt
        each. Returns when the next waiting item is due (ms), or None if the outbox is empty.

        Confirmed items leave the outbox in batches (one transaction per :data:`CONFIRM_BATCH`):
        if we die before that, they are sent again under the same ids and the relay answers
        "duplicate", which confirms them then.
        """
        async with self._flush_lock:
            self._last_refusal = None
            now = self.now_ms()
            items = await self.transaction(lambda tx: tx.outbox.all())
            blocked: set[bytes] = set()
            next_due: int | None = None
            confirmed: list[OutboxItemId] = []
            try:
                for item in items:
                    if item.mailbox_id in blocked:
                        continue
                    waiting = item.next_attempt_ms > now and not force
                    sent = None if waiting else await self.send_item(item)
                    if sent is None:
                        blocked.add(item.mailbox_id)  # later items wait: order within a mailbox holds
                        retry_at = item.next_attempt_ms if waiting else self.now_ms() + OUTBOX_RETRY_MIN_MS
                        next_due = retry_at if next_due is None else min(next_due, retry_at)
                    elif sent:
                        confirmed.append(item.item_id)
                        if len(confirmed) >= CONFIRM_BATCH:
                            await self.confirm(confirmed)
                            confirmed = []
            finally:
                if confirmed:
                    await self.confirm(confirmed)
            return next_due

    async def confirm(self, item_ids: list[OutboxItemId]) -> None:
        self.emit(await self.transaction(lambda tx: sending.confirm_sent_all(self.context(tx), item_ids)))

    def wire_payload(self, item: OutboxItem) -> bytes:
        """The item's envelope as it goes out, padded on to the size the mode sends
        (:mod:`sotto.client.sizes`: one size in cadence mode, so a contact request looks like a
        text or a cover)."""
        return self._sizes.for_wire(item.message_id, item.payload)

    async def send_item(self, item: OutboxItem) -> bool | None:
        """One attempt: True if the relay took it (confirm it), False if it was refused for good
        (dropped and reported), None if it should be tried again later (rescheduled; a 507 is
        reported once per envelope as :class:`~sotto.client.events.SendHeld`)."""
        relay = self._network.relay(item.server_url)
        send = relay.send_alone if self.cadence else relay.send
        try:
            await send(item.mailbox_id, item.delivery_token, item.message_id, self.wire_payload(item))
        except (RelayUnavailableError, RelayError) as e:
            refused = isinstance(e, RelayError) and (
                e.status in (400, 413, 422) or (e.status == 404 and item.attempts + 1 >= NOT_FOUND_ATTEMPTS)
            )
            if refused:
                self._held.discard(item.item_id)
                dropped = await self.transaction(partial(_drop, item_id=item.item_id))
                reason = e.code if isinstance(e, RelayError) else type(e).__name__
                gone = None
                if isinstance(e, RelayError) and e.status == 404:
                    gone = await self.transaction(partial(_mailbox_owner, mailbox_id=item.mailbox_id))
                self.emit([SendFailed(m, reason, gone) for m in dropped])
                return False
            first_ms = OUTBOX_RETRY_MIN_MS
            if isinstance(e, RelayError) and e.status == 404:
                self._last_refusal = e  # said by `sotto send`: not an unreachable relay
            if isinstance(e, MailboxFullError | RelayFullError | QuotaExceededError):
                first_ms = HELD_RETRY_MIN_MS
                self._last_refusal = e
                if item.item_id not in self._held:
                    self._held.add(item.item_id)
                    held = await self.transaction(partial(_reported_id, item_id=item.item_id))
                    self.emit([SendHeld(m, e.code) for m in held])
            delay = min(first_ms * 2**item.attempts, OUTBOX_RETRY_MAX_MS)
            retry_at = self.now_ms() + int(delay * self.uniform(0.75, 1.25))
            await self.transaction(lambda tx: tx.outbox.reschedule(item.item_id, retry_at))
            return None
        self._held.discard(item.item_id)
        return True

    # ------------------------------------------------------------------ receipts
    async def send_receipts(self, kind: ReceiptKind) -> None:
        def owed(tx: Transaction) -> set[str]:
            names = set()
            for receipt in tx.messages.pending_receipts(10_000):
                contact = tx.contacts.get(receipt.contact_id)
                if receipt.kind is kind and contact is not None:
                    names.add(contact.address.name)
            return names

        names = await self.transaction(owed)
        if not names:
            return
        async with self.peers(names):
            await self.transaction(lambda tx: sending.flush_receipts(self.context(tx), kind))
        self._scheduler.outbox_changed()


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
    """Remove a refused envelope; the id to report (see :func:`_reported_id`)."""
    reported = _reported_id(tx, item_id=item_id)
    tx.outbox.remove(item_id)
    return reported


def _mailbox_owner(tx: Transaction, *, mailbox_id: MailboxId) -> Contact | None:
    """The contact whose current mailbox is ``mailbox_id`` (None for an invite's, or an old one)."""
    for contact in tx.contacts.all():
        theirs = tx.their_mailboxes.get(contact.contact_id)
        if theirs is not None and theirs.mailbox_id == mailbox_id:
            return contact
    return None


def _reported_id(tx: Transaction, *, item_id: OutboxItemId) -> list[MessageId]:
    """The id to report for an outbox envelope: its message's, or the envelope's own for one that
    carried no history entry (a contact request, a receipt); none if it is gone."""
    item = tx.outbox.get(item_id)
    if item is None:
        return []
    message = None if item.message_row is None else tx.messages.get(item.message_row)
    return [item.message_id if message is None else message.message_id]
