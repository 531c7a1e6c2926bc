"""The relay's SQLite storage on a simulation's loop: a study leaves the files a relay would."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from sotto.audit.leakage import designs, report, run
from sotto.audit.leakage.attacks import dump
from sotto.audit.leakage.attacks.score import FILE_ATTACKS
from sotto.audit.leakage.relaydb import InlineSqliteStorage
from sotto.audit.leakage.run import measure
from sotto.audit.sim.study import RelayFiles, StudySettings, run_study
from sotto.server.storage.base import AccountId, MailboxId
from sotto.wire import b64


def test_a_study_on_sqlite_leaves_snapshots_whose_dump_holds_the_live_mailboxes(tmp_path: Path) -> None:
    threads = threading.active_count()
    opened: list[InlineSqliteStorage] = []

    def storage(clock: Any) -> InlineSqliteStorage:
        opened.append(InlineSqliteStorage.in_dir_inline(tmp_path, now=clock.now))
        return opened[-1]

    study = run_study(StudySettings(6, 0.5, seed=2), relay=RelayFiles(tmp_path, storage, 3 * 3600))
    assert threading.active_count() == threads  # no writer thread: every operation ran inline
    (store,) = opened
    assert store.commits > 0
    assert store.checkpoints > 0  # on the simulation's clock, as the writer would
    assert len(study.snapshots) == 4  # every 3 hours of 12, and one at the end
    moments = [s.t_us for s in study.snapshots]
    assert moments == sorted(moments)
    last = dump.read(study.snapshots[-1])
    assert last is not None
    live = {life.mailbox for life in study.truth.mailboxes if life.retired_us is None}
    held = {b64.encode(raw) for raw in last.mailboxes}
    assert live <= held  # every mailbox in use is in the file (invites' may linger until swept)
    assert len(last.tables["accounts"].rows) == 6


def test_the_files_of_a_study_on_sqlite_are_attacked_and_their_shuffled_answers_score_at_chance(
    tmp_path: Path,
) -> None:
    def storage(clock: Any) -> InlineSqliteStorage:
        return InlineSqliteStorage.in_dir_inline(tmp_path, now=clock.now)

    study = run_study(StudySettings(10, 1.0, seed=4), relay=RelayFiles(tmp_path, storage, 6 * 3600))
    result = measure(
        designs.DEFAULT,
        study.view,
        study.truth,
        tick_seconds=300,
        with_hours=False,
        snapshots=study.snapshots,
    )
    rows = {row.attack: row for row in result.rows if row.files}
    assert set(rows) == set(FILE_ATTACKS)
    assert result.files["snapshots"] == 4  # at 6, 12 and 18 hours, and at the end
    assert result.files["acked_seen"] > 0  # the tags it looks for
    for name in FILE_ATTACKS:
        chance = max(rows[name].chance_people, rows[name].chance_mailboxes)
        assert result.shuffled[name] <= chance + 0.25, (name, result.shuffled[name])
    assert "The relay's files" in report.markdown([result])


def test_an_inline_operation_settles_on_the_loop_without_waking_it_through_its_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[object] = []

    async def main() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        storage = InlineSqliteStorage.in_dir_inline(tmp_path, now=loop.time)
        queue = loop.call_soon

        def through_the_pipe(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
            woken.append(callback)
            return queue(callback, *args)

        monkeypatch.setattr(loop, "call_soon_threadsafe", through_the_pipe)
        try:
            missing = await storage.get_account(AccountId(bytes(16)))
            mailboxes = await storage.get_mailboxes([MailboxId(bytes(16))])
        finally:
            monkeypatch.undo()
            await storage.close()
        return missing, mailboxes

    missing, mailboxes = asyncio.run(main())
    assert missing is None
    assert mailboxes is not None
    assert woken == []


def test_studies_keep_the_relay_files_in_memory_where_the_system_has_a_file_system_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = tmp_path / "shm"
    monkeypatch.setattr(run, "MEMORY_FS", str(memory))
    assert run.scratch_dir() is None  # not there: the system's temporary directory
    memory.mkdir()
    assert run.scratch_dir() == str(memory)
    (tmp_path / "file").touch()
    monkeypatch.setattr(run, "MEMORY_FS", str(tmp_path / "file"))
    assert run.scratch_dir() is None  # not a directory
