"""Coincidences of account requests with mailbox requests."""

from __future__ import annotations

from sotto.audit.leakage.attacks import coincidence
from tests.audit.attacks.records import key_counts, poll, send


def test_housekeeping_after_a_poll_and_after_a_send_names_both_ends_of_an_edge() -> None:
    # Alice reads M and writes to N; Bob reads N. Each one's housekeeping follows its last step.
    records = [
        poll(100, "M", conn=1, addr="a"),
        key_counts(100.015, "alice", conn=2, addr="a"),
        send(400, "N", conn=3, addr="a"),
        key_counts(400.02, "alice", conn=4, addr="a"),
        poll(700, "N", conn=5, addr="b"),
        key_counts(700.01, "bob", conn=6, addr="b"),
    ]
    ev = coincidence.evidence(records)
    assert ev.owners() == {"M": "alice", "N": "bob"}
    assert dict(ev.writes["alice"]) == {"N": 1.0}
    ranking = coincidence.attack(records)
    assert ranking["account:alice"][0][0] == "account:bob"
    assert ranking["account:bob"][0][0] == "account:alice"


def test_requests_further_apart_than_the_window_say_nothing() -> None:
    records = [poll(100, "M", conn=1), key_counts(102, "alice", conn=2), send(200, "N", conn=3)]
    assert not coincidence.evidence(records, window_s=0.5).owner
    assert coincidence.attack(records) == {}


def test_an_account_request_before_a_subscribe_names_it_too() -> None:
    records = [key_counts(100, "alice", conn=1), poll(100.2, "M", conn=2)]
    assert coincidence.evidence(records).owners() == {"M": "alice"}


def test_requests_on_the_same_connection_count_whenever_they_come() -> None:
    records = [poll(100, "M", conn=7), key_counts(150, "alice", conn=7)]
    assert coincidence.evidence(records).owners() == {"M": "alice"}


def test_evidence_is_shared_among_mailbox_requests_in_one_window() -> None:
    records = [poll(100, "M", conn=1), poll(100.1, "X", conn=2), key_counts(100.2, "alice", conn=3)]
    ev = coincidence.evidence(records)
    assert ev.owner["M"]["alice"] == ev.owner["X"]["alice"] == 0.5
