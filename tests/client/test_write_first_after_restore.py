"""After a restore (no sessions, no sender keys), the restored side can write first: sending
asks the contact for a new session, and what it wrote goes out when the session arrives.

A "restore" here drops what a backup leaves out (``src/sotto/store/sqlite/snapshot.py``): every
session, every sender key, and which members were handed our sender key.
"""

from __future__ import annotations

import pytest

from sotto.client.events import GroupMessageReceived, MessageReceived, SessionRepaired
from sotto.client.flows import contacts, groups, receiving, repair, sending
from sotto.client.flows.sending import NoSessionError
from sotto.protocol.messages import CiphertextMessageType
from sotto.store.memory import MemoryStore
from sotto.store.model import Conversation, Group, MessageState
from tests.client.peers import Person, connect, people
from tests.client.test_repair import DAY_MS, HOUR_MS, advance, drain, round_trip, send


def lose_sessions(person: Person) -> None:
    """What a backup keeps out: sessions, sender keys, the "was sent our sender key" marks."""
    store: MemoryStore = person.store
    with store.transaction() as tx:
        for contact in tx.contacts.all():
            tx.sessions.delete_all(contact.address.name)
    tables = store._tables
    store._tables = type(tables)(
        **{
            **{f: getattr(tables, f) for f in tables.__dataclass_fields__},
            "sender_keys": type(tables.sender_keys)(),
        }
    )
    with store.transaction() as tx:
        for group in tx.groups.all():
            for member in tx.groups.members(group.group_id):
                tx.groups.remove_member(group.group_id, member.contact_id)
                tx.groups.add_member(group.group_id, member.contact_id)


def texts(person: Person) -> list[str]:
    return [e.text for e in person.events if isinstance(e, MessageReceived)]


def repaired(person: Person) -> list[SessionRepaired]:
    return [e for e in person.events if isinstance(e, SessionRepaired)]


def group_texts(person: Person) -> list[str]:
    return [e.text for e in person.events if isinstance(e, GroupMessageReceived)]


def test_the_restored_side_writes_first_and_then_both_directions_work() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=11)
    a_bob, b_alice = connect(alice, bob)
    alice.act(lambda ctx: sending.send_text(ctx, a_bob, "before"))
    round_trip(alice, bob)
    lose_sessions(bob)
    alice.events.clear()
    bob.events.clear()

    sent = bob.act(lambda ctx: sending.send_text(ctx, b_alice, "first after the restore"))
    second = bob.act(lambda ctx: sending.send_text(ctx, b_alice, "and a second"))
    held = bob.read(lambda tx: tx.messages.conversation(Conversation.direct(b_alice.contact_id), limit=5))
    assert {m.message_id: m.state for m in held if m.message_id in (sent, second)} == {
        sent: MessageState.QUEUED,
        second: MessageState.QUEUED,
    }
    # One request (the second send waits for its answer), a plaintext retry receipt.
    assert bob.flush() == 1
    drain(alice)
    assert repaired(alice) == [SessionRepaired(a_bob, requested=False)]
    alice.flush()
    drain(bob)
    assert repaired(bob) == [SessionRepaired(b_alice, requested=True)]
    bob.flush()
    drain(alice)
    assert texts(alice) == ["first after the restore", "and a second"]
    assert alice.rejections == []

    for n in range(3):
        send(alice, a_bob, f"from Alice {n}")
        send(bob, b_alice, f"from Bob {n}")
        round_trip(alice, bob)
    assert texts(bob) == ["from Alice 0", "from Alice 1", "from Alice 2"]
    assert texts(alice)[2:] == ["from Bob 0", "from Bob 1", "from Bob 2"]
    assert alice.rejections == bob.rejections == []


def test_a_request_is_a_plaintext_retry_receipt_naming_no_ratchet_key() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=12)
    _, b_alice = connect(alice, bob)
    lose_sessions(bob)
    assert bob.act(lambda ctx: repair.request_session(ctx, b_alice))
    # Within a minute the same request waits for the first one's answer; later it goes again.
    assert not bob.act(lambda ctx: repair.request_session(ctx, b_alice))
    advance(61_000, bob)
    assert bob.act(lambda ctx: repair.request_session(ctx, b_alice))
    advance(61_000, bob)
    assert bob.act(lambda ctx: repair.request_session(ctx, b_alice))
    advance(61_000, bob)
    assert not bob.act(lambda ctx: repair.request_session(ctx, b_alice)), "three an hour"
    advance(HOUR_MS, bob)
    assert bob.act(lambda ctx: repair.request_session(ctx, b_alice))
    items = bob.read(lambda tx: tx.outbox.all())
    assert len(items) == 4
    assert alice.me is not None
    unsealed = receiving.unseal(alice.me, items[0].payload, alice.now_ms)
    assert unsealed.content.message_type is CiphertextMessageType.PLAINTEXT


