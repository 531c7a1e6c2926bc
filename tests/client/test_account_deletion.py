"""``Client.delete_account`` against the real relay (uvicorn on 127.0.0.1, SQLite): the relay's
rows go, the profile is marked deleted and its export says so, and a contact who writes
afterwards meets the relay's answer for an unknown mailbox (the same as for one that never
existed: no answer tells a deleted account from an expired or unknown mailbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotto.cli import render
from sotto.client import events as ev
from sotto.client.flows import account as account_flow
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork
from sotto.errors import AccountDeletedError, RelayError, RelayUnavailableError
from sotto.store.interfaces import Transaction
from tests.client.peers import connect, people
from tests.client.running_relay import free_port, running_relay
from tests.client.test_end_to_end import PASSPHRASE, befriend, new_client, run, texts


async def _send_until_refused(bob: Client, text: str) -> list[ev.Event]:
    """Send, then retry at once until the outbox gives up on the envelope (a few refusals)."""
    await bob.send_text("Alice", text)
    seen: list[ev.Event] = []
    for _ in range(20):
        if await bob.flush() == 0:
            break
    seen += await bob.sync(timeout=2, idle=0.1)
    return seen


def test_deleted_account_is_gone_for_the_relay_the_profile_and_contacts(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        credentials = alice._credentials()
        async with bob:
            async with alice:
                await befriend(alice, bob)
                await bob.send_text("Alice", "hello")
                for _ in range(30):
                    if "hello" in texts(await alice.sync(timeout=2, idle=0.1)):
                        break
                before = await alice.export()
                assert before["account"]["tables"]["accounts"]
                held_mailboxes = len(before["mailboxes"])
                assert held_mailboxes >= 1

                deleted = await alice.delete_account()

            assert deleted.rows["accounts"] == 1 and deleted.rows["devices"] == 1
            assert deleted.mailboxes == held_mailboxes

            # The relay: her credentials name nothing, her export is refused like any unknown account's.
            network = HttpNetwork()
            try:
                with pytest.raises(RelayError) as refused:
                    await network.relay(server_url).export_account(credentials)
                assert refused.value.status == 401
            finally:
                await network.aclose()

            # The profile: still opens (history is hers), marked deleted; its export says so.
            again = await Client.open(tmp_path / "Alice", PASSPHRASE)
            async with again:
                assert again.account_deleted
                assert [m.text for m in again.history("Bob")] == ["hello"]
                with pytest.raises(AccountDeletedError, match="deleted"):
                    await again.export()
                with pytest.raises(AccountDeletedError):
                    await again.delete_account()

            # A contact: the next message is refused by the relay as for an unknown mailbox.
            seen = await _send_until_refused(bob, "are you there?")
            failed = [e for e in seen if isinstance(e, ev.SendFailed)]
            assert [f.reason for f in failed] == ["not_found"], seen
            assert failed[0].contact is not None and failed[0].contact.name == "Alice"
            shown = render.event_line(failed[0], server_url)
            assert shown is not None and "to Alice could not be delivered" in shown.plain
            assert "account is gone" in shown.plain
            assert bob.pending_outbox() == 0

    run(main)


def test_a_retry_after_the_relay_deleted_the_account_finishes_locally(
    server_url: str, tmp_path: Path
) -> None:
    """Cut off after the relay deleted the account but before the profile noted it: the retry
    meets 401s (our own credentials name nothing any more) and finishes."""

    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        async with alice:
            network = HttpNetwork()
            try:
                await network.relay(server_url).delete_account(alice._credentials())
            finally:
                await network.aclose()
            deleted = await alice.delete_account()
            assert deleted.rows == {} and deleted.mailboxes == 0
        async with await Client.open(tmp_path / "Alice", PASSPHRASE) as again:
            assert again.account_deleted

    run(main)


def test_nothing_is_marked_deleted_when_the_relay_is_unreachable(tmp_path: Path) -> None:
    async def main() -> None:
        with running_relay(tmp_path / "relay", free_port()) as url:
            alice = await new_client(url, tmp_path, "Alice")
        async with alice:  # the relay has stopped
            with pytest.raises(RelayUnavailableError):
                await alice.delete_account()
            assert not alice.account_deleted

    run(main)


def test_mailboxes_leave_the_tables_first_and_are_kept_until_the_deletion_is_done() -> None:
    """``take_mailboxes`` empties the tables a drain would re-create a mailbox from, and keeps
    every key in one setting, so a retry after a failure part way still deletes them all."""
    _, (alice, bob) = people("alice", "bob")
    connect(alice, bob)
    alice.invite()  # an open invite's mailbox too
    held = alice.read(lambda tx: mailbox_flow.held(tx, alice.now_ms))
    assert len(held) >= 2

    taken = alice.read(lambda tx: account_flow.take_mailboxes(tx, alice.now_ms))
    assert taken == held
    assert alice.read(lambda tx: mailbox_flow.held(tx, alice.now_ms)) == {}

    def registrations(tx: Transaction) -> list[object]:
        return [mailbox_flow.registration_for(tx, m, alice.now_ms) for m in held]

    assert alice.read(registrations) == [None] * len(held)
    # A second try (the first cut off) gets the same keys back.
    assert alice.read(lambda tx: account_flow.take_mailboxes(tx, alice.now_ms)) == held

    alice.read(lambda tx: account_flow.forget_relay(tx, alice.now_ms))
    assert alice.read(lambda tx: tx.settings.get(account_flow.DELETING_KEY)) is None
    assert alice.read(account_flow.deleted_at) == alice.now_ms
