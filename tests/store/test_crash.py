"""SIGKILL a writer mid-stream, reopen: every acknowledged step is there whole, no step is there in
part, and SQLite's integrity check passes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sotto.crypto.passphrase import Argon2Params
from sotto.store.model import Conversation
from sotto.store.sqlite import SqliteStore
from tests.store import crash_writer

ROOT = Path(__file__).resolve().parents[2]


def _spawn(path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.crash_writer", str(path), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _acked_lines(proc: subprocess.Popen[str], acked: list[int]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("acked "):
            acked.append(int(line.split()[1]))


def _check(path: Path, acked: list[int]) -> int:
    """Reopen and compare with what was acknowledged; returns the committed step count."""
    store = SqliteStore.open(path, crash_writer.PASSPHRASE)
    try:
        assert store.integrity_check() == "ok"
        with store.transaction() as tx:
            contact = tx.contacts.by_name("peer")
            assert contact is not None
            messages = tx.messages.conversation(Conversation.direct(contact.contact_id), limit=1 << 30)
            message_steps = [int.from_bytes(m.message_id, "big") for m in messages]
            outbox_steps = [int.from_bytes(i.message_id, "big") for i in tx.outbox.all()]
            last_raw = tx.settings.get("last")
            last = 0 if last_raw is None else int.from_bytes(last_raw, "big")
            seen = [
                s
                for s in range(1, last + 2)
                if tx.seen.contains(crash_writer.MAILBOX, crash_writer.envelope_id(s))
            ]
    finally:
        store.close()
    committed = list(range(1, last + 1))
    # Whole steps only: every part of a step is there, or none is.
    assert message_steps == committed
    assert outbox_steps == committed
    assert seen == committed
    # Everything acknowledged survived; at most the step in flight committed without its ack.
    assert set(acked) <= set(committed)
    assert last - (max(acked) if acked else 0) in (0, 1)
    return last


def _new_store(tmp_path: Path) -> Path:
    path = tmp_path / "crash.db"
    SqliteStore.create(path, crash_writer.PASSPHRASE, kdf=Argon2Params.TESTING).close()
    return path


def test_kill_in_the_middle_of_a_transaction(tmp_path: Path) -> None:
    path = _new_store(tmp_path)
    proc = _spawn(path, "suicide", "5")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("acked ")]
    assert acked == [1, 2, 3, 4, 5]
    assert _check(path, acked) == 5
    # The half-written step 6 left no trace: the next writer picks up at 6.
    proc = _spawn(path, "suicide", "7")
    out, _ = proc.communicate(timeout=60)
    acked += [int(line.split()[1]) for line in out.splitlines() if line.startswith("acked ")]
    assert acked == [1, 2, 3, 4, 5, 6, 7]
    assert _check(path, acked) == 7


def test_random_kills_lose_nothing_acknowledged(tmp_path: Path) -> None:
    """Each writer is killed after a random number of acknowledged steps (progress, not time)."""
    path = _new_store(tmp_path)
    chooser = random.Random(20261126)
    acked: list[int] = []
    for _ in range(6):
        proc = _spawn(path, "run")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        reader = threading.Thread(target=_acked_lines, args=(proc, acked))
        reader.start()
        target = len(acked) + chooser.randint(2, 12)
        deadline = time.monotonic() + 60
        while len(acked) < target and proc.poll() is None:
            assert time.monotonic() < deadline, (
                f"the writer acknowledged {len(acked)} steps, waiting for {target}"
            )
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        _check(path, acked)
    assert len(acked) > 20, len(acked)
