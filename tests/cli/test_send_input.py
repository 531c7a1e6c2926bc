"""``sotto send`` and ``sotto group send`` take the text as words, from standard input (``-``) or
from a file (``--text-file``), and refuse a text longer than a message holds before anything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sotto.cli.failures import ExitCode
from sotto.client.content import MAX_TEXT_BYTES
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import Sotto, flat, make_profile

FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467"


@pytest.fixture(scope="module")
def pair(relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Alice and Bob, contacts of each other."""
    sotto = Sotto()
    root = tmp_path_factory.mktemp("send-input")
    alice = str(make_profile(sotto, relay, root / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, root / "bob", "Bob"))
    link = re.search(r"sotto://invite\?[^\s']+", sotto("invite", "--no-qr", "--profile", alice).output)
    assert link is not None
    assert sotto("accept", link.group(0), "--name", "Alice", "--profile", bob).exit_code == 0
    assert sotto("listen", "--once", "--profile", alice).exit_code == 0
    assert sotto("listen", "--once", "--profile", bob).exit_code == 0
    return alice, bob


def test_text_from_standard_input_and_from_a_file(
    sotto: Sotto, pair: tuple[str, str], tmp_path: Path
) -> None:
    alice, bob = pair
    piped = sotto("send", "Bob", "-", "--profile", alice, input=f"first line\nsecond {FAMILY}\n")
    assert piped.exit_code == 0, piped.output
    note = tmp_path / "note.txt"
    note.write_text("from a file: می\u200cخواهم\n", encoding="utf-8")
    filed = sotto("send", "Bob", "--text-file", str(note), "--profile", alice)
    assert filed.exit_code == 0, filed.output
    heard = sotto("listen", "--once", "--profile", bob).output
    assert f"Alice: first line\nsecond {FAMILY}\n" in heard  # lines kept, the final newline dropped
    assert "Alice: from a file: می\u200cخواهم\n" in heard


def test_group_send_reads_standard_input(sotto: Sotto, pair: tuple[str, str]) -> None:
    alice, bob = pair
    assert sotto("group", "create", "Piped", "Bob", "--profile", alice).exit_code == 0
    sent = sotto("group", "send", "Piped", "-", "--profile", alice, input="to the group\n")
    assert sent.exit_code == 0, sent.output
    assert "to the group" in sotto("listen", "--once", "--profile", bob).output


def test_a_text_over_the_limit_is_refused_with_the_limit(
    sotto: Sotto, pair: tuple[str, str], tmp_path: Path
) -> None:
    alice, bob = pair
    at_limit = "é" * (MAX_TEXT_BYTES // 2)  # two bytes each: exactly the limit
    assert sotto("send", "Bob", "-", "--profile", alice, input=at_limit).exit_code == 0
    over = tmp_path / "long.txt"
    over.write_text(at_limit + "!", encoding="utf-8")
    refused = sotto("send", "Bob", "--text-file", str(over), "--profile", alice)
    assert refused.exit_code == ExitCode.USAGE
    assert "30,001 bytes" in flat(refused.output) and "at most 30,000" in flat(refused.output)
    assert len(refused.output.strip().splitlines()) == 2  # the error and its hint
    # Refused before the store is opened: no profile is needed to learn it.
    nowhere = sotto(
        "send", "Bob", "-", "--profile", str(tmp_path / "nowhere"), input="x" * (MAX_TEXT_BYTES + 1)
    )
    assert nowhere.exit_code == ExitCode.USAGE and "at most 30,000" in flat(nowhere.output)
    heard = sotto("listen", "--once", "--profile", bob).output
    assert at_limit in heard and "!" not in heard


@pytest.mark.parametrize(
    ("args", "data", "expected"),
    [
        (["-"], b"\n\n", "nothing to send"),
        (["--text-file", "missing.txt"], None, "cannot read"),
        (["--text-file", "latin1.txt"], b"caf\xe9\n", "is not UTF-8 text"),
        (["words", "--text-file", "latin1.txt"], b"x", "not both"),
        ([], None, "nothing to send"),
    ],
)
def test_bad_input_is_one_clear_line(
    sotto: Sotto, tmp_path: Path, args: list[str], data: bytes | None, expected: str
) -> None:
    if data is not None and "-" not in args:
        (tmp_path / "latin1.txt").write_bytes(data)
    args = [str(tmp_path / a) if a.endswith(".txt") else a for a in args]
    stdin = data.decode("latin-1") if data is not None and "-" in args else None
    result = sotto("send", "Bob", *args, "--profile", str(tmp_path / "profile"), input=stdin)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert expected in flat(result.output) and "Traceback" not in result.output
