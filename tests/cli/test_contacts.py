"""``sotto block``, ``unblock``, ``remove``, ``verify`` and ``contacts`` between two people, on a
real relay."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

from sotto.client.flows.context import issue_certificate
from sotto.client.sdk import Client
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import system_rng
from sotto.demo.relay import RelayProcess
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, seal_v1
from sotto.wire.padding import pad
from tests.cli.conftest import PASSPHRASE, Sotto, flat, make_profile


def test_block_unblock_remove_and_invite_again(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    def befriend(inviter: str, acceptor: str, name: str) -> None:
        link = re.search(r"sotto://invite\?[^\s']+", ok("invite", "--no-qr", "--profile", inviter))
        assert link is not None
        assert "added" in ok("accept", link.group(0), "--name", name, "--profile", acceptor)
        ok("listen", "--once", "--profile", inviter)
        ok("listen", "--once", "--profile", acceptor)

    befriend(alice, bob, "Alice")
    assert "Bob blocked" in ok("block", "Bob", "--profile", alice)
    listed = ok("contacts", "--profile", alice)
    assert "Bob" in listed and "blocked" in listed
    ok("send", "Alice", "let me in", "--profile", bob)
    assert "let me in" not in ok("listen", "--once", "--profile", alice)
    refused = sotto("send", "Bob", "hi", "--profile", alice)
    assert refused.exit_code != 0 and "blocked" in flat(refused.output)

    assert "Bob unblocked" in ok("unblock", "Bob", "--profile", alice)
    assert "blocked" not in ok("contacts", "--profile", alice)
    ok("send", "Alice", "thanks", "--profile", bob)
    assert "Bob: thanks" in ok("listen", "--once", "--profile", alice)

    removed = ok("remove", "Bob", "--profile", alice)
    assert "Bob removed" in removed and "kept" in removed
    assert "Bob" not in ok("contacts", "--profile", alice).split("on http")[1]
    assert "Bob: thanks" in ok("history", "Bob", "--profile", alice)

    befriend(bob, alice, "Bob")  # a fresh invite from the removed contact is accepted
    ok("send", "Bob", "back again", "--profile", alice)
    assert "Alice: back again" in ok("listen", "--once", "--profile", bob)

    assert "with your messages" in ok("remove", "Bob", "--forget-history", "--profile", alice)
    unknown = sotto("history", "Bob", "--profile", alice)
    assert unknown.exit_code != 0


def test_verify_unverify_and_a_changed_safety_number_in_contacts(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    link = re.search(r"sotto://invite\?[^\s']+", ok("invite", "--no-qr", "--profile", alice))
    assert link is not None
    ok("accept", link.group(0), "--name", "Alice", "--profile", bob)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", bob)

    code = re.search(r"sotto-safety:[\w-]+", ok("verify", "Alice", "--no-qr", "--profile", bob))
    assert code is not None
    assert "Bob is now verified" in ok("verify", "Bob", "--scanned", code.group(0), "--profile", alice)
    assert "verified" in ok("contacts", "--profile", alice).replace("not verified", "")
    assert "Bob is marked not verified" in ok("verify", "Bob", "--unverify", "--profile", alice)
    listed = ok("contacts", "--profile", alice)
    assert "not verified" in listed and "changed" not in listed
    assert "nothing to clear" in ok("verify", "Bob", "--acknowledge", "--profile", alice)
    both = sotto("verify", "Bob", "--unverify", "--acknowledge", "--profile", alice)
    assert both.exit_code != 0

    # A message into the mailbox Alice gave Bob, naming Bob but under another identity key.
    asyncio.run(_impostor_writes(Path(bob), "Alice"))
    ok("listen", "--once", "--profile", alice)
    listed = ok("contacts", "--profile", alice)
    assert "⚠ changed" in listed and "--acknowledge" in listed
    assert "⚠ changed" in ok("contacts", "--profile", alice)  # it stays until cleared
    shown = ok("verify", "Bob", "--no-qr", "--profile", alice)
    assert "Their safety number changed" in shown
    assert "Their safety number changed" in ok("verify", "Bob", "--unverify", "--profile", alice)
    assert "is cleared" in ok("verify", "Bob", "--acknowledge", "--profile", alice)
    assert "changed" not in ok("contacts", "--profile", alice)


async def _impostor_writes(profile: Path, to: str) -> None:
    sender = await Client.open(profile, PASSPHRASE)
    async with sender:
        contact = sender.contact(to)
        contact_id = contact.contact_id
        theirs = sender.engine.read(lambda tx: tx.their_mailboxes.get(contact_id))
        assert theirs is not None
        impostor = KeyPair.generate(system_rng)
        certificate = issue_certificate(
            dataclasses.replace(sender.engine.account, identity=impostor), sender.engine.now_ms(), system_rng
        )
        usmc = UnidentifiedSenderMessageContent.new(CiphertextMessageType.WHISPER, certificate, b"\x33" * 60)
        recipient = sender.engine.read(lambda tx: tx.identities.get(contact.address.name))
        assert recipient is not None
        payload = pad(seal_v1(impostor, recipient.identity_key, usmc, system_rng))
        await sender.engine.relay().send(theirs.mailbox_id, theirs.delivery_token, system_rng(16), payload)
