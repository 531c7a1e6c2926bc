"""A message added to a store's history in one call, for the shared store suite."""

from __future__ import annotations

from sotto.crypto.random import Rng
from sotto.store.interfaces import Transaction
from sotto.store.model import (
    ContactId,
    Conversation,
    Direction,
    Message,
    MessageId,
    MessageState,
    Quote,
)
from tests.store.factories import NOW_MS


def add_message(
    tx: Transaction,
    rng: Rng,
    conversation: Conversation,
    text: str,
    *,
    sender: ContactId | None = None,
    state: MessageState | None = None,
    quote: Quote | None = None,
    expires_ms: int | None = None,
    timer_s: int | None = None,
) -> Message:
    """A message in ``conversation`` with a fresh id from ``rng``, sent and stored at
    :data:`NOW_MS`: ours without a ``sender`` (queued unless ``state`` says otherwise), else
    theirs (received unless ``state`` says otherwise)."""
    ours = sender is None
    return tx.messages.add(
        message_id=MessageId(rng(16)),
        conversation=conversation,
        direction=Direction.OUTGOING if ours else Direction.INCOMING,
        sender=sender,
        text=text,
        sent_ms=NOW_MS,
        stored_ms=NOW_MS,
        state=state or (MessageState.QUEUED if ours else MessageState.RECEIVED),
        quote=quote,
        expires_ms=expires_ms,
        timer_s=timer_s,
    )
