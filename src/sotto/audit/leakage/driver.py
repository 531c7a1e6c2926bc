"""Drive the real relay code with a population, one design at a time, and record both views.

The relay code that runs here is the server's own: its storage (:class:`MemoryStorage`, the
reference backend, or :class:`SqliteStorage`, the embedded default), :func:`~sotto.server.delivery.deliver`
(store, then announce to live connections), :class:`~sotto.server.fanout.LocalFanout`,
:class:`~sotto.server.relay.DeliveryWindow` (what each connection fetches, pushes and deletes on
ack), the sweep, and the hourly counter lines of :class:`~sotto.server.logging.Stats`, all under
an injected clock. What is not run per message is the HTTP/WebSocket framing and the Ed25519
drain proofs: they cost real time and change nothing an observer of the relay sees. The driver
replays the steps of ``sotto.server.ws.Connection`` (subscribe: look up, touch, listen, mark
stale; push loop: fetch, take, push; ack: delete) in the same order.

Simulated clients behave as the design says (receipts, rotation, send path, padding); they know
the truth, which is recorded apart (:class:`~sotto.audit.leakage.views.TruthRecorder`). The tap
records what the relay observed as it happens; the dump is taken at every simulated midnight.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sotto.audit.leakage.designs import Addressing, Design, DrainPath, Receipts, Sender, SendPath
from sotto.audit.leakage.population import DAY, Population
from sotto.audit.leakage.sizes import (
    COVER_LENGTH,
    ROTATION_LENGTH,
    TYPING_LENGTH,
    Kind,
    Padding,
    SizeModel,
    receipt_length,
    text_length,
)
from sotto.audit.leakage.views import Dump, Row, Snapshot, Tap, TapRecorder, Truth, TruthRecorder
from sotto.server.auth import token_hash
from sotto.server.config import ServerConfig
from sotto.server.context import RelayContext
from sotto.server.delivery import deliver
from sotto.server.fanout import LocalFanout
from sotto.server.logging import LOGGER_NAME
from sotto.server.relay import DeliveryWindow
from sotto.server.server_key import ServerKey
from sotto.server.storage.base import (
    AccountId,
    AccountRecord,
    DeviceRecord,
    EnvelopeRecord,
    MailboxId,
    MailboxRecord,
    PutOutcome,
    Storage,
)
from sotto.server.storage.memory import MemoryStorage
from sotto.server.storage.sqlite import SqliteStorage, id_tag
from sotto.wire.limits import DEFAULT_ENVELOPE_TTL_DAYS, DEFAULT_MAILBOX_TTL_DAYS, MAX_ACK_IDS_PER_FRAME

BASE_DAY = 20_400
"""The simulation starts at this UTC day (2025-11-08), so stored day numbers look real."""
SEND_IDLE_CLOSE_S = 600.0
"""The relay closes a connection that sent nothing for this long (``ws_idle_seconds``)."""
MAILBOX_HISTORY_DAYS = 60
"""Mailboxes of the population were created up to this many days before the simulation."""

_LOG_NETWORK_S = math.log(0.15)
"""Median time from a client's send to the relay's commit."""
_LOG_RECEIPT_S = math.log(0.3)
"""Median time from delivery to an immediate receipt leaving the phone."""

# Event kinds, in the order they run when times are equal.
_SNAPSHOT, _STATS, _CLOSE, _MB_CLOSE, _OPEN, _MB_OPEN, _ROTATE, _DEPOSIT, _TEXT, _TYPING = range(10)
_RECEIPT, _FLUSH, _TICK, _SLOT_SEND, _SLOT_POLL = 10, 11, 12, 13, 14
POLL_S = 0.05
"""How long a cadence poll's connection stays open (one request and its answer)."""


class SimClock:
    """The relay's clock (:class:`sotto.server.clock.Clock`), moved by the simulation."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


@dataclass(slots=True)
class Costs:
    envelopes: int = 0
    bytes: int = 0
    unpadded_bytes: int = 0
    drain_connections: int = 0
    send_connections: int = 0
    refused: int = 0
    undelivered: int = 0


@dataclass(frozen=True, slots=True)
class RunResult:
    design: Design
    tap: Tap
    dump: Dump
    truth: Truth
    costs: Costs
    wall_s: float
    storage: str


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@dataclass(slots=True, eq=False)
class _Conn:
    """The relay's state for one drain connection (what ``ws.Connection`` holds)."""

    index: int
    user: int
    window: DeliveryWindow = field(default_factory=DeliveryWindow)
    mailboxes: list[MailboxId] = field(default_factory=list)
    listener: Callable[[EnvelopeRecord], None] | None = None


