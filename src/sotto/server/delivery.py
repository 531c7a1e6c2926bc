"""One send, whichever way it arrives (HTTP or WebSocket): store it, then tell live drainers."""

from __future__ import annotations

from sotto.server.auth import token_hash
from sotto.server.context import RelayContext
from sotto.server.storage.base import MailboxId, MessageId, PutOutcome

_COUNTERS = {outcome: f"envelopes_{outcome.value}" for outcome in PutOutcome}


async def deliver(
    ctx: RelayContext, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes
) -> PutOutcome:
    """Store the envelope (answering only after the commit), then publish it for live delivery."""
    result = await ctx.storage.put_envelope(
        MailboxId(mailbox_id), token_hash(token), MessageId(message_id), payload, ctx.today()
    )
    ctx.stats.count(_COUNTERS[result.outcome])
    if result.envelope is not None:
        await ctx.fanout.publish(result.envelope)
    return result.outcome
