"""Live delivery: tell the connections draining a mailbox that an envelope was just committed.

A notification is only a shortcut. The envelope is already durable when it is published, and a
connection that misses a notification (full queue, another node, a restart) finds the envelope
in storage. So a fan-out may drop; it must never be the only copy.

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

    async def publish(self, envelope: EnvelopeRecord) -> None: ...


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

    async def publish(self, envelope: EnvelopeRecord) -> None:
        for listener in tuple(self._listeners.get(envelope.mailbox_id, ())):
            listener(envelope)

    def __len__(self) -> int:
        """Mailboxes with at least one listener."""
        return len(self._listeners)
