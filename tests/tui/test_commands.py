"""The ``:`` command line's parser."""

from __future__ import annotations

import pytest

from sotto.tui.commands import SPECS, CommandError, Parsed, parse


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
