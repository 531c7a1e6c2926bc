"""Replies, edits, deletion for everyone, reactions and disappearing timers through the CLI:
two profiles on a real relay process, each change seen by the other side's `listen` and
`history`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sotto.cli.commands.messages import duration_text
from sotto.cli.failures import ExitCode
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile


def test_reply_edit_react_unsend_and_timer_between_two_profiles(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    def refused(code: ExitCode, *args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == code, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    link = re.search(r"sotto://invite\?[^\s']+", flat(sotto("invite", "--profile", alice).output))
    assert link is not None
    ok("accept", link.group(0), "--name", "Alice", "--profile", bob)
    ok("listen", "--once", "--profile", alice)
    ok("listen", "--once", "--profile", bob)

    ok("send", "Bob", "Lunch at 12:30?", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    shown = re.search(r"([0-9a-f]{8}) \S+ Alice: Lunch at 12:30\?", ok("history", "Alice", "--profile", bob))
    assert shown is not None
    lunch = shown.group(1)

    assert "reply sent to Alice" in ok(
        "send", "Alice", "Yes, the usual place", "--reply-to", lunch[:5], "--profile", bob
    )
    assert "Bob: Yes, the usual place" in ok("listen", "--once", "--profile", alice)
    history = ok("history", "Bob", "--profile", alice)
    assert "↳ replying to you: Lunch at 12:30?" in history and f"{lunch} " in history

    assert "edited for Bob" in ok("edit", "Bob", lunch, "Lunch at 13:00?", "--profile", alice)
    assert "Alice edited a message: Lunch at 13:00?" in ok("listen", "--once", "--profile", bob)
    assert "reaction sent to Alice" in ok("react", "Alice", lunch, "👍", "--profile", bob)
    assert f"Bob reacted 👍 to {lunch}" in ok("listen", "--once", "--profile", alice)
    history = ok("history", "Bob", "--profile", alice)
    assert "Lunch at 13:00?" in history and "(edited)" in history and "👍 Bob" in history
    assert "Lunch at 12:30?" not in history.split("replying to")[0]

    # Refusals: someone else's message, a bad id, an unknown id, not an emoji, not a duration.
    assert "only your own messages" in refused(
        ExitCode.ERROR, "edit", "Alice", lunch, "mine now", "--profile", bob
    )
    assert "only your own messages" in refused(ExitCode.ERROR, "unsend", "Alice", lunch, "--profile", bob)
    assert "not a message id" in refused(ExitCode.USAGE, "unsend", "Bob", "zz", "--profile", alice)
    assert "no message" in refused(ExitCode.UNKNOWN_NAME, "unsend", "Bob", "0000000000", "--profile", alice)
    assert "one emoji" in refused(ExitCode.USAGE, "react", "Alice", lunch, "two words", "--profile", bob)
    assert "emoji, or --remove" in refused(ExitCode.USAGE, "react", "Alice", lunch, "--profile", bob)
    assert "not a timer" in refused(ExitCode.USAGE, "timer", "Alice", "5 fortnights", "--profile", bob)
    assert "not a timer" in refused(ExitCode.USAGE, "timer", "Alice", "5w", "--profile", bob)

    assert "reaction removed" in ok("react", "Alice", lunch, "--remove", "--profile", bob)
    assert "took back a reaction" in ok("listen", "--once", "--profile", alice)
    assert "👍 Bob" not in ok("history", "Bob", "--profile", alice)

    assert "deleted for Bob" in ok("unsend", "Bob", lunch, "--profile", alice)
    assert "Alice deleted a message" in ok("listen", "--once", "--profile", bob)
    history = ok("history", "Alice", "--profile", bob)
    assert "Alice: this message was deleted" in history and "Lunch at 13:00?" not in history
    assert "replying to a deleted message" in history

    assert "disappearing messages set to 1 hour for Alice" in ok("timer", "Alice", "1h", "--profile", bob)
    assert "Bob set disappearing messages to 1 hour" in ok("listen", "--once", "--profile", alice)
    ok("send", "Bob", "this one disappears", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    history = ok("history", "Alice", "--profile", bob)
    assert "you set disappearing messages to 1 hour" in history and "this one disappears ⏱" in history
    assert "Bob set disappearing messages to 1 hour" in ok("history", "Bob", "--profile", alice)
    assert "disappearing messages off" in ok("timer", "Alice", "off", "--profile", bob)

    # The export: every conversation as JSON into a private file, one as HTML to standard output.
    ok("send", "Bob", "<script>alert(1)</script>", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    exported = tmp_path / "history.json"
    assert "written to" in ok("history", "--export", "json", "--output", str(exported), "--profile", bob)
    assert exported.stat().st_mode & 0o777 == 0o600
    (conversation,) = json.loads(exported.read_text(encoding="utf-8"))["conversations"]
    texts = [m["text"] for m in conversation["messages"]]
    assert "Yes, the usual place" in texts and "<script>alert(1)</script>" in texts
    assert conversation["name"] == "Alice" and conversation["messages"][0]["deleted"] is True
    again = refused(ExitCode.USAGE, "history", "--export", "json", "-o", str(exported), "--profile", bob)
    assert "exists" in again
    page = sotto("history", "Alice", "--export", "html", "--profile", bob)
    assert page.exit_code == 0, page.output
    assert (
        page.output.startswith("<!DOCTYPE html>") and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.output
    )
    assert "<script" not in page.output and "Yes, the usual place" in page.output
    assert "--output goes with --export" in refused(
        ExitCode.USAGE, "history", "Alice", "-o", "x", "--profile", bob
    )


def test_durations_read_as_people_write_them() -> None:
    assert [duration_text(s) for s in (30, 300, 3600, 86_400, 4 * 7 * 86_400, 90)] == [
        "30 seconds",
        "5 minutes",
        "1 hour",
        "1 day",
        "4 weeks",
        "90 seconds",
    ]
