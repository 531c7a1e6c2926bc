"""The relay on PostgreSQL: the data-held export test on an app that opens ``store`` itself, the
``--store`` option, and two relay processes sharing one database."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.testclient import TestClient

from sotto.demo.relay import RelayProcess
from sotto.server import ServerConfig, create_app
from sotto.server.auth import ReplayGuard
from sotto.server.config import storage_settings
from sotto.server.storage import PostgresStorage
from tests.server import test_manifest
from tests.server.conftest import GENEROUS, FakeClock, Relay, create_mailbox, payload, send
from tests.server.storage.conftest import postgres_database


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_database() as dsn:
        yield dsn


def test_exports_cover_every_manifest_column_on_postgresql(dsn: str, tmp_path: Path) -> None:
    clock = FakeClock()
    app = create_app(ServerConfig(data_dir=tmp_path, store=dsn, rate_limits=GENEROUS), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        relay = Relay(client, clock, client.app.state.relay.storage)  # type: ignore[attr-defined]
        assert isinstance(relay.storage, PostgresStorage)  # opened from config.store
        relay.ctx.replay_guard = ReplayGuard(clock.now() - 3_600)
        test_manifest.test_exports_cover_every_manifest_column(relay)


def test_store_is_a_postgresql_url() -> None:
    with pytest.raises(ValueError, match="postgresql"):
        ServerConfig(store="sqlite:///relay.db")
    options = SimpleNamespace(
        store="postgresql://relay@db/sotto",
        mailbox_quota=1,
        mailbox_quota_mib=1,
        token_quota=1,
        prekey_quota=1,
        min_free_disk_mib=0,
        checkpoint_interval=1.0,
    )
    assert ServerConfig(**storage_settings(options)).store == "postgresql://relay@db/sotto"
    del options.store
    assert ServerConfig(**storage_settings(options)).store is None


def test_two_relays_share_one_database(dsn: str, tmp_path: Path) -> None:
    """A mailbox made through one relay takes a message sent through the other (one by
    ``python -m sotto.server``, one by ``sotto server``); both use the same server key."""
    first = RelayProcess(tmp_path, tmp_path / "a.log", command=("-m", "sotto.server", "--store", dsn))
    second = RelayProcess(tmp_path, tmp_path / "b.log", command=("-m", "sotto.cli", "server", "--store", dsn))
    try:
        first.start()
        second.start()
        with (
            httpx.Client(base_url=first.url, timeout=10) as a,
            httpx.Client(base_url=second.url, timeout=10) as b,
        ):
            mailbox = create_mailbox(a)  # type: ignore[arg-type]
            sent = send(b, mailbox, os.urandom(16), payload())  # type: ignore[arg-type]
            assert sent.status_code < 300, sent.text
            path = f"/v1/mailboxes/{mailbox.id}/export"
            export = a.get(path, headers=mailbox.auth_header("GET", path, int(time.time()))).json()
            assert len(export["tables"]["envelopes"]) == 1
    finally:
        second.stop()
        first.stop()
    assert not (tmp_path / "relay.db").exists()  # nothing went to SQLite
