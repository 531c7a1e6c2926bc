"""Positive and negative controls: the attacks on a real cadence-mode view.

Twelve people (a ring and a few chords: two to four contacts each) run the real client in
cadence mode on the real relay for eight simulated hours with a 15-minute tick; every device
loses its network twice for half an hour. The attacks read only the operator's view. They must
find what today's cadence mode still gives away (outages show when devices are on and name
contacts; the address names everyone), find no more than chance where the client no longer
leaks (account requests and invites timed at random instants), and fall to chance on the same
view with its ids dealt out again between people.
"""

from __future__ import annotations

import statistics

import pytest

from sotto.audit.leakage.attacks import coincidence, score
from sotto.audit.leakage.attacks.presence import presence
from sotto.audit.leakage.attacks.shuffle import shuffle_ids
from tests.audit.attacks.study import Study, run_study

TICK_S = 900
SHUFFLES = (11, 12, 13, 14)


@pytest.fixture(scope="module")
def study() -> Study:
    return run_study(12, hours=8, tick_seconds=TICK_S, outages=2, outage_s=1800, seed=5)


@pytest.fixture(scope="module")
def report(study: Study) -> score.Report:
    return score.report(study.records, study.truth, tick_seconds=TICK_S)


def test_the_view_holds_the_requests_the_attacks_need(study: Study) -> None:
    assert len(study.truth.people) == 12
    assert len(study.truth.contacts) == 16
    assert len(study.records) > 1000
    on = [sum(b - a for a, b in p.device_on) for p in study.truth.people.values()]
    assert all(0 < t < study.truth.end_us - study.truth.start_us for t in on)  # every device was off a while


def test_the_housekeeping_coincidence_no_longer_names_contacts(report: score.Report) -> None:
    """Account requests leave at random instants on connections of their own, not right after
    the tick's polls and sends: pairing them by time names no contact above chance."""
    row = report.row("coincidence")
    assert row.contact.top1 <= max(row.contact.chance_people, row.contact.chance_mailboxes) + 0.15


def test_outage_gaps_name_contacts_and_show_when_devices_are_on(report: score.Report) -> None:
    row = report.row("gaps")
    assert row.contact.top1 >= 0.75
    assert row.contact.top1 >= 2.5 * max(row.contact.chance_people, row.contact.chance_mailboxes)
    device_on = report.presence[("mailbox reads", "device_on")]
    assert device_on is not None
    assert device_on >= 0.75


def test_the_address_names_everyone_and_invites_no_longer_do(report: score.Report) -> None:
    assert report.row("address").contact.top1 >= 0.9  # one device, one address, all day
    bursts = report.row("bursts").contact
    assert bursts.top1 <= max(bursts.chance_people, bursts.chance_mailboxes) + 0.15


def test_cadence_requests_share_no_connection(report: score.Report) -> None:
    assert report.row("connection").contact.answered == 0.0


def test_shuffled_ids_bring_every_attack_to_chance(study: Study) -> None:
    truth = study.truth
    top1: dict[str, list[float]] = {}
    chance: dict[str, float] = {}
    aucs = []
    for seed in SHUFFLES:
        shuffled = shuffle_ids(study.records, seed=seed)
        for spec in score.attacks(tick_seconds=TICK_S):
            found = score.score_contacts(spec.run(shuffled), truth)
            top1.setdefault(spec.name, []).append(found.top1)
            chance[spec.name] = max(found.chance_people, found.chance_mailboxes)
        aucs.append(score.presence_auc(presence(shuffled), truth))
    for name, values in top1.items():
        assert statistics.mean(values) <= chance[name] + 0.12, (name, values, chance[name])
    assert all(a is not None for a in aucs)
    assert 0.35 <= statistics.mean(a for a in aucs if a is not None) <= 0.65, aucs


def test_the_coincidence_needs_the_timing(study: Study) -> None:
    """With a window too short for the client's round trip (10 ms in this network), the
    coincidence attack finds nothing: it reads the timing, not something else in the view."""
    assert coincidence.attack(study.records, window_s=0.001) == {}


def test_the_report_renders(report: score.Report) -> None:
    text = report.to_markdown()
    assert "| coincidence |" in text
    assert "| mailbox reads |" in text
