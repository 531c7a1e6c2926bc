"""Contacts and groups by the names people type, with the known names listed when one is wrong."""

from __future__ import annotations

from sotto.cli import render
from sotto.cli.failures import ExitCode, fail
from sotto.client.sdk import Client
from sotto.errors import UnknownContactError
from sotto.store.model import Contact, Group


def known_names(kinds: str, names: list[str]) -> str:
    """The hint listing the names there are (``kinds``: contacts, groups, …)."""
    if not names:
        return f"you have no {kinds} yet"
    return f"your {kinds}: " + ", ".join(render.clean(n) for n in names)


def require_contact(client: Client, name: str) -> Contact:
    try:
        return client.contact(name)
    except UnknownContactError:
        known = [c.name for c in client.contacts()]
        hint = known_names("contacts", known)
        if not known:
            hint += ": add one with `sotto invite` or `sotto accept LINK`"
        fail(f"no contact named {render.clean(name)!r}", hint=hint, code=ExitCode.UNKNOWN_NAME)


def _group(client: Client, name: str) -> Group | None:
    """The group by that name (``#name`` works too, as groups are shown)."""
    groups = client.groups()
    found = next((g for g in groups if g.name == name), None)
    if found is None and name.startswith("#"):
        found = next((g for g in groups if g.name == name[1:]), None)
    return found


def require_group(client: Client, name: str) -> Group:
    found = _group(client, name)
    if found is None:
        hint = known_names("groups", [f"#{g.name}" for g in client.groups()])
        fail(f"no group named {render.clean(name)!r}", hint=hint, code=ExitCode.UNKNOWN_NAME)
    return found


def require_conversation(client: Client, name: str) -> Contact | Group:
    """A contact by that name, else a group by that name."""
    try:
        return client.contact(name)
    except UnknownContactError:
        pass
    found = _group(client, name)
    if found is None:
        names = [c.name for c in client.contacts()] + [f"#{g.name}" for g in client.groups()]
        hint = known_names("contacts and groups", names)
        fail(f"no contact or group named {render.clean(name)!r}", hint=hint, code=ExitCode.UNKNOWN_NAME)
    return found
