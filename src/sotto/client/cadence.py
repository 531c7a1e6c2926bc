"""Cadence mode's planner: what one tick sends and polls, whatever the user does.

Pure: no I/O, no clock; the tick number and the randomness are arguments. Ticks are the relay's
(``GET /v1/cadence``): tick ``k`` is ``[k·T, (k+1)·T)`` in unix seconds, the same for every
client. In each tick the plan holds

* one :class:`Poll` per mailbox we hold, at an independent uniform offset in ``[0, T)``, in whole
  milliseconds (the engine's clock);
* one :class:`Send` per contact who gave us a mailbox, at an independent uniform offset: the
  oldest envelope queued for that mailbox, else a cover envelope (``item_id`` None). Exactly one
  per contact, however long the queue: a backlog drains one envelope per tick;
* one :class:`Send` per *other* mailbox with envelopes queued (a contact request through an
  invite, envelopes written before a contact moved to a new mailbox): these are the only sends
  that depend on activity, and they happen once per contact relationship.

So what the relay observes per tick (polls per mailbox, sends per contact mailbox, and when)
depends on the number of contacts and mailboxes, not on the conversation. The offsets come from
the client's secret randomness, so they do not tie one client's requests together either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sotto.crypto.random import Rng
from sotto.store.model import ContactId, MailboxId, OutboxItemId

_OFFSET_BYTES = 7
"""Random bytes per offset, drawn as a number and taken modulo the tick's milliseconds (at most
3.6 million for an hour: the bias is below 2^-34)."""


def tick_of(unix_seconds: float, tick_seconds: int) -> int:
    """The tick ``unix_seconds`` falls in."""
    return math.floor(unix_seconds / tick_seconds)


def tick_start(tick: int, tick_seconds: int) -> float:
    return float(tick * tick_seconds)


@dataclass(frozen=True, slots=True)
class Poll:
    """Drain one of our mailboxes (acknowledging what its last poll brought) at ``at``."""

    at: float
    """Unix seconds."""
    mailbox_id: MailboxId


@dataclass(frozen=True, slots=True)
class Send:
    """Send one envelope to ``mailbox_id`` at ``at``: the queued ``item_id``, or cover if None."""

    at: float
    mailbox_id: MailboxId
    contact_id: ContactId | None
    """The contact whose current mailbox this is; None for a mailbox no contact uses now."""
    item_id: OutboxItemId | None
    """The oldest envelope queued for ``mailbox_id`` when the plan was made; None: cover."""

    @property
    def cover(self) -> bool:
        return self.item_id is None


Step = Poll | Send


@dataclass(frozen=True, slots=True)
class TickPlan:
    tick: int
    start: float
    tick_seconds: int
    steps: tuple[Step, ...]
    """In time order."""

    @property
    def end(self) -> float:
        return self.start + self.tick_seconds


def oldest_for(queue: Sequence[tuple[OutboxItemId, MailboxId]], mailbox_id: MailboxId) -> OutboxItemId | None:
    """The first envelope queued for ``mailbox_id`` (``queue`` is in enqueue order), if any."""
    return next((item_id for item_id, target in queue if target == mailbox_id), None)


def plan_tick(
    tick: int,
    tick_seconds: int,
    our_mailboxes: Iterable[MailboxId],
    contacts: Mapping[ContactId, MailboxId],
    *,
    queue: Sequence[tuple[OutboxItemId, MailboxId]] = (),
    rng: Rng,
) -> TickPlan:
    """The plan of tick ``tick``.

    ``contacts``: each contact's current mailbox for us (contacts who gave none are left out);
    ``queue``: the outbox as (item, target mailbox), in enqueue order.
    """
    if tick_seconds <= 0:
        raise ValueError("tick_seconds must be positive")
    start = tick_start(tick, tick_seconds)
    start_ms = tick * tick_seconds * 1000

    def at() -> float:
        # Whole milliseconds: the engine's clock counts them, so a step planned in a tick's last
        # millisecond is still issued in that tick (a finer instant would be waited for up to a
        # millisecond past it, into the next tick).
        return (start_ms + int.from_bytes(rng(_OFFSET_BYTES)) % (tick_seconds * 1000)) / 1000

    steps: list[Step] = [Poll(at(), mailbox_id) for mailbox_id in dict.fromkeys(our_mailboxes)]
    for contact_id, mailbox_id in contacts.items():
        steps.append(Send(at(), mailbox_id, contact_id, oldest_for(queue, mailbox_id)))
    contact_mailboxes = set(contacts.values())
    for item_id, mailbox_id in _first_per_mailbox(queue):
        if mailbox_id not in contact_mailboxes:
            steps.append(Send(at(), mailbox_id, None, item_id))
    steps.sort(key=lambda step: step.at)
    return TickPlan(tick, start, tick_seconds, tuple(steps))


def _first_per_mailbox(
    queue: Sequence[tuple[OutboxItemId, MailboxId]],
) -> list[tuple[OutboxItemId, MailboxId]]:
    first: dict[MailboxId, OutboxItemId] = {}
    for item_id, mailbox_id in queue:
        first.setdefault(mailbox_id, item_id)
    return [(item_id, mailbox_id) for mailbox_id, item_id in first.items()]


__all__ = ["Poll", "Send", "Step", "TickPlan", "oldest_for", "plan_tick", "tick_of", "tick_start"]
