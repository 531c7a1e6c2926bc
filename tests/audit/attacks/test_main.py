"""The command that scores a recorded view."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotto.audit.leakage.attacks.__main__ import main
from sotto.audit.sim.truth import Person, Truth
from sotto.server.observer import FileSink
from tests.audit.attacks.records import T0_US, key_counts, poll


def test_it_prints_the_report_of_a_view_and_its_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = FileSink(tmp_path / "view.jsonl")
    for record in (poll(10, "M"), key_counts(10.01, "acct-a")):
        sink.write(record)
    sink.close()
    truth = Truth(start_us=T0_US, end_us=T0_US + 3_600_000_000, settings={"tick_seconds": 60})
    truth.people = {n: Person(n, f"acct-{n}", "10.0.0.1", True) for n in "ab"}
    truth.contacts = [("a", "b", T0_US)]
    truth.save(tmp_path / "truth.json")
    assert main([str(tmp_path / "view.jsonl"), str(tmp_path / "truth.json")]) == 0
    out = capsys.readouterr().out
    assert "| coincidence |" in out
    assert "2 people, 1.0 simulated hours." in out
