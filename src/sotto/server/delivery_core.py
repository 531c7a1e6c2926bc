"""The rules of one delivery connection (relay-protocol §4), with no I/O: events in, actions out.

:class:`DeliveryConnection` is told what happened (connected, a frame arrived, storage answered,
a live envelope, the timer fired, the socket closed) with the time passed in, and answers by
calling the methods of an :class:`Actions` object it was given (write a frame, close, read or
write storage, listen to the fan-out, arm the timer). It reads no clock, calls no storage and
never awaits; whoever drives it (the WebSocket handler in :mod:`sotto.server.ws`, a test, a
benchmark) does the I/O and reports the results back as events.

The rules it holds: the challenge comes first; a subscription is checked against the
connection's nonce, at most ``MAX_SUBSCRIPTIONS_PER_CONNECTION`` mailboxes, and answered after
the new mailboxes are touched; envelopes go out through a :class:`DeliveryWindow` (storage order
per mailbox, at most ``max_unacked`` unacknowledged, overflowing mailboxes read again); acks
become deletes, reported back with :meth:`DeliveryConnection.deleted`; sends are handed to
storage, at most ``max_inflight_sends`` at a time, and answered when their commit is reported;
a misbehaving client is closed with a typed code, preceded by an ``error`` frame that names it.

Actions are method calls rather than returned lists, so a frame costs no allocation beyond what
it needs. One storage read is asked for at a time: the driver answers :meth:`Actions.fetch` with
:meth:`DeliveryConnection.fetched` before it is asked for the next.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from sotto.errors import DecodeError
from sotto.server.config import RateLimit
from sotto.server.ratelimit import TokenBucket
from sotto.server.relay import DeliveryWindow, Fetch, Ref
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId, PutOutcome
from sotto.wire import frames
from sotto.wire.limits import MAX_FRAME_BYTES, MAX_SUBSCRIPTIONS_PER_CONNECTION

CLOSE_NORMAL = 1000
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

_REFUSED = frozenset({PutOutcome.NOT_FOUND, PutOutcome.MAILBOX_FULL, PutOutcome.RELAY_FULL})


class Actions(Protocol):
    """What a :class:`DeliveryConnection` asks its driver to do. Each call returns at once; the
    ones that need an answer name the event that carries it."""

    def send_frame(self, text: str) -> None:
        """Write this text frame (after the ones asked for before it)."""

    def close(self, code: int, reason: str, error: str | None) -> None:
        """Write ``error`` (the encoded ``error`` frame) if given, then close with ``code``.
        Frames asked for before and not yet written may be dropped. Nothing follows."""

    def check_mailboxes(self, proofs: Sequence[frames.MailboxProof], nonce: bytes) -> None:
        """Look these mailboxes up and verify each proof against ``nonce``; answer
        :meth:`DeliveryConnection.checked` with the ids whose proof holds."""

    def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> None:
        """Mark these mailboxes used today; answer :meth:`DeliveryConnection.touched`."""

    def listen(self, mailbox_ids: Sequence[MailboxId]) -> None:
        """Report envelopes committed to these mailboxes from now on with
        :meth:`DeliveryConnection.live`."""

    def unlisten(self, mailbox_ids: Collection[MailboxId]) -> None:
        """Stop what :meth:`listen` started."""

    def fetch(self, fetch: Fetch) -> None:
        """Read pending envelopes; answer :meth:`DeliveryConnection.fetched`."""

    def store(self, frame: frames.Send, flush_deletes: bool) -> None:
        """Store this send (after the deletes asked for so far, if ``flush_deletes``); answer
        :meth:`DeliveryConnection.stored` once committed or failed."""

    def delete(self, refs: list[Ref]) -> None:
        """Delete these acknowledged envelopes (batching is allowed); answer
        :meth:`DeliveryConnection.deleted`."""

    def pushed(self, count: int) -> None:
        """``count`` envelopes were just handed to :meth:`send_frame` (a statistic)."""

    def schedule(self, at: float) -> None:
        """Report :meth:`DeliveryConnection.timer` at time ``at`` (replaces any earlier one)."""


class DeliveryConnection:
    """One connection's delivery rules. Small while idle: the window is made on first subscribe."""

    __slots__ = (
        "_actions",
        "_fetch",
        "_frames",
        "_inflight",
        "_last_frame",
        "_nonce",
        "_subscribing",
        "_window",
        "close_code",
        "closed",
        "idle_seconds",
        "max_inflight_sends",
    )

    def __init__(
        self,
        actions: Actions,
        *,
        idle_seconds: float,
        frame_limit: RateLimit,
        max_inflight_sends: int,
    ) -> None:
        self._actions = actions
        self.idle_seconds = idle_seconds
        self.max_inflight_sends = max_inflight_sends
        self._frames = TokenBucket(frame_limit, 0.0)
        self._nonce = b""
        self._last_frame = 0.0
        self._inflight = 0  # sends handed to storage, not yet answered
        self._window: DeliveryWindow | None = None
        self._fetch: Fetch | None = None  # the storage read under way
        # A subscribe under way: (its ids in order, the window it adds to, None) while checked,
        # then (the encoded answer, the window, the fresh ids) while they are touched.
        self._subscribing: tuple[list[MailboxId] | str, DeliveryWindow, list[MailboxId] | None] | None = None
        self.closed = False
        self.close_code = CLOSE_NORMAL

    # ------------------------------------------------------------------ state
    @property
    def reading(self) -> bool:
        """Whether the driver may feed the next frame: not while a subscribe is being checked,
        nor while ``max_inflight_sends`` sends are out."""
        return not self.closed and self._subscribing is None and self._inflight < self.max_inflight_sends

    @property
    def mailboxes(self) -> Collection[MailboxId]:
        window = self._window
        return () if window is None else window.mailboxes

    @property
    def window(self) -> DeliveryWindow | None:
        return self._window

    @property
    def deleting(self) -> int:
        """Acknowledged envelopes whose delete is not yet reported."""
        window = self._window
        return 0 if window is None else window.deleting

    # ------------------------------------------------------------------ events: the socket
    def connected(self, nonce: bytes, now: float) -> None:
        """The socket is open: send the challenge for ``nonce`` and arm the idle timer."""
        self._nonce = nonce
        self._last_frame = now
        self._frames.updated = now
        self._actions.send_frame(frames.encode(frames.Challenge(nonce)))
        self._actions.schedule(now + self.idle_seconds)

    def received(self, text: str | None, now: float, *, invalid_text: bool = False) -> None:
        """A frame arrived: its text, or None for a binary frame (``invalid_text`` for a text
        frame that was not UTF-8)."""
        if self.closed:
            return
        if text is None:
            if invalid_text:
                self._fail(CLOSE_MALFORMED, "text frames must be UTF-8")
            else:
                self._fail(CLOSE_MALFORMED, "binary frames are refused")
            return
        if len(text) > MAX_FRAME_BYTES:
            self._fail(CLOSE_TOO_LARGE, "frame too large")
            return
        self._last_frame = now
        if not self._frames.allow(now):
            self._fail(CLOSE_TOO_MANY, "too many frames")
            return
        try:
            frame = frames.decode_client_frame(text)
        except DecodeError as exc:
            self._fail(CLOSE_MALFORMED, str(exc)[:100])
            return
        self.received_frame(frame)

    def received_frame(self, frame: frames.ClientFrame) -> None:
        """A decoded frame (for drivers that skip the text; :meth:`received` checks it first)."""
        if self.closed:
            return
        if isinstance(frame, frames.Send):
            self._inflight += 1
            window = self._window
            self._actions.store(frame, window is not None and window.deleting > 0)
        elif isinstance(frame, frames.Ack):
            self._ack(frame)
        else:
            self._subscribe(frame)

    def timer(self, now: float) -> None:
        """The timer asked for with :meth:`Actions.schedule` fired."""
        if self.closed:
            return
        quiet = now - self._last_frame
        if quiet < self.idle_seconds:
            self._actions.schedule(self._last_frame + self.idle_seconds)
        else:
            self._fail(CLOSE_IDLE, "idle too long")

    def closed_by_peer(self) -> None:
        """The socket is gone (the peer closed it, or a write failed): stop listening."""
        self._stop()

    def storage_failed(self) -> None:
        """A storage call asked for by an action failed: close with 1013."""
        self._fetch = None
        self._fail(CLOSE_TRY_AGAIN, "storage unavailable")

    # ------------------------------------------------------------------ events: storage
    def checked(self, valid: Collection[MailboxId]) -> None:
        """The answer to :meth:`Actions.check_mailboxes`: the mailboxes whose proof holds."""
        subscribing = self._subscribing
        if subscribing is None or self.closed:
            return
        ids, window, _ = subscribing
        if isinstance(ids, str):
            return  # already checked
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
        answer = frames.encode(frames.Subscribed(tuple(accepted), tuple(refused)))
        if not fresh:
            self._subscribing = None
            self._actions.send_frame(answer)
            return
        self._subscribing = (answer, window, fresh)
        self._actions.touch_mailboxes(fresh)

    def touched(self) -> None:
        """The answer to :meth:`Actions.touch_mailboxes`: start delivering the fresh mailboxes."""
        subscribing, self._subscribing = self._subscribing, None
        if subscribing is None or self.closed:
            return
        answer, window, fresh = subscribing
        if not isinstance(answer, str) or not fresh:
            return
        self._actions.send_frame(answer)
        # Listen first, then read storage (window.subscribe marks them stale): whatever is
        # committed in between is either read or announced.
        self._actions.listen(fresh)
        window.subscribe(fresh)
        self._window = window
        self._pump()

    def fetched(self, fetch: Fetch, envelopes: list[EnvelopeRecord]) -> None:
        """The answer to :meth:`Actions.fetch`."""
        if self._fetch is fetch:
            self._fetch = None
        window = self._window
        if window is None or self.closed:
            return
        window.fetched(fetch, envelopes)
        self._pump()

    def stored(self, message_id: bytes, outcome: PutOutcome | None) -> None:
        """The answer to :meth:`Actions.store` for the send ``message_id``: its outcome, or None
        if storage failed (the client is told ``unavailable``; the connection stays)."""
        self._inflight -= 1
        if self.closed:
            return
        reply: frames.ServerFrame
        if outcome is None:
            reply = frames.SendFailed(message_id, "unavailable")
        elif outcome in _REFUSED:  # not_found, or a quota (relay-protocol §7)
            reply = frames.SendFailed(message_id, outcome.value)
        else:
            reply = frames.Sent(message_id, outcome is PutOutcome.DUPLICATE)
        self._actions.send_frame(frames.encode(reply))

    def deleted(self, refs: list[Ref]) -> None:
        """The answer to :meth:`Actions.delete` (done, or failed and reported separately)."""
        if self._window is not None:
            self._window.deleted(refs)

    def live(self, envelope: EnvelopeRecord) -> None:
        """An envelope was committed to a mailbox this connection listens to."""
        window = self._window
        if window is not None and not self.closed:
            window.offer(envelope)
            self._pump()

    def offer(self, envelope: EnvelopeRecord) -> None:
        """:meth:`live` without pushing yet: for a driver busy writing, which calls :meth:`pump`
        when it is ready, so that envelopes arriving meanwhile go out as one batch."""
        window = self._window
        if window is not None and not self.closed:
            window.offer(envelope)

    def recheck(self, mailbox_id: MailboxId) -> None:
        """An envelope may have been committed to this mailbox on another node: read it again from
        storage when the driver next calls :meth:`pump` (as with :meth:`offer`)."""
        window = self._window
        if window is not None and not self.closed:
            window.recheck(mailbox_id)

    def pump(self) -> None:
        """The driver is ready to write: push what the window allows (see :meth:`offer`)."""
        self._pump()

    # ------------------------------------------------------------------ rules
    def _subscribe(self, frame: frames.Subscribe) -> None:
        window = self._window or DeliveryWindow()
        subscribed = window.mailboxes
        ids = list(dict.fromkeys(MailboxId(p.id) for p in frame.mailboxes))
        proofs = [p for p in frame.mailboxes if MailboxId(p.id) not in subscribed]
        self._subscribing = (ids, window, None)
        if proofs:
            self._actions.check_mailboxes(proofs, self._nonce)
        else:
            self.checked(())

    def _ack(self, frame: frames.Ack) -> None:
        window = self._window
        if window is None or not frame.ids:
            return  # an empty ack is a keep-alive
        refs = window.acked(((MailboxId(r.mailbox), MessageId(r.id)) for r in frame.ids), until_deleted=True)
        if refs:
            self._actions.delete(refs)
        if not window.idle():
            self._pump()  # acks made room for what waits

    def _pump(self) -> None:
        """Push what the window allows, and ask for the next read if none is under way."""
        window = self._window
        if window is None or self.closed:
            return
        batch = window.take()
        if batch:
            send, encode = self._actions.send_frame, frames.encode_envelope
            for envelope in batch:
                send(
                    encode(envelope.mailbox_id, envelope.message_id, envelope.received_day, envelope.payload)
                )
            self._actions.pushed(len(batch))
        if self._fetch is None:
            fetch = window.next_fetch()
            if fetch is not None:
                self._fetch = fetch
                self._actions.fetch(fetch)

    def _fail(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.close_code = code
        error = frames.encode(frames.Error(ERROR_CODES[code], reason)) if code in ERROR_CODES else None
        self._stop()
        self._actions.close(code, reason, error)

    def _stop(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._subscribing = None
        window = self._window
        if window is not None and window.mailboxes:
            self._actions.unlisten(window.mailboxes)
