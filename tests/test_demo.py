"""The README's main command: the real demo runs, shows what it claims, and leaves nothing behind.

Also the demo's evidence search on its own, with positive controls: a plaintext, an account id
outside its own rows, and a packed client address planted in relay-shaped data are all found.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from sotto.demo import evidence, protocol
from sotto.server import manifest
from sotto.server.storage.schema import TABLES

CHECK = "plaintexts found in server data: 0, sender ids found: 0, client IPs found: 0"


def _demo(tmp_path: Path, *, interruptible: bool = False) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sotto.demo"]
    if interruptible:
        # A shell may start background jobs with Ctrl-C ignored, and Python then leaves it ignored:
        # restore the handler a terminal user has, then run the module exactly as -m does.
        command = [
            sys.executable,
            "-c",
            "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "runpy.run_module('sotto.demo', run_name='__main__', alter_sys=True)",
        ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "160", "PYTHONUNBUFFERED": "1"},
    )


def test_the_demo_runs_end_to_end_and_finds_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    process = _demo(tmp_path)
    out, _ = process.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, out
    assert elapsed < 110, f"the demo took {elapsed:.1f} s"  # a hang, not a speed target
    lines = [line.strip() for line in out.splitlines()]

    # 1:1 with typing and both kinds of receipt, as each client reported them.
    assert "Bob ← Alice: “Lunch at 12:30?”" in lines
    assert "Alice ← Bob: “Yes! The usual place? I found a new dumpling bar.”" in lines
    assert "Alice sees Bob typing…" in lines
    assert any(line.startswith("Alice sees ✓✓ delivered") for line in lines)
    assert any(line.startswith("Alice sees ✓✓ read") for line in lines)
    # The group: each text reaches the two others.
    for sender, text in (
        ("Alice", "Team lunch on Friday, I booked a table for three."),
        ("Carol", "Wait, how do you know it is my birthday?"),
    ):
        readers = [line for line in lines if line.endswith(f"← {sender} in #Lunch club: “{text}”")]
        assert len(readers) == 2, readers
    # Safety numbers: the same 60 digits on both sides, and the scan matches.
    numbers = [
        line.split("sees", 1)[1].split() for line in lines if re.match(r"^(Alice|Bob)\s+sees \d{5} ", line)
    ]
    assert len(numbers) == 2 and numbers[0] == numbers[1] and len(numbers[0]) == 12
    assert "Alice scans Bob's code: match, Bob verified" in lines
    # The message left for offline Carol waits on the relay, then arrives.
    assert "Carol ← Alice: “Happy birthday, Carol! Cake is on Bob.”" in lines
    # Exports of all three, and every table of the relay's schema dumped with its row count.
    assert sum(line.endswith("'s export") for line in lines) == 3
    dumped = {m.group(1) for line in lines if (m := re.match(r"^(\w+): \d+ rows?", line))}
    held = {table.name for table in manifest.TABLES}
    assert held <= dumped, held - dumped
    assert re.search(r"^envelopes: [1-9]\d* rows?", out, re.MULTILINE), "the waiting envelope is shown"
    # The check, and what it searched.
    assert "SIGTERM: stopped cleanly." in lines
    assert any(line.startswith("searched running: relay.db-wal") for line in lines)
    assert any(line.startswith("searched relay.log") for line in lines)
    assert CHECK in lines
    # Nothing left behind: no temporary directory, no relay process.
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_the_relay_and_removes_the_files(tmp_path: Path) -> None:
    process = _demo(tmp_path, interruptible=True)
    assert process.stdout is not None
    relays: list[psutil.Process] = []
    for line in process.stdout:
        if line.startswith("2. Three people"):
            relays = psutil.Process(process.pid).children(recursive=True)
            process.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail("the demo never reached its second step")
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    assert "Interrupted: the relay was stopped and the temporary files removed." in rest
    assert relays, "the relay runs as a child process"
    _, alive = psutil.wait_procs(relays, timeout=10)
    assert alive == []
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the search itself
ALICE, BOB = bytes(range(16)), bytes(range(100, 116))


@pytest.fixture
def relay_db(tmp_path: Path) -> Path:
    """A database with the relay's schema: Alice's account row, and a mailbox row given as argument."""
    db = tmp_path / evidence.DB_FILE
    with sqlite3.connect(db) as conn:
        for statement in TABLES:
            conn.execute(statement)
        conn.execute("INSERT INTO accounts VALUES (?, ?, NULL, 1)", (ALICE, b"\x05" + bytes(32)))
    return db


def _mailbox(db: Path, auth_key: bytes, payload: bytes = bytes(256)) -> None:
    mailbox = os.urandom(16)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO mailboxes VALUES (?, ?, ?, 30, 31)", (mailbox, auth_key, bytes(32)))
        conn.execute("INSERT INTO envelopes VALUES (?, 1, ?, 1, 0, ?)", (mailbox, os.urandom(16), payload))


def _findings(db: Path, texts: list[str]) -> evidence.Findings:
    needles = (
        evidence.plaintext_needles(texts)
        + evidence.sender_needles([ALICE, BOB])
        + evidence.ip_needles(["127.0.0.1"])
    )
    files = evidence.read_files(db.parent)
    return evidence.merge(
        evidence.search(files, needles, pages=evidence.page_owners(db)),
        evidence.search_rows(evidence.dump_tables(db), needles),
    )


def test_clean_data_counts_zero_and_own_rows_are_allowed(relay_db: Path) -> None:
    _mailbox(relay_db, os.urandom(32))
    found = _findings(relay_db, ["a secret text"])
    assert (found.count("plaintext"), found.count("sender"), found.count("ip")) == (0, 0, 0)
    assert found.allowed("sender") >= 2  # Alice's id in her accounts row: the file and the row
    assert found.allowed_tables() == ["accounts"]


def test_a_sender_id_in_a_mailbox_row_is_found(relay_db: Path) -> None:
    _mailbox(relay_db, BOB + bytes(16))
    found = _findings(relay_db, [])
    assert found.count("sender") >= 2  # in the mailboxes page, and in the row's auth_key cell
    assert any("mailboxes" in hit.where for hit in found.hits if not hit.allowed)


def test_plaintexts_and_addresses_are_found_in_any_form(relay_db: Path) -> None:
    _mailbox(relay_db, os.urandom(32), payload="a secret text".encode("utf-16-le") + b"::ffff:127.0.0.1")
    found = _findings(relay_db, ["a secret text"])
    assert found.count("plaintext") >= 1
    assert found.count("ip") >= 1


def _ip_hits(db: Path) -> list[str]:
    return [hit.where for hit in _findings(db, []).hits if hit.needle.kind == "ip" and not hit.allowed]


def test_a_packed_address_in_a_short_value_is_found(relay_db: Path) -> None:
    _mailbox(relay_db, os.urandom(8) + bytes([1, 0, 0, 127]) + os.urandom(20))
    assert _ip_hits(relay_db) == ["row of mailboxes.auth_key"]


def test_an_address_as_an_integer_is_found(relay_db: Path) -> None:
    _mailbox(relay_db, os.urandom(32))
    with sqlite3.connect(relay_db) as conn:
        conn.execute("UPDATE mailboxes SET ttl_days = 2130706433")
    assert _ip_hits(relay_db) == ["row of mailboxes.ttl_days"]


def test_other_files_are_searched_as_text() -> None:
    log = {"relay.log": b"INFO something 2130706433\n"}
    assert evidence.search(log, evidence.ip_needles(["127.0.0.1"])).count("ip") == 1
    uuid_form = {"relay.log": b"sender 00010203-0405-0607-0809-0a0b0c0d0e0f"}
    assert evidence.search(uuid_form, evidence.sender_needles([ALICE])).count("sender") == 1


# ---------------------------------------------------------------------------- the protocol walk-through
def test_the_protocol_walk_through_delivers_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    protocol.run()
    out = capsys.readouterr().out
    assert out.count("Bob reads from Alice") == 5  # four 1:1 messages (one batch reordered) and the group one
    assert "Alice reads from Bob: 'Hi Alice! Yes, 12:30 at the usual place.'" in out
    assert out.count("reads from Alice: 'Team: the demo works, drinks on me.'") == 2
    sees = [line.split("sees", 1)[1] for line in out.splitlines() if " sees " in line]
    assert len(sees) == 2 and sees[0] == sees[1] and len(sees[0].split()) == 12
