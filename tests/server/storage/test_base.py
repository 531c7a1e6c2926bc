"""The day rules: the expiry a drain applies (:func:`drained_expiry`), an access token's stored
expiry and an account's stored creation week, as properties of any mailbox and day."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sotto.server.storage.base import (
    EXPIRY_STEP_DAYS,
    creation_week,
    drained_expiry,
    expiry_phase,
    token_expiry,
)

ids = st.binary(min_size=16, max_size=16)
days = st.integers(min_value=0, max_value=100_000)
ttls = st.integers(min_value=1, max_value=90)


@given(ids, days, ttls)
def test_expiry_is_a_week_at_most_past_the_ttl_on_the_mailboxs_weekday(
    mailbox_id: bytes, today: int, ttl: int
) -> None:
    expires = drained_expiry(mailbox_id, today, ttl)
    assert today + ttl <= expires < today + ttl + EXPIRY_STEP_DAYS
    assert expires % EXPIRY_STEP_DAYS == expiry_phase(mailbox_id)


@given(ids, days, ttls, st.integers(min_value=0, max_value=60))
def test_expiry_never_moves_back_and_moves_in_whole_weeks(
    mailbox_id: bytes, today: int, ttl: int, later: int
) -> None:
    first, second = drained_expiry(mailbox_id, today, ttl), drained_expiry(mailbox_id, today + later, ttl)
    assert second >= first and (second - first) % EXPIRY_STEP_DAYS == 0


@given(days)
def test_token_expiry_is_the_next_whole_week_at_or_after_the_asked_day(requested: int) -> None:
    stored = token_expiry(requested)
    assert requested <= stored < requested + EXPIRY_STEP_DAYS
    assert stored % EXPIRY_STEP_DAYS == 0


@given(days, st.integers(min_value=0, max_value=EXPIRY_STEP_DAYS - 1))
def test_every_day_of_a_week_stores_one_creation_week(today: int, offset: int) -> None:
    week = creation_week(today)
    assert week <= today < week + EXPIRY_STEP_DAYS and week % EXPIRY_STEP_DAYS == 0
    assert creation_week(week + offset) == week
