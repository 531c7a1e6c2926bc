"""The ``:`` command line's parser."""

from __future__ import annotations

import re

import pytest

from sotto.tui.commands import (
    SPECS,
    CommandError,
    Parsed,
    duration_text,
    group_command,
    parse,
    parse_duration,
    size_text,
)


def test_commands_parse_with_or_without_the_colon() -> None:
    assert parse(":invite") == Parsed("invite", ())
    assert parse("  invite ") == Parsed("invite", ())
    assert parse(":q") == Parsed("quit", ())
    assert parse(":o Bob") == Parsed("open", ("Bob",))


def test_an_invite_link_keeps_its_ampersands_quoted_or_not() -> None:
    link = "sotto://invite?s=abc&a=def&k=ghi"
    assert parse(f":accept {link} Bob") == Parsed("accept", (link, "Bob"))
    assert parse(f":accept '{link}' 'Bob Smith'") == Parsed("accept", (link, "Bob Smith"))


def test_search_takes_the_rest_of_the_line() -> None:
    assert parse(":search lunch at  noon") == Parsed("search", ("lunch at  noon",))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "type a command"),
        (":", "type a command"),
        (":nope", "no command 'nope'"),
        (":accept onlylink", "usage: :accept LINK NAME"),
        (":open", "usage: :open NAME"),
        (":invite extra", "usage: :invite"),
        (":accept 'unclosed", "cannot read that command line"),
    ],
)
def test_bad_command_lines_say_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse(line)


def test_every_command_has_usage_and_help() -> None:
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    for spec in SPECS:
        assert spec.usage.startswith(f":{spec.name}") and spec.help


def test_edit_and_reply_take_the_rest_of_the_line_as_typed() -> None:
    assert parse(":edit it's at  noon") == Parsed("edit", ("it's at  noon",))
    assert parse(":reply 'yes'") == Parsed("reply", ("'yes'",))
    assert parse(":react 👍") == Parsed("react", ("👍",))
    assert parse(":react") == Parsed("react", ())
    assert parse(":verify Bob 1234") == Parsed("verify", ("Bob", "1234"))


def test_group_subcommands_are_checked() -> None:
    assert group_command(("create", "Picnic", "Bob", "Carol")) == ("create", ("Picnic", "Bob", "Carol"))
    assert group_command(("members",)) == ("members", ())
    with pytest.raises(CommandError, match="usage: :group create NAME MEMBER"):
        group_command(("create", "Picnic"))
    with pytest.raises(CommandError, match="usage: :group rename NAME"):
        group_command(("rename",))
    with pytest.raises(CommandError, match=re.escape("usage: :group create|add|remove")):
        group_command(("explode",))


@pytest.mark.parametrize(
    ("given", "seconds"), [("off", 0), ("0", 0), ("30s", 30), ("5m", 300), ("8H", 28_800), ("4w", 2_419_200)]
)
def test_timer_durations(given: str, seconds: int) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["soon", "5", "0s", "5w", "-1h"])
def test_bad_timer_durations(given: str) -> None:
    with pytest.raises(CommandError, match="is not a timer"):
        parse_duration(given)


def test_durations_and_sizes_read_as_words() -> None:
    assert duration_text(3600) == "1 hour"
    assert duration_text(2 * 86_400) == "2 days"
    assert duration_text(45) == "45 seconds"
    assert size_text(3300) == "3.2 KiB"
    assert size_text(1) == "1 byte"
