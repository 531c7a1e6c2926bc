"""The ``:`` command line: what each command is called, takes and does, and its parser."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


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
    Spec("verify", (), ":verify [NAME]", "show your safety number with a contact (and its QR code)", 0, 1),
    Spec("search", (), ":search TEXT", "find TEXT in the open conversation, newest first", 1, 99),
    Spec("requests", (), ":requests", "people who used your invites, to accept, block or delete"),
    Spec("retry", (), ":retry", "send what is queued now, without waiting for the next attempt"),
    Spec("help", ("h",), ":help", "list the keys and commands"),
    Spec("quit", ("q", "qa", "quit!", "q!"), ":quit", "leave (what is queued goes out next time)"),
)


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
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise CommandError(f"cannot read that command line: {e}") from None
    spec = lookup(words[0])
    args = tuple(words[1:])
    if spec.name == "search":
        args = (text.split(None, 1)[1],) if len(words) > 1 else ()
    if not spec.min_args <= len(args) <= spec.max_args:
        raise CommandError(f"usage: {spec.usage}")
    return Parsed(spec.name, args)
