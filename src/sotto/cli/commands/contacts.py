"""``sotto invite``, ``accept``, ``contacts``, ``verify``, ``remove``, ``block`` and ``unblock``: adding
people, checking their keys, and parting with them."""

from __future__ import annotations

import re
import shlex
import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from sotto.cli import listener, render
from sotto.cli.failures import ExitCode, fail
from sotto.cli.names import require_contact
from sotto.cli.profile import ProfileOption, ask, opened, run, where
from sotto.client import control
from sotto.client.sdk import Client
from sotto.crypto.kdf import bytes_equal
from sotto.errors import DecodeError

_HEX = re.compile(r"[0-9a-fA-F]+")


def invite(
    show_qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Also print the link as a QR code.")] = True,
    profile: ProfileOption = None,
) -> None:
    """Make a one-time invite link (and its QR code) to give to one person."""
    place = where(profile)
    answer = listener.hand_over(place, control.CreateInvite())
    if answer is not None:
        made = listener.invited(place, answer)
        _show_invite(made.link, made.qr_text, made.expires_ms, show_qr, listening=True)
        return

    async def work() -> None:
        async with opened(place) as client:
            with render.spinner("Creating a one-time invite on the relay…"):
                made = await client.create_invite()
        _show_invite(made.link, made.qr_text, made.expires_ms, show_qr, listening=False)

    run(place, work())


def _show_invite(link: str, qr_text: str, expires_ms: int, show_qr: bool, *, listening: bool) -> None:
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires_ms / 1000))
    # Quoted for a shell: the link holds "&" and "?", which split or glob it when pasted bare.
    quoted = shlex.quote(link)
    render.info(f"Give this link to one person (it works once, until {until}):")
    render.out.print(quoted, soft_wrap=True, markup=False, highlight=False)
    render.info("They paste this line into a terminal (with the quotes):")
    render.out.print(f"sotto accept {quoted}", soft_wrap=True, markup=False, highlight=False)
    if show_qr:
        render.qr(qr_text)
    if listening:
        render.next_step("nothing: the running `sotto listen` answers them once they have accepted")
    else:
        render.next_step("once they have accepted, run `sotto listen` so your client can answer them")


