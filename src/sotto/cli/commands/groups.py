"""``sotto group create|add|send|remove|leave|admin|rename``: groups of contacts, encrypted once
with sender keys, run by their admins.

``remove``, ``leave``, ``admin`` and ``rename`` work on the profile directly (not through a
running ``sotto listen``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from sotto.cli import listener, render
from sotto.cli.commands.messages import TextArgument, TextFileOption, message_text
from sotto.cli.failures import ExitCode, Where, fail, report_send
from sotto.cli.names import require_contact, require_group
from sotto.cli.profile import ProfileOption, opened, run, where
from sotto.client import control
from sotto.client import group_membership as gm
from sotto.client.flows.groups import GroupChangeRefusedError
from sotto.client.sdk import Client
from sotto.store.model import Group

group_app = typer.Typer(
    name="group", help="Create groups, add people, and write to them.", no_args_is_help=True
)

_REFUSALS = {
    gm.Refusal.NOT_AN_ADMIN: "only the group's admins add, remove and make admins",
    gm.Refusal.NOT_A_MEMBER: "you are no longer in this group",
    gm.Refusal.NOT_IN_GROUP: "they are not in this group",
    gm.Refusal.FULL: "this group has had too many changes: make a new one",
}

GroupArgument = Annotated[str, typer.Argument(help="The group's name.", show_default=False)]


@group_app.command("create")
def create(
    name: GroupArgument,
    members: Annotated[list[str], typer.Argument(help="Contacts to add.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Create a group with some of your contacts."""
    place = where(profile)
    answer = listener.hand_over(place, control.CreateGroup(name, tuple(members)))
    if answer is not None:
        handled = listener.carried_out(place, answer)
        who = ", ".join(render.clean(m) for m in handled.members)
        done = f"created #{render.clean(handled.name)} with {who}"
        listener.report_delivery(place, handled, done, done)
        return

    async def work() -> None:
        async with opened(place) as client:
            if any(g.name == name for g in client.groups()):
                fail(f"you already have a group named {render.clean(name)!r}", code=ExitCode.USAGE)
            contacts = [require_contact(client, m) for m in dict.fromkeys(members)]
            with render.spinner("Creating the group and sending it to its members…"):
                group = await client.create_group(name, contacts)
                left = await client.flush()
            who = ", ".join(render.clean(c.name) for c in contacts)
            report_send(place, left, f"created #{render.clean(group.name)} with {who}", client.last_refusal)

    run(place, work())


