"""Groups run by admins, between three real clients through the real relay: a removed member
gets a later message and cannot read it (every remaining member made a new sender key and handed
it to the remaining members only); a non-admin's removal is refused by every client with a typed
reason; admins are made, the group renamed, members leave, and all agree on who is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotto.client import content as c
from sotto.client import events as ev
from sotto.client import group_membership as gm
from sotto.client.flows.groups import GroupChangeRefusedError
from sotto.client.flows.sending import send_control
from sotto.client.sdk import Client
from sotto.store.interfaces import Transaction
from sotto.store.model import Group
from tests.client.test_end_to_end import befriend, collect, new_client, run


async def _three(url: str, tmp_path: Path) -> tuple[Client, Client, Client]:
    alice, bob, carol = [await new_client(url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
    await befriend(alice, bob)
    await befriend(alice, carol)
    await befriend(bob, carol)
    return alice, bob, carol


def _group_texts(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.GroupMessageReceived)]


def _rejections(events: list[ev.Event]) -> list[ev.EnvelopeRejected]:
    return [e for e in events if isinstance(e, ev.EnvelopeRejected)]


def _account(client: Client, name: str) -> bytes:
    return next(x.account_id for x in client.contacts() if x.name == name)


def _me(client: Client) -> bytes:
    return client._engine.current_me().account.account_id


async def _lunch(alice: Client, bob: Client, carol: Client) -> Group:
    group = await alice.create_group("Lunch", ["Bob", "Carol"])
    await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
    return group


def test_a_removed_member_cannot_read_later_messages(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob, carol = await _three(server_url, tmp_path)
        async with alice, bob, carol:
            group = await _lunch(alice, bob, carol)
            await alice.send_group_text(group, "before")
            await collect([bob, carol], lambda s: all("before" in _group_texts(s[x]) for x in (bob, carol)))
            old_key = alice.groups()[0].distribution_id
            bob_old_key = bob.groups()[0].distribution_id

            await alice.remove_from_group(group, "Carol")
            await collect(
                [bob, carol],
                lambda _: not carol.group_members("Lunch") and len(bob.group_members("Lunch")) == 1,
            )
            everyone = {_me(alice), _me(bob)}
            for client in (alice, bob):
                assert client.group_roster("Lunch").members == everyone
            assert _me(carol) not in carol.group_roster("Lunch").members
            # every remaining member has a new sender key, handed to the remaining members only
            new_key = alice.groups()[0].distribution_id
            assert new_key != old_key and bob.groups()[0].distribution_id != bob_old_key

            # Alice's client addresses Carol once more, as a client that missed the removal would
            # (marked as holding the key, so nothing hands her one): Carol gets the envelope
            carol_in_alice = next(x for x in alice.contacts() if x.name == "Carol")

            def readdress(tx: Transaction) -> None:
                tx.groups.add_member(group.group_id, carol_in_alice.contact_id)
                tx.groups.mark_skdm_sent(group.group_id, carol_in_alice.contact_id)

            await alice._engine.transaction(readdress)
            await alice.send_group_text(group, "after")
            seen = await collect(
                [bob, carol],
                lambda s: "after" in _group_texts(s[bob]) and bool(_rejections(s[carol])),
            )
            assert "after" not in _group_texts(seen[carol])
            assert not [e for e in seen[carol] if isinstance(e, ev.GroupMessageReceived)]
            assert all("after" not in m.text for m in carol.history("Lunch"))

            # and she could not have read it: she holds Alice's old chain, not the new one
            alice_in_carol = next(x for x in carol.contacts() if x.name == "Alice")

            def keys(tx: Transaction) -> tuple[bool, bool]:
                old = tx.sender_keys.get(alice_in_carol.address, old_key)
                new = tx.sender_keys.get(alice_in_carol.address, new_key)
                return old is not None, new is not None

            assert carol._engine.read(keys) == (True, False)

    run(main)


def test_admins_run_the_group_and_everyone_agrees(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob, carol = await _three(server_url, tmp_path)
        async with alice, bob, carol:
            group = await _lunch(alice, bob, carol)
            assert alice.group_roster("Lunch").admins == {_me(alice)}
            assert bob.group_roster("Lunch").admins == {_me(alice)}

            # Bob is no admin: his own client refuses, and a forged change is refused by all
            with pytest.raises(GroupChangeRefusedError) as refused:
                await bob.remove_from_group("Lunch", "Carol")
            assert refused.value.reason is gm.Refusal.NOT_AN_ADMIN

            forged = c.GroupChange(group.group_id, 7, gm.Action.REMOVE, _account(bob, "Carol"))
            bob_contacts = bob.contacts()

            def forge(tx: Transaction) -> None:
                ctx = bob._engine.context(tx)
                for contact in bob_contacts:
                    send_control(ctx, contact, forged)

            await bob._engine.transaction(forge)
            await bob.flush()
            seen = await collect([alice, carol], lambda s: all(_rejections(s[x]) for x in (alice, carol)))
            for client in (alice, carol):
                (rejected,) = _rejections(seen[client])
                assert (rejected.reason, rejected.detail) == (ev.RejectReason.WRONG_SENDER, "not_an_admin")
                assert len(client.group_roster("Lunch").members) == 3

            # an admin makes Bob admin; then his removal of Carol holds everywhere
            await alice.make_group_admin("Lunch", "Bob")
            await collect([bob], lambda _: _me(bob) in bob.group_roster("Lunch").admins)
            await bob.remove_from_group("Lunch", "Carol")
            await collect(
                [alice, carol],
                lambda _: (
                    _me(carol) not in carol.group_roster("Lunch").members
                    and len(alice.group_roster("Lunch").members) == 2
                ),
            )
            with pytest.raises(Exception, match="no longer in this group"):
                await carol.send_group_text("Lunch", "still here?")

            # any member renames; the name and description reach everyone
            await bob.rename_group("Lunch", "Dinner", "Fridays at 8")
            await collect([alice], lambda _: alice.group_roster(group.group_id).name == "Dinner")
            assert alice.groups()[0].name == "Dinner"
            assert alice.group_roster("Dinner").description == "Fridays at 8"
            assert alice.group_roster("Dinner") == bob.group_roster("Dinner")

            # Alice leaves: Bob is the one member left, and its admin
            await alice.leave_group("Dinner")
            await collect([bob], lambda _: bob.group_roster("Dinner").members == {_me(bob)})
            assert bob.group_roster("Dinner").admins == {_me(bob)}
            assert not alice.group_members("Dinner") and not bob.group_members("Dinner")

    run(main)


def test_concurrent_changes_end_the_same_on_every_client(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice, bob, carol = await _three(server_url, tmp_path)
        async with alice, bob, carol:
            await _lunch(alice, bob, carol)
            await alice.make_group_admin("Lunch", "Bob")
            await collect([bob, carol], lambda _: _me(bob) in carol.group_roster("Lunch").admins)
            # both change the group before either has seen the other's change: the same version
            await alice.rename_group("Lunch", "Alice's lunch", "noon")
            await bob.rename_group("Lunch", "Bob's lunch", "one o'clock")
            winner = max((alice, "Alice's lunch"), (bob, "Bob's lunch"), key=lambda x: _me(x[0]))[1]

            def agreed(_: object) -> bool:
                return all(client.group_roster(group_id).name == winner for client in (alice, bob, carol))

            group_id = alice.groups()[0].group_id
            await collect([alice, bob, carol], agreed)
            rosters = [client.group_roster(group_id) for client in (alice, bob, carol)]
            assert rosters[0] == rosters[1] == rosters[2]
            assert all(client.groups()[0].name == winner for client in (alice, bob, carol))

    run(main)
