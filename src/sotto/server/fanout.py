"""Live delivery: tell the connections draining a mailbox that an envelope was just committed.

The envelope is already durable when it is published; the notification only saves a read. A
connection whose queue is full when one arrives marks the mailbox stale and reads it from
storage. But a connection learns of new envelopes *only* through notifications while it stays
subscribed, so a fan-out must deliver every publish to every listener registered before it
(:class:`LocalFanout` does, synchronously). A fan-out across nodes that can drop messages (Redis
pub/sub on reconnect) must make its listeners re-read their mailboxes when it may have dropped.

:class:`LocalFanout` serves one process. Several relay nodes would implement :class:`Fanout`
over Redis pub/sub (publish to a channel per mailbox, subscribe while a connection drains it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sotto.server.storage.base import EnvelopeRecord, MailboxId

Listener = Callable[[EnvelopeRecord], None]
"""Called on the event loop with each envelope committed to a subscribed mailbox."""


class Fanout(Protocol):
    def subscribe(self, mailbox_id: MailboxId, listener: Listener) -> None: ...

    def unsubscribe(self, mailbox_id: MailboxId, listener: Listener) -> None: ...

    def publish(self, envelope: EnvelopeRecord) -> None:
        """Hand ``envelope`` to every listener of its mailbox; one across nodes queues it for
        sending and returns."""
        ...


class LocalFanout:
    """In-process fan-out: mailbox id -> listeners."""

    def __init__(self) -> None:
        self._listeners: dict[MailboxId, list[Listener]] = {}

    def subscribe(self, mailbox_id: MailboxId, listener: Listener) -> None:
        self._listeners.setdefault(mailbox_id, []).append(listener)

    def unsubscribe(self, mailbox_id: MailboxId, listener: Listener) -> None:
        listeners = self._listeners.get(mailbox_id)
        if listeners is None:
            return
        try:
            listeners.remove(listener)
        except ValueError:
            return
        if not listeners:
            del self._listeners[mailbox_id]

    def publish(self, envelope: EnvelopeRecord) -> None:
        for listener in tuple(self._listeners.get(envelope.mailbox_id, ())):
            listener(envelope)

    def __len__(self) -> int:
        """Mailboxes with at least one listener."""
        return len(self._listeners)
