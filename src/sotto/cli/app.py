"""The ``sotto`` Typer application: the commands, the hidden ``--debug`` flag, and :func:`main`."""

from __future__ import annotations

from typing import Annotated

import typer

from sotto.cli import audit
from sotto.cli.commands import account, backup, contacts, devices, files, forwarder, groups, messages, server
from sotto.cli.commands.chat import chat
from sotto.cli.failures import Settings

app = typer.Typer(
    name="sotto",
    help="Sotto: end-to-end encrypted messages through a relay that learns as little as we can measure.",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks show local variables, and a passphrase is one of them: plain tracebacks only,
    # and only with --debug (every other failure is a message and an exit code).
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Profile: --profile DIR, else $SOTTO_HOME, else ~/.sotto. "
        "Passphrase: $SOTTO_PASSPHRASE, else asked.  \n"
        "Exit codes: 0 ok · 1 error · 2 usage · 3 no profile · 4 wrong passphrase · 5 relay unreachable · "
        "6 unknown name · 7 profile in use · 8 refused · 9 safety numbers differ · 130 Ctrl-C"
    ),
)


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", hidden=True, envvar="SOTTO_DEBUG", help="Show tracebacks.")
    ] = False,
) -> None:
    """Start a relay with `sotto server`, then `sotto init`, `sotto invite` / `sotto accept`, `sotto send`."""
    Settings.debug = debug


app.command(rich_help_panel="Relay")(server.server)
app.command(rich_help_panel="Relay")(forwarder.forwarder)
app.command(rich_help_panel="Account")(account.init)
app.command(rich_help_panel="Account")(account.export)
app.command(rich_help_panel="Account")(account.rotate)
app.add_typer(account.account_app, rich_help_panel="Account")
app.command(rich_help_panel="Contacts")(contacts.invite)
app.command(rich_help_panel="Contacts")(contacts.accept)
app.command(rich_help_panel="Contacts")(contacts.contacts)
app.command(rich_help_panel="Contacts")(contacts.verify)
app.command(rich_help_panel="Contacts")(contacts.remove)
app.command(rich_help_panel="Contacts")(contacts.block)
app.command(rich_help_panel="Contacts")(contacts.unblock)
app.command(rich_help_panel="Messages")(messages.send)
app.command(rich_help_panel="Messages")(messages.listen)
app.command(rich_help_panel="Messages")(messages.history)
app.command(rich_help_panel="Messages")(files.save)
app.command(rich_help_panel="Messages")(messages.edit)
app.command(rich_help_panel="Messages")(messages.unsend)
app.command(rich_help_panel="Messages")(messages.react)
app.command(rich_help_panel="Messages")(messages.timer)
app.command(rich_help_panel="Messages")(chat)
app.add_typer(groups.group_app, rich_help_panel="Messages")
app.add_typer(audit.app, rich_help_panel="Relay")
app.add_typer(backup.backup_app, rich_help_panel="Account")
app.add_typer(devices.device_app, rich_help_panel="Account")


def main() -> None:
    """The ``sotto`` entry point."""
    app()