@group_app.command("add")
def add(
    group: GroupArgument,
    member: Annotated[str, typer.Argument(help="The contact to add.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Add a contact to a group (they read what is written from now on)."""
    place = where(profile)
    answer = listener.hand_over(place, control.AddToGroup(group, member))
    if answer is not None:
        handled = listener.carried_out(place, answer)
        shown, where_to = render.clean(handled.members[0]), f"#{render.clean(handled.name)}"
        if handled.outcome is control.Outcome.UNCHANGED:
            render.dim(f"{shown} is already in {where_to}")
            return
        done = f"added {shown} to {where_to}"
        listener.report_delivery(place, handled, done, done)
        return

    async def work() -> None:
        async with opened(place) as client:
            found = require_group(client, group)
            contact = require_contact(client, member)
            try:
                with render.spinner("Adding them and telling the group…"):
                    added = await client.add_to_group(found, contact)
                    left = await client.flush()
            except GroupChangeRefusedError as e:
                fail(_REFUSALS.get(e.reason, e.reason.value), code=ExitCode.USAGE)
            shown, where_to = render.clean(contact.name), f"#{render.clean(found.name)}"
            if not added:
                render.dim(f"{shown} is already in {where_to}")
                return
            report_send(place, left, f"added {shown} to {where_to}", client.last_refusal)

    run(place, work())


@group_app.command("send")
def send(
    group: GroupArgument,
    text: TextArgument = None,
    text_file: TextFileOption = None,
    profile: ProfileOption = None,
) -> None:
    """Send a text to a group: the words, `-` for standard input, or --text-file PATH.

    While `sotto listen` runs on the profile, the text goes through it, on its schedule."""
    place = where(profile)
    message = message_text(text, text_file)
    answer = listener.hand_over(place, control.SendGroupText(group, message))
    if answer is not None:
        listener.report(place, answer, group=True)
        return

    async def work() -> None:
        async with opened(place) as client:
            found = require_group(client, group)
            with render.spinner(f"Sending to #{render.clean(found.name)}…"):
                await client.send_group_text(found, message)
                left = await client.flush()
            members = client.group_members(found)
            waiting = [render.clean(m.name) for m in members if client.waits_for_session(m)]
            shown = f"#{render.clean(found.name)}"
            if not waiting:
                report_send(place, left, f"sent to {shown}", client.last_refusal)
                return
            # A restored profile: the members it holds no session with get it once they answer.
            others = len(waiting) < sum(client.is_ready(m) for m in members)
            report_send(
                place, left, listener.waiting_for(shown, waiting, sent_to_others=others), client.last_refusal
            )

    run(place, work())


def _change(
    place: Where, group: str, spinner: str, change: Callable[[Client, Group], Awaitable[str]]
) -> None:
    """Make one change to a group directly on the profile and report it (a refusal: one line)."""

    async def work() -> None:
        async with opened(place) as client:
            found = require_group(client, group)
            try:
                with render.spinner(spinner):
                    done = await change(client, found)
                    left = await client.flush()
            except GroupChangeRefusedError as e:
                fail(_REFUSALS.get(e.reason, e.reason.value), code=ExitCode.USAGE)
            except ValueError as e:
                fail(str(e), code=ExitCode.USAGE)
            report_send(place, left, done, client.last_refusal)

    run(place, work())


@group_app.command("remove")
def remove(
    group: GroupArgument,
    member: Annotated[str, typer.Argument(help="The member to remove.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Remove a member (admins only): the others make new keys, so they read nothing written after."""

    async def change(client: Client, found: Group) -> str:
        contact = require_contact(client, member)
        await client.remove_from_group(found, contact)
        return f"removed {render.clean(contact.name)} from #{render.clean(found.name)}"

    _change(where(profile), group, "Removing them and handing the others new keys…", change)


@group_app.command("leave")
def leave(group: GroupArgument, profile: ProfileOption = None) -> None:
    """Leave a group: you keep its history and can no longer write to it or read what follows."""

    async def change(client: Client, found: Group) -> str:
        await client.leave_group(found)
        return f"left #{render.clean(found.name)}"

    _change(where(profile), group, "Telling the group you leave…", change)


@group_app.command("admin")
def admin(
    group: GroupArgument,
    member: Annotated[str, typer.Argument(help="The member to make an admin.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Make a member an admin of the group (admins only)."""

    async def change(client: Client, found: Group) -> str:
        contact = require_contact(client, member)
        await client.make_group_admin(found, contact)
        return f"{render.clean(contact.name)} is now an admin of #{render.clean(found.name)}"

    _change(where(profile), group, "Telling the group…", change)


@group_app.command("rename")
def rename(
    group: GroupArgument,
    new_name: Annotated[str, typer.Argument(help="The group's new name.", show_default=False)],
    description: Annotated[
        str | None, typer.Option("--description", help='A new description ("" clears it).')
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Rename a group (any member), and optionally change its description."""

    async def change(client: Client, found: Group) -> str:
        if new_name != found.name and any(g.name == new_name for g in client.groups()):
            fail(f"you already have a group named {render.clean(new_name)!r}", code=ExitCode.USAGE)
        await client.rename_group(found, new_name, description)
        return f"renamed #{render.clean(found.name)} to #{render.clean(new_name)}"

    _change(where(profile), group, "Telling the group its new name…", change)
