"""The compact view scores exactly as the view the observer wrote: one small cadence study on
the real relay, its records kept as written, compact, and in a file read back a line at a time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from sotto.audit.leakage import designs
from sotto.audit.leakage.attacks import score
from sotto.audit.leakage.attacks.__main__ import main
from sotto.audit.leakage.attacks.presence import presence
from sotto.audit.leakage.attacks.shuffle import shuffle_ids, shuffled
from sotto.audit.leakage.attacks.view import requests
from sotto.audit.leakage.compact import CompactSink, read_compact
from sotto.audit.leakage.run import measure
from sotto.audit.sim.study import StudyResult, StudySettings, run_study
from sotto.server.observer import FileSink, HttpExchange, MemorySink, ViewRecord

PEOPLE, DAYS, TICK_S = 6, 0.5, 300


@dataclass
class _Both:
    """The view as the observer writes it, compact, and to a file, from one study."""

    plain: MemorySink = field(default_factory=MemorySink)
    compact: CompactSink = field(default_factory=CompactSink)
    file: FileSink | None = None

    def write(self, record: ViewRecord) -> None:
        self.plain.write(record)
        self.compact.write(record)
        if self.file is not None:
            self.file.write(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> tuple[_Both, StudyResult, Path]:
    path = tmp_path_factory.mktemp("view") / "view.jsonl"
    both = _Both(file=FileSink(path))
    study = run_study(StudySettings(PEOPLE, DAYS, cadence=True, seed=2, tick_seconds=TICK_S), sink=both)
    both.close()
    study.truth.save(path.parent / "truth.json")
    return both, study, path


def test_compact_records_equal_the_records_and_share_what_repeats(
    views: tuple[_Both, StudyResult, Path],
) -> None:
    both, _, _ = views
    plain, compact = both.plain.records, both.compact.records
    assert len(plain) > 500
    assert compact == plain
    http = [r for r in compact if isinstance(r, HttpExchange)]
    hosts = {id(pair) for r in http for pair in r.headers if pair[0] == "host"}
    assert len(hosts) == 1
    assert len({id(r.path) for r in http}) == len({r.path for r in http})
    plain_hosts = {
        id(pair) for r in plain if isinstance(r, HttpExchange) for pair in r.headers if pair[0] == "host"
    }
    assert len(plain_hosts) > 1  # the observer's own records do not share them


def test_the_attacks_score_the_same_on_the_compact_view(views: tuple[_Both, StudyResult, Path]) -> None:
    both, study, _ = views
    kwargs = {"tick_seconds": TICK_S, "with_hours": True, "message_cuts": 4}
    on_plain = measure(designs.CADENCE, both.plain.records, study.truth, **kwargs)  # type: ignore[arg-type]
    on_compact = measure(designs.CADENCE, both.compact.records, study.truth, **kwargs)  # type: ignore[arg-type]
    assert on_compact == on_plain
    assert on_plain.rows and on_plain.shuffled
    # The negative control read as a stream scores as the shuffled view held whole did.
    held = requests(shuffle_ids(both.plain.records, seed=1))
    for spec in score.attacks(tick_seconds=TICK_S):
        assert on_plain.shuffled[spec.name] == score.score_contacts(spec.run(held), study.truth).top1
    assert on_plain.shuffled["presence (device on)"] == (
        score.presence_auc(presence(held), study.truth) or 0.5
    )
    assert list(shuffled(both.plain.records, seed=1)) == shuffle_ids(both.plain.records, seed=1)


def test_shuffled_records_are_the_records_with_only_ids_addresses_and_credentials_changed(
    views: tuple[_Both, StudyResult, Path],
) -> None:
    records = views[0].plain.records
    kept = {"addr", "path", "headers", "mailboxes", "accounts"}
    for before, after in zip(records, shuffled(records, seed=1), strict=True):
        assert type(after) is type(before)
        changed = {f.name: getattr(after, f.name) for f in fields(before) if f.name in kept}
        assert after == dataclasses.replace(before, **changed)


def test_a_view_file_read_a_line_at_a_time_scores_the_same(
    views: tuple[_Both, StudyResult, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    both, study, path = views
    assert list(read_compact(path)) == both.plain.records
    with path.open("ab") as torn:
        torn.write(b'{"kind": "http", "t_us"')  # a relay killed mid-line
    assert list(read_compact(path)) == both.plain.records
    expected = score.report(both.plain.records, study.truth, tick_seconds=TICK_S, with_hours=False)
    assert (
        main([str(path), str(path.parent / "truth.json"), "--tick-seconds", str(TICK_S), "--no-hours"]) == 0
    )
    assert capsys.readouterr().out == expected.to_markdown()
