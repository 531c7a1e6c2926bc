"""Creation and deletion bursts, and the invite flow."""

from __future__ import annotations

from sotto.audit.leakage.attacks import bursts
from tests.audit.attacks.records import bundle, create, http, key_counts


def test_an_invite_and_its_acceptance_name_both_people() -> None:
    records = [
        # Alice creates an invite: its mailbox and her access-token update, back to back.
        create(10, "INV", conn=1),
        http(10.01, "PUT", "/v1/accounts/me/access-tokens", auth="alice", conn=2),
        # Minutes later Bob accepts: Alice's bundle, then his mailbox for her.
        bundle(300, "alice", conn=3),
        create(300.01, "B4A", conn=4),
    ]
    assert [len(b) for b in bursts.bursts(records)] == [2, 2]
    ev = bursts.evidence(records)
    assert ev.owners() == {"INV": "alice"}
    assert dict(ev.writes["alice"]) == {"B4A": 1.0}
    ranking = bursts.attack(records)
    assert ranking["mailbox:B4A"] == [("account:alice", 1.0)]
    assert ranking["account:alice"] == [("mailbox:B4A", 1.0)]


def test_a_rotation_burst_gives_every_new_mailbox_to_the_account_beside_it() -> None:
    records = [create(5, m, conn=i) for i, m in enumerate("PQRST")] + [key_counts(5.05, "alice", conn=9)]
    assert bursts.evidence(records).owners() == dict.fromkeys("PQRST", "alice")


def test_a_lone_creation_names_nobody() -> None:
    records = [create(5, "P"), key_counts(50, "alice")]
    assert bursts.evidence(records).owners() == {}


def test_an_inviter_answering_at_once_does_not_take_the_acceptors_mailbox() -> None:
    # Default mode: Bob fetches Alice's bundle and creates his mailbox for her on one
    # connection; the push reaches Alice at once and she answers on her keep-alive connection.
    records = [
        bundle(300, "alice", conn=3, addr="b"),
        create(300.0, "B4A", conn=3, addr="b"),
        create(300.01, "A4B", conn=5, addr="a"),
        http(300.01, "DELETE", "/v1/mailboxes/INV", mailboxes=("INV",), conn=5, addr="a"),
        key_counts(300.02, "alice", conn=5, addr="a"),
    ]
    ev = bursts.evidence(records)
    assert ev.owners() == {"A4B": "alice", "INV": "alice"}
    assert dict(ev.writes["alice"]) == {"B4A": 1.0}
    assert bursts.attack(records)["mailbox:B4A"][0][0] == "account:alice"


def test_a_burst_of_many_accounts_names_nobody() -> None:
    records = [create(5, "P", conn=1)] + [key_counts(5.01, f"acct{i}", conn=2 + i) for i in range(5)]
    assert bursts.evidence(records).owners() == {}
