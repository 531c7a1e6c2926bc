"""The backlog attack, with its controls.

Positive control: a device back from being away drains a backlog of its mailbox (a poll that
hands out several envelopes, ``more`` set) while its outbox goes out to its contact's mailbox:
each drain pairs the two. Negative controls: the same view with its ids dealt out again scores
at chance; polls that hand out one envelope at a time pair nobody.
"""

from __future__ import annotations

import dataclasses
import random

from sotto.audit.leakage.attacks import backlog, score
from sotto.audit.leakage.attacks.shuffle import shuffle_ids
from sotto.server.observer import ViewRecord, WsFrame
from tests.audit.attacks.pairs import Pairs, pairs
from tests.audit.attacks.records import at, frame, poll, send

PAIRS = 20


def _view(world: Pairs, *, handed: int, seed: int = 1) -> list[ViewRecord]:
    """Each person comes back three times a day: a poll of their mailbox hands out ``handed``
    envelopes and their outbox sends to their contact's mailbox within seconds; other sends go
    on all day."""
    rng = random.Random(seed)
    out: list[ViewRecord] = []
    for a, b in world.mailboxes:
        for mine, theirs in ((a, b), (b, a)):
            for _ in range(3):
                t = rng.uniform(0, 86_000)
                drained = poll(t, world.named(mine), conn=rng.randrange(10**6))
                out.append(dataclasses.replace(drained, handed=handed, more=handed > 3))
                out.append(send(t + rng.uniform(0.5, 5), world.named(theirs)))
            for _ in range(5):
                out.append(send(rng.uniform(0, 86_000), world.named(theirs)))
    return sorted(out, key=lambda r: r.t_us)


def test_positive_control_a_drained_backlog_pairs_the_outbox_it_came_back_with() -> None:
    world = pairs(PAIRS)
    view = _view(world, handed=6)
    assert len(backlog.drains(view)) == 6 * PAIRS
    found = score.score_contacts(backlog.attack(view), world.truth)
    assert found.top1 >= 0.9, found
    shuffled = score.score_contacts(backlog.attack(shuffle_ids(view, seed=1)), world.truth)
    assert shuffled.top1 <= found.chance_people + 0.15, shuffled


def test_negative_control_one_envelope_at_a_time_drains_nothing() -> None:
    world = pairs(PAIRS)
    view = _view(world, handed=1)
    assert backlog.drains(view) == []
    assert backlog.attack(view) == {}


def test_a_delivery_socket_drains_what_it_pushes_just_after_subscribing() -> None:
    def push(seconds: float) -> WsFrame:
        return frame(seconds, "out", "envelope", ("M",), conn=7)

    view: list[ViewRecord] = [
        frame(100, "in", "subscribe", ("M",), conn=7),
        push(100.1),
        push(100.2),
        push(100.3),
    ]
    view.append(push(500))  # a live push later is no backlog
    (drained,) = backlog.drains(view)
    assert (drained.mailbox, drained.handed, drained.t_us) == ("M", 3, at(100.1))
