"""Removing and blocking contacts, through the SDK on the real relay with SQLite stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.flows import contacts as contact_flow
from sotto.client.flows import groups, sending
from sotto.client.flows.context import DeleteMailbox
from sotto.client.sdk import Client
from sotto.errors import ClientError, UnknownContactError
from sotto.store.interfaces import Transaction
from sotto.store.model import Conversation
from tests.client.peers import connect, people
from tests.client.test_end_to_end import befriend, collect, new_client, run, texts


def _texts_seen(client: Client, seen: dict[Client, list[ev.Event]]) -> list[str]:
    return texts(seen[client])


def test_a_removed_contact_can_invite_again_and_gets_a_new_session(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            await alice.send_text("Bob", "before")
            await collect([alice, bob], lambda s: "before" in texts(s[bob]))
            address = alice.contact("Bob").address
            old_session = alice.engine.read(lambda tx: tx.sessions.get(address))
            assert old_session is not None

            await alice.remove_contact("Bob")
            assert alice.contacts() == []
            (gone,) = alice.contacts(include_removed=True)
            assert gone.removed and gone.name == "Bob"
            assert [m.text for m in alice.history("Bob")] == ["before"]  # history kept
            assert alice.engine.read(lambda tx: tx.sessions.devices(gone.address.name)) == []
            assert alice.engine.read(lambda tx: tx.mailboxes.for_contact(gone.contact_id)) == []
            assert alice.engine.read(lambda tx: tx.identities.get(gone.address.name)) is None
            with pytest.raises(UnknownContactError):
                await alice.send_text("Bob", "nope")

            # Bob still writes to the mailbox Alice had: it is gone on the relay, nothing arrives.
            await bob.send_text("Alice", "anyone there?")
            seen = await collect([alice, bob], lambda s: True)
            assert texts(seen[alice]) == []

            invite = await bob.create_invite()
            again = await alice.accept_invite(invite.link, "Bob")  # refused before: "already a contact"
            assert again.contact_id == gone.contact_id and not again.removed
            await collect([alice, bob], lambda _: alice.is_ready("Bob"))
            new_session = alice.engine.read(lambda tx: tx.sessions.get(again.address))
            assert new_session is not None and new_session.current is not None
            assert old_session.current is not None
            assert new_session.current.alice_base_key != old_session.current.alice_base_key

            await alice.send_text("Bob", "after")
            await bob.send_text("Alice", "welcome back")
            seen = await collect(
                [alice, bob], lambda s: "after" in texts(s[bob]) and "welcome back" in texts(s[alice])
            )
            assert [c.name for c in alice.contacts()] == ["Bob"]
            assert [m.text for m in alice.history("Bob")][:1] == ["before"]
            assert "after" in [m.text for m in alice.history("Bob")]

    run(main)


def test_a_removed_contact_comes_back_through_our_invite_and_history_can_be_forgotten(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob, carol = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, bob, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            group = await alice.create_group("G", ["Bob", "Carol"])
            await bob.send_text("Alice", "hello")
            await collect([alice, bob, carol], lambda s: "hello" in texts(s[alice]))

            await alice.remove_contact("Bob")
            assert [m.name for m in alice.group_members(group)] == ["Carol"]
            await alice.remove_contact("Bob", forget_history=True)
            assert alice.contacts(include_removed=True) == [alice.contact("Carol")]
            with pytest.raises(UnknownContactError):
                alice.contact("Bob")

            # Bob removes Alice too, then accepts a new invite from her.
            await bob.remove_contact("Alice")
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            seen = await collect(
                [alice, bob],
                lambda _: bob.is_ready("Alice") and any(c.display_name == "Bob" for c in alice.contacts()),
            )
            assert any(isinstance(e, ev.ContactAdded) for e in seen[alice])
            await bob.send_text("Alice", "hi again")
            seen = await collect([alice, bob], lambda s: "hi again" in texts(s[alice]))
            bob_again = next(c for c in alice.contacts() if c.display_name == "Bob")
            assert [m.text for m in alice.history(bob_again)] == ["hi again"]  # the old history was forgotten

    run(main)


def test_a_blocked_contact_is_dropped_without_receipts_until_unblocked(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            blocked = await alice.block_contact("Bob")
            assert blocked.blocked and alice.contact("Bob").blocked
            assert [c.name for c in alice.contacts()] == ["Bob"]  # still listed, as blocked

            first = await bob.send_text("Alice", "let me in")
            await bob.flush()
            seen = await collect([alice, bob], lambda s: True)
            for _ in range(3):
                more = await collect([alice, bob], lambda s: True)
                for client in (alice, bob):
                    seen[client] += more[client]
            assert texts(seen[alice]) == []
            assert alice.history("Bob") == []
            assert not any(isinstance(e, ev.DeliveryReceiptReceived) for e in seen[bob])
            assert bob.history("Alice")[-1].message_id == first
            assert bob.pending_outbox() == 0  # the relay took it: it was dropped by Alice
            with pytest.raises(ClientError, match="blocked"):
                await alice.send_text("Bob", "hi")

            await alice.unblock_contact("Bob")
            assert not alice.contact("Bob").blocked
            await bob.send_text("Alice", "thanks")
            seen = await collect([alice, bob], lambda s: "thanks" in texts(s[alice]))
            assert "let me in" not in texts(seen[alice])
            await alice.send_text("Bob", "sorry")
            await collect([alice, bob], lambda s: "sorry" in texts(s[bob]))

    run(main)


def test_removal_clears_what_was_queued_or_owed_and_keeps_or_forgets_the_history() -> None:
    """The flow alone (in-memory stores, the dict relay): what removal deletes and keeps."""
    _, (alice, bob, carol) = people("Alice", "Bob", "Carol")
    bob_at_alice, _ = connect(alice, bob)
    carol_at_alice, _ = connect(alice, carol)
    alice.act(lambda ctx: groups.create_group(ctx, "G", [bob_at_alice, carol_at_alice]))
    alice.flush()
    bob.drain()
    alice_at_bob = bob.contact("Alice")
    bob.act(lambda ctx: sending.send_text(ctx, alice_at_bob, "hi"))
    bob.flush()
    alice.drain()  # Alice owes Bob a delivery receipt now
    alice.act(lambda ctx: sending.send_text(ctx, bob_at_alice, "queued"))  # not flushed
    assert alice.read(lambda tx: len(tx.outbox.all())) > 0
    mailboxes_before = alice.read(lambda tx: tx.mailboxes.for_contact(bob_at_alice.contact_id))

    outcome = alice.act(lambda ctx: contact_flow.remove_contact(ctx, bob_at_alice))
    assert sorted(c.mailbox_id for c in outcome.commands if isinstance(c, DeleteMailbox)) == sorted(
        m.mailbox_id for m in mailboxes_before
    )

    def state(tx: Transaction) -> dict[str, object]:
        theirs = tx.contacts.get(bob_at_alice.contact_id)
        return {
            "removed": theirs is not None and theirs.removed,
            "mailboxes": tx.mailboxes.for_contact(bob_at_alice.contact_id),
            "theirs": tx.their_mailboxes.get(bob_at_alice.contact_id),
            "session": tx.sessions.devices(bob_at_alice.address.name),
            "identity": tx.identities.get(bob_at_alice.address.name),
            "owed": [r for r in tx.messages.pending_receipts() if r.contact_id == bob_at_alice.contact_id],
            "outbox": [i for i in tx.outbox.all() if i.message_row is not None],
            "groups": tx.groups.groups_of(bob_at_alice.contact_id),
            "history": [
                m.text for m in tx.messages.conversation(Conversation.direct(bob_at_alice.contact_id))
            ],
            "carol": tx.groups.groups_of(carol_at_alice.contact_id) != [],
        }

    assert alice.read(state) == {
        "removed": True,
        "mailboxes": [],
        "theirs": None,
        "session": [],
        "identity": None,
        "owed": [],
        "outbox": [],
        "groups": [],
        "history": ["hi", "queued"],
        "carol": True,
    }
    alice.act(lambda ctx: contact_flow.remove_contact(ctx, bob_at_alice, forget_history=True))
    assert alice.read(lambda tx: tx.contacts.get(bob_at_alice.contact_id)) is None
    assert alice.read(lambda tx: tx.messages.conversation(Conversation.direct(bob_at_alice.contact_id))) == []


def test_after_removing_a_contact_we_can_invite_them_again_while_they_still_hold_us(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob")]
        async with alice, bob:
            await befriend(alice, bob)
            await bob.send_text("Alice", "before")
            await collect([alice, bob], lambda s: "before" in texts(s[alice]))
            alice_at_bob = bob.contact("Alice")

            await alice.remove_contact("Bob")
            invite = await alice.create_invite()
            again = await bob.accept_invite(invite.link, "Alice")  # Bob never removed Alice
            assert again.contact_id == alice_at_bob.contact_id
            assert not bob.is_ready("Alice")  # what Bob writes now waits for Alice's answer
            await bob.send_text("Alice", "are we good?")
            seen = await collect(
                [alice, bob], lambda s: bob.is_ready("Alice") and "are we good?" in texts(s[alice])
            )
            assert any(isinstance(e, ev.ContactAdded) for e in seen[alice])
            assert any(isinstance(e, ev.ContactAccepted) for e in seen[bob])
            assert [c.name for c in alice.contacts()] == ["Bob"] and [c.name for c in bob.contacts()] == [
                "Alice"
            ]
            await alice.send_text("Bob", "yes")
            await collect([alice, bob], lambda s: "yes" in texts(s[bob]))
            assert [m.text for m in bob.history("Alice")] == ["before", "are we good?", "yes"]

    run(main)
