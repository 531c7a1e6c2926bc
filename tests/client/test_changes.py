"""Edits, deletion for everyone, reactions, replies and disappearing timers, flow by flow: two
people on in-memory stores, with the clock in the test's hands (the 24-hour rules)."""

from __future__ import annotations

import pytest

from sotto.client import content as c
from sotto.client import events as ev
from sotto.client.flows import changes, sending
from sotto.client.flows.changes import CHANGE_WINDOW_MS
from sotto.client.flows.context import Context
from sotto.errors import ClientError
from sotto.store.model import Contact, Conversation, Message, MessageId, Quote, Reaction
from tests.client.peers import Person, connect, people

HOUR_MS = 3_600_000


def pair() -> tuple[Person, Person, Contact, Contact]:
    _, (alice, bob) = people("alice", "bob", seed=17)
    bob_at_alice, alice_at_bob = connect(alice, bob)
    return alice, bob, bob_at_alice, alice_at_bob


def deliver(sender: Person, receiver: Person) -> list[object]:
    sender.flush()
    before = len(receiver.events)
    receiver.drain()
    return receiver.events[before:]


def history(person: Person, contact: Contact) -> list[Message]:
    return person.read(lambda tx: tx.messages.conversation(Conversation.direct(contact.contact_id)))


def change(person: Person, contact: Contact, content: c.Content) -> None:
    """Send ``content`` as it is (what a modified client could send)."""
    person.act(lambda ctx: sending.send_control(ctx, contact, content))


def test_edit_delete_react_and_reply_reach_the_other_side() -> None:
    alice, bob, bob_c, alice_c = pair()
    at_alice = Conversation.direct(bob_c.contact_id)
    at_bob = Conversation.direct(alice_c.contact_id)
    first = alice.act(lambda ctx: sending.send_text(ctx, bob_c, "helo"))
    deliver(alice, bob)

    reply = bob.act(lambda ctx: sending.send_text(ctx, alice_c, "hi!", first))
    deliver(bob, alice)
    (_, got) = history(alice, bob_c)
    assert got.message_id == reply and got.quote == Quote(first, alice.me.account.account_id)  # type: ignore[union-attr]

    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.edit(ctx, at_alice, first, "hello")))
    events = deliver(alice, bob)
    assert [type(e) for e in events] == [ev.MessageEdited]
    (edited, _) = history(bob, alice_c)
    assert edited.text == "hello" and edited.edited_ms == alice.now_ms

    for emoji in ("👍", "❤️"):

        def react(ctx: Context, emoji: str = emoji) -> bool:
            return sending.send_control(ctx, alice_c, changes.react(ctx, at_bob, first, emoji))

        bob.act(react)
        bob.now_ms += 1
    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.react(ctx, at_alice, reply, "😂")))
    deliver(alice, bob)
    events = deliver(bob, alice)
    assert [e.emoji for e in events if isinstance(e, ev.ReactionChanged)] == ["👍", "❤️"]
    ours = history(alice, bob_c)[0]
    assert ours.reactions == (Reaction(bob_c.contact_id, "❤️", bob.now_ms - 1),)
    assert history(bob, alice_c)[1].reactions == (Reaction(alice_c.contact_id, "😂", alice.now_ms),)

    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.delete_for_everyone(ctx, at_alice, first)))
    events = deliver(alice, bob)
    assert [type(e) for e in events] == [ev.MessageDeleted]
    for person, contact in ((alice, bob_c), (bob, alice_c)):
        gone = history(person, contact)[0]
        assert gone.deleted and gone.text == "" and gone.reactions == ()


def test_only_ones_own_messages_within_24_hours_at_the_sender() -> None:
    alice, bob, bob_c, alice_c = pair()
    at_alice = Conversation.direct(bob_c.contact_id)
    mine = alice.act(lambda ctx: sending.send_text(ctx, bob_c, "mine"))
    deliver(alice, bob)
    theirs = bob.act(lambda ctx: sending.send_text(ctx, alice_c, "theirs"))
    deliver(bob, alice)

    with pytest.raises(ClientError, match="only your own"):
        alice.act(lambda ctx: changes.edit(ctx, at_alice, theirs, "mine now"))
    with pytest.raises(ClientError, match="only your own"):
        alice.act(lambda ctx: changes.delete_for_everyone(ctx, at_alice, theirs))
    with pytest.raises(ClientError, match="no such message"):
        alice.act(lambda ctx: changes.edit(ctx, at_alice, bytes(16), "x"))
    with pytest.raises(ClientError, match="no such message"):
        alice.act(lambda ctx: changes.react(ctx, at_alice, bytes(16), "👍"))
    with pytest.raises(ClientError, match="reply to"):
        alice.act(lambda ctx: sending.send_text(ctx, bob_c, "re", bytes(16)))
    with pytest.raises(ValueError):
        alice.act(lambda ctx: changes.react(ctx, at_alice, theirs, "not one emoji"))

    alice.now_ms += CHANGE_WINDOW_MS  # exactly 24 hours: still allowed
    alice.act(lambda ctx: changes.edit(ctx, at_alice, mine, "edited at the last moment"))
    alice.now_ms += 1
    for attempt in (
        lambda ctx: changes.edit(ctx, at_alice, mine, "too late"),
        lambda ctx: changes.delete_for_everyone(ctx, at_alice, mine),
    ):
        with pytest.raises(ClientError, match="within 24 hours"):
            alice.act(attempt)
    assert history(alice, bob_c)[0].text == "edited at the last moment"
    alice.act(lambda ctx: changes.react(ctx, at_alice, theirs, "👍"))  # reactions have no limit


