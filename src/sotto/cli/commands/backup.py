"""``sotto backup create|restore``: an encrypted backup file of a profile, and a profile from one.

The backup is protected by a recovery key shown once (32 random bytes as 13 groups of four
letters and digits) or, with ``--passphrase``, by a passphrase of five or more words
(``$SOTTO_BACKUP_PASSPHRASE``, else asked). A restore asks for that key
(``$SOTTO_RECOVERY_KEY``, else asked) and for the passphrase of the restored store
(``$SOTTO_PASSPHRASE``, else asked twice). See ``docs/backup.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sotto.cli import render
from sotto.cli.failures import ExitCode, fail, reported
from sotto.cli.profile import (
    Found,
    ProfileOption,
    ask,
    inspect,
    need_profile,
    passphrase,
    refuse,
    store_path,
    where,
)
from sotto.client.backup import ProfileExistsError, create_backup, restore_backup
from sotto.client.backup_format import (
    BackupCorruptedError,
    BackupKey,
    BackupPassphrase,
    RecoveryKey,
    WeakBackupPassphraseError,
    WrongBackupKeyError,
)
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.passphrase import Argon2Params, normalize
from sotto.crypto.random import system_rng

BACKUP_PASSPHRASE_ENV = "SOTTO_BACKUP_PASSPHRASE"  # noqa: S105 (the variable's name)
RECOVERY_KEY_ENV = "SOTTO_RECOVERY_KEY"
KDF = Argon2Params.INTERACTIVE
"""Argon2id cost for a backup passphrase and for the restored store's passphrase."""

backup_app = typer.Typer(
    name="backup", help="Write an encrypted backup of your profile, or restore one.", no_args_is_help=True
)

PassphraseFlag = Annotated[
    bool,
    typer.Option(
        "--passphrase",
        help="A passphrase of five or more words instead of a recovery key "
        f"(${BACKUP_PASSPHRASE_ENV}, else asked).",
    ),
]


def _backup_passphrase(*, new: bool) -> BackupPassphrase:
    given = os.environ.get(BACKUP_PASSPHRASE_ENV)
    typed = given or ask("Backup passphrase (five or more words)", hide_input=True)
    try:
        chosen = BackupPassphrase(typed)
    except WeakBackupPassphraseError as error:
        fail(str(error), code=ExitCode.USAGE)
    if new and not given:
        again = ask("Repeat it", hide_input=True)
        if not bytes_equal(normalize(again), normalize(typed)):
            fail("the two passphrases differ", code=ExitCode.USAGE)
    return chosen


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


@backup_app.command("create")
def create(
    file: Annotated[
        Path, typer.Argument(dir_okay=False, help="The backup file to write (new).", show_default=False)
    ],
    use_passphrase: PassphraseFlag = False,
    profile: ProfileOption = None,
) -> None:
    """Write an encrypted backup of your profile: contacts, groups, history, files and settings
    (never the sessions' keys). Shows a recovery key once, unless --passphrase."""
    place = where(profile)
    if file.exists():
        fail(f"{file} exists", hint="choose another file name, or remove it first", code=ExitCode.USAGE)
    need_profile(place)
    secret = passphrase()
    key: BackupKey = _backup_passphrase(new=True) if use_passphrase else RecoveryKey.generate(system_rng)
    with reported(place):
        with render.spinner("Writing the backup…"):
            summary = create_backup(store_path(place), secret, file, key, kdf=KDF)
        counts = summary.counts
        render.done(
            f"backup of {counts.get('messages', 0):,} messages, {counts.get('contacts', 0)} contact(s) and "
            f"{counts.get('groups', 0)} group(s) written to {file} ({_size(summary.size)})"
        )
        if isinstance(key, RecoveryKey):
            render.info(
                "Your recovery key. It is shown this once: write it down and keep it apart from the file."
            )
            render.info("Without it the backup cannot be opened, by you or anyone.")
            render.out.print(f"\n    {key.to_text()}\n", highlight=False)


@backup_app.command("restore")
def restore(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The backup file.", show_default=False)
    ],
    use_passphrase: PassphraseFlag = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the profile's store if it has one (it is lost).")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Make the profile from a backup. Sessions with contacts start again when they next write."""
    place = where(profile)
    found = inspect(place)
    if found is Found.ACCOUNT and not force:
        fail(
            f"there is already a profile in {place.profile}",
            hint="restore into another --profile, or add --force to replace it (its store is lost)",
            code=ExitCode.USAGE,
        )
    if found in (Found.IN_USE, Found.UNREADABLE) or (found is Found.FOREIGN and not force):
        refuse(place, found)
    if use_passphrase:
        key: BackupKey = _backup_passphrase(new=False)
    else:
        text = os.environ.get(RECOVERY_KEY_ENV) or ask("Recovery key", hide_input=True)
        try:
            key = RecoveryKey.from_text(text)
        except WrongBackupKeyError as error:
            fail(
                str(error),
                hint="type the 13 groups of four shown when the backup was made",
                code=ExitCode.USAGE,
            )
    secret = passphrase(new=True)
    with reported(place):
        try:
            with render.spinner("Checking and restoring the backup…"):
                summary = restore_backup(
                    file, key, store_path(place), secret, force=force or found is Found.UNFINISHED, kdf=KDF
                )
        except WrongBackupKeyError as error:
            fail(
                f"{error}; nothing was changed",
                hint="check the key and try again",
                code=ExitCode.WRONG_PASSPHRASE,
            )
        except BackupCorruptedError as error:
            fail(f"{file}: {error}; nothing was changed", code=ExitCode.ERROR)
        except ProfileExistsError:
            refuse(place, Found.ACCOUNT)
        counts = summary.counts
        render.done(
            f"restored {counts.get('messages', 0):,} messages, {counts.get('contacts', 0)} contact(s) and "
            f"{counts.get('groups', 0)} group(s) into {place.profile}"
        )
        render.next_step(
            "sessions start again: a contact's next message asks them for a new one, and your messages to "
            "them go once it is set up. Stop Sotto on the machine you copied from (see docs/backup.md)"
        )
