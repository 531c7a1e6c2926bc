"""The delivery WebSocket ``/v1/ws`` (relay-protocol §4): the I/O around
:class:`~sotto.server.delivery_core.DeliveryConnection`, which holds the rules.

One :class:`Connection` per socket, spoken to in plain ASGI messages. Its main task reads
frames and feeds them to the core, and does the I/O the core asks for that must finish before
the next frame is read: a subscription's storage calls (checked against each mailbox's key and
the connection's challenge), and a wait for a send slot when ``ws_max_inflight_sends`` sends are
out. Sends are stored concurrently and answered after the commit; acks are deleted in batches,
all connections' together, by :class:`AckDeleter`. A pusher task writes what goes out, and runs
only while there is some: answers to sends, envelopes, and the storage reads the core asks for.

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
import weakref
from collections.abc import Collection, Coroutine, Mapping, Sequence
from typing import Any

from starlette.types import Receive, Scope, Send

from sotto.errors import RelayStorageError
from sotto.server.auth import drain_ok
from sotto.server.context import RelayContext
from sotto.server.delivery import announce, submit
from sotto.server.delivery_core import (
    CLOSE_IDLE,
    CLOSE_MALFORMED,
    CLOSE_TOO_LARGE,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    ERROR_CODES,
    DeliveryConnection,
)
from sotto.server.logging import logger
from sotto.server.relay import Fetch, Ref
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MailboxRecord, PutResult
from sotto.wire import frames
from sotto.wire.limits import NONCE_LENGTH

__all__ = [
    "CLOSE_IDLE",
    "CLOSE_MALFORMED",
    "CLOSE_TOO_LARGE",
    "CLOSE_TOO_MANY",
    "CLOSE_TRY_AGAIN",
    "ERROR_CODES",
    "INVALID_TEXT",
    "PATH",
    "AckDeleter",
    "Connection",
    "delivery_socket",
]

PATH = "/v1/ws"

INVALID_TEXT = "sotto.invalid_text"
"""Marks a ``websocket.receive`` event whose text frame was not UTF-8 (it has no ``text``);
the server's protocol (``runner.DeliveryProtocol``) makes these instead of logging."""

SEND_MANY = "sotto.websocket.send_many"
"""An ASGI extension of the server's protocol (``runner.DeliveryProtocol``), named in the scope's
``extensions``: a send event of this type carries ``texts``, several text frames written to the
socket at once. Frames queued while the pusher waited go out in one system call, not one each
(under load, a connection's replies and envelopes come in bursts from one commit)."""

_VERIFY_IN_THREAD_ABOVE = 32
"""Subscriptions with more proofs than this are verified off the event loop."""

_Check = tuple[Sequence[frames.MailboxProof], bytes]


def _valid(
    proofs: Sequence[frames.MailboxProof], held: Mapping[MailboxId, MailboxRecord], nonce: bytes, today: int
) -> set[MailboxId]:
    """The mailboxes whose proof holds."""
    return {MailboxId(p.id) for p in proofs if drain_ok(held.get(MailboxId(p.id)), nonce, p.signature, today)}


