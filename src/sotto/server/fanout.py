"""Live delivery: tell the connections draining a mailbox that an envelope was just committed.

The envelope is already durable when it is published; the notification only saves a read. A
connection whose queue is full when one arrives marks the mailbox stale and reads it from
storage. But a connection learns of new envelopes *only* through notifications while it stays
subscribed, so a fan-out must deliver every publish to every listener registered before it
(:class:`LocalFanout` does, synchronously).

:class:`LocalFanout` serves one process. Several relay nodes on one store use
:class:`~sotto.server.doorbell.BusFanout`, which wraps a :class:`LocalFanout` and rings the
other nodes over a message bus: an envelope committed on another node reaches a listener as a
*recheck* of its mailbox (read it again from storage), never as the envelope itself, since the
bus carries only the mailbox id and a sequence number. A recheck may come for nothing (the
envelope was already read); it must never be missed when something was committed, which is
why a node checks the store itself while its bus is down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from sotto.server.storage.base import EnvelopeRecord, MailboxId

Listener = Callable[[EnvelopeRecord], None]
"""Called on the event loop with each envelope committed to a subscribed mailbox."""
Recheck = Callable[[MailboxId], None]
"""Called on the event loop when the mailbox may hold envelopes the listener was not handed
(committed on another node): read it again from storage."""


class Fanout(Protocol):
    def subscribe(self, mailbox_id: MailboxId, listener: Listener, recheck: Recheck | None = None) -> None:
        """Hand ``listener`` the envelopes committed here to ``mailbox_id`` from now on, and call
        ``recheck`` (if given) when envelopes may have been committed elsewhere."""
        ...

    def unsubscribe(self, mailbox_id: MailboxId, listener: Listener) -> None: ...

    def publish(self, envelope: EnvelopeRecord) -> None:
        """Hand ``envelope`` to every listener of its mailbox; one across nodes also queues a ring
        for the other nodes and returns."""
        ...

    def ring(self, mailbox_id: MailboxId) -> None:
        """``mailbox_id`` may hold an envelope no listener was handed (a send found it stored
        already: the node that stored it may have stopped before telling anyone): ask every
        listener of it, here and on other nodes, to read it again."""
        ...


class LocalFanout:
    """In-process fan-out: mailbox id -> listeners (each with its recheck, if any)."""

    def __init__(self) -> None:
        self._listeners: dict[MailboxId, dict[Listener, Recheck | None]] = {}

    def subscribe(self, mailbox_id: MailboxId, listener: Listener, recheck: Recheck | None = None) -> None:
        self._listeners.setdefault(mailbox_id, {})[listener] = recheck

    def unsubscribe(self, mailbox_id: MailboxId, listener: Listener) -> None:
        listeners = self._listeners.get(mailbox_id)
        if listeners is None or listener not in listeners:
            return
        del listeners[listener]
        if not listeners:
            del self._listeners[mailbox_id]

    def publish(self, envelope: EnvelopeRecord) -> None:
        listeners = self._listeners.get(envelope.mailbox_id)
        if listeners:
            for listener in tuple(listeners):
                listener(envelope)

    def ring(self, mailbox_id: MailboxId) -> None:
        self.recheck(mailbox_id)

    def recheck(self, mailbox_id: MailboxId) -> int:
        """Ask every listener of ``mailbox_id`` to read it again; how many were asked."""
        listeners = self._listeners.get(mailbox_id)
        if not listeners:
            return 0
        rechecks = [r for r in listeners.values() if r is not None]
        for recheck in rechecks:
            recheck(mailbox_id)
        return len(rechecks)

    def mailboxes(self) -> Iterator[MailboxId]:
        """The mailboxes with at least one listener now (a copy: rechecks may change them)."""
        return iter(tuple(self._listeners))

    def __contains__(self, mailbox_id: object) -> bool:
        return mailbox_id in self._listeners

    def __len__(self) -> int:
        """Mailboxes with at least one listener."""
        return len(self._listeners)
