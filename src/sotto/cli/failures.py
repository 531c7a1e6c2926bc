"""Failures as people should see them: one line saying what is wrong, one hint, one exit code.

Every error the SDK can raise is translated here, with the profile directory and the relay URL
it concerns; nothing reaches the terminal as a traceback unless ``--debug`` asks for it.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer
from pydantic_core import PydanticSerializationError

from sotto.cli import render
from sotto.errors import (
    ClientError,
    DecodeError,
    FingerprintVersionMismatchError,
    InviteError,
    MailboxFullError,
    QuotaExceededError,
    RelayError,
    RelayFullError,
    RelayStorageError,
    RelayUnavailableError,
    SottoError,
    StoreConflictError,
    StoreCorruptedError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    UnknownContactError,
    WorkRequiredError,
    WorkTooHardError,
    WrongPassphraseError,
)


class ExitCode(enum.IntEnum):
    """What ``sotto`` exits with; scripts may rely on these."""

    OK = 0
    ERROR = 1
    """Anything not listed below (the message says what)."""
    USAGE = 2
    """Bad arguments or values (Click's own code for usage errors)."""
    NO_PROFILE = 3
    """No profile in the directory: run ``sotto init``."""
    WRONG_PASSPHRASE = 4
    RELAY_UNREACHABLE = 5
    """The relay did not answer; queued messages stay queued."""
    UNKNOWN_NAME = 6
    """No contact or group by that name."""
    PROFILE_BUSY = 7
    """Another ``sotto`` process (often ``sotto listen``) has the profile open."""
    REFUSED = 8
    """The relay refused a request, or an invite cannot be used."""
    MISMATCH = 9
    """``sotto verify --scanned``: the safety numbers differ."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT, as shells report it)."""


@dataclass
class Where:
    """What a command works on, for messages: the profile directory and, once known, the relay."""

    profile: Path
    server: str | None = None

    @property
    def relay(self) -> str:
        return self.server or "the relay"


class Settings:
    debug = False
    """``--debug``: let exceptions through with their tracebacks."""


def fail(message: str, *, hint: str | None = None, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    """Print ``error: message`` (and the hint) on stderr and exit with ``code``."""
    render.error(message, hint)
    raise typer.Exit(int(code))


def report_send(place: Where, left: int, success: str, refusal: Exception | None = None) -> None:
    """Report a send: done, or why something is still queued (and exit non-zero): the relay's
    ``refusal`` that held it (a full mailbox, relay or quota) if there was one, else the relay
    did not answer."""
    if not left:
        render.done(success)
        return
    if isinstance(refusal, RelayError) and refusal.status == 404:
        fail(
            f"{left} queued envelope(s) not taken: the relay does not know the mailbox they gave you",
            hint="it is tried a few more times (a new contact's mailbox can take a moment); if it "
            "stays refused, their account is gone or their mailbox expired while they were away",
            code=ExitCode.REFUSED,
        )
    if refusal is not None:
        message, hint, code = explain(refusal, place)
        fail(f"{left} queued envelope(s) not taken: {message}", hint=hint, code=code)
    fail(
        f"the relay at {place.relay} did not take {left} queued envelope(s); your message is saved",
        hint="is the relay running (`sotto server`)? Queued messages go out with your next "
        "`sotto send` or `sotto listen`",
        code=ExitCode.RELAY_UNREACHABLE,
    )


def explain(error: BaseException, where: Where) -> tuple[str, str | None, ExitCode]:
    """The message, hint and exit code for an error raised while working on ``where``."""
    profile = where.profile
    match error:
        case WrongPassphraseError():
            return (
                f"wrong passphrase for the profile in {profile}",
                "type it again, or check SOTTO_PASSPHRASE",
                ExitCode.WRONG_PASSPHRASE,
            )
        case StoreLockedError():
            return (
                f"the profile in {profile} is open in another sotto process",
                "stop it first (a running `sotto listen`?), or use another --profile",
                ExitCode.PROFILE_BUSY,
            )
        case StoreVersionError():
            return (f"the profile in {profile} was written by a newer Sotto", "upgrade sotto", ExitCode.ERROR)
        case StoreCorruptedError():
            return (f"the store in {profile} cannot be read: {error}", None, ExitCode.ERROR)
        case StoreConflictError():
            return (str(error), None, ExitCode.ERROR)
        case StoreError():
            return (f"the store in {profile} failed: {error}", None, ExitCode.ERROR)
        case RelayUnavailableError():
            return (
                f"cannot reach the relay at {where.relay}",
                "is it running? Start one with `sotto server` (or check the URL and your network)",
                ExitCode.RELAY_UNREACHABLE,
            )
        case RelayStorageError():
            return (
                f"the relay at {where.relay} cannot store anything right now",
                "try again later",
                ExitCode.REFUSED,
            )
        case MailboxFullError():
            return (
                f"the contact's mailbox on {where.relay} is full until they read what waits there",
                "your message is saved and goes out by itself once they do (`sotto send` or "
                "`sotto listen` tries again)",
                ExitCode.REFUSED,
            )
        case RelayFullError():
            return (
                f"the relay at {where.relay} is short of disk space and takes nothing new for now",
                "anything you sent is saved and goes out later; tell the relay's operator if it lasts",
                ExitCode.REFUSED,
            )
        case QuotaExceededError():
            return (
                f"your account on {where.relay} holds all it may: {error.message}",
                "open invites and prekeys count toward it: wait for invites to be used or to expire",
                ExitCode.REFUSED,
            )
        case WorkTooHardError():
            return (
                f"the relay at {where.relay} is busy with sign-ups and asks for {error.difficulty} bits "
                f"of proof of work, more than this client does ({error.cap})",
                "try again in a few minutes",
                ExitCode.REFUSED,
            )
        case WorkRequiredError():
            return (
                f"the relay at {where.relay} did not accept our proof of work ({error.code})",
                "try again; if it keeps happening, check this computer's clock and the relay's version",
                ExitCode.REFUSED,
            )
        case RelayError():
            return (
                f"the relay at {where.relay} refused: {error.message} ({error.status} {error.code})",
                None,
                ExitCode.REFUSED,
            )
        case InviteError():
            return (f"this invite cannot be used: {error}", "ask for a new link", ExitCode.REFUSED)
        case UnknownContactError():
            return (str(error), "`sotto contacts` lists the names you can use", ExitCode.UNKNOWN_NAME)
        case FingerprintVersionMismatchError():
            return (
                "that safety number code was made by another version",
                "compare the 60 digits instead",
                ExitCode.ERROR,
            )
        case DecodeError():
            return (f"cannot read that: {error}", None, ExitCode.USAGE)
        case ClientError() | SottoError():
            return (str(error), None, ExitCode.ERROR)
        case ValueError():
            return (str(error), None, ExitCode.USAGE)
        case OSError():
            return (f"{error.strerror or error} ({error.filename or profile})", None, ExitCode.ERROR)
    return (
        f"unexpected {type(error).__name__}: {error}",
        "run again with --debug for the traceback, and please report it",
        ExitCode.ERROR,
    )


def _swallowed_interrupt(error: Exception) -> bool:
    """Whether ``error`` is a Ctrl-C that pydantic turned into a serialization error (a
    KeyboardInterrupt raised while it ran one of our serializers, such as base64 of a field)."""
    return isinstance(error, PydanticSerializationError) and "KeyboardInterrupt" in str(error)


@contextlib.contextmanager
def reported(where: Where) -> Iterator[None]:
    """Turn whatever the block raises into a clean message and exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        if Settings.debug:
            raise
        render.error("interrupted", None)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as error:
        if Settings.debug:
            raise
        if _swallowed_interrupt(error):
            render.error("interrupted", None)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        message, hint, code = explain(error, where)
        fail(message, hint=hint, code=code)
