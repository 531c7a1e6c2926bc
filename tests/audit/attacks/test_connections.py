"""Requests sharing a connection or a source address."""

from __future__ import annotations

from sotto.audit.leakage.attacks import connections
from sotto.audit.leakage.attacks.connections import Key
from sotto.server.observer import ViewRecord
from tests.audit.attacks.records import bundle, create, key_counts, poll, send


def _records() -> list[ViewRecord]:
    return [
        # Alice's keep-alive connection: her key counts, her mailbox, and Bob's bundle.
        key_counts(1, "alice", conn=1, addr="a"),
        create(1.1, "M", conn=1, addr="a"),
        bundle(1.2, "bob", conn=1, addr="a"),
        # Later, from the same address on other connections: a send and Bob's own requests.
        send(50, "N", conn=2, addr="a"),
        key_counts(60, "bob", conn=3, addr="b"),
        poll(61, "N", conn=4, addr="b"),
    ]


def test_a_shared_connection_ties_an_account_to_its_mailbox_and_the_bundle_it_fetched() -> None:
    ev = connections.evidence(_records(), key=Key.CONNECTION)
    assert ev.owners() == {"M": "alice"}
    assert dict(ev.direct["alice"]) == {"bob": 1.0}
    assert "N" not in ev.owner  # polled on a connection of its own


def test_a_shared_address_ties_everything_its_device_did() -> None:
    ev = connections.evidence(_records(), key=Key.ADDRESS)
    assert ev.owners() == {"M": "alice", "N": "bob"}
    assert dict(ev.writes["alice"]) == {"N": 1.0}
    ranking = connections.attack(_records(), key=Key.ADDRESS)
    assert ranking["account:alice"][0][0] == "account:bob"


def test_a_households_address_shares_its_evidence() -> None:
    records = [
        key_counts(1, "alice", conn=1, addr="h"),
        key_counts(2, "carol", conn=2, addr="h"),
        poll(3, "M", addr="h"),
    ]
    ev = connections.evidence(records, key=Key.ADDRESS)
    assert dict(ev.owner["M"]) == {"alice": 0.5, "carol": 0.5}
