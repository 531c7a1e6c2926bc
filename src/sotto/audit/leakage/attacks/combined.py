"""The timing attacks together: what an operator learns when addresses are hidden from it.

A forwarder in front of the relay (Oblivious HTTP) hides the client's address, but the relay
still sees each request's time and connection. This attack sums the evidence of
:mod:`.coincidence`, :mod:`.bursts` and :mod:`.connections` by connection (not by address), so
ownership learnt from one (an invite's burst) completes an edge begun by another (a send's
coincidence).
"""

from __future__ import annotations

from sotto.audit.leakage.attacks import bursts, coincidence, connections
from sotto.audit.leakage.attacks.evidence import Evidence, contacts
from sotto.audit.leakage.attacks.view import Ranking, View, requests


def evidence(records: View) -> Evidence:
    parsed = requests(records)
    return (
        coincidence.evidence(parsed)
        .merge(bursts.evidence(parsed))
        .merge(connections.evidence(parsed, key=connections.Key.CONNECTION))
    )


def attack(records: View) -> Ranking:
    """Each account's (and invite mailbox's) likeliest contacts from every timing attack."""
    return contacts(evidence(records))


__all__ = ["attack", "evidence"]
