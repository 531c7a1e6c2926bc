"""``sotto group remove|leave|admin|rename`` between three people on a real relay: a non-admin's
removal is one line and changes nothing; an admin's holds, and the removed member can no longer
write to the group; a rename reaches the others; a member leaves."""

from __future__ import annotations

import re
from pathlib import Path

from sotto.cli.failures import ExitCode
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile


def test_run_a_group_from_the_command_line(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    alice, bob, carol = (
        str(make_profile(sotto, relay, tmp_path / n.lower(), n)) for n in ("Alice", "Bob", "Carol")
    )

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    def listen(*profiles: str) -> list[str]:
        return [ok("listen", "--once", "--profile", p) for p in profiles]

    def befriend(inviter: str, acceptor: str, name: str) -> None:
        link = re.search(r"sotto://invite\?[^\s']+", ok("invite", "--no-qr", "--profile", inviter))
        assert link is not None
        ok("accept", link.group(0), "--name", name, "--profile", acceptor)
        listen(inviter, acceptor)

    befriend(alice, bob, "Alice")
    befriend(alice, carol, "Alice")
    befriend(bob, carol, "Bob")
    ok("group", "create", "Lunch", "Bob", "Carol", "--profile", alice)
    listen(bob, carol)

    refused = sotto("group", "remove", "Lunch", "Carol", "--profile", bob)
    assert refused.exit_code == ExitCode.USAGE
    assert "only the group's admins" in flat(refused.output)

    assert "removed Carol from #Lunch" in ok("group", "remove", "Lunch", "Carol", "--profile", alice)
    bob_saw, carol_saw = listen(bob, carol)
    assert "#Lunch updated by Alice" in bob_saw and "#Lunch updated by Alice" in carol_saw
    gone = sotto("group", "send", "Lunch", "hello?", "--profile", carol)
    assert gone.exit_code != 0 and "no longer in this group" in flat(gone.output)

    readd = sotto("group", "add", "Lunch", "Carol", "--profile", bob)
    assert readd.exit_code == ExitCode.USAGE and "only the group's admins" in flat(readd.output)
    assert "Bob is now an admin of #Lunch" in ok("group", "admin", "Lunch", "Bob", "--profile", alice)
    listen(bob)
    renamed = ok("group", "rename", "Lunch", "Dinner", "--description", "Fridays", "--profile", bob)
    assert "renamed #Lunch to #Dinner" in renamed
    assert "#Dinner updated by Bob" in listen(alice)[0]
    ok("group", "send", "Dinner", "see you", "--profile", alice)
    assert "see you" in listen(bob)[0]

    assert "left #Dinner" in ok("group", "leave", "Dinner", "--profile", bob)
    assert "#Dinner updated by Bob" in listen(alice)[0]
    missing = sotto("group", "rename", "Nope", "X", "--profile", alice)
    assert missing.exit_code != 0
