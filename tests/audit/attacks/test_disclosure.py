"""The statistical disclosure attack run on the view."""

from __future__ import annotations

from sotto.audit.leakage.attacks import disclosure
from sotto.server.observer import ViewRecord
from tests.audit.attacks.records import poll, send


def test_receipts_that_follow_deliveries_point_at_the_writer() -> None:
    # Whenever Bob's mailbox B hands out an envelope, a send to Alice's mailbox A follows within
    # a minute; sends to C come at unrelated times.
    records: list[ViewRecord] = []
    for k in range(12):
        t = 1000 * k
        records += [poll(t + 10, "B", envelopes=(f"e{k}",)), send(t + 40, "A")]
        records.append(send(t + 500, "C"))
    records.sort(key=lambda r: r.t_us)
    ranking = disclosure.attack(records, window_s=60)
    assert ranking["mailbox:B"][0][0] == "mailbox:A"


def test_the_tap_holds_the_views_sends_and_deliveries() -> None:
    tap = disclosure.tap_of([poll(0, "B", envelopes=("e1", "e2")), send(5, "A")])
    assert len(tap.push_t) == 2
    assert list(tap.dep_t) == [5.0]
    assert {m.decode() for m in tap.mailbox_ids} == {"A", "B"}
