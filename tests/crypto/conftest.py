"""Print how many Wycheproof vectors each test ran, so a shrinking run is visible in CI logs.

Tests record their counts in :data:`RAN` of the worker they run in; each test's counts travel to
the process that prints the summary on its report (``user_properties``), so the summary is whole
when the suite runs on several workers too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vectors.wycheproof import RAN

PROPERTY = "wycheproof"


@pytest.fixture(autouse=True)
def _carry_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    before = dict(RAN)
    yield
    for test, line in RAN.items():
        if before.get(test) != line:
            request.node.user_properties.append((PROPERTY, (test, line)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == PROPERTY and isinstance(value, (tuple, list)) and len(value) == 2:
            RAN[str(value[0])] = str(value[1])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RAN:
        return
    terminalreporter.section("Wycheproof vectors")
    for test, line in sorted(RAN.items()):
        terminalreporter.write_line(f"{test}: {line}")
