"""``sotto audit leakage``: a tiny run end to end, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sotto.cli.audit import app


def test_a_tiny_run_writes_the_report_and_says_the_sizes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["leakage", "--people", "6", "--days", "0.1", "--no-hours", "--out", str(out)]
    args += ["--design", "sotto-default", "--design", "whatsapp-like"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "default mode 6 people × 0.1 days" in result.output
    text = (out / "leakage.md").read_text(encoding="utf-8")
    assert "| sotto-default | measured | 6 × 0.1 |" in text
    assert "| whatsapp-like | modelled, not measured |" in text
    data = json.loads((out / "leakage.json").read_text(encoding="utf-8"))
    assert [d["name"] for d in data["designs"]] == ["sotto-default", "whatsapp-like"]
    assert (out / "accuracy.png").read_bytes().startswith(b"\x89PNG")


def test_an_unknown_design_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["leakage", "--design", "nope", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "unknown design nope" in result.output


def test_jobs_reach_the_study_and_zero_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    class Stop(Exception):
        pass

    def run(config: object, progress: object, *, jobs: int = 1) -> list[object]:
        asked.append(jobs)
        raise Stop

    monkeypatch.setattr("sotto.audit.leakage.run.run", run)
    args = ["leakage", "--quick", "--out", str(tmp_path)]
    assert isinstance(CliRunner().invoke(app, [*args, "--jobs", "2"]).exception, Stop)
    assert asked == [2]
    refused = CliRunner().invoke(app, [*args, "--jobs", "0"])
    assert refused.exit_code != 0 and asked == [2]
