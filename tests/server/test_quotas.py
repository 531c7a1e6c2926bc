"""Quotas (relay-protocol §7): per mailbox, per account, and the free-disk floor, in storage
(both backends) and as the relay answers them (507 over HTTP, ``send_failed`` on a WebSocket)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from sotto.cli.app import app as cli_app
from sotto.server import ServerConfig, create_app, runner
from sotto.server.__main__ import add_storage_options
from sotto.server.config import MIB, Quotas, storage_settings
from sotto.server.storage import MemoryStorage, SqliteStorage, Storage
from sotto.server.storage.base import KeyUpload, MailboxId, MessageId, PutOutcome, UploadOutcome
from sotto.wire import b64, frames
from tests.server.conftest import (
    DAY,
    GENEROUS,
    FakeClock,
    Mailbox,
    create_account,
    create_mailbox,
    payload,
    pre_key,
    send,
)
from tests.server.storage.conftest import kyber, mailbox, new_account, one_time, sha

SMALL = Quotas(
    mailbox_envelopes=3,
    mailbox_bytes=1024,
    account_access_tokens=2,
    device_one_time_pre_keys=3,
    device_kyber_pre_keys=2,
    min_free_disk_bytes=0,
)
FULL_DISK = Quotas(min_free_disk_bytes=2**62)
"""A floor no filesystem clears: every growing write is refused."""


def _open(backend: str, tmp_path: Path, quotas: Quotas) -> Storage:
    if backend == "memory":
        return MemoryStorage(quotas=quotas)
    return SqliteStorage.in_dir(tmp_path, quotas=quotas)


async def _close(store: Storage) -> None:
    await store.close()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _put(store: Storage, box_id: bytes, message_id: bytes, size: int = 256) -> PutOutcome:
    async def go() -> PutOutcome:
        result = await store.put_envelope(
            MailboxId(box_id), sha(b"t" * 32), MessageId(message_id), payload(size), DAY
        )
        return result.outcome

    return asyncio.run(go())


def _new_mailbox(store: Storage) -> bytes:
    box = mailbox(token=b"t" * 32)
    asyncio.run(store.create_mailbox(box))
    return box.mailbox_id


# ------------------------------------------------------------------------------ storage
def test_a_mailbox_holds_its_quota_of_envelopes_then_drains(backend: str, tmp_path: Path) -> None:
    store = _open(backend, tmp_path, SMALL)
    try:
        box = _new_mailbox(store)
        ids = [os.urandom(16) for _ in range(4)]
        assert [_put(store, box, i) for i in ids[:3]] == [PutOutcome.STORED] * 3
        assert _put(store, box, ids[3]) is PutOutcome.MAILBOX_FULL
        assert _put(store, box, ids[0]) is PutOutcome.DUPLICATE  # a retry still learns it is stored
        other = _new_mailbox(store)
        assert _put(store, other, ids[3]) is PutOutcome.STORED  # quotas are per mailbox
        assert asyncio.run(store.delete_envelopes([(MailboxId(box), MessageId(ids[0]))])) == 1
        assert _put(store, box, ids[3]) is PutOutcome.STORED
        assert len(asyncio.run(store.pending(MailboxId(box), 10))) == 3
    finally:
        asyncio.run(_close(store))


def test_a_mailbox_holds_its_quota_of_bytes(backend: str, tmp_path: Path) -> None:
    store = _open(backend, tmp_path, SMALL)
    try:
        box = _new_mailbox(store)
        assert _put(store, box, os.urandom(16), 512) is PutOutcome.STORED
        assert _put(store, box, os.urandom(16), 1024) is PutOutcome.MAILBOX_FULL
        assert _put(store, box, os.urandom(16), 512) is PutOutcome.STORED  # exactly the quota
        assert _put(store, box, os.urandom(16), 256) is PutOutcome.MAILBOX_FULL
        asyncio.run(store.delete_mailbox(MailboxId(box)))
        assert _put(store, box, os.urandom(16)) is PutOutcome.NOT_FOUND  # no quota answer for strangers
        again = _new_mailbox(store)
        assert _put(store, again, os.urandom(16), 2048) is PutOutcome.MAILBOX_FULL  # one envelope over
    finally:
        asyncio.run(_close(store))


def test_sqlite_counts_pending_envelopes_again_when_reopened(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path, quotas=SMALL)
    box = _new_mailbox(store)
    for _ in range(3):
        assert _put(store, box, os.urandom(16)) is PutOutcome.STORED
    store.close_sync()
    store = SqliteStorage.in_dir(tmp_path, quotas=SMALL)
    try:
        assert _put(store, box, os.urandom(16)) is PutOutcome.MAILBOX_FULL
        asyncio.run(store.sweep(DAY + 10_000, 30))  # everything expires: the counts follow
        fresh = _new_mailbox(store)
        assert _put(store, fresh, os.urandom(16)) is PutOutcome.STORED
    finally:
        store.close_sync()


def test_an_account_holds_its_quota_of_access_tokens(backend: str, tmp_path: Path) -> None:
    store = _open(backend, tmp_path, SMALL)

    async def go() -> list[bool]:
        acc, _ = await new_account(store)
        a, b, c = (sha(os.urandom(32)) for _ in range(3))
        return [
            await store.add_access_token(acc, a, DAY + 5),
            await store.add_access_token(acc, b, DAY + 5),
            await store.add_access_token(acc, c, DAY + 5),
            await store.add_access_token(acc, a, DAY + 9),  # renewing a held token adds none
            await store.has_access(acc, c, DAY),
        ]

    try:
        assert asyncio.run(go()) == [True, True, False, True, False]
    finally:
        asyncio.run(_close(store))


def test_a_device_holds_its_quota_of_prekeys_of_each_kind(backend: str, tmp_path: Path) -> None:
    store = _open(backend, tmp_path, SMALL)

    async def go() -> list[Any]:
        acc, _ = await new_account(store)
        up = store.upload_keys
        return [
            await up(acc, 1, KeyUpload(one_time_pre_keys=tuple(one_time(n) for n in range(1, 4)))),
            await up(acc, 1, KeyUpload(one_time_pre_keys=(one_time(2), one_time(4)))),
            await up(acc, 1, KeyUpload(one_time_pre_keys=(one_time(3),))),  # held already: fine
            await up(acc, 1, KeyUpload(kyber_pre_keys=(kyber(1), kyber(2), kyber(3)))),
            await up(acc, 1, KeyUpload(kyber_pre_keys=(kyber(1), kyber(2)))),
            await store.key_counts(acc, 1),
        ]

    try:
        stored, over, again, kyber_over, kyber_ok, counts = asyncio.run(go())
    finally:
        asyncio.run(_close(store))
    assert (stored, over, again) == (UploadOutcome.STORED, UploadOutcome.OVER_QUOTA, UploadOutcome.STORED)
    assert (kyber_over, kyber_ok) == (UploadOutcome.OVER_QUOTA, UploadOutcome.STORED)
    assert (counts.one_time, counts.kyber) == (3, 2)  # nothing of a refused upload was written


def test_sqlite_refuses_sends_below_the_disk_floor(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path, quotas=FULL_DISK)
    try:
        assert store.low_on_disk()
        box = _new_mailbox(store)
        assert _put(store, box, os.urandom(16)) is PutOutcome.RELAY_FULL
        assert asyncio.run(store.pending(MailboxId(box), 10)) == []
    finally:
        store.close_sync()
    roomy = SqliteStorage.in_dir(tmp_path, quotas=Quotas(min_free_disk_bytes=0))
    try:
        assert not roomy.low_on_disk()
        assert _put(roomy, box, os.urandom(16)) is PutOutcome.STORED
    finally:
        roomy.close_sync()


# ------------------------------------------------------------------------------ the relay's answers
def _client(tmp_path: Path, backend: str, quotas: Quotas) -> Iterator[TestClient]:
    storage = _open(backend, tmp_path / "data", quotas)
    app = create_app(
        ServerConfig(data_dir=tmp_path / "data", rate_limits=GENEROUS, quotas=quotas),
        storage=storage,
        clock=FakeClock(),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    if isinstance(storage, SqliteStorage):
        storage.close_sync()


@pytest.fixture
def small(tmp_path: Path, backend: str) -> Iterator[TestClient]:
    yield from _client(tmp_path, backend, SMALL)


def _refused(answer: Any, code: str) -> None:
    assert answer.status_code == 507, answer.text
    assert answer.json()["code"] == code


def test_the_relay_answers_507_mailbox_full_over_http_and_the_websocket(small: TestClient) -> None:
    box = create_mailbox(small)
    for _ in range(3):
        assert send(small, box, os.urandom(16), payload()).status_code == 202
    _refused(send(small, box, os.urandom(16), payload()), "mailbox_full")
    assert send(small, Mailbox(), os.urandom(16), payload()).status_code == 404
    message_id = os.urandom(16)
    with small.websocket_connect("/v1/ws") as ws:
        ws.receive_text()  # the challenge
        ws.send_text(frames.encode(frames.Send(box.mailbox_id, box.token, message_id, payload())))
        answer = frames.decode_server_frame(ws.receive_text())
    assert answer == frames.SendFailed(message_id, "mailbox_full")


def test_the_relay_answers_507_quota_exceeded_for_tokens_and_prekeys(small: TestClient) -> None:
    account = create_account(small)
    tokens = [
        small.put(
            "/v1/accounts/me/access-tokens",
            json={"token": b64.encode(os.urandom(32)), "expires_day": DAY + 30},
            headers=account.headers,
        )
        for _ in range(3)
    ]
    assert [t.status_code for t in tokens[:2]] == [204, 204]
    _refused(tokens[2], "quota_exceeded")
    keys = {"one_time_pre_keys": [pre_key(n) for n in range(1, 5)]}
    _refused(small.put("/v1/accounts/me/keys", json=keys, headers=account.headers), "quota_exceeded")
    assert small.get("/v1/accounts/me/keys", headers=account.headers).json()["one_time"] == 0


def test_the_relay_answers_507_relay_full_below_the_disk_floor(tmp_path: Path, backend: str) -> None:
    for client in _client(tmp_path, backend, SMALL):
        box = create_mailbox(client)
        account = create_account(client)
        store = client.app.state.relay.storage  # type: ignore[attr-defined]
        if isinstance(store, MemoryStorage):
            store.disk_low = True
        else:
            store.quotas = FULL_DISK
            store._disk_checked = -float("inf")  # read the free space again after the next write
            create_mailbox(client)
            deadline = time.monotonic() + 30
            while not store.low_on_disk() and time.monotonic() < deadline:
                time.sleep(0.005)
        assert store.low_on_disk()
        _refused(send(client, box, os.urandom(16), payload()), "relay_full")
        _refused(client.post("/v1/mailboxes", json=Mailbox().create_body()), "relay_full")
        body = {"one_time_pre_keys": [pre_key(1)]}
        _refused(client.put("/v1/accounts/me/keys", json=body, headers=account.headers), "relay_full")
        _refused(client.post("/v1/accounts", json=_account_body()), "relay_full")


def _account_body() -> dict[str, Any]:
    return {
        "identity_key": b64.encode(b"\x05" + os.urandom(32)),
        "registration_id": 7,
        "device_secret": b64.encode(os.urandom(32)),
    }


# ------------------------------------------------------------------------------ options
def test_server_options_set_the_quotas_and_the_checkpoint_interval() -> None:
    parser = argparse.ArgumentParser()
    add_storage_options(parser)
    argv = "--mailbox-quota 5 --mailbox-quota-mib 2 --token-quota 3 --prekey-quota 4 --min-free-disk-mib 0"
    config = ServerConfig(
        **storage_settings(parser.parse_args([*argv.split(), "--checkpoint-interval", "1.5"]))
    )
    assert config.quotas == Quotas(5, 2 * MIB, 3, 4, 4, 0)
    assert config.checkpoint_interval_seconds == 1.5
    assert ServerConfig(**storage_settings(parser.parse_args([]))).quotas == Quotas()
    with pytest.raises(ValueError):
        ServerConfig(checkpoint_interval_seconds=5)


def test_sotto_server_passes_its_quota_options_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(runner, "run", lambda **kwargs: seen.update(kwargs))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["server", "--port", str(port), "--data", str(tmp_path), "--mailbox-quota", "7"]
    result = CliRunner().invoke(cli_app, [*argv, "--min-free-disk-mib", "1", "--checkpoint-interval", "3"])
    assert result.exit_code == 0, result.output
    config = ServerConfig(**seen["settings"])
    assert config.quotas == Quotas(mailbox_envelopes=7, min_free_disk_bytes=MIB)
    assert config.checkpoint_interval_seconds == 3
