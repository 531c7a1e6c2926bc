"""One send, whichever way it arrives (HTTP or WebSocket): store it, then tell live drainers."""

from __future__ import annotations

import asyncio

from sotto.server.auth import token_hash
from sotto.server.context import RelayContext
from sotto.server.storage.base import MailboxId, MessageId, PutOutcome, PutResult

_COUNTERS = {outcome: f"envelopes_{outcome.value}" for outcome in PutOutcome}


def submit(
    ctx: RelayContext, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes
) -> asyncio.Future[PutResult]:
    """Start storing the envelope; the future resolves after the commit. Pass its result to
    :func:`announce`."""
    return ctx.storage.submit_envelope(
        MailboxId(mailbox_id), token_hash(token), MessageId(message_id), payload, ctx.today()
    )


def announce(ctx: RelayContext, mailbox_id: MailboxId, result: PutResult) -> PutOutcome:
    """Count a committed send and publish a stored envelope to live drainers. A duplicate is
    announced too, without its envelope: the send that stored it may have been answered by a node
    that stopped before telling anyone (the sender retried here), and its listeners would then not
    hear of it until the mailbox's next envelope."""
    ctx.stats.count(_COUNTERS[result.outcome])
    if result.envelope is not None:
        ctx.fanout.publish(result.envelope)
    elif result.outcome is PutOutcome.DUPLICATE:
        ctx.fanout.ring(mailbox_id)
    return result.outcome


async def deliver(
    ctx: RelayContext, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes
) -> PutOutcome:
    """Store the envelope (answering only after the commit), then publish it for live delivery."""
    return announce(ctx, MailboxId(mailbox_id), await submit(ctx, mailbox_id, token, message_id, payload))
