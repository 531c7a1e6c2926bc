"""A real relay for the whole client test session (see :mod:`tests.client.running_relay`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sotto.client.runtime import Engine
from tests.client.running_relay import free_port, running_relay


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_relay(tmp_path_factory.mktemp("relay"), free_port()) as url:
        yield url


@pytest.fixture(autouse=True)
def no_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The waits between an action's requests (an invite's mailbox and token, a rotation's
    creations) are seconds of wall time on the real clock: none here; the tests of the spread
    itself (``tests/client/test_chores.py``) run on virtual time with the real waits."""
    monkeypatch.setattr(Engine, "spread_s", (0.0, 0.0))