def test_receivers_ignore_changes_that_break_the_rules() -> None:
    alice, bob, bob_c, alice_c = pair()
    mine = alice.act(lambda ctx: sending.send_text(ctx, bob_c, "original"))
    deliver(alice, bob)
    sent_ms = alice.now_ms
    theirs = bob.act(lambda ctx: sending.send_text(ctx, alice_c, "bob's"))
    deliver(bob, alice)

    for bad in (
        c.Edit(mine, sent_ms + CHANGE_WINDOW_MS + 1, "too late"),
        c.DeleteForEveryone(mine, sent_ms + CHANGE_WINDOW_MS + 1),
        c.Edit(mine, sent_ms - 1, "before the message"),
        c.Edit(theirs, sent_ms, "bob's message, edited by alice"),
        c.DeleteForEveryone(theirs, sent_ms),
        c.Edit(bytes(16), sent_ms, "a message nobody holds"),
        c.Reaction(bytes(16), alice.me.account.account_id, "👍", sent_ms),  # type: ignore[union-attr]
        c.Reaction(mine, bob.me.account.account_id, "👍", sent_ms),  # type: ignore[union-attr]
    ):
        change(alice, bob_c, bad)
    events = deliver(alice, bob)
    assert events == [ev.MessageChangeIgnored(alice_c)] * 8
    assert [m.text for m in history(bob, alice_c)] == ["original", "bob's"]
    assert all(m.reactions == () and m.edited_ms is None for m in history(bob, alice_c))

    change(alice, bob_c, c.Edit(mine, sent_ms + CHANGE_WINDOW_MS, "within the window"))
    change(alice, bob_c, c.Edit(mine, sent_ms + 10, "an older edit arriving late"))
    deliver(alice, bob)
    assert history(bob, alice_c)[0].text == "within the window"


def test_a_reaction_to_a_deleted_message_is_ignored_and_a_repeated_deletion_is_quiet() -> None:
    alice, bob, bob_c, alice_c = pair()
    at_alice = Conversation.direct(bob_c.contact_id)
    mine = alice.act(lambda ctx: sending.send_text(ctx, bob_c, "soon gone"))
    deliver(alice, bob)
    deletion = alice.act(lambda ctx: changes.delete_for_everyone(ctx, at_alice, mine))
    change(alice, bob_c, deletion)
    change(alice, bob_c, deletion)
    assert [type(e) for e in deliver(alice, bob)] == [ev.MessageDeleted]
    change(bob, alice_c, c.Reaction(mine, alice.me.account.account_id, "👍", bob.now_ms))  # type: ignore[union-attr]
    assert deliver(bob, alice) == [ev.MessageChangeIgnored(bob_c)]
    with pytest.raises(ClientError, match="deleted"):
        bob.act(lambda ctx: changes.react(ctx, Conversation.direct(alice_c.contact_id), mine, "👍"))


def test_a_timer_set_by_either_side_expires_later_texts_on_both() -> None:
    alice, bob, bob_c, alice_c = pair()
    at_alice, at_bob = Conversation.direct(bob_c.contact_id), Conversation.direct(alice_c.contact_id)
    alice.act(lambda ctx: sending.send_text(ctx, bob_c, "kept for good"))
    deliver(alice, bob)

    bob.act(lambda ctx: sending.send_control(ctx, alice_c, changes.set_timer(ctx, at_bob, 60)[1]))
    assert deliver(bob, alice) == [ev.TimerChanged(bob_c, 60)]
    assert alice.read(lambda tx: changes.timer_of(tx, at_alice)) == 60
    alice.act(lambda ctx: sending.send_text(ctx, bob_c, "gone in a minute"))
    deliver(alice, bob)
    for person, contact in ((alice, bob_c), (bob, alice_c)):
        shown = history(person, contact)
        assert [(m.text, m.timer_s) for m in shown] == [
            ("kept for good", None),
            ("", 60),
            ("gone in a minute", None),
        ]
        assert shown[2].expires_ms == person.now_ms + 60_000 and shown[0].expires_ms is None

    for person in (alice, bob):
        person.now_ms += 60_000
    alice.act(lambda ctx: ctx.tx.messages.expire(ctx.now_ms))
    bob.act(lambda ctx: ctx.tx.messages.expire(ctx.now_ms))
    for person, contact in ((alice, bob_c), (bob, alice_c)):
        assert [m.text for m in history(person, contact)] == ["kept for good", ""]

    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.set_timer(ctx, at_alice, 0)[1]))
    deliver(alice, bob)
    assert bob.read(lambda tx: changes.timer_of(tx, at_bob)) == 0
    last = bob.act(lambda ctx: sending.send_text(ctx, alice_c, "kept again"))
    deliver(bob, alice)
    assert alice.read(lambda tx: tx.messages.find(bob_c.contact_id, MessageId(last))).expires_ms is None  # type: ignore[union-attr]


def test_receiving_removes_expired_messages_first() -> None:
    alice, bob, bob_c, alice_c = pair()
    at_alice = Conversation.direct(bob_c.contact_id)
    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.set_timer(ctx, at_alice, 5)[1]))
    alice.act(lambda ctx: sending.send_text(ctx, bob_c, "brief"))
    deliver(alice, bob)
    assert [m.text for m in history(bob, alice_c)] == ["", "brief"]
    bob.now_ms += 5_000
    alice.act(lambda ctx: sending.send_control(ctx, bob_c, c.Typing(True)))
    deliver(alice, bob)  # any envelope: the store deletes what is due first
    assert [m.text for m in history(bob, alice_c)] == [""]
