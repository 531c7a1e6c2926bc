"""Twenty real SDK clients on the real relay app, in one process, on virtual time.

Every device registers, invites its neighbour in a ring, and sends texts to both contacts;
each text arrives exactly once and its delivery receipt comes back, in default mode (WebSockets,
the outbox, timed receipts) and in cadence mode (300-second ticks of polls and sends, cover
included). Default mode runs a simulated day; cadence mode runs 3 hours, so the test stays a
few seconds of CPU (a whole simulated day of cadence mode takes about 35 s for 20 people).
"""

from __future__ import annotations

import pytest

from sotto.audit import sim
from sotto.audit.sim.scenario import ChatResult, chat_ring

PEOPLE = 20


def check_everything_arrived(result: ChatResult, *, texts: int) -> None:
    assert sum(result.sent.values()) == texts
    assert result.received == result.sent  # every text once, from the right sender
    assert result.sent_ids <= result.receipts
    assert result.contacts_added == PEOPLE


@pytest.mark.parametrize("cadence", [False, True], ids=["default", "cadence"])
def test_twenty_clients_chat_and_every_message_arrives(cadence: bool) -> None:
    hours = 3 if cadence else 24
    result = sim.run(
        lambda clock: chat_ring(
            clock, PEOPLE, cadence=cadence, seconds=hours * 3600.0, texts_per_contact=2, tick_seconds=300
        )
    )
    assert result.virtual_seconds == hours * 3600.0
    check_everything_arrived(result, texts=PEOPLE * 2 * 2)
    if cadence:
        assert "ConnectionChanged" in result.events  # the cadence loop ran and said so
