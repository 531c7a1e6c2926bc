"""Storage failures answer 503 / send_failed / close 1013; a bug answers 500 and logs only its type."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sotto.errors import RelayStorageError
from sotto.server import ServerConfig, create_app
from sotto.server.storage import MemoryStorage
from sotto.server.storage.base import MailboxId, MessageId, PutResult
from sotto.wire import frames
from tests.server.conftest import GENEROUS, FakeClock, Mailbox, create_mailbox, payload, send


class BrokenStorage(MemoryStorage):
    """Memory storage whose writes of envelopes (and, on demand, reads) fail."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.fail_pending = False

    def submit_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> asyncio.Future[PutResult]:
        failed: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        failed.set_exception(self.error)
        return failed

    async def pending(
        self,
        mailbox_id: MailboxId,
        limit: int,
        skip: frozenset[MessageId] = frozenset(),
        max_bytes: int | None = None,
    ) -> Any:
        if self.fail_pending:
            raise self.error
        return await super().pending(mailbox_id, limit, skip, max_bytes)


def _client(storage: MemoryStorage) -> Iterator[TestClient]:
    app = create_app(ServerConfig(rate_limits=GENEROUS), storage=storage, clock=FakeClock())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def unavailable() -> Iterator[tuple[TestClient, BrokenStorage]]:
    storage = BrokenStorage(RelayStorageError("database error: OperationalError"))
    for client in _client(storage):
        yield client, storage


def test_storage_failure_is_503(unavailable: tuple[TestClient, BrokenStorage]) -> None:
    client, _ = unavailable
    box = create_mailbox(client)
    response = send(client, box, os.urandom(16), payload())
    assert response.status_code == 503 and response.json()["code"] == "unavailable"


def test_storage_failure_on_ws_send_is_send_failed(unavailable: tuple[TestClient, BrokenStorage]) -> None:
    client, _ = unavailable
    box = create_mailbox(client)
    message_id = os.urandom(16)
    with client.websocket_connect("/v1/ws") as ws:
        ws.receive_text()
        ws.send_text(frames.encode(frames.Send(box.mailbox_id, box.token, message_id, payload())))
        assert frames.decode_server_frame(ws.receive_text()) == frames.SendFailed(message_id, "unavailable")


def test_storage_failure_while_draining_closes_1013(unavailable: tuple[TestClient, BrokenStorage]) -> None:
    client, storage = unavailable
    box = create_mailbox(client)
    storage.fail_pending = True
    with client.websocket_connect("/v1/ws") as ws:
        challenge = frames.decode_server_frame(ws.receive_text())
        assert isinstance(challenge, frames.Challenge)
        ws.send_text(frames.encode(frames.Subscribe((_proof(box, challenge.nonce),))))
        assert isinstance(frames.decode_server_frame(ws.receive_text()), frames.Subscribed)
        # Every close is announced by an error frame (relay-protocol §4), then the close itself.
        error = frames.decode_server_frame(ws.receive_text())
        assert isinstance(error, frames.Error)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1013


def _proof(box: Mailbox, nonce: bytes) -> frames.MailboxProof:
    from sotto.wire import auth

    return frames.MailboxProof(box.mailbox_id, box.key.sign(auth.drain_message(nonce, box.mailbox_id)))


def test_a_bug_is_500_and_logs_only_its_type(caplog: pytest.LogCaptureFixture) -> None:
    storage = BrokenStorage(RuntimeError("secret-detail-7f3a"))
    with caplog.at_level(logging.DEBUG):
        for client in _client(storage):
            box = create_mailbox(client)
            response = send(client, box, os.urandom(16), payload())
            assert response.status_code == 500
            assert response.json() == {"code": "internal", "message": "internal error"}
            assert "secret-detail" not in response.text
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "RuntimeError" in logged
    assert "secret-detail" not in logged


def test_a_bug_on_a_ws_send_is_send_failed_and_logs_only_its_type(caplog: pytest.LogCaptureFixture) -> None:
    storage = BrokenStorage(RuntimeError("secret-detail-7f3a"))
    message_id = os.urandom(16)
    with caplog.at_level(logging.DEBUG):
        for client in _client(storage):
            box = create_mailbox(client)
            with client.websocket_connect("/v1/ws") as ws:
                ws.receive_text()
                ws.send_text(frames.encode(frames.Send(box.mailbox_id, box.token, message_id, payload())))
                answer = frames.decode_server_frame(ws.receive_text())
    assert answer == frames.SendFailed(message_id, "unavailable")
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "RuntimeError" in logged
    assert "secret-detail" not in logged
