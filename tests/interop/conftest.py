"""Interop fixtures: one libsignal oracle process for the whole test session.

Every test under tests/interop is marked ``interop``. A missing Node or npm package makes the
fixture raise, so those tests error instead of silently skipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.oracle import EXPECTED_VERSION, Oracle, OracleError

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    with Oracle() as o:
        version = o.call("hello")["version"]
        if version != EXPECTED_VERSION:
            raise OracleError(f"oracle runs libsignal {version}, tests are pinned to {EXPECTED_VERSION}")
        yield o
