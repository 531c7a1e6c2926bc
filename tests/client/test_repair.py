"""Session repair with the flows alone: retry receipts, the send log, the rate limits.

A "restore" puts a person's whole in-memory store back to an earlier snapshot, as copying a
profile's store file back would. Delivery follows the runtime's receive policy: a message that
does not decrypt is rejected, recorded as seen, and then a retry receipt is asked for in a
fresh transaction (:meth:`~sotto.client.runtime.Engine._request_repair`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sotto.client import content as c
from sotto.client.events import MessageReceived, RejectReason, SessionRepaired
from sotto.client.flows import receiving, repair, sending
from sotto.client.flows.account import generate_prekeys
from sotto.client.flows.sending import SEND_LOG_RETENTION_MS
from sotto.errors import EnvelopeRejectedError
from sotto.protocol.messages import CiphertextMessageType
from sotto.store.memory import MemoryStore
from sotto.store.model import Contact, MailboxId, MessageId, ReceiptKind
from tests.client.peers import NOW, Person, connect, people

HOUR_MS = 3_600_000


def snapshot(person: Person) -> Any:
    """The store as it is now (committed tables are replaced, never changed, by later commits)."""
    store: MemoryStore = person.store
    return dataclasses.replace(store._tables)


def restore(person: Person, tables: Any) -> None:
    store: MemoryStore = person.store
    store._tables = dataclasses.replace(tables)


def deliver(person: Person, mailbox_id: bytes, envelope_id: bytes, payload: bytes) -> None:
    """:meth:`Person.deliver`, plus the runtime's retry receipt after an undecryptable message."""
    assert person.me is not None
    try:
        unsealed = receiving.unseal(person.me, payload, person.now_ms)
    except EnvelopeRejectedError:
        person.deliver(mailbox_id, envelope_id, payload)
        return
    before = len(person.rejections)
    person.deliver(mailbox_id, envelope_id, payload)
    if len(person.rejections) > before and person.rejections[-1].reason == RejectReason.UNDECRYPTABLE:
        person.act(
            lambda ctx: repair.request_repair(
                ctx,
                mailbox_id=MailboxId(mailbox_id),
                envelope_id=envelope_id,
                sender_name=unsealed.sender_name,
                sender_identity=unsealed.sender_identity,
                usmc=unsealed.content,
            )
        )


def drain(person: Person) -> int:
    count = 0
    for mailbox_id in person.mailbox_ids():
        queue = person.relay.mailboxes.get(mailbox_id, [])
        while queue:
            envelope_id, payload = queue.pop(0)
            deliver(person, mailbox_id, envelope_id, payload)
            count += 1
    return count


def send(sender: Person, to: Contact, text: str) -> MessageId:
    return sender.act(lambda ctx: sending.send_text(ctx, to, text))


def round_trip(a: Person, b: Person) -> None:
    """Everything queued goes both ways once, and the delivery receipts owed go out."""
    for sender, receiver in ((a, b), (b, a)):
        sender.flush()
        drain(receiver)
        receiver.act(lambda ctx: sending.flush_receipts(ctx, ReceiptKind.DELIVERED))
    a.flush()
    drain(b)


def texts(person: Person) -> list[str]:
    return [e.text for e in person.events if isinstance(e, MessageReceived)]


def repaired(person: Person) -> list[SessionRepaired]:
    return [e for e in person.events if isinstance(e, SessionRepaired)]


def chat(a: Person, b: Person, a_contact: Contact, b_contact: Contact, tag: str) -> None:
    """One message each way, then a round trip."""
    send(a, a_contact, f"{tag} from {a.name}")
    send(b, b_contact, f"{tag} from {b.name}")
    round_trip(a, b)


def advance(ms: int, *persons: Person) -> None:
    for person in persons:
        person.now_ms += ms


DAY_MS = 24 * HOUR_MS


