"""``sotto init``, ``sotto export``, ``sotto rotate`` and ``sotto account delete``: the account and
what the relay holds of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from sotto.cli import forwarding, listener, render
from sotto.cli.failures import ExitCode, fail
from sotto.cli.profile import (
    ProfileOption,
    create,
    need_profile,
    new_profile,
    opened,
    run,
    where,
)
from sotto.client import control
from sotto.client.sdk import Client

DEFAULT_SERVER = "http://127.0.0.1:8787"
SHOWN_ROWS = 3
"""Rows per table in the readable export; ``--json`` prints them all."""
SHORT_VALUE = 16


def init(
    server: Annotated[
        str, typer.Option("--server", "-s", envvar="SOTTO_SERVER", help="The relay to register on.")
    ] = DEFAULT_SERVER,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Your name, as the people you invite will see it.")
    ] = None,
    forwarder: Annotated[
        str | None,
        typer.Option(
            "--forwarder",
            "-f",
            envvar="SOTTO_FORWARDER",
            help="Reach the relay only through this forwarder (`sotto forwarder`), sealed, so the "
            "relay never sees your address; `sotto listen` receives by long polls through it.",
            show_default=False,
        ),
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Create your account on a relay and your encrypted local store."""
    place, name, secret = new_profile(profile, server, name, "Your name (shown to the people you invite)")

    async def make(directory: Path) -> tuple[bytes, str]:
        # The setting is in the profile before anything is sent: no later command goes direct.
        network = None
        if forwarder is None:
            forwarding.remove(place.profile)
        else:
            with render.spinner(f"Fetching the relay's key through {forwarder}…"):
                setting = await forwarding.first_contact(forwarder, server)
            forwarding.write(place.profile, setting)
            network = setting.network()
        try:
            with render.spinner(f"Deriving your store key (Argon2id) and registering on {server}…"):
                client = await Client.create(directory, server, secret, name, network=network)
            async with client:
                return client.account_id, client.display_name
        finally:
            if network is not None:
                await network.aclose()

    # The store appears in the profile only once it holds the account (see sotto.cli.profile).
    account_id, display_name = create(place, make)
    render.done(f"Welcome, {render.clean(display_name)}: account {account_id.hex()} on {server}")
    render.dim(f"  profile: {place.profile} (encrypted with your passphrase; there is no recovery)")
    if forwarder is not None:
        render.dim(
            f"  every request goes through the forwarder {forwarder}; `sotto listen` receives through it"
        )
    render.next_step("`sotto invite` to invite someone, or `sotto accept LINK` to use an invite")


def export(
    as_json: Annotated[bool, typer.Option("--json", help="Print the export as JSON, whole.")] = False,
    profile: ProfileOption = None,
) -> None:
    """Show everything the relay holds about you: your account and each mailbox you hold."""
    place = where(profile)

    async def work() -> None:
        async with opened(place) as client:
            with render.spinner(f"Asking {client.server_url} for its export…"):
                data = await client.export()
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=False))
            return
        _show_export(data)

    run(place, work())


def rotate(profile: ProfileOption = None) -> None:
    """Give every contact a fresh mailbox to write to (the old ones are drained, then deleted)."""
    place = where(profile)
    answer = listener.hand_over(place, control.RotateMailboxes())
    if answer is not None:
        handled = listener.carried_out(place, answer)
        rotated = handled.count
        render.done(f"rotated {rotated} mailbox{'es' * (rotated != 1)}")
        if handled.left:
            render.warn(f"{handled.left} message(s) still queued: the running `sotto listen` sends them")
        return

    async def work() -> None:
        async with opened(place) as client:
            with render.spinner("Creating fresh mailboxes and telling your contacts…"):
                rotated = await client.rotate_mailboxes()
                left = await client.flush()
        render.done(f"rotated {rotated} mailbox{'es' * (rotated != 1)}")
        if left:
            render.warn(
                f"{left} message(s) still queued: they go out with your next `sotto listen` or `sotto send`"
            )

    run(place, work())


account_app = typer.Typer(name="account", help="Your account on the relay.", no_args_is_help=True)


@account_app.command("delete")
def delete(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    profile: ProfileOption = None,
) -> None:
    """Delete your account from the relay: the account, its devices, prekeys, access tokens and
    username, and every mailbox you hold with the messages waiting in it. Your contacts can no
    longer write to you; this profile keeps your history but can no longer send or receive."""
    place = where(profile)
    need_profile(place)
    if not yes and not typer.confirm(
        "Delete your account from the relay? Contacts can no longer reach you, and it cannot be undone",
        default=False,
    ):
        fail("nothing deleted", code=ExitCode.ERROR)

    async def work() -> None:
        async with opened(place) as client:
            server = client.server_url
            with render.spinner(f"Deleting your mailboxes and your account on {server}…"):
                deleted = await client.delete_account()
        render.done(f"deleted your account on {server}")
        for table, rows in deleted.rows.items():
            if rows:
                render.info(f"  {table}: {rows} row{'s' * (rows != 1)}")
        render.info(
            f"  mailboxes: {deleted.mailboxes}, with {deleted.envelopes} waiting "
            f"message{'s' * (deleted.envelopes != 1)}"
        )
        render.dim(
            f"  the relay holds nothing for this account now; the profile {place.profile} still holds "
            "your history (delete that directory to remove it)"
        )

    run(place, work())


def _show_export(data: dict[str, Any]) -> None:
    render.info("What the relay holds about you (bytes in base64url, payloads as sizes):")
    _show_tables("account (GET /v1/export)", data["account"]["tables"])
    for mailbox_id, held in data["mailboxes"].items():
        _show_tables(f"mailbox {mailbox_id} (GET /v1/mailboxes/{{id}}/export)", held["tables"])
    render.dim(
        "No table holds who wrote to you, when to the second, or from where. `--json` prints every row."
    )


def _show_tables(heading: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    render.out.print()
    render.out.print(Text(heading, style="bold"))
    for name, rows in tables.items():
        count = f"{len(rows)} row{'s' * (len(rows) != 1)}"
        if not rows:
            render.out.print(Text(f"  {name}: {count}"))
            continue
        shown = rows[:SHOWN_ROWS]
        more = f", first {SHOWN_ROWS} shown" if len(rows) > SHOWN_ROWS else ""
        table = Table(title=Text(f"{name}: {count}{more}"), title_justify="left", header_style="dim")
        table.add_column("column", no_wrap=True)
        for i in range(len(shown)):
            table.add_column(f"row {i + 1}", no_wrap=True, overflow="ellipsis")
        for column in shown[0]:
            table.add_row(Text(column), *(Text(_short(row.get(column))) for row in shown))
        render.out.print(table)


def _short(value: object) -> str:
    if value is None:
        return "null"
    text = str(value)
    return f"{text[:SHORT_VALUE]}… ({len(text)} chars)" if len(text) > SHORT_VALUE + 12 else text
