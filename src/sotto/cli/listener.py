"""Commands that go through a running ``sotto listen`` (:mod:`sotto.client.control`).

``sotto listen`` holds its profile's store and serves the profile's control socket while it runs.
The commands that write (``send``, ``group send|create|add``, ``invite``, ``accept``, ``block``,
``unblock``, ``remove``, ``rotate``) hand their request to it rather than stopping it (which the
relay would see as a gap in the device's traffic), and print what they print on their own, with
the same exit codes. The others that need the store (``contacts``, ``verify``, ``history``,
``export``, a second ``listen``) say that ``listen`` has it and must be stopped first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import NoReturn

from sotto.cli import render
from sotto.cli.failures import ExitCode, Where, explain, fail, report_send, reported
from sotto.cli.names import known_names
from sotto.client import control
from sotto.client.sdk import Client

STATUS_TIMEOUT_S = 5.0
"""How long a command waits for a running listener to say it is there."""


def hand_over(place: Where, request: control.Request) -> control.Answer | None:
    """The running listener's answer to ``request``, or None if no listener serves the profile."""
    with reported(place):
        try:
            return asyncio.run(control.ask(place.profile, request))
        except control.ControlUnsafeError as error:
            fail(
                f"will not hand this to `sotto listen`: {error}",
                hint="make the profile folder yours alone (`chmod 700`), then restart `sotto listen`",
                code=ExitCode.ERROR,
            )
        except control.ListenerGoneError as error:
            fail(
                f"`sotto listen` did not answer: {error}",
                hint="it may have done it: look (`sotto contacts`, `sotto history NAME`) before asking again",
                code=ExitCode.ERROR,
            )


def carried_out(place: Where, answer: control.Answer) -> control.Handled:
    """The listener's answer if it carried the request out; else fail as the command would."""
    match answer:
        case control.Handled():
            place.server = answer.relay
            return answer
        case control.Refused():
            refused(place, answer)
    fail("the running `sotto listen` answered something else", code=ExitCode.ERROR)


def refused(place: Where, answer: control.Refused) -> NoReturn:
    """Fail with the message, hint and exit code the command gives for the same failure."""
    match answer.reason:
        case control.Reason.UNKNOWN_NAME if answer.known is not None:
            what = answer.what or "contact"
            hint = known_names(f"{what}s", list(answer.known))
            if not answer.known and what == "contact":
                hint += ": add one with `sotto invite` or `sotto accept LINK`"
            name = render.clean(answer.name or "")
            fail(f"no {what} named {name!r}", hint=hint, code=ExitCode.UNKNOWN_NAME)
        case control.Reason.UNKNOWN_NAME:
            fail(
                answer.message,
                hint="`sotto contacts` lists the names you can use",
                code=ExitCode.UNKNOWN_NAME,
            )
        case control.Reason.CONFLICT:
            name = render.clean(answer.name or "")
            fail(f"you already have a group named {name!r}", code=ExitCode.USAGE)
        case control.Reason.MODE:
            fail(
                "the running `sotto listen` is not in cadence mode: it would send this at once",
                hint="send without --cadence, or stop it (Ctrl-C) and run `sotto listen --cadence`",
                code=ExitCode.PROFILE_BUSY,
            )
        case control.Reason.FAILED:
            said, advice, code = explain(answer.to_error(), place)
            fail(said, hint=advice, code=code)
    fail(f"the running `sotto listen` refused: {answer.message}", code=ExitCode.ERROR)


def invited(place: Where, answer: control.Answer) -> control.Invited:
    """The listener's new invite; else fail as ``sotto invite`` would."""
    if isinstance(answer, control.Invited):
        return answer
    carried_out(place, answer)
    fail("the running `sotto listen` answered something else", code=ExitCode.ERROR)


def report_delivery(place: Where, handled: control.Handled, success: str, queued: str) -> None:
    """Report a request that sent something, as the command does on its own (``success``: its
    line when everything went out, ``queued``: when it waits for a tick)."""
    if handled.outcome is control.Outcome.QUEUED:
        render.done(f"{queued}: it goes out in a tick of `sotto listen --cadence`")
        return
    refusal = None if handled.refusal is None else handled.refusal.to_error()
    report_send(place, handled.left, success, refusal)


async def running(place: Where) -> control.Status | None:
    """The listener serving the profile, if one answers (None too if it cannot be asked safely:
    then opening the store says the profile is in use)."""
    try:
        answer = await control.ask(place.profile, control.AskStatus(), timeout=STATUS_TIMEOUT_S)
    except control.ControlError:
        return None
    return answer if isinstance(answer, control.Status) else None


async def refuse_if_running(place: Where) -> None:
    """Fail (exit 7) if a ``sotto listen`` holds the profile: this command cannot go through it."""
    status = await running(place)
    if status is None:
        return
    mode = " --cadence" if status.cadence else ""
    fail(
        f"`sotto listen{mode}` (process {status.pid}) has the profile in {place.profile} open, "
        "and this command cannot go through it",
        hint="stop it (Ctrl-C in its terminal), then run this again; `send`, `group`, `invite`, "
        "`accept`, `block`, `unblock`, `remove` and `rotate` go through it while it runs",
        code=ExitCode.PROFILE_BUSY,
    )


@contextlib.asynccontextmanager
async def serving(client: Client, place: Where) -> AsyncIterator[None]:
    """Serve the profile's control socket while the block runs; if it cannot be served (a folder
    open to others), warn and run without it."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(control.serving(client, place.profile))
        except control.ControlError as error:
            render.warn(f"`sotto send` cannot go through this listener: {error}")
        yield


def waiting_for(group: str, members: list[str], *, sent_to_others: bool) -> str:
    """What a group message from a restored profile did: it went to the members it holds a
    session with (if any) and waits for the others' answers."""
    who = ", ".join(members)
    done = f"sent to {group}; for {who}: " if sent_to_others else f"queued for {group}: "
    return done + f"waiting for {who} to answer; it goes out to them when they do"


def report(place: Where, answer: control.Answer, *, group: bool = False) -> None:
    """Print what ``sotto send`` (or ``group send``) prints on its own for the listener's answer;
    exit as it would."""
    handled = carried_out(place, answer)
    shown = ("#" if group else "") + render.clean(handled.name)
    if handled.outcome is control.Outcome.KEPT:
        render.done(f"kept for {shown}: it goes out when {shown} answers your contact request")
        render.next_step("nothing: the running `sotto listen` sends it when their answer arrives")
        return
    if handled.outcome is control.Outcome.WAITING and group:
        who = [render.clean(m) for m in handled.members]
        refusal = None if handled.refusal is None else handled.refusal.to_error()
        report_send(place, handled.left, waiting_for(shown, who, sent_to_others=handled.count > 0), refusal)
        return
    if handled.outcome is control.Outcome.WAITING:
        render.done(f"queued: waiting for {shown} to answer; it goes out when they do")
        render.next_step("nothing: the running `sotto listen` sends it when their answer arrives")
        return
    report_delivery(place, handled, f"sent to {shown}", f"queued for {shown}")
