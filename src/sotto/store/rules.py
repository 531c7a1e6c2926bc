"""Rules every backend applies the same way (so the shared test suite can hold them to it)."""

from __future__ import annotations

from sotto.errors import StoreError
from sotto.store.model import ContactId, Direction, MessageState, ReceiptKind

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
