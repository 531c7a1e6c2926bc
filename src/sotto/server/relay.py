"""Delivery bookkeeping for one connection: what to push next, what awaits an ack, what to fetch.

Pure: no I/O, no clock. The WebSocket handler feeds it events (subscribed, live envelope, fetch
result, ack) and asks it what to do (fetch these from storage, push these). Invariants:

* at most ``max_unacked`` envelopes are pushed and not yet acknowledged;
* an envelope is pushed at most once per connection while it is pending;
* nothing is lost when live notifications overflow the queue: the mailbox is marked *stale* and
  its pending envelopes are read again from storage, where every envelope already is.

An acknowledged envelope may stay *deleting* (``acked(..., until_deleted=True)``) until the
caller reports its delete done (:meth:`DeliveryWindow.deleted`): reads of storage skip it
meanwhile, so acks can be deleted in batches, after reads that follow them, without pushing
anything twice.

Envelopes of one mailbox go out in storage order (``seq``): a live envelope for a mailbox whose
stored envelopes are still to be read, or being read, is not queued but read with them, so it
cannot overtake that backlog (after a reconnect, the first message sent after the cut would
otherwise reach the receiver after the second).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId
from sotto.wire.limits import MAX_UNACKED_PER_CONNECTION

Ref = tuple[MailboxId, MessageId]


@dataclass(frozen=True, slots=True)
class Fetch:
    """Read up to ``limit`` pending envelopes of ``mailbox_id``, leaving out ``skip``."""

    mailbox_id: MailboxId
    limit: int
    skip: frozenset[MessageId]


class DeliveryWindow:
    """One per subscribed connection, so it is kept small while idle: every container is a dict
    (an empty one holds no table) and is cleared when it empties (which frees its table)."""

    __slots__ = (
        "_deleting",
        "_fetching",
        "_queue",
        "_stale",
        "_unacked",
        "fetch_size",
        "mailboxes",
        "max_queued",
        "max_unacked",
    )

    def __init__(
        self, *, max_unacked: int = MAX_UNACKED_PER_CONNECTION, max_queued: int = 64, fetch_size: int = 32
    ) -> None:
        self.max_unacked = max_unacked
        self.max_queued = max_queued
        self.fetch_size = fetch_size
        self.mailboxes: set[MailboxId] = set()
        self._unacked: dict[Ref, None] = {}
        self._queue: dict[Ref, EnvelopeRecord] = {}  # in push order
        self._stale: dict[MailboxId, None] = {}  # insertion-ordered set: fetched in turn
        self._fetching: dict[MailboxId, set[MessageId]] = {}  # acked while a fetch was out
        self._deleting: dict[Ref, None] = {}  # acked, the delete not yet committed

    # -------------------------------------------------------------- events in
    def subscribe(self, mailbox_ids: Iterable[MailboxId]) -> None:
        """Start draining these mailboxes: their stored envelopes must be read first."""
        for mailbox_id in mailbox_ids:
            if mailbox_id not in self.mailboxes:
                self.mailboxes.add(mailbox_id)
                self._stale[mailbox_id] = None

    def offer(self, envelope: EnvelopeRecord) -> None:
        """A live envelope was committed to a mailbox this connection may drain."""
        mailbox_id = envelope.mailbox_id
        ref = (mailbox_id, envelope.message_id)
        if mailbox_id not in self.mailboxes or ref in self._unacked or ref in self._queue:
            return
        if (
            len(self._queue) < self.max_queued
            and mailbox_id not in self._stale
            and mailbox_id not in self._fetching
        ):
            self._queue[ref] = envelope
        else:  # read it from storage after what is stored before it
            self._stale[mailbox_id] = None

    def recheck(self, mailbox_id: MailboxId) -> None:
        """Something may have been committed to this mailbox elsewhere (another relay node rang,
        or the bus is down and the store is checked): read its pending envelopes again."""
        if mailbox_id in self.mailboxes:
            self._stale[mailbox_id] = None

    def fetched(self, fetch: Fetch, envelopes: list[EnvelopeRecord]) -> None:
        """The result of :meth:`next_fetch`'s request."""
        acked_meanwhile = self._fetching.pop(fetch.mailbox_id, set())
        if not self._fetching:
            self._fetching.clear()
        for envelope in envelopes:
            ref = (envelope.mailbox_id, envelope.message_id)
            if (
                envelope.message_id not in acked_meanwhile
                and ref not in self._unacked
                and ref not in self._queue
                and ref not in self._deleting
            ):
                self._queue[ref] = envelope
        if len(envelopes) >= fetch.limit:
            self._stale[fetch.mailbox_id] = None  # there may be more

    def acked(self, refs: Iterable[Ref], *, until_deleted: bool = False) -> list[Ref]:
        """Acknowledged refs in subscribed mailboxes: the ones to delete from storage.

        With ``until_deleted`` they stay *deleting* (skipped by reads) until reported to
        :meth:`deleted`; without it, the caller deletes them before any later read."""
        out = []
        unacked, queue, fetching = self._unacked, self._queue, self._fetching
        for ref in refs:
            if ref[0] not in self.mailboxes or ref in self._deleting:
                continue
            out.append(ref)
            if until_deleted:
                self._deleting[ref] = None
            unacked.pop(ref, None)
            queue.pop(ref, None)
            if ref[0] in fetching:
                fetching[ref[0]].add(ref[1])
        if not unacked:
            unacked.clear()
        if not queue:
            queue.clear()
        return out

    def deleted(self, refs: Iterable[Ref]) -> None:
        """These refs from :meth:`acked` are deleted from storage (or their delete failed)."""
        for ref in refs:
            self._deleting.pop(ref, None)
        if not self._deleting:
            self._deleting.clear()

    # -------------------------------------------------------------- decisions out
    def next_fetch(self) -> Fetch | None:
        """A storage read to make now, if the queue has room and a mailbox is stale."""
        if not self._stale or len(self._queue) >= self.max_queued or self.room() == 0:
            return None
        # One read per mailbox at a time: a mailbox being read stays stale until its result is in.
        mailbox_id = next((m for m in self._stale if m not in self._fetching), None)
        if mailbox_id is None:
            return None
        del self._stale[mailbox_id]
        if not self._stale:
            self._stale.clear()
        self._fetching[mailbox_id] = set()
        skip = frozenset(m for (b, m) in (*self._unacked, *self._queue, *self._deleting) if b == mailbox_id)
        limit = min(self.fetch_size, self.max_queued - len(self._queue))
        return Fetch(mailbox_id, limit, skip)

    def take(self) -> list[EnvelopeRecord]:
        """Envelopes to push now; they count as unacknowledged from here on."""
        queue = self._queue
        count = min(len(queue), self.max_unacked - len(self._unacked))
        if count <= 0:
            return []
        if count == len(queue):
            taken = list(queue.items())
            queue.clear()
        else:
            taken = list(islice(queue.items(), count))
            for ref, _ in taken:
                del queue[ref]
        self._unacked.update(dict.fromkeys(ref for ref, _ in taken))
        return [envelope for _, envelope in taken]

    def room(self) -> int:
        return self.max_unacked - len(self._unacked)

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def deleting(self) -> int:
        return len(self._deleting)

    def idle(self) -> bool:
        """Nothing to fetch and nothing to push."""
        return not self._stale and not self._queue
