"""Every store test that takes ``store`` runs against each backend: the reference and SQLite."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, seeded_rng
from sotto.store.interfaces import Store
from sotto.store.memory import MemoryStore
from sotto.store.sqlite import SqliteStore

PASSPHRASE = "test passphrase"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    else:
        backend = SqliteStore.create(tmp_path / "store.db", PASSPHRASE, kdf=Argon2Params.TESTING)
    yield backend
    backend.close()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> Rng:
    return seeded_rng(zlib.crc32(request.node.name.encode()))
