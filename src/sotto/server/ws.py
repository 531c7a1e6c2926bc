"""The delivery WebSocket ``/v1/ws`` (relay-protocol §4).

One :class:`Connection` per socket, spoken to in plain ASGI messages. Its main task reads
frames: ``subscribe`` (checked against each mailbox's key and the connection's challenge),
``ack`` (deleted in batches, all connections' together, by :class:`AckDeleter`), ``send`` (stored
concurrently, answered after the commit, at most ``ws_max_inflight_sends`` at a time).
A pusher task writes what goes out, and runs only while there is some: answers to sends as their
commits come in, and envelopes while :class:`~sotto.server.relay.DeliveryWindow` has something
to do: stored ones first, live ones as the fan-out announces them, never more than 256
unacknowledged.

The relay holds many idle connections, so an idle one owns little: its reader coroutine, one
timer for the idle limit (re-armed lazily, not per frame), no request headers and, once
subscribed, its window; tasks and containers exist only while they have work.

A client that misbehaves is closed with a typed code: 4400 malformed frame (a binary one, or
text that is not UTF-8), 4413 frame too large, 4429 too many frames, 4408 idle too long; 1013
when storage fails. Just before the close, an ``error`` frame names the reason (relay-protocol
§4). None of it is logged: the close codes are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Coroutine
from typing import Any

from starlette.types import Receive, Scope, Send

from sotto.errors import DecodeError, RelayStorageError
from sotto.server.auth import drain_ok
from sotto.server.context import RelayContext
from sotto.server.delivery import announce, submit
from sotto.server.logging import logger
from sotto.server.ratelimit import TokenBucket
from sotto.server.relay import DeliveryWindow, Fetch, Ref
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId, PutOutcome, PutResult
from sotto.wire import frames
from sotto.wire.limits import MAX_FRAME_BYTES, MAX_SUBSCRIPTIONS_PER_CONNECTION, NONCE_LENGTH

PATH = "/v1/ws"
_REFUSED = frozenset({PutOutcome.NOT_FOUND, PutOutcome.MAILBOX_FULL, PutOutcome.RELAY_FULL})

CLOSE_MALFORMED = 4400
CLOSE_IDLE = 4408
CLOSE_TOO_LARGE = 4413
CLOSE_TOO_MANY = 4429
CLOSE_TRY_AGAIN = 1013

ERROR_CODES = {
    CLOSE_MALFORMED: "malformed",
    CLOSE_IDLE: "idle",
    CLOSE_TOO_LARGE: "too_large",
    CLOSE_TOO_MANY: "rate_limited",
    CLOSE_TRY_AGAIN: "unavailable",
}
"""The ``code`` of the ``error`` frame sent before each close."""

INVALID_TEXT = "sotto.invalid_text"
"""Marks a ``websocket.receive`` event whose text frame was not UTF-8 (it has no ``text``);
the server's protocol (``runner.DeliveryProtocol``) makes these instead of logging."""

_VERIFY_IN_THREAD_ABOVE = 32
"""Subscriptions with more proofs than this are verified off the event loop."""


