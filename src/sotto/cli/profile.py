"""Where a profile lives, how its passphrase is asked for, and how a command gets a Client.

A profile is a directory holding one encrypted store (``sotto.db``): ``--profile DIR``, else
``$SOTTO_HOME``, else ``~/.sotto``. The passphrase comes from ``$SOTTO_PASSPHRASE`` (for scripts)
or a hidden prompt. Commands run as ``asyncio.run`` of one coroutine, inside
:func:`~sotto.cli.failures.reported`, so every error becomes a message and an exit code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from sotto.cli import render
from sotto.cli.failures import ExitCode, Where, fail, reported
from sotto.client.sdk import STORE_FILE, Client

DEFAULT_HOME = Path("~/.sotto")
SHORT_PASSPHRASE = 10
"""Below this many characters ``sotto init`` warns (several words are better than one)."""
PASSPHRASE_ENV = "SOTTO_PASSPHRASE"  # noqa: S105 (the variable's name, not a passphrase)

ProfileOption = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        "-p",
        envvar="SOTTO_HOME",
        show_envvar=True,
        file_okay=False,
        help="Profile directory [default: ~/.sotto].",
        show_default=False,
    ),
]


def where(profile: Path | None) -> Where:
    return Where((profile or DEFAULT_HOME).expanduser().absolute())


def exists(place: Where) -> bool:
    return (place.profile / STORE_FILE).exists()


def passphrase(*, new: bool = False) -> str:
    """The profile's passphrase: ``$SOTTO_PASSPHRASE``, or asked for (twice for a new profile)."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    prompt = "Choose a passphrase for your local store" if new else "Passphrase"
    entered: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=new)
    if not entered.strip():
        fail("an empty passphrase protects nothing", code=ExitCode.USAGE)
    if new and len(entered) < SHORT_PASSPHRASE:
        render.warn(
            "a short passphrase is quick to guess for anyone who copies your store; consider a longer one"
        )
    return entered


CadenceOption = Annotated[
    bool,
    typer.Option(
        "--cadence",
        help="Cadence mode: poll and send on the relay's fixed ticks, with cover traffic, so the "
        "relay cannot tell when you write or read (messages take up to about two ticks).",
    ),
]


@asynccontextmanager
async def opened(place: Where, *, cadence: bool = False) -> AsyncIterator[Client]:
    """The profile's client, unlocked with its passphrase, closed when the block ends."""
    if not exists(place):
        fail(
            f"no Sotto profile in {place.profile}",
            hint="run `sotto init` first (or point --profile / SOTTO_HOME at your profile)",
            code=ExitCode.NO_PROFILE,
        )
    secret = passphrase()
    with render.spinner("Unlocking your store (Argon2id)…"):
        client = await Client.open(place.profile, secret, cadence=cadence)
    place.server = client.server_url
    async with client:
        yield client


def run(place: Where, work: Coroutine[Any, Any, None], *, until_interrupted: bool = False) -> None:
    """Run one command's coroutine with errors reported (and the coroutine closed if unused).

    ``until_interrupted``: Ctrl-C is the normal way to end this command (exit 0, no message).
    """
    with reported(place):
        try:
            asyncio.run(work)
        except KeyboardInterrupt:
            if not until_interrupted:
                raise
        finally:
            work.close()