class Connection:
    """Implements :class:`~sotto.server.delivery_core.Actions` for its core."""

    __slots__ = (
        "__weakref__",
        "_acks",
        "_asgi_receive",
        "_asgi_send",
        "_closing",
        "_core",
        "_ctx",
        "_fetch",
        "_idle_timer",
        "_loop",
        "_nonce",
        "_out",
        "_pump_due",
        "_pusher",
        "_reader",
        "_send_many",
        "_sends",
        "_slot_free",
        "_subscription",
    )

    def __init__(
        self, receive: Receive, send: Send, ctx: RelayContext, acks: AckDeleter, *, send_many: bool = False
    ) -> None:
        config = ctx.config
        self._send_many = send_many  # the server takes SEND_MANY events
        self._asgi_receive = receive
        self._asgi_send = send
        self._ctx = ctx
        self._acks = acks
        self._loop = asyncio.get_running_loop()
        self._nonce = ctx.rng(NONCE_LENGTH)
        # The core holds this connection weakly: no reference cycle outlives the connection,
        # so reference counting frees both once it ends (under a flood of connections, cyclic
        # garbage waits for a full collection, whose pause every client waits through).
        self._core = DeliveryConnection(
            weakref.proxy(self),
            idle_seconds=config.ws_idle_seconds,
            frame_limit=config.rate_limits.ws_frames,
            max_inflight_sends=config.ws_max_inflight_sends,
        )
        self._closing: tuple[int, str, str | None] | None = None  # the close the core asked for
        self._reader: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        # Created on first use, so an idle connection costs little.
        self._out: list[str] | None = None  # frames for the pusher to write
        self._fetch: Fetch | None = None  # a storage read for the pusher to make
        self._subscription: _Check | list[MailboxId] | None = None  # for the reader to do
        self._pusher: asyncio.Task[None] | None = None
        self._pump_due = False  # live envelopes offered, not yet pushed
        self._sends: set[asyncio.Future[Any]] | None = None  # stores and deletes in flight
        self._slot_free: asyncio.Future[None] | None = None

    async def serve(self) -> None:
        """Run the connection to its end. Frames are read and handled in this one coroutine, with
        no awaits but the reads, a wait for a send slot and a subscription's storage calls: it
        runs per frame, and it is most of what an idle connection holds."""
        stats, core = self._ctx.stats, self._core
        accepted = False
        try:
            if (await self._asgi_receive())["type"] != "websocket.connect":
                return
            await self._asgi_send({"type": "websocket.accept"})
            accepted = True
            stats.count("ws_connections")
            core.connected(self._nonce, self._loop.time())
            out, self._out = self._out, None
            for challenge in out or ():
                if not await self._write(challenge):
                    return
            self._reader = asyncio.current_task()
            receive, time = self._asgi_receive, self._loop.time
            while self._closing is None:
                message = await receive()
                if message["type"] != "websocket.receive":
                    core.closed_by_peer()
                    break
                text = message.get("text")
                if isinstance(text, str):
                    core.received(text, time())
                else:
                    core.received(None, time(), invalid_text=INVALID_TEXT in message)
                if self._subscription is not None:
                    await self._subscribe()
                if not core.reading:
                    if core.closed:
                        break
                    await self._send_slot()
            if self._closing is not None:
                await self._write_close(self._closing)
        except asyncio.CancelledError:
            if self._closing is None:
                raise
            if self._reader is not None:
                self._reader.uncancel()
            await self._write_close(self._closing)
        except Exception as exc:  # never a traceback with request data in the log
            logger.error("error %s", type(exc).__name__)
        finally:
            if accepted:
                stats.count(f"ws_close_{core.close_code}")
                await self._stop()

    # ------------------------------------------------------------------ actions of the core
    def send_frame(self, text: str) -> None:
        out = self._out
        if out is None:
            self._out = [text]
        else:
            out.append(text)
        self._kick()

    def close(self, code: int, reason: str, error: str | None) -> None:
        self._closing = (code, reason, error)
        self._out = None
        self._fetch = None
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()  # it writes the close

    def check_mailboxes(self, proofs: Sequence[frames.MailboxProof], nonce: bytes) -> None:
        self._subscription = (proofs, nonce)

    def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> None:
        self._subscription = list(mailbox_ids)

    def listen(self, mailbox_ids: Sequence[MailboxId]) -> None:
        fanout, live, recheck = self._ctx.fanout, self._on_live, self._on_recheck
        for mailbox_id in mailbox_ids:
            fanout.subscribe(mailbox_id, live, recheck)

    def unlisten(self, mailbox_ids: Collection[MailboxId]) -> None:
        fanout, live = self._ctx.fanout, self._on_live
        for mailbox_id in mailbox_ids:
            fanout.unsubscribe(mailbox_id, live)

    def _on_live(self, envelope: EnvelopeRecord) -> None:
        """Offered now, pushed when the pusher is ready: what arrives while it writes goes out
        as one batch."""
        self._core.offer(envelope)
        self._pump_due = True
        self._kick()

    def _on_recheck(self, mailbox_id: MailboxId) -> None:
        """Another node rang for this mailbox (or the bus is down): read it from storage when the
        pusher is ready."""
        self._core.recheck(mailbox_id)
        self._pump_due = True
        self._kick()

    def fetch(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._kick()

    def store(self, frame: frames.Send, flush_deletes: bool) -> None:
        """Hand the send to storage; :meth:`_stored` answers it from the commit's callback (no
        task per send: at full load that is a good part of what a send costs)."""
        if self._sends is None:
            self._sends = set()
        if flush_deletes:
            # Acks read before this send are deleted before it is stored (storage runs
            # operations in the order they are started), so its answer comes after them.
            deleting = self._acks.flush()
            if deleting is not None:
                self._sends.add(deleting)
                deleting.add_done_callback(self._sends.discard)
        stored = submit(self._ctx, frame.mailbox, frame.token, frame.id, frame.payload)
        self._sends.add(stored)
        stored.add_done_callback(functools.partial(self._stored, frame.mailbox, frame.id))

    def delete(self, refs: list[Ref]) -> None:
        self._acks.add(self, refs)

    def pushed(self, count: int) -> None:
        self._ctx.stats.count("envelopes_pushed", count)

    def schedule(self, at: float) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self._loop.call_later(max(0.0, at - self._loop.time()), self._timer)

    # ------------------------------------------------------------------ answers to the core
    def _timer(self) -> None:
        self._idle_timer = None
        self._core.timer(self._loop.time())

    async def _subscribe(self) -> None:
        """Do a subscription's storage calls (and its proofs' checks), answering the core."""
        ctx, core, today = self._ctx, self._core, self._ctx.today()
        try:
            while (request := self._subscription) is not None:
                self._subscription = None
                if isinstance(request, list):
                    await ctx.storage.touch_mailboxes(request, today)
                    core.touched()
                    continue
                proofs, nonce = request
                held = await ctx.storage.get_mailboxes(list(dict.fromkeys(MailboxId(p.id) for p in proofs)))

                if len(proofs) > _VERIFY_IN_THREAD_ABOVE:
                    valid = await asyncio.to_thread(_valid, proofs, held, nonce, today)
                else:
                    valid = _valid(proofs, held, nonce, today)
                core.checked(valid)
        except RelayStorageError:
            self._subscription = None
            core.storage_failed()

    async def _send_slot(self) -> None:
        """Wait until the core reads again (fewer than ``ws_max_inflight_sends`` sends out)."""
        core = self._core
        while not core.reading and not core.closed:
            self._slot_free = self._loop.create_future()
            try:
                await self._slot_free
            finally:
                self._slot_free = None

    def _stored(self, mailbox_id: bytes, message_id: bytes, stored: asyncio.Future[PutResult]) -> None:
        """A send committed (or failed): publish it, and tell the core."""
        if self._sends is not None:
            self._sends.discard(stored)
        if stored.cancelled():
            return
        error = stored.exception()
        if error is not None:
            if not isinstance(error, RelayStorageError):  # a bug: its type only, never its data
                logger.error("error %s", type(error).__name__)
            self._core.stored(message_id, None)
        else:
            self._core.stored(message_id, announce(self._ctx, MailboxId(mailbox_id), stored.result()))
        waiter = self._slot_free
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deleted(self, refs: list[Ref]) -> None:
        self._core.deleted(refs)

    async def _close(self, code: int, reason: str) -> None:
        """A delete of :class:`AckDeleter` failed (``code`` is 1013): the core closes."""
        self._core.storage_failed()

    # ------------------------------------------------------------------ pushing
    def _kick(self) -> None:
        """Start the pusher unless it runs (or the reader writes): it runs until nothing waits."""
        if self._pusher is None and self._reader is not None and self._closing is None:
            self._pusher = self._loop.create_task(self._push())

    async def _push(self) -> None:
        storage, core = self._ctx.storage, self._core
        try:
            while self._closing is None and not core.closed:
                out = self._out
                if out:
                    self._out = None
                    if self._send_many and len(out) > 1:
                        if not await self._write_many(out):
                            return
                        continue
                    for text in out:
                        if self._closing is not None or not await self._write(text):
                            return
                    continue
                if self._pump_due:
                    self._pump_due = False
                    core.pump()
                    continue
                fetch = self._fetch
                if fetch is None:
                    break  # with no await since the core said so: a later event kicks anew
                self._fetch = None
                try:
                    envelopes = await storage.pending(fetch.mailbox_id, fetch.limit, fetch.skip)
                except RelayStorageError:
                    core.storage_failed()  # the reader writes the close
                    return
                core.fetched(fetch, envelopes)
        finally:
            if self._pusher is asyncio.current_task():
                self._pusher = None

    # ------------------------------------------------------------------ output and teardown
    async def _write(self, text: str) -> bool:
        # No lock: an ASGI server writes each message whole, and nothing here needs an order
        # between frames sent by different tasks.
        try:
            await self._asgi_send({"type": "websocket.send", "text": text})
        except Exception:  # the peer went away mid-send: nothing to report to anyone
            self._core.closed_by_peer()
            return False
        return True

    async def _write_many(self, texts: list[str]) -> bool:
        try:
            await self._asgi_send({"type": SEND_MANY, "texts": texts})
        except Exception:  # the peer went away mid-send
            self._core.closed_by_peer()
            return False
        return True

    async def _write_close(self, closing: tuple[int, str, str | None]) -> None:
        """Send the ``error`` frame that names why, then close."""
        code, reason, error = closing
        with contextlib.suppress(Exception):  # already closed, or the peer is gone
            if error is not None:
                await self._asgi_send({"type": "websocket.send", "text": error})
            await self._asgi_send({"type": "websocket.close", "code": code, "reason": reason})

    async def _stop(self) -> None:
        core = self._core
        core.closed_by_peer()
        self._out = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        pusher = self._pusher
        if pusher is not None and pusher is not asyncio.current_task():
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
        # What the client acknowledged is deleted now; sends already handed to storage finish
        # on their own, their replies go nowhere.
        if core.deleting:
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
    send_many = SEND_MANY in scope.get("extensions", ())
    scope["headers"] = ()
    return Connection(receive, send, ctx, acks, send_many=send_many).serve()
