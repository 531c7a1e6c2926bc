"""The timing attacks' evidence together."""

from __future__ import annotations

from sotto.audit.leakage.attacks import bursts, coincidence, combined
from tests.audit.attacks.records import bundle, create, key_counts, poll


def test_a_burst_and_a_coincidence_complete_an_edge_neither_reads_alone() -> None:
    records = [
        # Carol accepts Bob's invite: his bundle, then her mailbox for him; nothing of hers
        # authenticated nearby.
        bundle(10, "bob", conn=1),
        create(10.01, "C4B", conn=2),
        # Hours later Carol polls that mailbox, and her housekeeping follows.
        poll(5000, "C4B", conn=3),
        key_counts(5000.02, "carol", conn=4),
    ]
    assert "account:carol" not in coincidence.attack(records)  # it knows she reads C4B, no more
    assert "account:carol" not in bursts.attack(records)  # it knows Bob writes to C4B, no more
    assert combined.attack(records)["account:carol"][0][0] == "account:bob"