@dataclass(slots=True)
class _Mailbox:
    mailbox_id: MailboxId
    token: bytes
    owner: int
    contact: int
    retire_at: float = math.inf


class Driver:
    """Run one design over one population (see the module docstring)."""

    def __init__(
        self,
        population: Population,
        design: Design,
        sizes: SizeModel,
        *,
        storage: str = "memory",
        data_dir: Path | None = None,
        seed: int = 0,
    ) -> None:
        if storage not in ("memory", "sqlite"):
            raise ValueError("storage is 'memory' or 'sqlite'")
        self.p = population
        self.d = design
        self.sizes = sizes
        self.storage_kind = storage
        self.data_dir = data_dir
        self.rng = np.random.default_rng([population.config.seed, seed, _stable_hash(design.name)])
        self.fast = random.Random(int(self.rng.integers(2**62)))
        """Scalar draws in the event loop (numpy's per-call overhead is ten times Python's)."""
        self.clock = SimClock(BASE_DAY * DAY)
        self.tap = TapRecorder()
        self.truth = TruthRecorder()
        self.costs = Costs()
        self._heap: list[tuple[float, int, int, tuple[object, ...]]] = []
        self._seq = 0
        n = population.users
        self.online = [False] * n
        self.session_end = [0.0] * n
        self.drain: list[list[_Conn]] = [[] for _ in range(n)]
        self.send_conn = [-1] * n
        self.last_send = [0.0] * n
        self.ours: list[dict[int, list[_Mailbox]]] = [{} for _ in range(n)]
        """Per owner, per contact: the mailboxes the owner drains for that contact (newest last)."""
        self.theirs: dict[tuple[int, int], _Mailbox] = {}
        """(sender, recipient) → where the sender writes to the recipient."""
        self.inbox: list[_Mailbox] = []
        self.account_ids: list[bytes] = []
        self.owed: list[dict[int, int]] = [{} for _ in range(n)]
        self.flush_armed = [False] * n
        self.pending_rotation = [False] * n
        self.rotations: dict[int, _Mailbox] = {}
        self.tags: dict[bytes, bytes] = {}
        """Message id -> the id tag SQLite stores in its place (dumps show the tag)."""
        self.queue: dict[tuple[int, int], deque[tuple[int, int, int, object]]] = {}
        """Cadence mode: (sender, contact) → envelopes waiting for the pair's next slot."""
        self.tick_phase = self.rng.uniform(0.0, design.send_tick_s or 1.0, n)
        texts = len(population.text_t)
        self.text_sent = np.full(texts, np.nan)
        self.text_deposit = np.full(texts, np.nan)
        self.text_push = np.full(texts, np.nan)
        self._dirty: dict[_Conn, None] = {}
        self._payload = self.rng.bytes(65_536)
        self._snapshots: list[Snapshot] = []
        self._log = _LogCapture()
        self._text_len: dict[int, int] = {}
        self._env_size: dict[tuple[int, int], int] = {}
        self._sqlite_dir: tempfile.TemporaryDirectory[str] | None = None
        self._unpadded = Padding.IDENTIFIED if design.padding is Padding.IDENTIFIED else Padding.NONE
        self._message_log: list[tuple[int, int, float, int]] = []
        """The WhatsApp-like server's message log: (sender, recipient, time, size)."""

    # ------------------------------------------------------------------ set-up
    def _open_storage(self) -> Storage:
        if self.storage_kind == "memory":
            return MemoryStorage()
        if self.data_dir is None:
            self._sqlite_dir = tempfile.TemporaryDirectory(prefix="sotto-leakage-")
            self.data_dir = Path(self._sqlite_dir.name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return SqliteStorage.in_dir(self.data_dir / self.d.name)

    async def _populate(self, ctx: RelayContext) -> None:
        """Accounts and the mailboxes that existed before the simulation began."""
        p, d, rng, storage = self.p, self.d, self.rng, ctx.storage
        created = BASE_DAY - rng.integers(MAILBOX_HISTORY_DAYS, 3 * MAILBOX_HISTORY_DAYS, p.users)
        for u in range(p.users):
            account = rng.bytes(16)
            self.account_ids.append(account)
            self.truth.account_user[account] = u
            day = int(created[u])
            await storage.create_account(
                AccountRecord(AccountId(account), b"\x05" + rng.bytes(32), day),
                DeviceRecord(AccountId(account), 1, 1 + int(rng.integers(16_000)), rng.bytes(32)),
            )
        if d.addressing is Addressing.ACCOUNT:
            for u in range(p.users):
                box = _Mailbox(MailboxId(self.account_ids[u]), rng.bytes(32), u, -1)
                await self._create(storage, box, int(created[u]))
                self.inbox.append(box)
            return
        for a, b in p.edges.tolist():
            first = int(max(created[a], created[b])) + int(rng.integers(0, 30))
            day = min(first, BASE_DAY - 1)
            for owner, contact in ((a, b), (b, a)):
                box = _Mailbox(MailboxId(rng.bytes(16)), rng.bytes(32), owner, contact)
                await self._create(storage, box, day)
                self.ours[owner][contact] = [box]
                self.theirs[(contact, owner)] = box

    async def _create(self, storage: Storage, box: _Mailbox, day: int) -> None:
        ttl = DEFAULT_MAILBOX_TTL_DAYS
        await storage.create_mailbox(
            MailboxRecord(box.mailbox_id, self.rng.bytes(32), token_hash(box.token), ttl, day + ttl)
        )
        await storage.touch_mailboxes([box.mailbox_id], BASE_DAY - 1)
        self.truth.mailbox_owner[box.mailbox_id] = box.owner
        self.truth.mailbox_contact[box.mailbox_id] = box.contact

    def _static_events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Events known in advance, sorted: (time, kind, user or text or day, session end)."""
        p, d, rng = self.p, self.d, self.rng
        t: list[np.ndarray] = []
        k: list[np.ndarray] = []
        a: list[np.ndarray] = []
        c: list[np.ndarray] = []

        def add(times: np.ndarray, kind: int, arg: np.ndarray, end: np.ndarray | None = None) -> None:
            t.append(np.asarray(times, dtype=np.float64))
            k.append(np.full(len(times), kind, dtype=np.int64))
            a.append(np.asarray(arg, dtype=np.int64))
            c.append(np.zeros(len(times)) if end is None else end)

        su = np.array([u for u, s in enumerate(p.sessions) for _ in s], dtype=np.int64)
        ss = np.array([x for s in p.sessions for x, _ in s])
        se = np.array([y for s in p.sessions for _, y in s])
        add(ss, _OPEN, su, se)
        add(se, _CLOSE, su)
        add(p.text_t, _TEXT, np.arange(len(p.text_t)))
        typed = np.nonzero(~np.isnan(p.typing_t))[0]
        add(p.typing_t[typed], _TYPING, typed)
        days = math.ceil(p.config.days)
        add(np.arange(1, days + 1) * DAY, _SNAPSHOT, np.arange(1, days + 1))
        hours = np.arange(1, int(p.duration_s // 3600) + 1) * 3600.0
        add(hours, _STATS, np.zeros(len(hours), dtype=np.int64))
        if d.cadence_tick_s:
            ticks = np.arange(0.0, p.duration_s, d.cadence_tick_s)
            add(ticks, _TICK, np.zeros(len(ticks), dtype=np.int64))
        if d.addressing is Addressing.PER_CONTACT and d.rotation_days:
            period = d.rotation_days * DAY
            first = rng.uniform(0.0, period, p.users)
            for j in range(math.ceil(p.duration_s / period) + 1):
                when = first + j * period
                keep = when < p.duration_s
                add(when[keep], _ROTATE, np.nonzero(keep)[0])
        times, kinds = np.concatenate(t), np.concatenate(k)
        order = np.lexsort((kinds, times))
        return times[order], kinds[order], np.concatenate(a)[order], np.concatenate(c)[order]

    # ------------------------------------------------------------------ the run
    async def run(self, progress: Callable[[float], None] | None = None) -> RunResult:
        started = time.perf_counter()
        server_log = logging.getLogger(LOGGER_NAME)
        old_level = server_log.level
        server_log.addHandler(self._log)
        server_log.setLevel(logging.INFO)
        storage = self._open_storage()
        ctx = RelayContext(
            config=ServerConfig(data_dir=self.data_dir or Path(".")),
            storage=storage,
            fanout=LocalFanout(),
            server_key=ServerKey(bytes(32)),
            clock=self.clock,
        )
        try:
            await self._populate(ctx)
            await self._loop(ctx, progress)
            self.costs.undelivered = len(self.truth.envelope_message)
        finally:
            await storage.close()
            server_log.removeHandler(self._log)
            server_log.setLevel(old_level)
            if self._sqlite_dir is not None:
                self._sqlite_dir.cleanup()
        duration = self.p.duration_s
        return RunResult(
            design=self.d,
            tap=self.tap.freeze(duration),
            dump=Dump(tuple(self._snapshots), BASE_DAY),
            truth=self.truth.freeze(len(self.p.text_t), self.text_sent, self.text_deposit, self.text_push),
            costs=self.costs,
            wall_s=time.perf_counter() - started,
            storage=self.storage_kind,
        )

    async def _loop(self, ctx: RelayContext, progress: Callable[[float], None] | None) -> None:
        times, kinds, subjects, ends = self._static_events()
        st, sk, sa, sc = times.tolist(), kinds.tolist(), subjects.tolist(), ends.tolist()
        n, i = len(st), 0
        heap = self._heap
        horizon = self.p.duration_s
        report_every = max(1, n // 200)
        while i < n or heap:
            if heap and (i >= n or (heap[0][0], heap[0][1]) < (st[i], sk[i])):
                t, kind, _, args = heapq.heappop(heap)
                if t > horizon + 3_600:
                    break
                self.clock.t = BASE_DAY * DAY + t
                await self._dynamic(ctx, t, kind, args)
            else:
                t, kind = st[i], sk[i]
                self.clock.t = BASE_DAY * DAY + t
                await self._static(ctx, t, kind, a=sa[i], c=sc[i])
                i += 1
                if progress is not None and i % report_every == 0:
                    progress(i / n)
            if self._dirty:
                await self._pump_dirty(ctx, t)
        for conns in self.drain:
            for conn in conns:
                self._close_drain(ctx, conn, horizon)
        if progress is not None:
            progress(1.0)

    def _push(self, t: float, kind: int, args: tuple[object, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, args))

    async def _static(self, ctx: RelayContext, t: float, kind: int, *, a: int, c: float) -> None:
        if kind == _TEXT:
            p = self.p
            self.text_sent[a] = t
            self._send(t, int(p.text_src[a]), int(p.text_dst[a]), Kind.TEXT, self._text_content(a), text=a)
        elif kind == _TYPING:
            p = self.p
            self._send(t, int(p.text_src[a]), int(p.text_dst[a]), Kind.TYPING, TYPING_LENGTH)
        elif kind == _OPEN:
            await self._open(ctx, t, a, c)
        elif kind == _CLOSE:
            self._close(ctx, t, a)
        elif kind == _TICK:
            self._tick(t)
        elif kind == _ROTATE:
            if self.online[a] or self.d.cadence_tick_s:
                await self._rotate(ctx, t, a)
            else:
                self.pending_rotation[a] = True
        elif kind == _SNAPSHOT:
            await self._snapshot(ctx, a)
        elif kind == _STATS:
            ctx.stats.flush()

    async def _dynamic(self, ctx: RelayContext, t: float, kind: int, args: tuple[object, ...]) -> None:
        if kind == _DEPOSIT:
            await self._deposit(ctx, t, args)
        elif kind == _RECEIPT:
            u, v = args
            assert isinstance(u, int) and isinstance(v, int)
            self._send(t, u, v, Kind.RECEIPT, receipt_length(1))
        elif kind == _FLUSH:
            (u,) = args
            assert isinstance(u, int)
            self._flush_receipts(t, u)
        elif kind == _SLOT_SEND:
            u, v = args
            assert isinstance(u, int) and isinstance(v, int)
            self._slot_send(t, u, v)
        elif kind == _SLOT_POLL:
            u, box = args
            assert isinstance(u, int) and isinstance(box, _Mailbox)
            await self._slot_poll(ctx, t, u, box)
        elif kind == _MB_OPEN:
            u, box, end = args
            assert isinstance(u, int) and isinstance(box, _Mailbox) and isinstance(end, float)
            await self._open_mailbox_connection(ctx, t, u, box, end)
        elif kind == _MB_CLOSE:
            (conn,) = args
            assert isinstance(conn, _Conn)
            self._close_drain(ctx, conn, t)
            if conn in self.drain[conn.user]:
                self.drain[conn.user].remove(conn)

    # ------------------------------------------------------------------ clients: sending
    def _text_content(self, text: int) -> int:
        size = int(self.p.text_bytes[text])
        held = self._text_len.get(size)
        if held is None:
            held = self._text_len[size] = text_length(size)
        return held

    def _envelope_size(self, content: int, padding: Padding) -> int:
        key = (content, 0 if padding is self.d.padding else 1)
        held = self._env_size.get(key)
        if held is None:
            held = self._env_size[key] = self.sizes.envelope(content, padding)
        return held

    def _send(
        self, t: float, u: int, v: int, kind: Kind, content: int, *, text: int = -1, extra: object = None
    ) -> None:
        d = self.d
        if d.cadence_tick_s:
            if kind is not Kind.TYPING:
                self.queue.setdefault((u, v), deque()).append((int(kind), content, text, extra))
            return
        self._release(t, u, v, kind, content, text=text, extra=extra)

    def _release(
        self, t: float, u: int, v: int, kind: Kind, content: int, *, text: int = -1, extra: object = None
    ) -> None:
        d = self.d
        box = self.inbox[v] if d.addressing is Addressing.ACCOUNT else self.theirs[(u, v)]
        release = t
        if d.send_tick_s:
            phase = float(self.tick_phase[u])
            release = phase + math.ceil((t - phase) / d.send_tick_s) * d.send_tick_s
        arrive = release + self.fast.lognormvariate(_LOG_NETWORK_S, 0.5)
        self._push(arrive, _DEPOSIT, (u, v, int(kind), content, text, box, extra))

    async def _deposit(self, ctx: RelayContext, t: float, args: tuple[object, ...]) -> None:
        u, v, kind, content, text, box, extra = args
        assert isinstance(u, int) and isinstance(v, int) and isinstance(kind, int)
        assert isinstance(content, int) and isinstance(text, int) and isinstance(box, _Mailbox)
        d, tap, truth = self.d, self.tap, self.truth
        size = self._envelope_size(content, d.padding)
        message_id = self.fast.randbytes(16)
        index = len(tap.dep_t)
        truth.envelope_message[message_id] = index
        self.tags[message_id] = id_tag(box.mailbox_id, message_id)
        if isinstance(extra, _Mailbox):
            self.rotations[index] = extra
        outcome = await deliver(ctx, box.mailbox_id, box.token, message_id, self._payload[:size])
        # The tap: what the relay saw of this request.
        tap.dep_t.append(t)
        tap.dep_mailbox.append(tap.mailboxes(box.mailbox_id))
        tap.dep_size.append(size)
        tap.dep_conn.append(self._send_connection(t, u))
        tap.dep_account.append(tap.accounts(self.account_ids[u]) if d.sender is Sender.IDENTIFIED else -1)
        truth.dep_sender.append(u)
        truth.dep_recipient.append(v)
        truth.dep_kind.append(kind)
        truth.dep_text.append(text)
        truth.dep_unpadded.append(self._envelope_size(content, self._unpadded))
        self.costs.envelopes += 1
        self.costs.bytes += size
        if text >= 0:
            self.text_deposit[text] = t
        if outcome is PutOutcome.NOT_FOUND:
            self.costs.refused += 1
            truth.envelope_message.pop(message_id, None)
        if d.sender is Sender.IDENTIFIED and d.addressing is Addressing.ACCOUNT:
            self._message_log.append((u, v, t, size))

    def _send_connection(self, t: float, u: int) -> int:
        """The tap's id for the connection carrying ``u``'s send at ``t`` (-1: a one-off)."""
        d, tap = self.d, self.tap
        if d.send_path is SendPath.PER_ENVELOPE:
            return -1
        if not self.online[u]:
            conn = tap.open_send(t)
            tap.send_close[conn] = t + SEND_IDLE_CLOSE_S
            self.truth.send_user.append(u)
            self.costs.send_connections += 1
            return conn
        conn = self.send_conn[u]
        if conn < 0 or t - self.last_send[u] > SEND_IDLE_CLOSE_S:
            if conn >= 0:
                tap.send_close[conn] = self.last_send[u] + SEND_IDLE_CLOSE_S
            conn = self.send_conn[u] = tap.open_send(t)
            self.truth.send_user.append(u)
            self.costs.send_connections += 1
        self.last_send[u] = t
        return conn

    def _flush_receipts(self, t: float, u: int) -> None:
        self.flush_armed[u] = False
        owed, self.owed[u] = self.owed[u], {}
        for v, count in owed.items():
            left = count
            while left > 0:
                chunk = min(left, MAX_ACK_IDS_PER_FRAME)
                self._send(t, u, v, Kind.RECEIPT, receipt_length(chunk))
                left -= chunk

    def _received(self, t: float, u: int, index: int) -> None:
        """Client ``u`` processed the envelope deposited as ``index``: react as the design says."""
        truth = self.truth
        sender, kind, text = truth.dep_sender[index], truth.dep_kind[index], truth.dep_text[index]
        truth.push_sender.append(sender)
        truth.push_kind.append(kind)
        truth.push_text.append(text)
        if kind == Kind.TEXT:
            if math.isnan(self.text_push[text]):
                self.text_push[text] = t
            receipts = self.d.receipts
            if self.d.cadence_tick_s:
                if receipts is not Receipts.OFF:  # they ride in a later slot to the sender
                    self.owed[u][sender] = self.owed[u].get(sender, 0) + 1
            elif receipts is Receipts.IMMEDIATE:
                self._push(t + self.fast.lognormvariate(_LOG_RECEIPT_S, 0.5), _RECEIPT, (u, sender))
            elif receipts is Receipts.BATCHED:
                self.owed[u][sender] = self.owed[u].get(sender, 0) + 1
                if not self.flush_armed[u]:
                    self.flush_armed[u] = True
                    delay = self.d.receipt_delay_s * self.fast.uniform(0.5, 1.5)
                    self._push(t + delay, _FLUSH, (u,))
        elif kind == Kind.ROTATION:
            fresh = self.rotations.pop(index, None)
            if fresh is not None:
                self.theirs[(u, sender)] = fresh

    # ------------------------------------------------------------------ clients: cadence mode
    def _tick(self, t: float) -> None:
        """A cadence tick: every user's slots (a send per contact, a poll per mailbox) for it."""
        tick, rand = self.d.cadence_tick_s, self.fast.random
        assert tick is not None
        for u in range(self.p.users):
            for v in self.ours[u]:
                self._push(t + tick * rand(), _SLOT_SEND, (u, v))
            for box in self._drainable(u):
                if box.retire_at > t:
                    self._push(t + tick * rand(), _SLOT_POLL, (u, box))

    def _slot_send(self, t: float, u: int, v: int) -> None:
        """One envelope to ``v``: the oldest queued, else the receipts owed, else cover."""
        queued = self.queue.get((u, v))
        if queued:
            kind, content, text, extra = queued.popleft()
            self._release(t, u, v, Kind(kind), content, text=text, extra=extra)
            return
        owed = self.owed[u].pop(v, 0)
        if owed:
            chunk = min(owed, MAX_ACK_IDS_PER_FRAME)
            if owed > chunk:
                self.owed[u][v] = owed - chunk
            self._release(t, u, v, Kind.RECEIPT, receipt_length(chunk))
            return
        self._release(t, u, v, Kind.COVER, COVER_LENGTH)

    async def _slot_poll(self, ctx: RelayContext, t: float, u: int, box: _Mailbox) -> None:
        """One poll of one mailbox on its own short connection: subscribe, take what is there, ack."""
        if box.retire_at <= t:
            return
        conn = self._new_drain(t, u, None)
        await self._subscribe(ctx, t, conn, [box])
        self._push(t + POLL_S, _MB_CLOSE, (conn,))

    # ------------------------------------------------------------------ clients: connections
    def _drainable(self, u: int) -> list[_Mailbox]:
        if self.d.addressing is Addressing.ACCOUNT:
            return [self.inbox[u]]
        return [box for boxes in self.ours[u].values() for box in boxes]

    async def _open(self, ctx: RelayContext, t: float, u: int, end: float) -> None:
        self.online[u] = True
        self.session_end[u] = end
        await self._housekeeping(ctx, t, u)
        boxes = self._drainable(u)
        if self.d.drain_path is DrainPath.ONE_CONNECTION:
            account = self.account_ids[u] if self.d.addressing is Addressing.ACCOUNT else None
            conn = self._new_drain(t, u, account)
            await self._subscribe(ctx, t, conn, boxes)
        elif self.d.drain_path is DrainPath.PER_MAILBOX:
            for box in boxes:
                self._schedule_mailbox_connection(t, u, box, end)
        # DrainPath.TICKS: the polls follow the ticks, not the app.
        if self.pending_rotation[u]:
            self.pending_rotation[u] = False
            await self._rotate(ctx, t, u)

    def _schedule_mailbox_connection(self, t: float, u: int, box: _Mailbox, end: float) -> None:
        jitter = self.d.drain_jitter_s
        opens = t + self.fast.uniform(0.0, jitter)
        if opens < end:
            self._push(opens, _MB_OPEN, (u, box, end))

    async def _open_mailbox_connection(
        self, ctx: RelayContext, t: float, u: int, box: _Mailbox, end: float
    ) -> None:
        if not self.online[u] or box.retire_at <= t:
            return
        conn = self._new_drain(t, u, None)
        await self._subscribe(ctx, t, conn, [box])
        closes = max(t, end - self.fast.uniform(0.0, self.d.drain_jitter_s))
        self._push(closes, _MB_CLOSE, (conn,))

    def _new_drain(self, t: float, u: int, account: bytes | None) -> _Conn:
        conn = _Conn(self.tap.open_drain(t, account), u)
        self.truth.drain_user.append(u)
        self.drain[u].append(conn)
        self.costs.drain_connections += 1
        return conn

    async def _subscribe(self, ctx: RelayContext, t: float, conn: _Conn, boxes: list[_Mailbox]) -> None:
        """``ws.Connection._subscribe`` without the signature checks: look up, touch, listen, mark stale."""
        ctx.stats.count("ws_connections")
        ids = [b.mailbox_id for b in boxes]
        today = ctx.today()
        held = await ctx.storage.get_mailboxes(ids)
        fresh = [
            m for m in ids if m in held and held[m].expires_day > today and m not in conn.window.mailboxes
        ]
        if not fresh:
            return
        await ctx.storage.touch_mailboxes(fresh, today)
        listener = conn.listener
        if listener is None:
            listener = conn.listener = self._listener(conn)
        for mailbox_id in fresh:
            ctx.fanout.subscribe(mailbox_id, listener)
            conn.mailboxes.append(mailbox_id)
            self.tap.sub_conn.append(conn.index)
            self.tap.sub_mailbox.append(self.tap.mailboxes(mailbox_id))
            self.tap.sub_t.append(t)
        conn.window.subscribe(fresh)
        self._dirty[conn] = None

    def _listener(self, conn: _Conn) -> Callable[[EnvelopeRecord], None]:
        def on_live(envelope: EnvelopeRecord) -> None:
            conn.window.offer(envelope)
            self._dirty[conn] = None

        return on_live

    async def _pump_dirty(self, ctx: RelayContext, t: float) -> None:
        while self._dirty:
            conn = next(iter(self._dirty))
            del self._dirty[conn]
            await self._pump(ctx, t, conn)

    async def _pump(self, ctx: RelayContext, t: float, conn: _Conn) -> None:
        """``ws.Connection._push`` plus the client's acks (sent once each batch is committed)."""
        window, storage, tap, truth = conn.window, ctx.storage, self.tap, self.truth
        while True:
            fetch = window.next_fetch()
            if fetch is not None:
                window.fetched(fetch, await storage.pending(fetch.mailbox_id, fetch.limit, fetch.skip))
                continue
            batch = window.take()
            if not batch:
                return
            refs = []
            for envelope in batch:
                tap.push_t.append(t)
                tap.push_mailbox.append(tap.mailboxes(envelope.mailbox_id))
                tap.push_conn.append(conn.index)
                tap.push_size.append(len(envelope.payload))
                index = truth.envelope_message.pop(envelope.message_id, None)
                if index is not None:
                    self._received(t, conn.user, index)
                else:  # a redelivery after an ack was lost: nothing new for the client
                    truth.push_sender.append(-1)
                    truth.push_kind.append(-1)
                    truth.push_text.append(-1)
                refs.append(envelope.ref)
            ctx.stats.count("envelopes_pushed", len(batch))
            deleted = await storage.delete_envelopes(window.acked(refs))
            ctx.stats.count("envelopes_acked", deleted)

    def _close(self, ctx: RelayContext, t: float, u: int) -> None:
        self.online[u] = False
        if self.d.drain_path is DrainPath.ONE_CONNECTION:
            for conn in self.drain[u]:
                self._close_drain(ctx, conn, t)
            self.drain[u] = []
        sending = self.send_conn[u]
        if sending >= 0:
            # The app closes both sockets together; the relay sees the two closes milliseconds apart.
            closed = t + self.fast.uniform(0.0, 0.05)
            self.tap.send_close[sending] = min(closed, self.last_send[u] + SEND_IDLE_CLOSE_S)
            self.send_conn[u] = -1

    def _close_drain(self, ctx: RelayContext, conn: _Conn, t: float) -> None:
        if self.tap.drain_close[conn.index] != math.inf:
            return
        self.tap.drain_close[conn.index] = t
        listener = conn.listener
        if listener is not None:
            for mailbox_id in conn.mailboxes:
                ctx.fanout.unsubscribe(mailbox_id, listener)
        self._dirty.pop(conn, None)

    async def _housekeeping(self, ctx: RelayContext, t: float, u: int) -> None:
        """The client's ``retire``: delete mailboxes whose grace period ended."""
        if self.d.addressing is Addressing.ACCOUNT:
            return
        for contact, boxes in self.ours[u].items():
            keep = []
            for box in boxes:
                if box.retire_at <= t:
                    await ctx.storage.delete_mailbox(box.mailbox_id)
                else:
                    keep.append(box)
            self.ours[u][contact] = keep

    async def _rotate(self, ctx: RelayContext, t: float, u: int) -> None:
        """``rotate_mailboxes``: a fresh mailbox per contact, announced in-band, the old retiring."""
        grace = self.d.rotation_grace_days * DAY
        for contact, boxes in self.ours[u].items():
            for box in boxes:
                if box.retire_at == math.inf:
                    box.retire_at = t + grace
            fresh = _Mailbox(MailboxId(self.fast.randbytes(16)), self.fast.randbytes(32), u, contact)
            await self._create(ctx.storage, fresh, ctx.today())
            boxes.append(fresh)
            if self.d.drain_path is DrainPath.ONE_CONNECTION:
                for conn in self.drain[u]:
                    await self._subscribe(ctx, t, conn, [fresh])
            elif self.d.drain_path is DrainPath.PER_MAILBOX:
                self._schedule_mailbox_connection(t, u, fresh, self.session_end[u])
            # DrainPath.TICKS: polled from the next tick on.
            self._send(t, u, contact, Kind.ROTATION, ROTATION_LENGTH, extra=fresh)

    # ------------------------------------------------------------------ the dump
    async def _snapshot(self, ctx: RelayContext, day_index: int) -> None:
        """Midnight: the relay's sweep runs, then everything at rest is copied (a nightly export)."""
        today = ctx.today()
        result = await ctx.storage.sweep(today, DEFAULT_ENVELOPE_TTL_DAYS)
        ctx.stats.count("swept_envelopes", result.envelopes)
        ctx.stats.count("swept_mailboxes", result.mailboxes)
        for message_id, index in self.truth.envelope_message.items():
            self.truth.snapshot_kinds[message_id] = self.truth.dep_kind[index]
            if message_id in self.tags:
                self.truth.snapshot_kinds[self.tags[message_id]] = self.truth.dep_kind[index]
        self.tags = {m: self.tags[m] for m in self.truth.envelope_message if m in self.tags}
        if isinstance(ctx.storage, SqliteStorage):
            tables = await self._sqlite_tables(ctx.storage, day_index)
        else:
            tables = await self._exported_tables(ctx.storage)
        if self.d.sender is Sender.IDENTIFIED:
            tables["message_log"] = [
                {
                    "sender": self.account_ids[s],
                    "recipient": self.account_ids[r],
                    "time": int(BASE_DAY * DAY + tt),
                    "size": size,
                }
                for s, r, tt, size in self._message_log
            ]
            tables["last_seen"] = [
                {"account_id": self.account_ids[u], "time": int(BASE_DAY * DAY + t)}
                for u, t in self._last_seen().items()
            ]
        self._snapshots.append(Snapshot(today, tables, tuple(self._log.lines)))

    def _last_seen(self) -> dict[int, float]:
        seen: dict[int, float] = {}
        truth = self.truth
        for conn, opened in enumerate(self.tap.drain_open):
            seen[truth.drain_user[conn]] = max(seen.get(truth.drain_user[conn], 0.0), opened)
        return seen

    async def _exported_tables(self, storage: Storage) -> dict[str, list[Row]]:
        """Every row, through the storage's own exports (the manifest's schema, all columns)."""
        tables: dict[str, list[Row]] = {}
        for account in self.account_ids:
            for name, rows in (await storage.export_account(AccountId(account))).items():
                tables.setdefault(name, []).extend(rows)
        for mailbox_id in self.truth.mailbox_owner:
            for name, rows in (await storage.export_mailbox(MailboxId(mailbox_id))).items():
                tables.setdefault(name, []).extend(rows)
        return tables

    async def _sqlite_tables(self, storage: SqliteStorage, day_index: int) -> dict[str, list[Row]]:
        """A copy of the database file as it is at midnight, read back table by table."""
        assert self.data_dir is not None
        copy = self.data_dir / f"{self.d.name}-day{day_index}.db"
        copy.unlink(missing_ok=True)
        source = sqlite3.connect(f"file:{storage.path}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return read_sqlite_file(copy)


def read_sqlite_file(path: Path) -> dict[str, list[Row]]:
    """Every row of every table in a SQLite file (what someone holding the file can read)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        tables: dict[str, list[Row]] = {}
        for name in names:
            cursor = conn.execute(f'SELECT * FROM "{name}"')  # noqa: S608  (names from the file itself)
            columns = [c[0] for c in cursor.description]
            tables[name] = [dict(zip(columns, row, strict=True)) for row in cursor]
        return tables
    finally:
        conn.close()


def _stable_hash(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "big") % (2**31)
