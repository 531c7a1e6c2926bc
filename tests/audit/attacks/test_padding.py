"""The padding attack and the size-to-kind score, with their controls.

Positive control: without padding, sizes are free, and each pair of contacts writes its own
lengths (one size class per pair) to both its mailboxes: the size profiles pair every contact.
Negative controls: every envelope in one bucket (what padding gives when all fits the smallest)
pairs nobody; the positive control's view with its ids dealt out again scores at chance.
"""

from __future__ import annotations

import dataclasses
import random

from sotto.audit.leakage.attacks import padding, score
from sotto.audit.leakage.attacks.shuffle import shuffle_ids
from sotto.audit.sim.truth import Sent
from sotto.server.observer import HttpExchange
from tests.audit.attacks.pairs import Pairs, pairs
from tests.audit.attacks.records import send

PAIRS = 20


def _sends(world: Pairs, size_of: dict[int, int], *, seed: int = 1) -> list[HttpExchange]:
    """Each pair writes ten envelopes to each of its two mailboxes, at random times of a day,
    sized by ``size_of[pair]``, give or take a few bytes (no padding: any length goes)."""
    rng = random.Random(seed)
    out = []
    for i, pair in enumerate(world.mailboxes):
        for mailbox in pair:
            for _ in range(10):
                r = send(rng.uniform(0, 86_000), world.named(mailbox))
                out.append(dataclasses.replace(r, request_bytes=size_of[i] + rng.randrange(16)))
    return sorted(out, key=lambda r: r.t_us)


def test_positive_control_unpadded_lengths_pair_contacts() -> None:
    world = pairs(PAIRS)
    view = _sends(world, {i: 2 ** (6 + i) for i in range(PAIRS)})
    found = score.score_contacts(padding.attack(view), world.truth)
    assert found.top1 >= 0.9, found
    shuffled = score.score_contacts(padding.attack(shuffle_ids(view, seed=1)), world.truth)
    assert shuffled.top1 <= found.chance_people + 0.15, shuffled


def test_negative_control_one_bucket_pairs_nobody() -> None:
    world = pairs(PAIRS)
    view = _sends(world, dict.fromkeys(range(PAIRS), 350))
    assert padding.attack(view) == {}
    assert score.score_contacts(padding.attack(view), world.truth).top1 == 0.0


def test_sizes_tell_kinds_when_kinds_have_buckets_of_their_own() -> None:
    world = pairs(2)
    view = _sends(world, {0: 350, 1: 350})
    kinds = []
    for k, r in enumerate(view):
        kind = "attachment" if k % 4 == 0 else "text"
        kinds.append(Sent(r.t_us, "p0", "p1", kind))
        if kind == "attachment":
            view[k] = dataclasses.replace(r, request_bytes=90_000)
    world.truth.sent = kinds
    found = score.size_kinds(view, world.truth)
    assert found.envelopes == len(view)
    assert found.accuracy == 1.0
    assert found.majority == 0.75
    assert found.classes["attachment"] == {padding.size_class(90_000): len(view) // 4}


def test_one_bucket_tells_no_kind() -> None:
    world = pairs(2)
    view = _sends(world, {0: 350, 1: 350})
    world.truth.sent = [Sent(r.t_us, "p0", "p1", "text" if k % 3 else "receipt") for k, r in enumerate(view)]
    found = score.size_kinds(view, world.truth)
    assert found.accuracy == found.majority


def test_size_classes_double() -> None:
    assert padding.size_class(256) + 1 == padding.size_class(512)
    assert padding.size_class(300) == padding.size_class(511)
