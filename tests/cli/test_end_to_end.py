"""Two people use the CLI against a real relay process (started with ``sotto server``).

Init two profiles, invite and accept, let each side's ``listen --once`` complete the
introduction, send both ways with receipts, talk in a group, verify safety numbers, rotate
mailboxes, and check that ``sotto export`` and the relay's files hold none of the texts.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from sotto.cli.failures import ExitCode
from sotto.demo import evidence
from sotto.demo.relay import RelayProcess
from sotto.wire import b64
from tests.cli.conftest import Sotto, flat, make_profile

TEXTS = ("Lunch at 12:30, Bob?", "Yes, the usual place", "Table for two, booked", "after the rotation")


def test_two_people_through_the_cli(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    made = sotto("invite", "--profile", alice)
    assert made.exit_code == 0, made.output
    invite = flat(made.output)
    link = re.search(r"sotto://invite\?[^\s']+", invite)
    assert link is not None and "█" in invite  # the link and its QR code
    assert "works once" in invite
    # The link holds "&": it is printed quoted, and as a whole command ready to paste into a shell.
    assert "&" in link.group(0) and f"'{link.group(0)}'" in made.output
    pasted = next(line for line in made.output.splitlines() if line.startswith("sotto accept "))
    assert shlex.split(pasted) == ["sotto", "accept", link.group(0)]
    assert "added" in ok(*shlex.split(pasted)[1:], "--name", "Alice", "--profile", bob)
    # Bob may write at once; the text is held until Alice's client answers.
    assert "kept for Alice" in ok("send", "Alice", "early bird", "--profile", bob)
    assert "Bob accepted your invite" in ok("listen", "--once", "--profile", alice)
    assert "Alice answered" in ok("listen", "--once", "--profile", bob)
    assert "Bob: early bird" in ok("listen", "--once", "--profile", alice)

    assert "sent to Bob" in ok("send", "Bob", *TEXTS[0].split(), "--profile", alice)
    heard = ok("listen", "--once", "--profile", bob)
    assert f"Alice: {TEXTS[0]}" in heard
    assert "Alice received 1 message" in heard  # the delivery receipt for "early bird"
    assert "sent to Alice" in ok("send", "Alice", TEXTS[1], "--profile", bob)
    heard = ok("listen", "--once", "--profile", alice)
    assert f"Bob: {TEXTS[1]}" in heard and "Bob received 1 message" in heard

    history = ok("history", "Alice", "--profile", bob)  # marks Alice's text read
    assert f"you: {TEXTS[1]}" in history and f"Alice: {TEXTS[0]}" in history
    assert "Bob read 1 message" in ok("listen", "--once", "--profile", alice)
    assert f"you: {TEXTS[0]} ✓✓ read" in ok("history", "Bob", "--profile", alice)

    assert "created #Lunch with Bob" in ok("group", "create", "Lunch", "Bob", "--profile", alice)
    assert "sent to #Lunch" in ok("group", "send", "Lunch", TEXTS[2], "--profile", alice)
    heard = ok("listen", "--once", "--profile", bob)
    assert "Alice added you to #Lunch" in heard and f"Alice in #Lunch: {TEXTS[2]}" in heard
    assert "#Lunch" in ok("contacts", "--profile", bob)

    code = re.search(r"sotto-safety:[\w-]+", ok("verify", "Alice", "--no-qr", "--profile", bob))
    assert code is not None
    assert "Bob is now verified" in ok("verify", "Bob", "--scanned", code.group(0), "--profile", alice)
    assert "verified" in ok("contacts", "--profile", alice)
    # Alice's code, given as hex: it matches at Bob; one byte of a fingerprint changed, it does not.
    alices = re.search(r"sotto-safety:[\w-]+", ok("verify", "Bob", "--no-qr", "--profile", alice))
    assert alices is not None
    theirs = b64.decode(alices.group(0).removeprefix("sotto-safety:"))
    forged = (theirs[:-1] + bytes([theirs[-1] ^ 1])).hex()
    mismatch = sotto("verify", "Alice", "--scanned", forged, "--profile", bob)
    assert mismatch.exit_code == ExitCode.MISMATCH and "does not match" in mismatch.output
    assert "the codes match" in ok("verify", "Alice", "--scanned", theirs.hex(), "--profile", bob)

    assert "rotated 1 mailbox" in ok("rotate", "--profile", bob)
    assert "moved to a fresh mailbox" in ok("listen", "--once", "--profile", alice)
    ok("send", "Bob", TEXTS[3], "--profile", alice)
    assert f"Alice: {TEXTS[3]}" in ok("listen", "--once", "--profile", bob)

    readable = ok("export", "--profile", alice)
    assert "accounts: 1 row" in readable and "mailboxes: 1 row" in readable
    exported = sotto("export", "--json", "--profile", alice).stdout
    data = json.loads(exported)
    assert set(data) == {"account", "mailboxes"} and data["mailboxes"]
    for text in (*TEXTS, "early bird"):
        assert text not in exported
    files = evidence.read_files(relay.data_dir)
    found = evidence.search(files, evidence.plaintext_needles([*TEXTS, "early bird"]))
    assert found.count("plaintext") == 0
