"""The ``:`` command line: what each command is called, takes and does, and its parser."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from sotto.client.durations import timer_seconds


class CommandError(ValueError):
    """A command line that names no command or lacks what it needs; the message says which."""


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    aliases: tuple[str, ...]
    usage: str
    help: str
    min_args: int = 0
    max_args: int = 0


SPECS: tuple[Spec, ...] = (
    Spec("invite", (), ":invite", "make a one-time invite link (and its QR code) for one person"),
    Spec("accept", (), ":accept LINK NAME", "use someone's invite link; NAME is what you call them", 2, 2),
    Spec("open", ("o",), ":open NAME", "open the conversation with a contact or #group", 1, 1),
    Spec(
        "verify",
        (),
        ":verify [NAME [CODE]]",
        "your safety number with a contact (and its QR code); with their CODE, mark them verified;"
        " with ok, acknowledge a changed safety number",
        0,
        2,
    ),
    Spec("unverify", (), ":unverify [NAME]", "mark a contact (or the open one) not verified again", 0, 1),
    Spec(
        "search",
        (),
        ":search TEXT",
        "find TEXT in the open conversation, newest first (with none open: in every conversation)",
        1,
        99,
    ),
    Spec("find", (), ":find TEXT", "find TEXT in every conversation: a list of matches to open", 1, 99),
    Spec("edit", (), ":edit TEXT", "change your selected (or last) message to TEXT, for everyone", 1, 99),
    Spec("delete", (), ":delete", "delete your selected (or last) message for everyone"),
    Spec("react", (), ":react [EMOJI]", "react to the selected (or last) message; none takes it back", 0, 1),
    Spec("reply", (), ":reply TEXT", "send TEXT quoting the selected (or last) message", 1, 99),
    Spec("timer", (), ":timer DURATION|off", "disappearing messages here: 30s, 5m, 8h, 1d, 4w or off", 1, 1),
    Spec("file", (), ":file PATH", "send a file (at most 100 MiB) to the open conversation", 1, 1),
    Spec("save", (), ":save [DIR]", "save the selected (or last) file received (default: this folder)", 0, 1),
    Spec(
        "group",
        ("g",),
        ":group create|add|remove|admin|leave|rename|members …",
        "groups: create NAME MEMBER…, add NAME…, remove NAME…, admin NAME, leave, rename NAME, members",
        1,
        99,
    ),
    Spec("requests", (), ":requests", "people who used your invites, to accept, block or delete"),
    Spec("retry", (), ":retry", "send what is queued now, without waiting for the next attempt"),
    Spec("help", ("h",), ":help", "list the keys and commands"),
    Spec("quit", ("q", "qa", "quit!", "q!"), ":quit", "leave (what is queued goes out next time)"),
)


REST_OF_LINE = frozenset({"search", "find", "edit", "reply"})
"""Commands whose argument is the rest of the line as typed (quotes and spaces kept)."""

GROUP_USAGE: dict[str, tuple[str, int, int]] = {
    "create": (":group create NAME MEMBER…", 1, 99),
    "add": (":group add CONTACT…", 1, 99),
    "remove": (":group remove CONTACT…", 1, 99),
    "admin": (":group admin CONTACT", 1, 1),
    "leave": (":group leave", 0, 0),
    "rename": (":group rename NAME", 1, 1),
    "members": (":group members", 0, 0),
}
"""``:group`` subcommands: usage, and how many words they take. All but ``create`` act on the
open group."""


@dataclass(frozen=True, slots=True)
class Parsed:
    name: str
    args: tuple[str, ...]


def lookup(word: str) -> Spec:
    for spec in SPECS:
        if word == spec.name or word in spec.aliases:
            return spec
    raise CommandError(f"no command {word!r}: :help lists them")


def parse(line: str) -> Parsed:
    """``invite`` / ``:accept 'sotto://…' Bob`` (the leading ``:`` optional) into a command."""
    text = line.strip().removeprefix(":").strip()
    if not text:
        raise CommandError("type a command: :help lists them")
    first, *rest = text.split(None, 1)
    spec = lookup(first)
    if spec.name in REST_OF_LINE:  # a text: its quotes and spaces are its own
        args = tuple(rest)
    else:
        try:
            words = shlex.split(text)
        except ValueError as e:
            raise CommandError(f"cannot read that command line: {e}") from None
        spec = lookup(words[0])
        args = tuple(words[1:])
    if not spec.min_args <= len(args) <= spec.max_args:
        raise CommandError(f"usage: {spec.usage}")
    return Parsed(spec.name, args)


def group_command(args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """``:group``'s words into its subcommand and the words it takes (checked)."""
    if not args or args[0] not in GROUP_USAGE:
        raise CommandError("usage: :group create|add|remove|admin|leave|rename|members …")
    usage, least, most = GROUP_USAGE[args[0]]
    rest = args[1:]
    if args[0] == "create" and len(rest) < 2:
        raise CommandError(f"usage: {usage}")
    if not least <= len(rest) <= most:
        raise CommandError(f"usage: {usage}")
    return args[0], rest


def parse_duration(value: str) -> int:
    """``off``/``0``, or a number and a unit (``30s``, ``5m``, ``8h``, ``1d``, ``4w``): seconds."""
    seconds = timer_seconds(value)
    if seconds is None:
        raise CommandError(f"{value!r} is not a timer: 30s, 5m, 8h, 1d or 4w (four weeks at most), or off")
    return seconds


def duration_text(seconds: int) -> str:
    """``1 hour``, ``2 days``, ``45 seconds``."""
    for unit, size in (("week", 7 * 86_400), ("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' * (count != 1)}"
    return f"{seconds} second{'s' * (seconds != 1)}"


def size_text(size: int) -> str:
    """``1.0 MiB``, ``12.0 KiB``, ``512 bytes``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} byte{'s' * (size != 1)}"


def quoted(word: str) -> str:
    """``word`` as one word of a command line."""
    return shlex.quote(word)
