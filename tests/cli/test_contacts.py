"""``sotto block``, ``unblock`` and ``remove`` between two people, on a real relay."""

from __future__ import annotations

import re
from pathlib import Path

from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile


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