def test_the_contact_repairs_at_most_three_times_an_hour() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=13)
    _, b_alice = connect(alice, bob)
    for _ in range(4):
        lose_sessions(bob)
        bob.act(lambda ctx: repair.request_session(ctx, b_alice))
        advance(61_000, bob)
        bob.flush()
        drain(alice)
        alice.flush()
        drain(bob)
    assert len(repaired(alice)) == 3


def test_no_session_and_no_way_to_ask_is_a_typed_error_naming_the_contact() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=14)
    _, b_alice = connect(alice, bob)
    lose_sessions(bob)
    with bob.store.transaction() as tx:
        tx.identities.delete(b_alice.address.name)
    with pytest.raises(NoSessionError, match="with Alice: we trust no identity key") as caught:
        bob.act(lambda ctx: sending.send_text(ctx, b_alice, "lost"))
    assert caught.value.contact_name == "Alice"
    assert b_alice.address.name not in str(caught.value)
    held = bob.read(lambda tx: tx.messages.conversation(Conversation.direct(b_alice.contact_id), limit=5))
    assert all(m.text != "lost" for m in held)


def test_a_removed_contact_cannot_be_asked() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=15)
    _, b_alice = connect(alice, bob)
    lose_sessions(bob)
    bob.act(lambda ctx: contacts.remove_contact(ctx, b_alice))
    removed = bob.read(lambda tx: tx.contacts.get(b_alice.contact_id))
    assert removed is not None
    with pytest.raises(NoSessionError, match="Alice: they are no longer a contact"):
        bob.act(lambda ctx: repair.request_session(ctx, removed))


@pytest.mark.parametrize("first", ["one-to-one", "group", "contact-one-to-one"])
def test_in_a_group_both_sides_read_each_other_again_after_a_restore(first: str) -> None:
    _, (alice, bob, carol) = people("Alice", "Bob", "Carol", seed=16)
    a_bob, b_alice = connect(alice, bob)
    a_carol, c_alice = connect(alice, carol)
    b_carol, c_bob = connect(bob, carol)
    group = alice.act(lambda ctx: groups.create_group(ctx, "Climbing", [a_bob, a_carol]))
    everyone = (alice, bob, carol)

    def group_of(person: Person) -> Group:
        found = person.read(lambda tx: tx.groups.get(group.group_id))
        assert found is not None
        return found

    def settle() -> None:
        for _ in range(4):
            for person in everyone:
                person.flush()
            for person in everyone:
                drain(person)

    settle()
    bob_group = group_of(bob)
    bob.act(lambda ctx: groups.send_group_text(ctx, bob_group, "hello before"))
    settle()
    advance(2 * DAY_MS, *everyone)  # the send logs no longer hold the sender keys handed out
    lose_sessions(bob)
    for person in everyone:
        person.events.clear()

    # Bob writes first, 1:1 or in the group: his members are asked for sessions; his sender key,
    # and a group message held for them meanwhile, follow when the sessions arrive.
    if first == "one-to-one":
        bob.act(lambda ctx: sending.send_text(ctx, b_alice, "hi Alice"))
        bob.act(lambda ctx: sending.send_text(ctx, b_carol, "hi Carol"))
        settle()
    if first == "contact-one-to-one":  # Alice writes first: it fails, Bob asks, Alice repairs
        alice.act(lambda ctx: sending.send_text(ctx, a_bob, "still there?"))
        settle()
        assert texts(bob) == ["still there?"]
        bob.rejections.clear()
    bob_group = group_of(bob)
    bob.act(lambda ctx: groups.send_group_text(ctx, bob_group, "Bob is back"))
    settle()
    alice_group, carol_group = group_of(alice), group_of(carol)
    alice.act(lambda ctx: groups.send_group_text(ctx, alice_group, "welcome back"))
    carol.act(lambda ctx: groups.send_group_text(ctx, carol_group, "hi Bob"))
    settle()
    assert group_texts(alice) == ["Bob is back", "hi Bob"]
    assert sorted(group_texts(bob)) == ["hi Bob", "welcome back"]
    assert group_texts(carol) == ["Bob is back", "welcome back"]
    assert alice.rejections == bob.rejections == carol.rejections == []
    del c_alice, c_bob
