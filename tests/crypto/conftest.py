"""Print how many Wycheproof vectors each test ran, so a shrinking run is visible in CI logs."""

from __future__ import annotations

import pytest

from tests.vectors.wycheproof import RAN


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RAN:
        return
    terminalreporter.section("Wycheproof vectors")
    for test, line in sorted(RAN.items()):
        terminalreporter.write_line(f"{test}: {line}")
