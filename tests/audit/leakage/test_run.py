"""The benchmark's designs in processes of their own (``run(..., jobs=2)``) give the same results,
in the same order, as in one process: only wall and CPU times differ. The relay runs in memory
here (``files=False``): the attacks on its files move by a few hundredths between any two runs,
in one process or not, as its files differ from run to run."""

from __future__ import annotations

import dataclasses

import pytest

from sotto.audit.leakage import designs
from sotto.audit.leakage.designs import Design
from sotto.audit.leakage.run import Config, DesignResult, run

CONFIG = Config(
    designs=(designs.CADENCE, designs.DEFAULT, designs.WHATSAPP),
    people=6,
    days=0.25,
    cadence_people=4,
    cadence_days=0.25,
    files=False,
)


def _untimed(result: DesignResult) -> DesignResult:
    return dataclasses.replace(result, wall_s=0.0, cpu_s=0.0)


@pytest.fixture(scope="module")
def serial() -> list[DesignResult]:
    return run(CONFIG)


@pytest.fixture(scope="module")
def parallel() -> tuple[list[DesignResult], list[str]]:
    lines: list[str] = []
    return run(CONFIG, lines.append, jobs=2), lines


def test_the_studies_measured_something(serial: list[DesignResult]) -> None:
    assert [r.name for r in serial] == [d.name for d in CONFIG.designs]
    cadence, default, whatsapp = serial
    assert cadence.measured and default.measured and not whatsapp.measured
    assert cadence.rows and default.rows and whatsapp.rows
    assert default.texts > 0 and cadence.view_records > 0


def test_in_two_processes_the_results_are_the_same_in_config_order(
    serial: list[DesignResult], parallel: tuple[list[DesignResult], list[str]]
) -> None:
    results, _ = parallel
    assert [r.name for r in results] == [d.name for d in CONFIG.designs]
    assert [_untimed(r) for r in results] == [_untimed(r) for r in serial]
    assert all(r.wall_s > 0 and r.cpu_s > 0 for r in results if r.measured)


def test_workers_progress_reaches_the_caller_by_design_with_peak_memory(
    parallel: tuple[list[DesignResult], list[str]],
) -> None:
    _, lines = parallel
    assert lines[0] == "2 studies in 2 processes"
    for design in (designs.CADENCE, designs.DEFAULT):
        mine = [line for line in lines if line.lstrip().startswith(f"{design.name}:")]
        assert any("simulated" in line for line in mine), design.name
        peaks = [line for line in mine if "peak RSS" in line]
        assert len(peaks) == 2, (design.name, peaks)  # after the study and after the scores
        assert all(int(line.split("peak RSS ")[1].split(" MB")[0]) > 10 for line in peaks)
    assert "whatsapp-like: modelled from the sotto-default study's truth" in lines


def test_a_failing_study_fails_the_run() -> None:
    broken = Design("broken", "a habit that does not exist", habits={"no_such_habit": 1.0})
    config = dataclasses.replace(CONFIG, designs=(designs.CADENCE, broken), cadence_days=0.05)
    with pytest.raises(TypeError):
        run(config, jobs=2)