@pytest.mark.parametrize("age_ms", [HOUR_MS, DAY_MS], ids=["1-hour-old", "1-day-old"])
@pytest.mark.parametrize("restored_side", ["Alice", "Bob"])
def test_after_a_restore_both_directions_work_again_within_3_round_trips(
    age_ms: int, restored_side: str
) -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=3)
    a_bob, b_alice = connect(alice, bob)
    chat(alice, bob, a_bob, b_alice, "one")
    restored, other = (alice, bob) if restored_side == "Alice" else (bob, alice)
    old = snapshot(restored)
    for n in range(3):
        chat(alice, bob, a_bob, b_alice, f"after copy {n}")
    advance(age_ms, alice, bob)
    restore(restored, old)
    restored.events.clear()
    other.events.clear()

    send(restored, restored.contact(other.name), "from the restored side")
    send(other, other.contact(restored.name), "to the restored side")
    for _ in range(3):
        round_trip(alice, bob)
    assert texts(other) == ["from the restored side"]
    assert texts(restored) == ["to the restored side"]
    assert [e.requested for e in repaired(restored) + repaired(other)].count(False) >= 1
    assert repaired(restored) and repaired(other)

    # From now on plain messages flow both ways, with no failure and no repair.
    restored.events.clear()
    other.events.clear()
    failures = len(alice.rejections) + len(bob.rejections)
    chat(alice, bob, a_bob, b_alice, "later")
    assert texts(alice) == ["later from Bob"] and texts(bob) == ["later from Alice"]
    assert len(alice.rejections) + len(bob.rejections) == failures
    assert repaired(alice) == repaired(bob) == []


def test_texts_the_restored_side_lost_come_again_after_a_later_receipt() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=4)
    a_bob, b_alice = connect(alice, bob)
    chat(alice, bob, a_bob, b_alice, "one")
    old = snapshot(bob)
    send(alice, a_bob, "first")
    send(alice, a_bob, "second")
    alice.flush()
    drain(bob)  # Bob reads both, but his copy is put back before his receipts leave
    restore(bob, old)
    bob.events.clear()
    send(alice, a_bob, "third")  # the session still works for this one
    round_trip(alice, bob)
    round_trip(alice, bob)
    assert texts(bob) == ["third", "first", "second"]
    assert bob.rejections == []
    # Every text was receipted in the end, the resent copies too: none is left to send again.
    left = alice.read(lambda tx: tx.send_log.for_contact(a_bob.contact_id))
    assert [e for e in left if isinstance(c.decode(e.content), c.Text)] == []
    # A further receipt resends nothing again.
    outbox = alice.read(lambda tx: tx.outbox.count())
    chat(alice, bob, a_bob, b_alice, "two")
    assert texts(bob)[-1] == "two from Alice" and texts(bob).count("first") == 1
    assert alice.read(lambda tx: tx.outbox.count()) <= outbox


def test_typing_is_not_logged_and_entries_expire_after_a_day() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=5)
    a_bob, _ = connect(alice, bob)
    count = alice.read(lambda tx: tx.send_log.count())
    alice.act(lambda ctx: sending.send_typing(ctx, [a_bob], True))
    assert alice.read(lambda tx: tx.send_log.count()) == count
    send(alice, a_bob, "hello")
    (entry,) = [e for e in alice.read(lambda tx: tx.send_log.for_contact(a_bob.contact_id)) if e.message_id]
    assert entry.message_id is not None
    assert c.decode(entry.content) == c.Text(entry.message_id, alice.now_ms, "hello")
    advance(SEND_LOG_RETENTION_MS + 1, alice)
    message_id = send(alice, a_bob, "next day")
    logged = alice.read(lambda tx: tx.send_log.for_contact(a_bob.contact_id))
    assert [c.decode(e.content) for e in logged] == [c.Text(message_id, alice.now_ms, "next day")]


def _break_bob(seed: int) -> tuple[Person, Person, Contact, Contact]:
    """Alice and Bob, with Bob's store put back to a copy from three exchanges ago: what Alice
    sends next is on a ratchet key Bob's copy cannot follow."""
    _, (alice, bob) = people("Alice", "Bob", seed=seed)
    a_bob, b_alice = connect(alice, bob)
    chat(alice, bob, a_bob, b_alice, "one")
    old = snapshot(bob)
    for n in range(3):
        chat(alice, bob, a_bob, b_alice, f"after copy {n}")
    restore(bob, old)
    bob.events.clear()
    return alice, bob, a_bob, b_alice


def _queued_types(sender: Person, receiver: Person) -> list[CiphertextMessageType]:
    """What kind of message each envelope in ``sender``'s outbox holds (``receiver`` unseals)."""
    assert receiver.me is not None
    me = receiver.me
    return [
        receiving.unseal(me, item.payload, receiver.now_ms).content.message_type
        for item in sender.read(lambda tx: tx.outbox.all())
    ]


