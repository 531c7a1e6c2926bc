"""Reading the operator's view as requests."""

from __future__ import annotations

from sotto.audit.leakage.attacks.view import Kind, ranked, requests
from tests.audit.attacks.records import bundle, create, frame, key_counts, poll, send


def test_each_request_says_what_it_did_to_which_mailbox_or_account() -> None:
    reqs = requests([poll(1, "M"), send(2, "N"), create(3, "K"), key_counts(4, "A"), bundle(5, "B")])
    assert [(r.kind, r.mailbox, r.account) for r in reqs] == [
        (Kind.POLL, "M", None),
        (Kind.SEND, "N", None),
        (Kind.CREATE, "K", None),
        (Kind.ACCOUNT, None, "A"),
        (Kind.BUNDLE, None, "B"),
    ]


def test_a_poll_hands_out_only_the_envelopes_no_earlier_poll_named() -> None:
    # The second poll acknowledges e1 and e2 and brings e3: one envelope handed out.
    reqs = requests([poll(1, "M", envelopes=("e1", "e2")), poll(2, "M", envelopes=("e1", "e2", "e3"))])
    pushes = [r.t_us for r in reqs if r.kind is Kind.PUSH]
    assert len(pushes) == 3
    assert pushes.count(reqs[-1].t_us) == 1


def test_frames_are_read_per_mailbox() -> None:
    reqs = requests(
        [
            frame(1, "in", "subscribe", ("M", "N")),
            frame(2, "out", "envelope", ("M",)),
            frame(3, "in", "ack", ("M",)),
            frame(4, "in", "send", ("K",)),
            frame(5, "out", "subscribed", ("M",)),
        ]
    )
    assert [(r.kind, r.mailbox) for r in reqs] == [
        (Kind.SUBSCRIBE, "M"),
        (Kind.SUBSCRIBE, "N"),
        (Kind.PUSH, "M"),
        (Kind.ACK, "M"),
        (Kind.SEND, "K"),
    ]


def test_an_account_named_in_the_path_is_not_the_one_authenticated() -> None:
    fetch = bundle(1, "B", auth="A")
    kinds = {(r.kind, r.account) for r in requests([fetch])}
    assert kinds == {(Kind.BUNDLE, "B"), (Kind.ACCOUNT, "A")}


def test_a_ranking_keeps_positive_scores_best_first_and_never_the_key_itself() -> None:
    assert ranked({"a": {"b": 1.0, "c": 3.0, "a": 9.0, "d": 0.0}, "e": {}}) == {"a": [("c", 3.0), ("b", 1.0)]}
