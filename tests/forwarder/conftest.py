"""Fixtures shared by the forwarder's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.forwarder.cadence import CadenceStack
from tests.forwarder.processes import forwarder_process, relay_with_gateway


@pytest.fixture(scope="module")
def cadence_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CadenceStack]:
    """The relay (1-second ticks, recording its operator's view) and a forwarder, as processes on
    127.0.0.1, one pair for each test module that asks."""
    root = tmp_path_factory.mktemp("stack")
    view = root / "view.jsonl"
    with (
        relay_with_gateway(root / "data", root / "relay.log", view) as relay,
        forwarder_process(relay, root / "forwarder.log") as forwarder,
    ):
        yield CadenceStack(relay, forwarder, view)