class _Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Connection:
    __slots__ = (
        "_acks",
        "_asgi_receive",
        "_asgi_send",
        "_closed",
        "_ctx",
        "_frames",
        "_idle_timer",
        "_last_frame",
        "_loop",
        "_nonce",
        "_pusher",
        "_reader",
        "_replies",
        "_sends",
        "_slot_free",
        "_timed_out",
        "_window",
    )

    def __init__(self, receive: Receive, send: Send, ctx: RelayContext, acks: AckDeleter) -> None:
        self._asgi_receive = receive
        self._asgi_send = send
        self._ctx = ctx
        self._acks = acks
        self._loop = asyncio.get_running_loop()
        self._nonce = ctx.rng(NONCE_LENGTH)
        self._last_frame = self._loop.time()
        self._frames = TokenBucket(ctx.config.rate_limits.ws_frames, self._last_frame)
        self._closed = False
        self._timed_out = False
        self._reader: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        # Created on first use, so an idle connection costs little.
        self._window: DeliveryWindow | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Future[Any]] | None = None  # stores and deletes in flight
        self._slot_free: asyncio.Future[None] | None = None
        self._replies: list[str] | None = None  # answers to sends, for the pusher to write

    async def serve(self) -> None:
        """Run the connection to its end. Frames are read and handled in this one coroutine, with
        no awaits but the reads, a wait for a send slot and a subscription's storage calls: it
        runs per frame, and it is most of what an idle connection holds."""
        stats, config = self._ctx.stats, self._ctx.config
        code = 1000
        accepted = False
        try:
            if (await self._asgi_receive())["type"] != "websocket.connect":
                return
            await self._asgi_send({"type": "websocket.accept"})
            accepted = True
            stats.count("ws_connections")
            self._reader = asyncio.current_task()
            self._idle_timer = self._loop.call_later(config.ws_idle_seconds, self._check_idle)
            await self._send(frames.encode(frames.Challenge(self._nonce)))
            receive, time, budget = self._asgi_receive, self._loop.time, self._frames
            max_sends = config.ws_max_inflight_sends
            while not self._closed:
                message = await receive()
                if message["type"] != "websocket.receive":
                    self._closed = True
                    break
                text = message.get("text")
                if not isinstance(text, str):
                    if INVALID_TEXT in message:
                        raise _Closed(CLOSE_MALFORMED, "text frames must be UTF-8")
                    raise _Closed(CLOSE_MALFORMED, "binary frames are refused")
                if len(text) > MAX_FRAME_BYTES:
                    raise _Closed(CLOSE_TOO_LARGE, "frame too large")
                now = self._last_frame = time()
                if not budget.allow(now):
                    raise _Closed(CLOSE_TOO_MANY, "too many frames")
                try:
                    frame = frames.decode_client_frame(text)
                except DecodeError as exc:
                    raise _Closed(CLOSE_MALFORMED, str(exc)[:100]) from None
                if isinstance(frame, frames.Send):
                    if self._sends is not None and len(self._sends) >= max_sends:
                        await self._send_slot(max_sends)
                    self._start_send(frame)
                elif isinstance(frame, frames.Ack):
                    self._ack(frame)
                else:
                    await self._subscribe(frame)
        except _Closed as closed:
            code = closed.code
            await self._close(closed.code, closed.reason)
        except RelayStorageError:
            code = CLOSE_TRY_AGAIN
            await self._close(CLOSE_TRY_AGAIN, "storage unavailable")
        except asyncio.CancelledError:
            if not self._timed_out:
                raise
            if self._reader is not None:
                self._reader.uncancel()
            code = CLOSE_IDLE
            await self._close(CLOSE_IDLE, "idle too long")
        except Exception as exc:  # never a traceback with request data in the log
            logger.error("error %s", type(exc).__name__)
        finally:
            if accepted:
                stats.count(f"ws_close_{code}")
                await self._stop()

    # ------------------------------------------------------------------ idle limit
    def _check_idle(self) -> None:
        """The idle timer: re-armed for what is left, or the reader is cancelled."""
        limit = self._ctx.config.ws_idle_seconds
        quiet = self._loop.time() - self._last_frame
        if quiet < limit:
            self._idle_timer = self._loop.call_later(limit - quiet, self._check_idle)
            return
        self._idle_timer = None
        if not self._closed and self._reader is not None:
            self._timed_out = True
            self._reader.cancel()

    # ------------------------------------------------------------------ subscribe
    async def _subscribe(self, frame: frames.Subscribe) -> None:
        ctx, today = self._ctx, self._ctx.today()
        window = self._window or DeliveryWindow()
        ids = list(dict.fromkeys(MailboxId(p.id) for p in frame.mailboxes))
        held = await ctx.storage.get_mailboxes([m for m in ids if m not in window.mailboxes])
        proofs = [
            (p, held.get(MailboxId(p.id))) for p in frame.mailboxes if MailboxId(p.id) not in window.mailboxes
        ]

        def check() -> set[MailboxId]:
            return {MailboxId(p.id) for p, m in proofs if drain_ok(m, self._nonce, p.signature, today)}

        valid = await asyncio.to_thread(check) if len(proofs) > _VERIFY_IN_THREAD_ABOVE else check()
        accepted: list[MailboxId] = []
        fresh: list[MailboxId] = []
        refused: list[MailboxId] = []
        for mailbox_id in ids:
            if mailbox_id in window.mailboxes:
                accepted.append(mailbox_id)
            elif (
                mailbox_id in valid and len(window.mailboxes) + len(fresh) < MAX_SUBSCRIPTIONS_PER_CONNECTION
            ):
                accepted.append(mailbox_id)
                fresh.append(mailbox_id)
            else:
                refused.append(mailbox_id)
        if fresh:
            await ctx.storage.touch_mailboxes(fresh, today)
        await self._send(frames.encode(frames.Subscribed(tuple(accepted), tuple(refused))))
        if fresh:
            # Listen first, then read storage (window.subscribe marks them stale): whatever is
            # committed in between is either read or announced.
            for mailbox_id in fresh:
                ctx.fanout.subscribe(mailbox_id, self._on_live)
            window.subscribe(fresh)
            self._window = window
            self._kick()

    def _on_live(self, envelope: EnvelopeRecord) -> None:
        if self._window is not None:
            self._window.offer(envelope)
            self._kick()

    # ------------------------------------------------------------------ ack
    def _ack(self, frame: frames.Ack) -> None:
        """Hand acknowledged refs to the relay's deleter and read on."""
        window = self._window
        if window is None or not frame.ids:
            return  # an empty ack is a keep-alive
        refs = window.acked(((MailboxId(r.mailbox), MessageId(r.id)) for r in frame.ids), until_deleted=True)
        if refs:
            self._acks.add(self, refs)
        if not window.idle():
            self._kick()  # acks made room for what waits

    def _deleted(self, refs: list[Ref]) -> None:
        if self._window is not None:
            self._window.deleted(refs)

    # ------------------------------------------------------------------ send
    async def _send_slot(self, max_sends: int) -> None:
        """Wait until fewer than ``max_sends`` stores (and deletes) are in flight."""
        while self._sends is not None and len(self._sends) >= max_sends:
            self._slot_free = self._loop.create_future()
            try:
                await self._slot_free
            finally:
                self._slot_free = None

    def _start_send(self, frame: frames.Send) -> None:
        """Hand the send to storage; :meth:`_stored` answers it from the commit's callback (no
        task per send: at full load that is a good part of what a send costs)."""
        if self._sends is None:
            self._sends = set()
        if self._window is not None and self._window.deleting:
            # Acks read before this send are deleted before it is stored (storage runs
            # operations in the order they are started), so its answer comes after them.
            deleting = self._acks.flush()
            if deleting is not None:
                self._sends.add(deleting)
                deleting.add_done_callback(self._send_done)
        stored = submit(self._ctx, frame.mailbox, frame.token, frame.id, frame.payload)
        self._sends.add(stored)
        stored.add_done_callback(functools.partial(self._stored, frame.id))

    def _send_done(self, done: asyncio.Future[Any]) -> None:
        if self._sends is not None:
            self._sends.discard(done)
        waiter = self._slot_free
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _stored(self, message_id: bytes, stored: asyncio.Future[PutResult]) -> None:
        """A send committed (or failed): publish it, and queue its answer for the pusher."""
        self._send_done(stored)
        if stored.cancelled():
            return
        reply: frames.ServerFrame
        error = stored.exception()
        if error is not None:
            if not isinstance(error, RelayStorageError):  # a bug: its type only, never its data
                logger.error("error %s", type(error).__name__)
            reply = frames.SendFailed(message_id, "unavailable")
        else:
            outcome = announce(self._ctx, stored.result())
            if outcome in _REFUSED:  # not_found, or a quota (relay-protocol §7)
                reply = frames.SendFailed(message_id, outcome.value)
            else:
                reply = frames.Sent(message_id, outcome is PutOutcome.DUPLICATE)
        if self._closed:
            return
        if self._replies is None:
            self._replies = []
        self._replies.append(frames.encode(reply))
        self._kick()

    # ------------------------------------------------------------------ pushing
    def _kick(self) -> None:
        """Start the pusher unless it runs: it runs until no answer waits and the window has
        nothing left to do."""
        if self._pusher is None and not self._closed:
            self._pusher = self._loop.create_task(self._push())

    async def _push(self) -> None:
        storage, encode = self._ctx.storage, frames.encode_envelope
        try:
            while not self._closed:
                replies = self._replies
                if replies:
                    self._replies = None
                    for text in replies:
                        await self._send(text)
                    continue
                window = self._window
                if window is None:
                    break
                fetch: Fetch | None = window.next_fetch()
                if fetch is not None:
                    envelopes = await storage.pending(fetch.mailbox_id, fetch.limit, fetch.skip)
                    window.fetched(fetch, envelopes)
                    continue
                batch = window.take()
                if not batch:
                    break  # with no await since the window said so: a later event kicks anew
                for envelope in batch:
                    await self._send(
                        encode(
                            envelope.mailbox_id, envelope.message_id, envelope.received_day, envelope.payload
                        )
                    )
                self._ctx.stats.count("envelopes_pushed", len(batch))
        except _Closed:
            return
        except RelayStorageError:
            # Closing wakes the reader, which then tears the connection down.
            await self._close(CLOSE_TRY_AGAIN, "storage unavailable")
        finally:
            if self._pusher is asyncio.current_task():
                self._pusher = None

    # ------------------------------------------------------------------ output and teardown
    async def _send(self, text: str) -> None:
        # No lock: an ASGI server writes each message whole, and nothing here needs an order
        # between frames sent by different tasks.
        if self._closed:
            raise _Closed(1000, "closed")
        try:
            await self._asgi_send({"type": "websocket.send", "text": text})
        except Exception:  # the peer went away mid-send: nothing to report to anyone
            self._closed = True
            raise _Closed(1000, "peer gone") from None

    async def _close(self, code: int, reason: str) -> None:
        """Send the ``error`` frame that names why, then close with ``code``."""
        already, self._closed = self._closed, True
        with contextlib.suppress(Exception):  # already closed, or the peer is gone
            if not already and code in ERROR_CODES:
                error = frames.encode(frames.Error(ERROR_CODES[code], reason))
                await self._asgi_send({"type": "websocket.send", "text": error})
            await self._asgi_send({"type": "websocket.close", "code": code, "reason": reason})

    async def _stop(self) -> None:
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._window is not None:
            for mailbox_id in self._window.mailboxes:
                self._ctx.fanout.unsubscribe(mailbox_id, self._on_live)
        pusher = self._pusher
        if pusher is not None and pusher is not asyncio.current_task():
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
        # What the client acknowledged is deleted now; sends already handed to storage finish
        # on their own, their replies go nowhere.
        if self._window is not None and self._window.deleting:
            await self._acks.drain()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)


