"""The simulation's record of what happened survives a save and a load unchanged."""

from __future__ import annotations

from pathlib import Path

from sotto.audit.sim.truth import MailboxLife, Person, Sent, Truth


def test_truth_round_trips_through_a_file(tmp_path: Path) -> None:
    truth = Truth(start_us=0, end_us=10_000_000, settings={"people": 2, "seed": 7})
    truth.people["a"] = Person("a", "QUFB", "10.0.0.1", True, device_on=[(0, 5)], app_use=[(1, 2)])
    truth.people["b"] = Person("b", "QkJC", "10.0.0.2", False)
    truth.contacts.append(("a", "b", 3))
    truth.mailboxes.append(MailboxLife("bWJ4", owner="a", writer="b", created_us=3))
    truth.sent.append(Sent(4, "b", "a", "text"))
    path = tmp_path / "truth.json"
    truth.save(path)
    again = Truth.load(path)
    assert again == truth
    assert again.contact_sets() == {"a": {"b"}, "b": {"a"}}
    assert again.mailbox_owner() == {"bWJ4": "a"}
    assert again.account_owner() == {"QUFB": "a", "QkJC": "b"}
