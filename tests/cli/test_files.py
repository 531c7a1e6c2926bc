"""Files through the CLI: `sotto send NAME --file PATH --caption TEXT` and `sotto save ID`, two
profiles on a real relay process; a blob changed on the relay's disk is refused and nothing is
written; each refusal is one line with its exit code."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from sotto.cli.failures import ExitCode
from sotto.client.sdk import Client
from sotto.demo.relay import RelayProcess
from sotto.errors import QuotaExceededError, RelayError, RelayFullError
from sotto.protocol.attachment import MAX_ATTACHMENT_SIZE
from tests.cli.conftest import Sotto, flat, make_profile

MIB = 1024 * 1024


def _blobs(relay: RelayProcess) -> set[Path]:
    folder = relay.data_dir / "attachments"
    if not folder.exists():
        return set()
    return {p for p in folder.iterdir() if len(p.name) == 32 and p.is_file()}


def _pair(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> tuple[str, str]:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))
    link = re.search(r"sotto://invite\?[^\s']+", flat(sotto("invite", "--profile", alice).output))
    assert link is not None
    for args in (("accept", link.group(0), "--name", "Alice", "--profile", bob),):
        assert sotto(*args).exit_code == 0
    assert sotto("listen", "--once", "--profile", alice).exit_code == 0
    assert sotto("listen", "--once", "--profile", bob).exit_code == 0
    return alice, bob


def test_send_a_file_and_save_it(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    alice, bob = _pair(sotto, relay, tmp_path)
    source = tmp_path / "photo.bin"
    source.write_bytes(os.urandom(MIB))
    saves = tmp_path / "saves"
    saves.mkdir()

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    def refused(code: ExitCode, *args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == code, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    assert "photo.bin (1.0 MiB) sent to Bob" in ok(
        "send", "Bob", "--file", str(source), "--caption", "the view", "--profile", alice
    )
    heard = ok("listen", "--once", "--profile", bob)
    shown = re.search(r"Alice sent 📎 photo\.bin \(1\.0 MiB\): the view · sotto save ([0-9a-f]{8})", heard)
    assert shown is not None, heard
    message = shown.group(1)
    assert f"{message} " in ok("history", "Alice", "--profile", bob)
    assert "Alice: the view 📎 photo.bin (1.0 MiB)" in ok("history", "Alice", "--profile", bob)
    assert "you: the view" in ok("history", "Bob", "--profile", alice)

    assert "saved" in ok("save", message, "--to", str(saves), "--profile", bob)
    written = saves / "photo.bin"
    assert written.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert "exists" in refused(ExitCode.USAGE, "save", message, "--to", str(saves), "--profile", bob)
    assert "no longer holds this file" in refused(
        ExitCode.REFUSED, "save", message, "--to", str(saves / "again.bin"), "--profile", bob
    )
    assert sorted(p.name for p in saves.iterdir()) == ["photo.bin"]

    # Refusals, each before anything is sent.
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as file:
        file.truncate(MAX_ATTACHMENT_SIZE + 1)
    assert "no file" in refused(
        ExitCode.USAGE, "send", "Bob", "--file", str(tmp_path / "nope"), "--profile", alice
    )
    assert "at most" in refused(ExitCode.USAGE, "send", "Bob", "--file", str(huge), "--profile", alice)
    assert "--caption" in refused(
        ExitCode.USAGE, "send", "Bob", "hi", "--file", str(source), "--profile", alice
    )
    assert "goes with --file" in refused(
        ExitCode.USAGE, "send", "Bob", "hi", "--caption", "x", "--profile", alice
    )
    assert "not a message id" in refused(ExitCode.USAGE, "save", "zz", "--profile", bob)
    assert "no file received" in refused(ExitCode.UNKNOWN_NAME, "save", "00000000", "--profile", bob)
    assert "no contact or group named" in refused(
        ExitCode.UNKNOWN_NAME, "send", "Carol", "--file", str(source), "--profile", alice
    )


def test_send_a_file_to_a_group_and_save_it(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    alice, bob = _pair(sotto, relay, tmp_path)
    source = tmp_path / "map.png"
    source.write_bytes(os.urandom(300_000))
    saves = tmp_path / "saves"
    saves.mkdir()

    def ok(*args: str) -> str:
        result = sotto(*args)
        assert result.exit_code == 0, f"sotto {' '.join(args)}: {result.output}"
        return flat(result.output)

    ok("group", "create", "Trip", "Bob", "--profile", alice)
    ok("listen", "--once", "--profile", bob)
    before = _blobs(relay)
    said = ok("send", "Trip", "--file", str(source), "--caption", "the route", "--profile", alice)
    assert "map.png (293.0 KiB) sent to #Trip" in said
    assert len(_blobs(relay) - before) == 1  # one upload for the group
    heard = ok("listen", "--once", "--profile", bob)
    shown = re.search(
        r"Alice sent 📎 map\.png \(293\.0 KiB\) in #Trip: the route · sotto save ([0-9a-f]{8})", heard
    )
    assert shown is not None, heard
    assert "saved" in ok("save", shown.group(1), "--to", str(saves), "--profile", bob)
    assert (saves / "map.png").read_bytes() == source.read_bytes()
    assert _blobs(relay) == before  # its one member fetched it: deleted


def test_a_tampered_blob_is_refused_and_nothing_written(
    sotto: Sotto, relay: RelayProcess, tmp_path: Path
) -> None:
    alice, bob = _pair(sotto, relay, tmp_path)
    source = tmp_path / "notes.txt"
    source.write_bytes(os.urandom(200_000))
    saves = tmp_path / "saves"
    saves.mkdir()
    before = _blobs(relay)
    assert sotto("send", "Bob", "--file", str(source), "--profile", alice).exit_code == 0
    (blob,) = _blobs(relay) - before
    with open(blob, "r+b") as file:  # AES-CTR at rest: a flipped byte here is one in the blob served
        file.seek(100_000)
        byte = file.read(1)
        file.seek(100_000)
        file.write(bytes((byte[0] ^ 0x80,)))
    heard = flat(sotto("listen", "--once", "--profile", bob).output)
    shown = re.search(r"sotto save ([0-9a-f]{8})", heard)
    assert shown is not None, heard
    result = sotto("save", shown.group(1), "--to", str(saves), "--profile", bob)
    assert result.exit_code == ExitCode.REFUSED, result.output
    assert "failed its integrity check" in flat(result.output) and "nothing was written" in flat(
        result.output
    )
    assert list(saves.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (QuotaExceededError("the relay holds its quota of attachments"), "has no room for this file"),
        (RelayFullError(), "has no room for this file"),
        (RelayError(429, "rate_limited", "slow down"), "uploaded as much as the relay"),
    ],
)
def test_the_relays_refusals_of_an_upload_are_one_line(
    sotto: Sotto,
    relay: RelayProcess,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    error: RelayError,
    said: str,
) -> None:
    alice, _ = _pair(sotto, relay, tmp_path)
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")

    async def refuse(self: Client, *args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(Client, "send_file", refuse)
    result = sotto("send", "Bob", "--file", str(source), "--profile", alice)
    assert result.exit_code == ExitCode.REFUSED, result.output
    assert said in flat(result.output) and "nothing was sent" in flat(result.output)
