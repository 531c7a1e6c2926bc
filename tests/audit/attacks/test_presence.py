"""Presence per 15-minute bin from the view."""

from __future__ import annotations

from sotto.audit.leakage.attacks.presence import by_account, presence
from sotto.server.observer import ViewRecord, WsClose
from tests.audit.attacks.records import at, frame, key_counts, poll

BIN_US = 900_000_000


def test_polls_and_account_requests_count_in_their_bins() -> None:
    found = presence([poll(10, "M"), poll(20, "M"), poll(1000, "M"), key_counts(30, "alice")])
    first = at(0) // BIN_US
    assert found["mailbox:M"] == {first: 2.0, first + 1: 1.0}
    assert found["account:alice"] == {first: 1.0}


def test_a_subscribed_connection_covers_the_time_it_stays_open() -> None:
    records: list[ViewRecord] = [
        frame(450, "in", "subscribe", ("M",), conn=4),
        WsClose(at(1350), 4, "10.0.0.1", 50_004, "in", 1000),
    ]
    found = presence(records)
    first = at(0) // BIN_US
    # The subscribe itself, then half of each bin open.
    assert found["mailbox:M"] == {first: 1.0 + 0.5, first + 1: 0.5}


def test_an_account_shows_itself_through_the_mailboxes_named_for_it() -> None:
    found = presence([poll(10, "M"), poll(1000, "N"), key_counts(30, "alice"), poll(2000, "X")])
    first = at(0) // BIN_US
    merged = by_account(found, {"M": "alice", "N": "alice"})
    assert merged == {"account:alice": {first: 2.0, first + 1: 1.0}}