class AckDeleter:
    """Deletes what the relay's connections acknowledge, in one storage call per ``linger``
    seconds (or per ``max_refs`` refs), for all of them together.

    An ack needs no answer, and the window skips acknowledged envelopes until their delete is
    reported, so nothing is pushed twice meanwhile; batching them spares the storage a commit
    per ack, which at moderate load is most of its work. A crash before the delete only means
    delivering again what was acknowledged, which at-least-once allows (clients drop duplicates).
    """

    def __init__(self, ctx: RelayContext, *, linger: float = 0.01, max_refs: int = 1_000) -> None:
        self.ctx = ctx
        self.linger = linger
        self.max_refs = max_refs
        self._pending: list[tuple[Connection, list[Ref]]] = []
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Refs waiting for the next delete."""
        return self._count

    def add(self, connection: Connection, refs: list[Ref]) -> None:
        self._pending.append((connection, refs))
        self._count += len(refs)
        if self._count >= self.max_refs:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self.flush)

    def flush(self) -> asyncio.Task[None] | None:
        """Start deleting what is pending now; the task, or None if nothing was pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return None
        batch, self._pending, self._count = self._pending, [], 0
        task = asyncio.get_running_loop().create_task(self._delete(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def drain(self) -> None:
        """Delete what is pending and wait for every delete under way."""
        self.flush()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _delete(self, batch: list[tuple[Connection, list[Ref]]]) -> None:
        refs = [ref for _, some in batch for ref in some]
        try:
            deleted = await self.ctx.storage.delete_envelopes(refs)
        except RelayStorageError:
            # Closing wakes each reader, which then tears its connection down.
            await asyncio.gather(
                *(c._close(CLOSE_TRY_AGAIN, "storage unavailable") for c in {c: None for c, _ in batch}),
                return_exceptions=True,
            )
            return
        finally:
            for connection, some in batch:
                connection._deleted(some)
        self.ctx.stats.count("envelopes_acked", deleted)


def delivery_socket(scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
    """The ASGI handler of ``GET /v1/ws``; :class:`~sotto.server.app.RelayApp` awaits it directly.

    A plain function returning the connection's coroutine, so that no frame of its own stays
    alive as long as the connection."""
    state = scope["app"].state
    ctx: RelayContext = state.relay
    acks: AckDeleter | None = getattr(state, "ws_acks", None)
    if acks is None or acks.ctx is not ctx:  # one per relay context (a restarted app has a new one)
        acks = state.ws_acks = AckDeleter(ctx)
    # The socket reads no header, and the server keeps the scope as long as the connection.
    scope["headers"] = ()
    return Connection(receive, send, ctx, acks).serve()
