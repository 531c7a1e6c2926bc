"""Scoring attack answers against the truth."""

from __future__ import annotations

import pytest

from sotto.audit.leakage.attacks import score
from sotto.audit.leakage.attacks.evidence import Evidence
from sotto.audit.leakage.attacks.view import Ranking, View, requests
from sotto.audit.sim.truth import MailboxLife, Person, Truth
from tests.audit.attacks.records import T0_US, at, key_counts, poll

HOUR_US = 3_600_000_000


def _truth() -> Truth:
    """Four people in a ring (a-b-c-d-a), each reading one mailbox per contact."""
    truth = Truth(start_us=T0_US, end_us=T0_US + 4 * HOUR_US)
    for name in "abcd":
        truth.people[name] = Person(name, f"acct-{name}", f"10.0.0.{ord(name)}", True)
    ring = ["a", "b", "c", "d"]
    for i, name in enumerate(ring):
        nxt = ring[(i + 1) % 4]
        truth.contacts.append((name, nxt, T0_US))
        truth.mailboxes.append(MailboxLife(f"{name}-from-{nxt}", name, nxt, T0_US))
        truth.mailboxes.append(MailboxLife(f"{nxt}-from-{name}", nxt, name, T0_US))
    return truth


def test_a_perfect_answer_scores_one_and_both_chance_levels_are_reported() -> None:
    truth = _truth()
    ranking = {"account:acct-a": [("account:acct-b", 2.0), ("account:acct-c", 1.0)]}
    ranking |= {f"mailbox:{m.mailbox}": [(f"account:acct-{m.writer}", 1.0)] for m in truth.mailboxes}
    found = score.score_contacts(ranking, truth)
    assert found.targets == 4
    assert found.top1 == 1.0
    assert found.answered == 1.0
    assert found.chance_people == pytest.approx(2 / 3)
    assert found.chance_mailboxes == pytest.approx(4 / 6)  # of the 6 others' mailboxes, 4 are contacts'


def test_wrong_guesses_and_silence_score_zero() -> None:
    truth = _truth()
    found = score.score_contacts({"account:acct-a": [("account:acct-c", 1.0)]}, truth)
    assert found.top1 == 0.0
    assert found.hits == dict.fromkeys("abcd", 0.0)
    assert found.answered == 0.25


def test_a_guess_of_the_targets_own_pseudonym_is_a_miss() -> None:
    truth = _truth()
    ranking = {"mailbox:a-from-b": [("mailbox:a-from-d", 5.0), ("account:acct-b", 1.0)]}
    assert score.score_contacts(ranking, truth).hits["a"] == 0.0


def test_hours_to_identify_is_the_hour_from_which_the_answer_stays_right() -> None:
    truth = _truth()

    def attack(records: View) -> Ranking:
        # Right about a once it has seen more than two hours of view.
        seen = [r.t_us for r in requests(records)]
        if seen and max(seen) > T0_US + 2 * HOUR_US:
            return {"account:acct-a": [("account:acct-b", 1.0)]}
        return {}

    records = [key_counts(h * 3600 + 1, "acct-a") for h in range(4)]
    found = score.hours_to_identify(attack, records, truth)
    assert found.hours == {"a": 3.0, "b": None, "c": None, "d": None}
    assert found.identified == 0.25
    assert found.median_hours is None
    every_other = score.hours_to_identify(attack, records, truth, step_hours=2)
    assert every_other.hours["a"] == 4.0  # seen at the cuts of hours 2 and 4: right from 4
    # Counted from the target's first contact: had a's contacts formed at hour 1.5, 1.5 hours.
    truth.contacts = [(x, y, T0_US + 3 * HOUR_US // 2) for x, y, _ in truth.contacts]
    assert score.hours_to_identify(attack, records, truth).hours["a"] == 1.5


def test_presence_auc_ranks_bins_against_the_device_being_on() -> None:
    truth = _truth()
    # a's device was off in the second hour; everyone else's was on all along.
    for name, person in truth.people.items():
        person.device_on = [(T0_US, T0_US + 4 * HOUR_US)]
        if name == "a":
            person.device_on = [(T0_US, T0_US + HOUR_US), (T0_US + 2 * HOUR_US, T0_US + 4 * HOUR_US)]
    on = {
        f"mailbox:{m.mailbox}": {b: 1.0 for b in range(at(0) // 900_000_000, at(4 * 3600) // 900_000_000)}
        for m in truth.mailboxes
    }
    for key in ("mailbox:a-from-b", "mailbox:a-from-d"):
        for b in range(at(3600) // 900_000_000, at(7200) // 900_000_000):
            del on[key][b]
    assert score.presence_auc(on, truth) == 1.0
    assert score.presence_auc(on, truth, which="app_use") is None  # no app use recorded: one class


def test_the_report_runs_every_attack_and_renders_a_table() -> None:
    truth = _truth()
    records = [poll(10, "a-from-b"), key_counts(10.01, "acct-a")]
    report = score.report(records, truth, tick_seconds=60)
    names = [row.attack for row in report.rows]
    assert names == [
        "coincidence",
        "bursts",
        "connection",
        "timing combined",
        "address",
        "gaps",
        "disclosure",
        "padding",
        "backlog",
    ]
    text = report.to_markdown()
    assert text.count("\n| ") >= len(names) + 2
    assert "needs messages" in text


def test_owners_named_are_scored_against_who_reads_each_mailbox() -> None:
    truth = _truth()
    evidence = Evidence()
    evidence.add_owner("a-from-b", "acct-a", 1.0)  # right
    evidence.add_owner("b-from-a", "acct-c", 2.0)  # wrong: b reads it
    evidence.add_owner("b-from-a", "acct-b", 1.0)
    found = score.score_owners(evidence, truth)
    assert found.mailboxes == 8
    assert found.named == 2 / 8
    assert found.right == 0.5