def accept(
    link: Annotated[
        str, typer.Argument(help="The sotto://invite?… link you were given.", show_default=False)
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="What you call the person who invited you.")
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Use someone's invite link: they become a contact, and you can write to them."""
    place = where(profile)
    if name is None:
        name = ask("What do you call the person who invited you?")
    if not name.strip():
        fail("a contact needs a name", code=ExitCode.USAGE)
    answer = listener.hand_over(place, control.AcceptInvite(link, name))
    if answer is not None:
        handled = listener.carried_out(place, answer)
        render.done(f"{render.clean(handled.name)} added")
        render.dim("  You can write now; messages wait until their client is online once to answer you.")
        render.next_step("nothing: the running `sotto listen` shows their answer")
        return

    async def work() -> None:
        async with opened(place) as client:
            with render.spinner("Fetching their keys and sending a contact request…"):
                contact = await client.accept_invite(link, name)
        render.done(f"{render.clean(contact.name)} added")
        render.dim("  You can write now; messages wait until their client is online once to answer you.")
        render.next_step("`sotto listen` to see their answer")

    run(place, work())


def contacts(profile: ProfileOption = None) -> None:
    """List your contacts and groups."""
    place = where(profile)

    async def work() -> None:
        async with opened(place) as client:
            _show_contacts(client)

    run(place, work())


def _show_contacts(client: Client) -> None:
    render.info(
        f"You are {render.clean(client.display_name)} (account {client.account_id.hex()})"
        f" on {client.server_url}"
    )
    people = client.contacts()
    if not people:
        render.dim("No contacts yet: `sotto invite` or `sotto accept LINK`.")
    else:
        table = Table(header_style="dim")
        for column in ("name", "their name for themselves", "status", "safety number"):
            table.add_column(column)
        for contact in people:
            ready = "ready" if client.is_ready(contact) else "waiting for their answer"
            if contact.blocked:
                ready = "blocked"
            trust = client.trust(contact)
            safety = Text("verified" if trust.verified else "not verified")
            if trust.changed_ms is not None:
                safety.append(f"\n⚠ changed {_when(trust.changed_ms)}", style="bold red")
            table.add_row(
                Text(render.clean(contact.name)),
                Text(render.clean(contact.display_name or "?")),
                ready,
                safety,
            )
        render.out.print(table)
        if any(client.trust(c).safety_number_changed for c in people):
            render.dim(
                "  ⚠ changed: a message came under another identity key and was refused. Compare safety"
                " numbers (`sotto verify NAME`), or `sotto verify NAME --acknowledge` to clear the mark."
            )
    groups = client.groups()
    if groups:
        table = Table(header_style="dim")
        table.add_column("group")
        table.add_column("members")
        for group in groups:
            members = ", ".join(render.clean(m.name) for m in client.group_members(group))
            table.add_row(Text(f"#{render.clean(group.name)}"), Text(members or "(just you)"))
        render.out.print(table)


def verify(
    name: Annotated[str, typer.Argument(help="The contact.", show_default=False)],
    *,
    scanned: Annotated[
        str | None,
        typer.Option(
            "--scanned",
            help="Their code, to compare: the sotto-safety:… text, its bytes in hex, or the 60 digits.",
        ),
    ] = None,
    show_qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Print our code as a QR code.")] = True,
    unverify: Annotated[
        bool, typer.Option("--unverify", help="Mark the contact not verified again.")
    ] = False,
    acknowledge: Annotated[
        bool,
        typer.Option(
            "--acknowledge", help='Clear the "safety number changed" mark without verifying the contact.'
        ),
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Show the safety number you share with a contact, compare it with theirs, or mark them not
    verified again (--unverify)."""
    place = where(profile)
    if sum((scanned is not None, unverify, acknowledge)) > 1:
        fail("use one of --scanned, --unverify and --acknowledge", code=ExitCode.USAGE)

    async def work() -> None:
        async with opened(place) as client:
            contact = require_contact(client, name)
            shown = render.clean(contact.name)
            if unverify:
                trust = await client.unverify(contact)
                render.done(f"{shown} is marked not verified")
                if trust.safety_number_changed:
                    render.dim(
                        f"  Their safety number changed {_when(trust.changed_ms or 0)}: compare it again."
                    )
                return
            if acknowledge:
                if await client.acknowledge_safety_number_change(contact):
                    render.done(f'the "safety number changed" mark on {shown} is cleared')
                    state = "verified" if client.is_verified(contact) else "not verified"
                    render.dim(f"  {shown} is still {state}: only a matching code verifies a contact.")
                else:
                    render.info(f"{shown}'s safety number has not changed: nothing to clear")
                return
            number = client.safety_number(contact)
            if scanned is None:
                groups = number.displayable.split()
                render.info(f"Safety number with {shown}:")
                for row in range(0, len(groups), 4):
                    render.out.print("    " + "  ".join(groups[row : row + 4]), style="bold")
                if show_qr:
                    render.qr(number.qr_text)
                render.info("Code to scan or paste:")
                render.out.print(number.qr_text, soft_wrap=True, markup=False)
                trust = client.trust(contact)
                state = "verified" if trust.verified else "not verified yet"
                if trust.changed_ms is not None:
                    render.out.print(
                        Text(
                            f"⚠ Their safety number changed {_when(trust.changed_ms)}: a message came under"
                            " another identity key and was refused. Compare again before trusting them.",
                            style="bold red",
                        )
                    )
                render.dim(f"  {shown} is {state}. Compare the digits with their screen, or run")
                render.dim("  `sotto verify NAME --scanned CODE` with the code their `sotto verify` printed.")
                return
            if _digits(scanned) is not None:
                same = bytes_equal(_digits(scanned) or b"", _digits(number.displayable) or b"")
                if not same:
                    fail(f"the digits differ from your safety number with {shown}", code=ExitCode.MISMATCH)
                render.done(f"the digits match your safety number with {shown}")
                render.dim(
                    "  Only a scanned or pasted code marks a contact verified (--scanned sotto-safety:…)."
                )
                return
            code: str | bytes = scanned.strip()
            if isinstance(code, str) and _HEX.fullmatch(code) and len(code) % 2 == 0:
                code = bytes.fromhex(code)
            try:
                same = await client.verify(contact, code)
            except DecodeError:
                fail(
                    "that is not a safety number code",
                    hint="pass the sotto-safety:… text their `sotto verify` printed, its hex,"
                    " or the 60 digits",
                    code=ExitCode.USAGE,
                )
            if not same:
                fail(
                    f"the code does not match your safety number with {shown}",
                    hint="someone may be between you: do not trust this contact until you know why",
                    code=ExitCode.MISMATCH,
                )
            render.done(f"the codes match: {shown} is now verified")

    run(place, work())


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def remove(
    name: Annotated[str, typer.Argument(help="The contact.", show_default=False)],
    forget_history: Annotated[
        bool, typer.Option("--forget-history", help="Also delete your messages with them.")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Remove a contact: their session and mailboxes go; your history with them stays unless
    --forget-history. A new invite from or to them makes them a contact again."""
    place = where(profile)
    answer = listener.hand_over(place, control.RemoveContact(name, forget_history))
    if answer is not None:
        handled = listener.carried_out(place, answer)
        if handled.outcome is control.Outcome.UNCHANGED:
            render.info(f"{render.clean(handled.name)} was removed already")
            return
        _removed(render.clean(handled.name), forget_history)
        return

    async def work() -> None:
        async with opened(place) as client:
            contact = require_contact(client, name)
            shown = render.clean(contact.name)
            if contact.removed and not forget_history:
                render.info(f"{shown} was removed already")
                return
            with render.spinner("Removing their mailboxes from the relay…"):
                await client.remove_contact(contact, forget_history=forget_history)
        _removed(shown, forget_history)

    run(place, work())


def _removed(shown: str, forget_history: bool) -> None:
    if forget_history:
        render.done(f"{shown} removed, with your messages with them")
    else:
        render.done(f"{shown} removed; your messages with them are kept")
        render.dim("  `sotto remove NAME --forget-history` deletes them too.")
    render.next_step("to talk again, accept a new invite from them, or give them one")


def block(
    name: Annotated[str, typer.Argument(help="The contact.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Block a contact: whatever they send is dropped, without receipts, until you unblock them."""
    _set_blocked(name, True, profile)


def unblock(
    name: Annotated[str, typer.Argument(help="The contact.", show_default=False)],
    profile: ProfileOption = None,
) -> None:
    """Unblock a contact: their messages arrive again (those sent meanwhile stay dropped)."""
    _set_blocked(name, False, profile)


def _set_blocked(name: str, blocked: bool, profile: ProfileOption) -> None:
    place = where(profile)
    answer = listener.hand_over(place, control.SetBlocked(name, blocked))
    if answer is not None:
        shown = render.clean(listener.carried_out(place, answer).name)
        render.done(f"{shown} blocked" if blocked else f"{shown} unblocked")
        return

    async def work() -> None:
        async with opened(place) as client:
            contact = require_contact(client, name)
            if blocked:
                await client.block_contact(contact)
            else:
                await client.unblock_contact(contact)
        shown = render.clean(contact.name)
        render.done(f"{shown} blocked" if blocked else f"{shown} unblocked")

    run(place, work())


def _digits(text: str) -> bytes | None:
    """The 60 digits of a typed safety number (spaces ignored), or None if it is not one."""
    compact = "".join(text.split())
    return compact.encode() if len(compact) == 60 and compact.isascii() and compact.isdigit() else None
