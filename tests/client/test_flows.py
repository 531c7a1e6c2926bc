"""The flows on their own: in-memory stores and a dict relay, one transaction per step."""

from __future__ import annotations

from sotto.client.events import ContactAccepted, ContactAdded, MessageReceived
from sotto.client.flows import sending
from tests.client.peers import connect, people


def test_invite_handshake_and_texts_both_ways() -> None:
    _, (alice, bob) = people("Alice", "Bob")
    bob_at_alice, alice_at_bob = connect(alice, bob)
    assert any(isinstance(e, ContactAdded) for e in alice.events)
    assert any(isinstance(e, ContactAccepted) for e in bob.events)
    assert bob_at_alice.display_name == "Bob" and alice_at_bob.display_name == "Alice"

    with alice.store.transaction() as tx:
        sending.send_text(alice.ctx(tx), bob_at_alice, "hello Bob")
    alice.flush()
    bob.drain()
    with bob.store.transaction() as tx:
        sending.send_text(bob.ctx(tx), alice_at_bob, "hi Alice")
    bob.flush()
    alice.drain()
    got_bob = [e.text for e in bob.events if isinstance(e, MessageReceived)]
    got_alice = [e.text for e in alice.events if isinstance(e, MessageReceived)]
    assert got_bob == ["hello Bob"] and got_alice == ["hi Alice"]
    assert not alice.rejections and not bob.rejections
