"""Rules every backend applies the same way (so the shared test suite can hold them to it)."""

from __future__ import annotations

from sotto.errors import StoreError
from sotto.store.model import ContactId, Direction, MessageState, Reaction, ReceiptKind

MAX_PREKEY_ID = 0xFFFF_FFFF
"""Prekey ids are 32-bit on the wire; a sequence that reaches the end stops rather than wraps."""

MAX_ALLOCATION = 10_000

SEEN_RETENTION_DAYS = 31
"""Keep a seen envelope id this long: the relay may redeliver an envelope whose ack was lost until
it expires (30 days after the day it arrived), plus a day for the coarse day boundaries."""


def check_allocation(count: int) -> None:
    if not 1 <= count <= MAX_ALLOCATION:
        raise ValueError(f"allocate between 1 and {MAX_ALLOCATION} prekey ids at a time")


def check_prekey_id(last: int) -> None:
    if last > MAX_PREKEY_ID:
        # Reusing an id would let an old message meet new key material: refuse instead.
        raise StoreError("prekey ids exhausted for this kind")


_INCOMING_STATES = (MessageState.RECEIVED, MessageState.READ)


def check_message(direction: Direction, sender: ContactId | None, state: MessageState) -> None:
    """Incoming messages have a sender and an incoming state; ours have neither."""
    if direction is Direction.INCOMING:
        if sender is None or state not in _INCOMING_STATES:
            raise ValueError("an incoming message needs a sender and state RECEIVED or READ")
    elif sender is not None or state in _INCOMING_STATES:
        raise ValueError("an outgoing message has no sender and an outgoing state")


def state_for_receipt(kind: ReceiptKind) -> MessageState:
    return MessageState.READ if kind is ReceiptKind.READ else MessageState.DELIVERED


def with_reaction(held: tuple[Reaction, ...], new: Reaction) -> tuple[tuple[Reaction, ...], bool]:
    """One reaction per person: ``new`` replaces the reactor's earlier one ("" removes it); one
    sent before the reaction held is ignored. The reactions (ours first, then by contact) and
    whether they changed."""
    current = next((r for r in held if r.reactor == new.reactor), None)
    if current is not None and (current.sent_ms > new.sent_ms or current == new):
        return held, False
    if current is None and not new.emoji:
        return held, False
    kept = [r for r in held if r.reactor != new.reactor] + ([new] if new.emoji else [])
    kept.sort(key=lambda r: -1 if r.reactor is None else int(r.reactor))
    return tuple(kept), True
