"""The negative control's view: the same structure under other people's ids."""

from __future__ import annotations

from sotto.audit.leakage.attacks import coincidence
from sotto.audit.leakage.attacks.shuffle import shuffle_ids
from sotto.server.observer import HttpExchange, ViewRecord, to_json
from tests.audit.attacks.records import bundle, frame, key_counts, poll, send


def _records() -> list[ViewRecord]:
    return [
        poll(100, "M1", conn=1, addr="10.0.0.1"),
        key_counts(100.01, "alice", conn=2, addr="10.0.0.1"),
        send(400, "N1", conn=3, addr="10.0.0.1"),
        key_counts(400.01, "alice", conn=4, addr="10.0.0.1"),
        poll(700, "N1", conn=5, addr="10.0.0.2"),
        key_counts(700.01, "bob", conn=6, addr="10.0.0.2"),
        bundle(800, "carol", conn=7, addr="10.0.0.3"),
        key_counts(900, "carol", conn=8, addr="10.0.0.3"),
        poll(900.01, "C1", conn=9, addr="10.0.0.3"),
        frame(950, "in", "subscribe", ("M1", "C1"), conn=10),
    ]


def test_every_id_is_replaced_by_another_of_its_kind() -> None:
    original = _records()
    shuffled = shuffle_ids(original, seed=3)
    assert len(shuffled) == len(original)
    assert [type(r) for r in shuffled] == [type(r) for r in original]
    accounts = {a for r in shuffled if isinstance(r, HttpExchange) for a in r.accounts}
    assert accounts == {"alice", "bob", "carol"}
    mailboxes = {m for r in shuffled for m in getattr(r, "mailboxes", ())}
    assert mailboxes == {"M1", "N1", "C1"}
    assert {r.addr for r in shuffled} == {r.addr for r in original}
    assert all(value == "" for r in shuffled if isinstance(r, HttpExchange) for name, value in r.headers)


def test_paths_follow_the_ids_they_name() -> None:
    for r in shuffle_ids(_records(), seed=5):
        if isinstance(r, HttpExchange) and r.path.startswith("/v1/mailboxes/"):
            assert r.path.split("/")[3] == r.mailboxes[0]
        if isinstance(r, HttpExchange) and r.path.endswith("/bundle"):
            assert r.path.split("/")[3] == r.accounts[0]


def test_an_attack_reads_the_shuffled_view_as_the_same_structure_under_other_names() -> None:
    original = _records()
    shuffled = shuffle_ids(original, seed=7)
    before = coincidence.attack(original)
    after = coincidence.attack(shuffled)
    assert sorted(len(v) for v in before.values()) == sorted(len(v) for v in after.values())
    assert to_json(shuffled[0]) != to_json(original[0])


def test_a_seed_deals_the_same_way_every_time() -> None:
    assert shuffle_ids(_records(), seed=9) == shuffle_ids(_records(), seed=9)