def _lose_latest_signed_prekey(person: Person) -> None:
    """``person`` no longer holds the signed prekey its bundles named so far (a new one replaces it)."""
    used = person.read(lambda tx: tx.prekeys.latest_signed())
    assert used is not None
    person.act(
        lambda ctx: generate_prekeys(
            ctx.tx, ctx.me.account, now_ms=ctx.now_ms, rng=ctx.rng, one_time=0, rotate=True
        )
    )
    person.act(lambda ctx: ctx.tx.prekeys.remove_signed(used.id))


def test_a_burst_of_failures_asks_once_and_a_failed_repair_is_asked_for_and_made_again_at_once() -> None:
    alice, bob, a_bob, _ = _break_bob(seed=6)
    send(alice, a_bob, "x1")
    send(alice, a_bob, "x2")
    alice.flush()
    drain(bob)
    # Two failures on one ratchet key, one retry receipt (type 8: not encrypted on the session).
    assert [r.reason for r in bob.rejections] == ["undecryptable", "undecryptable"]
    assert _queued_types(bob, alice) == [CiphertextMessageType.PLAINTEXT]
    bob.flush()
    drain(alice)
    assert repaired(alice) == [SessionRepaired(a_bob, requested=False)]
    # Alice started a new session and sent x1 and x2 again on it (PreKey messages).
    assert _queued_types(alice, bob).count(CiphertextMessageType.PREKEY) >= 2

    # Those fail too (Bob no longer holds the signed prekey they name): they name the new
    # session's ratchet key, so Bob asks again at once, and Alice repairs again from his new bundle.
    _lose_latest_signed_prekey(bob)
    bob.rejections.clear()
    alice.flush()
    drain(bob)
    assert len(bob.rejections) >= 2 and {r.reason for r in bob.rejections} == {"undecryptable"}
    assert _queued_types(bob, alice) == [CiphertextMessageType.PLAINTEXT]
    for _ in range(2):
        round_trip(alice, bob)
    assert texts(bob) == ["x1", "x2"]
    assert len(repaired(alice)) == 2


def test_repairs_per_contact_an_hour_are_bounded() -> None:
    alice, bob, a_bob, _ = _break_bob(seed=10)
    send(alice, a_bob, "z")
    asked = 0
    # Every repair fails again (Bob loses the prekey each bundle named): Bob asks, and Alice
    # repairs, at most REPAIR_ATTEMPTS times within the hour.
    for _ in range(repair.REPAIR_ATTEMPTS + 2):
        alice.flush()
        drain(bob)
        asked += _queued_types(bob, alice).count(CiphertextMessageType.PLAINTEXT)
        _lose_latest_signed_prekey(bob)
        bob.flush()
        drain(alice)
        advance(repair.REPAIR_RETRY_MS, alice, bob)
    assert asked == repair.REPAIR_ATTEMPTS
    assert len(repaired(alice)) == repair.REPAIR_ATTEMPTS
    assert texts(bob) == []

    # An hour after the first, a failure asks again, and with Bob's keys kept this repair works.
    advance(HOUR_MS, alice, bob)
    send(alice, a_bob, "z2")
    alice.flush()
    drain(bob)
    assert CiphertextMessageType.PLAINTEXT in _queued_types(bob, alice)
    for _ in range(2):
        round_trip(alice, bob)
    assert texts(bob) == ["z", "z2"]


def test_a_lost_retry_receipt_is_asked_for_again_a_minute_later() -> None:
    alice, bob, a_bob, _ = _break_bob(seed=11)
    send(alice, a_bob, "w1")
    alice.flush()
    drain(bob)
    assert _queued_types(bob, alice) == [CiphertextMessageType.PLAINTEXT]
    bob.act(lambda ctx: [ctx.tx.outbox.remove(item.item_id) for item in ctx.tx.outbox.all()])  # lost
    # Another failure on the same ratchet key right away does not ask again ...
    send(alice, a_bob, "w2")
    alice.flush()
    drain(bob)
    assert _queued_types(bob, alice) == []
    # ... one a minute later does, and the repair brings both texts.
    advance(repair.REPAIR_RETRY_MS, alice, bob)
    send(alice, a_bob, "w3")
    alice.flush()
    drain(bob)
    assert _queued_types(bob, alice) == [CiphertextMessageType.PLAINTEXT]
    for _ in range(2):
        round_trip(alice, bob)
    assert texts(bob) == ["w1", "w2", "w3"]


