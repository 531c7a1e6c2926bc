"""A real relay for the whole client test session (see :mod:`tests.client.running_relay`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.running_relay import free_port, running_relay


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_relay(tmp_path_factory.mktemp("relay"), free_port()) as url:
        yield url
