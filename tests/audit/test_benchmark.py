"""The benchmark's controls, run the way ``sotto audit leakage`` runs a design.

Positive control: today's cadence mode, people from the default habits (households, outages,
restarts, command-line users) on real clients against the real relay for two simulated days.
The benchmark must see what the relay sees: outages and restarts stop a device's polls and
sends in the same ticks, so the gaps name contacts within 48 simulated hours and show when
devices are on; every request carries the device's address. If it does not, the benchmark is
blind and this fails. (Until the client sent its account requests at random instants on
connections of their own, the housekeeping coincidence was the control: it named contacts
within hours.) Negative control: the same view with its ids dealt out again between people
scores at chance. The attacks on sizes and backlogs run on the same view (their controls, and
those of the attacks on the relay's files, are in ``tests/audit/attacks``; a study on SQLite is
scored in ``tests/audit/test_relaydb.py``, apart: SQLite makes this study's relay cost about
70% more).
"""

from __future__ import annotations

import pytest

from sotto.audit.leakage import designs, report
from sotto.audit.leakage.run import AttackRow, DesignResult, measure, model
from sotto.audit.sim.study import StudyResult, StudySettings, run_study

PEOPLE, DAYS, TICK_S = 10, 2.0, 300


@pytest.fixture(scope="module")
def study() -> StudyResult:
    return run_study(StudySettings(PEOPLE, DAYS, cadence=True, seed=3, tick_seconds=TICK_S))


@pytest.fixture(scope="module")
def cadence(study: StudyResult) -> DesignResult:
    return measure(designs.CADENCE, study.view, study.truth, tick_seconds=TICK_S)


def _row(result: DesignResult, attack: str) -> AttackRow:
    return next(r for r in result.rows if r.attack == attack)


def test_the_study_formed_contacts_and_sent_texts(study: StudyResult) -> None:
    assert len(study.truth.contacts) >= PEOPLE
    assert sum(s.kind == "text" for s in study.truth.sent) > 0


def test_positive_control_outage_gaps_and_addresses_name_contacts_within_48_hours(
    cadence: DesignResult,
) -> None:
    for attack in ("gaps", "address"):
        row = _row(cadence, attack)
        chance = max(row.chance_people, row.chance_mailboxes)
        assert row.top1 >= 0.7, (attack, row)
        assert row.top1 >= 1.8 * chance, (attack, row)
        assert row.identified is not None
        assert row.identified >= 0.7, (attack, row)  # with no message, within the two days
        assert row.hours_median is not None
        assert row.hours_median <= 48, (attack, row)


def test_positive_control_outages_show_when_devices_are_on(cadence: DesignResult) -> None:
    device_on = cadence.presence["device_on"]
    assert device_on is not None
    assert device_on >= 0.9


def test_negative_control_shuffled_ids_score_at_chance(cadence: DesignResult) -> None:
    for attack, top1 in cadence.shuffled.items():
        if attack.startswith("presence"):
            assert 0.3 <= top1 <= 0.7, (attack, top1)
            continue
        row = _row(cadence, attack)
        assert top1 <= max(row.chance_people, row.chance_mailboxes) + 0.25, (attack, top1)
    assert cadence.shuffled["gaps"] < _row(cadence, "gaps").top1 - 0.3


def test_sizes_and_backlogs_are_attacked(cadence: DesignResult) -> None:
    assert {"padding", "backlog"} <= {row.attack for row in cadence.rows}
    assert cadence.sizes["envelopes"] > 0
    assert cadence.backlogs["drains"] > 0  # devices back from outages drain what waited
    assert "Sizes: the size class" in report.markdown([cadence])


def test_traffic_and_latency_come_from_the_view(cadence: DesignResult) -> None:
    assert cadence.requests_per_person_day is not None
    assert cadence.requests_per_person_day > 24 * 3600 / TICK_S / 2  # a poll each tick while on
    assert cadence.latency_median_s is not None
    assert 0 < cadence.latency_median_s < 3 * TICK_S


def test_modelled_baselines_from_the_same_truth(study: StudyResult) -> None:
    whatsapp = model(designs.WHATSAPP, study.truth)
    assert not whatsapp.measured
    assert whatsapp.rows[0].top1 >= 0.9 * whatsapp.rows[0].answered
    assert whatsapp.presence["device_on"] == 1.0


def test_the_report_says_what_was_measured_and_what_was_modelled(
    cadence: DesignResult, study: StudyResult
) -> None:
    text = report.markdown([cadence, model(designs.SIGNAL, study.truth)])
    assert "| sotto-cadence | measured |" in text
    assert "| signal-like | modelled, not measured |" in text
    assert "Negative control" in text
