"""The expiry rule a drain applies (:func:`drained_expiry`), as a property of any mailbox and day."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sotto.server.storage.base import EXPIRY_STEP_DAYS, drained_expiry, expiry_phase

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
