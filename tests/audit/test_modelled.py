"""The modelled baselines on a hand-made truth with known answers."""

from __future__ import annotations

from sotto.audit.leakage import modelled
from sotto.audit.leakage.attacks.view import pseudonym_of_account
from sotto.audit.sim.truth import Person, Sent, Truth

S = 1_000_000
DAY = 86_400 * S


def _truth() -> Truth:
    names = [f"p{i}" for i in range(8)]
    people = {
        n: Person(n, f"acct{n}", f"10.0.0.{i}", False, device_on=[(0, DAY)]) for i, n in enumerate(names)
    }
    people["p1"].device_on = [(3_600 * S, DAY)]  # off for the first hour
    pairs = [("p0", "p1"), ("p2", "p3"), ("p4", "p5"), ("p6", "p7")]
    truth = Truth(0, DAY, people, contacts=[(a, b, 0) for a, b in pairs])
    for k in range(40):
        a, b = pairs[k % 4]
        if k % 8 >= 4:
            a, b = b, a
        truth.sent.append(Sent(k * 1_800 * S + k * 37 * S, a, b, "text"))
    return truth


def test_whatsapp_reads_every_contact_from_the_first_message() -> None:
    truth = _truth()
    found = modelled.whatsapp(truth)
    assert found.ranking[pseudonym_of_account("acctp0")][0][0] == pseudonym_of_account("acctp1")
    assert set(found.messages_to_identify.values()) == {1}


def test_signal_receipts_name_the_sender_after_a_few_deliveries() -> None:
    truth = _truth()
    found = modelled.signal(truth)
    for a, b in (("p0", "p1"), ("p3", "p2")):
        assert found.ranking[pseudonym_of_account(f"acct{a}")][0][0] == pseudonym_of_account(f"acct{b}")
    assert all(v is not None and v <= 3 for v in found.messages_to_identify.values())


def test_a_device_that_is_off_gets_its_text_when_it_comes_back() -> None:
    truth = _truth()
    found = modelled.whatsapp(truth)
    assert max(found.latencies_s) == 3_600  # the text sent to p1 at 0 waited for its device
    assert min(found.latencies_s) == modelled.NETWORK_S