def test_both_write_after_a_restore_and_a_retry_receipt_that_arrives_after_the_new_session() -> None:
    """The restored side's message fails at the other side, whose retry receipt reaches the
    restored side before the other side's own message does: the restored side starts a new
    session, and its resend reaches the other side before its own retry receipt for that
    message. The receipt names a session the other side has left: what it names is sent again
    on the new session instead of being lost."""
    _, (alice, bob) = people("Alice", "Bob", seed=12)
    a_bob, b_alice = connect(alice, bob)
    chat(alice, bob, a_bob, b_alice, "one")
    old = snapshot(alice)
    for n in range(3):
        chat(alice, bob, a_bob, b_alice, f"after copy {n}")
    advance(DAY_MS, alice, bob)
    restore(alice, old)
    alice.events.clear()
    bob.events.clear()

    send(alice, a_bob, "back again")
    alice.flush()
    drain(bob)  # fails: Bob queues a retry receipt ...
    assert _queued_types(bob, alice) == [CiphertextMessageType.PLAINTEXT]
    send(bob, b_alice, "welcome back")  # ... before his own text, on the session Alice lost
    bob.flush()
    drain(alice)  # the receipt: Alice repairs and resends; then Bob's text fails: she asks
    assert repaired(alice) and texts(alice) == []
    alice.flush()
    drain(bob)  # the new session first (Bob's current now), then Alice's receipt for the old one
    assert texts(bob) == ["back again"]
    for _ in range(2):
        round_trip(alice, bob)
    assert texts(alice) == ["welcome back"]
    assert texts(bob) == ["back again"]

    # From now on plain messages flow both ways, with no failure.
    failures = len(alice.rejections) + len(bob.rejections)
    chat(alice, bob, a_bob, b_alice, "later")
    assert texts(alice)[-1] == "later from Bob" and texts(bob)[-1] == "later from Alice"
    assert len(alice.rejections) + len(bob.rejections) == failures


def test_a_retry_receipt_is_answered_once_and_a_stale_one_changes_nothing() -> None:
    alice, bob, a_bob, _ = _break_bob(seed=7)
    send(alice, a_bob, "y1")
    alice.flush()
    drain(bob)
    (item,) = bob.read(lambda tx: tx.outbox.all())
    bob.flush()
    mailbox = alice.read(lambda tx: tx.mailboxes.current(a_bob.contact_id))
    assert mailbox is not None
    drain(alice)
    assert len(repaired(alice)) == 1
    after_repair = alice.read(lambda tx: tx.sessions.get(a_bob.address))
    outbox = alice.read(lambda tx: tx.outbox.count())
    # The same receipt again, after the rate limit's hour (in a new envelope): its ratchet key
    # is no longer Alice's current one, so it changes nothing.
    advance(HOUR_MS, alice)
    deliver(alice, mailbox.mailbox_id, bytes(16), item.payload)
    assert len(repaired(alice)) == 1
    assert alice.read(lambda tx: tx.sessions.get(a_bob.address)) == after_repair
    assert alice.read(lambda tx: tx.outbox.count()) == outbox


def test_a_broken_retry_receipt_is_dropped_as_malformed() -> None:
    alice, bob, a_bob, b_alice = _break_bob(seed=8)
    before = alice.read(lambda tx: tx.sessions.get(a_bob.address))
    bob.act(lambda ctx: sending.queue_plaintext(ctx, b_alice, b"\xc0\x42\x80"))
    bob.flush()
    drain(alice)
    assert [r.reason for r in alice.rejections] == ["malformed"]
    assert alice.read(lambda tx: tx.sessions.get(a_bob.address)) == before


def test_a_copy_of_a_text_already_held_is_receipted_at_once() -> None:
    _, (alice, bob) = people("Alice", "Bob", seed=9)
    a_bob, b_alice = connect(alice, bob)
    message_id = send(alice, a_bob, "once")
    alice.flush()
    drain(bob)
    # Alice sends it again (as a repair would); Bob holds it, so he answers with a receipt now.
    alice.act(lambda ctx: sending.queue_encoded(ctx, a_bob, c.encode(c.Text(message_id, NOW, "once"))))
    alice.flush()
    drain(bob)
    assert texts(bob) == ["once"]
    bob.flush()
    drain(alice)
    assert alice.read(lambda tx: [e for e in tx.send_log.for_contact(a_bob.contact_id) if e.message_id]) == []
    del b_alice
