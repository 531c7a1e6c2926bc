"""The doorbell: after a commit, a node tells every node that a mailbox has something new.

A ring is ``(mailbox_id, seq)`` and nothing else: no payload, no sender, no node name. Whichever
node holds a subscription to that mailbox (a client connected to it) reads the store and
delivers; every other node drops the ring. Nothing maps mailboxes to nodes or to each other.

Layout: **one subject (NATS) or channel (Redis) for all rings**, ``<prefix>.rings``. Every node
hears every ring and filters by the mailboxes its own connections hold, in memory. The
alternative, shards by a hash prefix of the mailbox id with each node subscribing to the shards
its clients need, saves bus egress only while a node's clients cover few shards; a node with
thousands of connections covers every shard of any sensible shard count, and a node's set of
shard subscriptions, though transient, tells the bus operator more about where mailboxes are
than one shared subject does. The cost of one subject is that bus egress grows as rings × nodes;
at the node counts of ``docs/scaling.md`` that is small next to the store's writes (a ring is
24 bytes). :func:`shard_of` is kept so the subject can grow a shard suffix without a change of
wire format.

Wire format: the mailbox id's bytes followed by ``seq`` as 8 bytes big-endian
(:func:`encode_ring`, :func:`decode_ring`).

When the bus is down a doorbell says so: :attr:`Doorbell.healthy` turns false, :meth:`ring`
raises :class:`BusUnavailableError`, and :class:`BusHealth` counts outages. The relay's hook
(wired in a later change): while ``healthy`` is false, poll the store for every subscribed
mailbox once a second; when :attr:`BusHealth.reconnects` moves, poll once more, since rings sent
during the outage are lost, not queued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sotto.errors import SottoError

SEQ_BYTES = 8
"""A ring's sequence number on the wire: 8 bytes, big-endian."""
MAX_MAILBOX_ID = 64
"""A longer mailbox id is not a mailbox id: a ring carrying one does not decode."""


class BusUnavailableError(SottoError):
    """The message bus cannot be reached (connect refused, connection lost, timed out).

    Rings are not queued while the bus is down; the relay falls back to polling the store."""


@dataclass(frozen=True, slots=True)
class Ring:
    """A mailbox has an envelope committed at sequence ``seq``: all a ring says."""

    mailbox_id: bytes
    seq: int


@dataclass(slots=True)
class BusHealth:
    """What a doorbell reports about its bus, for the relay's fallback and its metrics.

    ``outages`` counts the times the bus went from reachable to unreachable, ``reconnects`` the
    times it came back, ``ring_failures`` the rings that could not be sent and ``rings_dropped``
    the received messages that did not decode."""

    healthy: bool = False
    outages: int = 0
    reconnects: int = 0
    ring_failures: int = 0
    rings_sent: int = 0
    rings_received: int = 0
    rings_dropped: int = 0

    def down(self) -> None:
        """Record that the bus became unreachable (counted once per outage)."""
        if self.healthy:
            self.outages += 1
        self.healthy = False

    def up(self, *, again: bool) -> None:
        """Record that the bus is reachable; ``again`` after a lost connection."""
        if again and not self.healthy:
            self.reconnects += 1
        self.healthy = True


RingCallback = Callable[[Ring], Awaitable[None] | None]
"""Called with each ring heard; may be a plain function or a coroutine function."""


class Doorbell(Protocol):
    """One node's connection to the bus: ring after a commit, hear every node's rings."""

    @property
    def healthy(self) -> bool:
        """Whether the bus is reachable now."""
        ...

    @property
    def health(self) -> BusHealth:
        """The counters behind :attr:`healthy`."""
        ...

    async def start(self) -> None:
        """Connect; raises :class:`BusUnavailableError` if the bus cannot be reached."""
        ...

    async def ring(self, mailbox_id: bytes, seq: int) -> None:
        """Tell every node that ``mailbox_id`` holds an envelope at ``seq``; raises
        :class:`BusUnavailableError` while the bus is down (nothing is queued)."""
        ...

    async def subscribe(self, callback: RingCallback) -> Callable[[], None]:
        """Call ``callback`` with every ring heard, in the order each node sent them; returns a
        function that stops the calls."""
        ...

    async def close(self) -> None:
        """Disconnect; idempotent."""
        ...


def encode_ring(mailbox_id: bytes, seq: int) -> bytes:
    """A ring's bytes on the wire: the mailbox id, then ``seq`` (8 bytes, big-endian)."""
    if not 0 < len(mailbox_id) <= MAX_MAILBOX_ID:
        raise ValueError("mailbox id length out of range")
    return mailbox_id + seq.to_bytes(SEQ_BYTES, "big")


def decode_ring(data: bytes) -> Ring | None:
    """The ring in ``data``, or ``None`` if it is not one."""
    if not SEQ_BYTES < len(data) <= SEQ_BYTES + MAX_MAILBOX_ID:
        return None
    return Ring(bytes(data[:-SEQ_BYTES]), int.from_bytes(data[-SEQ_BYTES:], "big"))


def shard_of(mailbox_id: bytes, shards: int) -> int:
    """The shard of ``mailbox_id`` among ``shards`` (by a hash, so ids of any shape spread)."""
    return int.from_bytes(hashlib.sha256(mailbox_id).digest()[:4], "big") % shards


class Subscribers:
    """The callbacks of one doorbell, called in order for each ring."""

    def __init__(self, health: BusHealth) -> None:
        self._health = health
        self._callbacks: list[RingCallback] = []

    def add(self, callback: RingCallback) -> Callable[[], None]:
        """Add ``callback``; returns its removal."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    async def deliver(self, data: bytes) -> None:
        """Decode ``data`` and hand the ring to every callback (undecodable data is counted)."""
        ring = decode_ring(data)
        if ring is None:
            self._health.rings_dropped += 1
            return
        self._health.rings_received += 1
        for callback in list(self._callbacks):
            result = callback(ring)
            if result is not None:
                await result


__all__ = [
    "BusHealth",
    "BusUnavailableError",
    "Doorbell",
    "Ring",
    "RingCallback",
    "Subscribers",
    "decode_ring",
    "encode_ring",
    "shard_of",
]
