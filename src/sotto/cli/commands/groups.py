"""``sotto group create|add|send``: groups of contacts, encrypted once with sender keys."""

from __future__ import annotations

from typing import Annotated

import typer

from sotto.cli import listener, render
from sotto.cli.commands.messages import TextArgument, TextFileOption, message_text
from sotto.cli.failures import ExitCode, fail, report_send
from sotto.cli.names import require_contact, require_group
from sotto.cli.profile import ProfileOption, opened, run, where
from sotto.client import control

group_app = typer.Typer(
    name="group", help="Create groups, add people, and write to them.", no_args_is_help=True
)

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
            with render.spinner("Adding them and telling the group…"):
                added = await client.add_to_group(found, contact)
                left = await client.flush()
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
            report_send(place, left, f"sent to #{render.clean(found.name)}", client.last_refusal)

    run(place, work())
