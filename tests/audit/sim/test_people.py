"""The people model: a plan reproducible from its seed, and consistent with itself."""

from __future__ import annotations

import itertools

from sotto.audit.sim.people import DAY_S, HOUR_S, Habits, plan_population

PEOPLE = 40


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    first = plan_population(PEOPLE, 2 * DAY_S, seed=7)
    again = plan_population(PEOPLE, 2 * DAY_S, seed=7)
    other = plan_population(PEOPLE, 2 * DAY_S, seed=8)
    assert first == again
    assert first.people != other.people
    assert first.conversations != other.conversations


def test_every_close_contact_is_made_by_one_invite_accepted_in_a_session_after_it() -> None:
    plan = plan_population(PEOPLE, DAY_S, seed=1)
    pairs = [frozenset((a, b)) for a, b, _ in plan.edges]
    assert len(set(pairs)) == len(pairs) and all(len(p) == 2 for p in pairs)
    invited = [frozenset((i.inviter, i.invitee)) for i in plan.invitations]
    assert sorted(invited, key=sorted) == sorted(pairs, key=sorted)
    for invitation in plan.invitations:
        assert invitation.invite_s < invitation.accept_s
        sessions = plan.by_name[invitation.invitee].sessions
        assert any(start <= invitation.accept_s < end for start, end in sessions)
        inviter_sessions = plan.by_name[invitation.inviter].sessions
        assert any(start <= invitation.invite_s < end for start, end in inviter_sessions)
    formed = {frozenset((i.inviter, i.invitee)): i.accept_s for i in plan.invitations}
    for conversation in plan.conversations:
        assert conversation.start_s >= formed[frozenset((conversation.starter, conversation.other))]
        assert conversation.turns >= 1
    degree = {p.name: 0 for p in plan.people}
    for a, b, _ in plan.edges:
        degree[a] += 1
        degree[b] += 1
    assert min(degree.values()) >= Habits().min_contacts


def test_housemates_share_a_line_and_are_contacts() -> None:
    plan = plan_population(PEOPLE, DAY_S, seed=2)
    shared = [h for h in plan.households if len(h.members) == 2]
    assert len(shared) == int(PEOPLE * Habits().household_share) // 2
    pairs = {frozenset((a, b)) for a, b, _ in plan.edges}
    for home in shared:
        assert frozenset(home.members) in pairs
    assert sorted(n for h in plan.households for n in h.members) == sorted(p.name for p in plan.people)


def test_sessions_outages_and_restarts_follow_the_habits() -> None:
    habits = Habits(cli_share=0.5)
    plan = plan_population(200, 2 * DAY_S, seed=3, habits=habits)
    outages = [span for h in plan.households for span in h.outages]
    per_day = len(outages) / len(plan.households) / 2
    assert 2.4 < per_day < 3.6  # three a day
    mean = sum(b - a for a, b in outages) / len(outages)
    assert 15 * 60 < mean < 25 * 60  # twenty minutes
    for person in plan.people:
        for spans in (person.sessions, person.down):
            assert all(a < b for a, b in spans)
            assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
        awake_sessions = sum(1 for a, _ in person.sessions if _local_hour(habits, a) in range(10, 20))
        assert awake_sessions > 2 * 10 * 1.5  # about three an hour in the day
        if person.cli:
            night = 3 * 3600 - habits.start_of_day_s + DAY_S  # 03:00 on the first night
            assert any(a <= night < b for a, b in person.down)  # the laptop sleeps
            assert not any(a <= night < b for a, b in person.sessions)


def test_settling_keeps_the_end_of_the_run_quiet() -> None:
    habits = Habits(settle_s=HOUR_S)
    plan = plan_population(PEOPLE, 6 * HOUR_S, seed=4, habits=habits)
    cutoff = 5 * HOUR_S
    for person in plan.people:
        assert all(b <= cutoff for _, b in (*person.sessions, *person.down))
        assert all(t < cutoff for t in person.rotations)
    assert all(b <= cutoff for h in plan.households for _, b in h.outages)
    assert all(c.start_s < cutoff for c in plan.conversations)
    assert all(i.accept_s < cutoff for i in plan.invitations)


def _local_hour(habits: Habits, t: float) -> int:
    return int(((habits.start_of_day_s + t) % DAY_S) // HOUR_S)
