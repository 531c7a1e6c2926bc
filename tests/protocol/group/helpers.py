"""Shared helpers for sender-key tests: a sender and a member set up from one SKDM."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol.group import (
    SenderKeyDistributionMessage,
    SenderKeyRecord,
    create_distribution,
    group_encrypt,
    process_distribution,
)


@dataclass
class Group:
    """One sender's record and one member's record for the same distribution."""

    rng: Rng
    distribution_id: uuid.UUID
    sender: SenderKeyRecord
    member: SenderKeyRecord
    skdm: SenderKeyDistributionMessage

    def send(self, plaintext: bytes) -> bytes:
        self.sender, skm = group_encrypt(self.sender, plaintext, self.rng)
        return skm

    def send_many(self, count: int) -> list[bytes]:
        return [self.send(b"message %d" % i) for i in range(count)]

    def skip_sender_ahead(self, steps: int) -> None:
        """Advance the sender's chain without sending (cheap stand-in for messages the member never saw)."""
        state = self.sender.states[0]
        chain_key = state.chain_key
        for _ in range(steps):
            chain_key = chain_key.next()
        self.sender = self.sender.with_state_at(0, replace(state, chain_key=chain_key))


def make_group(seed: int = 1) -> Group:
    rng = seeded_rng(seed)
    distribution_id = uuid.UUID(bytes=rng(16))
    sender, skdm = create_distribution(None, distribution_id, rng)
    member = process_distribution(None, SenderKeyDistributionMessage.decode(skdm.encode()))
    return Group(rng, distribution_id, sender, member, skdm)
