"""The relay's SQLite storage on a simulation's loop: a study leaves the files a relay would."""

from __future__ import annotations

import threading
from pathlib import Path

from sotto.audit.leakage.attacks import dump
from sotto.audit.leakage.relaydb import InlineSqliteStorage
from sotto.audit.sim.study import RelayFiles, StudySettings, run_study
from sotto.wire import b64


def test_a_study_on_sqlite_leaves_snapshots_whose_dump_holds_the_live_mailboxes(tmp_path: Path) -> None:
    threads = threading.active_count()
    opened: list[InlineSqliteStorage] = []

    def storage(clock: object) -> InlineSqliteStorage:
        opened.append(InlineSqliteStorage.in_dir_inline(tmp_path, now=clock.now))  # type: ignore[attr-defined]
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
