"""``sotto device link``, ``sotto device add`` and ``sotto device list``: the account's devices.

A new device runs ``sotto device link`` (it prints a link and its QR code, and waits); any
device already on the account runs ``sotto device add LINK``. What linking does and does not do
yet is in ``docs/device-linking.md``.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from sotto.cli import render
from sotto.cli.commands.account import DEFAULT_SERVER
from sotto.cli.profile import ProfileOption, create, new_profile, opened, run, where
from sotto.client.device_linking import DEFAULT_TIMEOUT_S
from sotto.client.sdk import Client

device_app = typer.Typer(
    name="device", help="Your account's devices: link one, list them.", no_args_is_help=True
)


@device_app.command("link")
def link(
    server: Annotated[
        str, typer.Option("--server", "-s", envvar="SOTTO_SERVER", help="The relay this device uses.")
    ] = DEFAULT_SERVER,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="This device's name, as your other devices list it.")
    ] = None,
    show_qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Also print the link as a QR code.")] = True,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for another device to add this one.")
    ] = DEFAULT_TIMEOUT_S,
    profile: ProfileOption = None,
) -> None:
    """Make this new device one of your account's devices: shows a link for `sotto device add`."""
    prompt = "This device's name (your other devices list it)"
    place, name, secret = new_profile(profile, server, name, prompt)

    async def make(directory: Path) -> tuple[str, int, int]:
        with render.spinner(f"Opening a one-use provisioning mailbox on {server}…"):
            pending = await Client.begin_link(directory, server, secret, name)
        quoted = shlex.quote(pending.link)
        render.info("On a device already on your account, run (it works once):")
        render.out.print(f"sotto device add {quoted}", soft_wrap=True, markup=False, highlight=False)
        if show_qr:
            render.qr(pending.qr_text)
        until = time.strftime("%H:%M", time.localtime(time.time() + wait))
        try:
            with render.spinner(f"Waiting for your other device (until {until})…"):
                client = await pending.complete(timeout=wait)
        except BaseException:
            await pending.cancel()
            raise
        async with client:
            return client.display_name, client.device_id, len(client.contacts())

    display_name, device_id, contacts = create(place, make)
    render.done(f"Linked: device {device_id} of {render.clean(display_name)}'s account, {contacts} contacts")
    render.dim(f"  profile: {place.profile} (encrypted with your passphrase; there is no recovery)")
    render.warn("this device does not yet receive or send messages: see docs/device-linking.md")


@device_app.command("add")
def add(
    link_text: Annotated[
        str,
        typer.Argument(
            metavar="LINK", help="The sotto://link#… link the new device shows.", show_default=False
        ),
    ],
    profile: ProfileOption = None,
) -> None:
    """Add the new device that shows LINK to your account (it gets your identity key and contacts)."""
    place = where(profile)

    async def work() -> None:
        async with opened(place) as client:
            with render.spinner("Sending the new device your account, sealed to it…"):
                added = await client.add_device(link_text)
        render.done(f"Added device {added.device_id}: {render.clean(added.name)}")

    run(place, work())


@device_app.command("list")
def list_devices(profile: ProfileOption = None) -> None:
    """The account's devices, as this device's copy of the signed device list says."""
    place = where(profile)

    async def work() -> None:
        async with opened(place) as client:
            devices, this = client.devices(), client.device_id
        table = Table(box=None, pad_edge=False)
        for column in ("id", "name", "added", ""):
            table.add_column(column)
        for device in devices:
            added = time.strftime("%Y-%m-%d %H:%M", time.localtime(device.added_ms / 1000))
            mark = "this device" if device.device_id == this else ""
            table.add_row(str(device.device_id), Text(render.clean(device.name)), added, mark)
        render.out.print(table)

    run(place, work())
