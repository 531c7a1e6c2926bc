"""SQLite durability: restarts keep pending envelopes, acks and TTLs delete for good, group commit."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from sotto.server import ServerConfig, create_app
from sotto.server.storage import SqliteStorage
from sotto.server.storage.base import MailboxId, MessageId, PutOutcome, PutResult
from sotto.wire import b64, frames
from tests.server.conftest import GENEROUS, FakeClock, Mailbox, create_mailbox, payload, send
from tests.server.storage.conftest import DAY, mailbox, sha


def _app(data: Path, clock: FakeClock, **config: object) -> TestClient:
    app = create_app(ServerConfig(data_dir=data, rate_limits=GENEROUS, **config), clock=clock)  # type: ignore[arg-type]
    return TestClient(app)


def _drain(client: TestClient, box: Mailbox, n: int, ack: bool) -> list[frames.Envelope]:
    with client.websocket_connect("/v1/ws") as ws:
        challenge = frames.decode_server_frame(ws.receive_text())
        assert isinstance(challenge, frames.Challenge)
        proof = box.drain_proof(challenge.nonce)
        ws.send_text(
            frames.encode(frames.Subscribe((frames.MailboxProof(box.mailbox_id, b64.decode(proof["sig"])),)))
        )
        assert isinstance(frames.decode_server_frame(ws.receive_text()), frames.Subscribed)
        got = []
        for _ in range(n):
            frame = frames.decode_server_frame(ws.receive_text())
            assert isinstance(frame, frames.Envelope)
            got.append(frame)
        if ack:
            ws.send_text(frames.encode(frames.Ack(tuple(frames.EnvelopeRef(e.mailbox, e.id) for e in got))))
            ws.send_text(
                frames.encode(frames.Send(box.mailbox_id, os.urandom(32), os.urandom(16), payload()))
            )
            frames.decode_server_frame(ws.receive_text())  # the acks before it are done
    return got


def test_pending_envelopes_survive_a_restart(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", FakeClock()
    ids = [os.urandom(16) for _ in range(5)]
    with _app(data, clock) as client:
        box = create_mailbox(client)
        for i, message_id in enumerate(ids):
            assert send(client, box, message_id, payload(256, i)).status_code == 202
        assert [e.id for e in _drain(client, box, 2, ack=True)] == ids[:2]
    with _app(data, clock) as client:  # a new process on the same directory
        got = _drain(client, box, 3, ack=False)
        assert [e.id for e in got] == ids[2:]
        assert [e.payload for e in got] == [payload(256, i) for i in range(2, 5)]
        # A retry of a pending id after the restart is still a duplicate.
        assert send(client, box, ids[4], payload()).json() == {"duplicate": True}


def test_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _app(data, FakeClock()) as client:
        assert client.get("/v1/health").status_code == 200
    for name in ("server.key", "relay.db"):
        mode = stat.S_IMODE((data / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    key = (data / "server.key").read_bytes()
    assert len(key) == 32
    with _app(data, FakeClock()):
        pass
    assert (data / "server.key").read_bytes() == key  # kept across restarts


def test_acknowledged_payloads_leave_no_trace_in_the_files(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", FakeClock()
    canary = (b"CANARY-PAYLOAD-" * 40)[:512]
    with _app(data, clock) as client:
        box = create_mailbox(client)
        send(client, box, os.urandom(16), canary)
        _drain(client, box, 1, ack=True)
    blobs = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert b"CANARY-PAYLOAD" not in blobs


def test_ttl_sweep_deletes_expired_envelopes(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", FakeClock()
    with _app(data, clock, sweep_interval_seconds=0.02) as client:
        box = create_mailbox(client, Mailbox(ttl_days=90))
        old = os.urandom(16)
        send(client, box, old, payload())
        clock.advance_days(29)
        fresh = os.urandom(16)
        send(client, box, fresh, payload())
        clock.advance_days(1)  # the first envelope's expiry day
        path = f"/v1/mailboxes/{box.id}/export"
        deadline = time.monotonic() + 5
        while True:
            rows = client.get(path, headers=box.auth_header("GET", path, int(clock.now()))).json()["tables"][
                "envelopes"
            ]
            if len(rows) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert [r["received_day"] for r in rows] == [DAY + 29]


def test_group_commit_shares_transactions(tmp_path: Path) -> None:
    store = SqliteStorage.in_dir(tmp_path)

    async def body() -> list[PutOutcome]:
        box = mailbox(token=b"t" * 32)
        await store.create_mailbox(box)
        before = store.commits
        results = await asyncio.gather(
            *(
                store.put_envelope(box.mailbox_id, sha(b"t" * 32), MessageId(os.urandom(16)), payload(), DAY)
                for _ in range(300)
            )
        )
        assert store.commits - before < 300
        assert len(await store.pending(MailboxId(box.mailbox_id), 1000)) == 300
        return [r.outcome for r in results]

    try:
        assert set(asyncio.run(body())) == {PutOutcome.STORED}
    finally:
        store.close_sync()


def test_a_send_that_fails_in_a_shared_commit_fails_alone(tmp_path: Path) -> None:
    """Sends run without a savepoint of their own: one whose insert fails must still leave the
    others of its batch stored, and take nothing with it."""
    store = SqliteStorage.in_dir(tmp_path)

    async def body() -> tuple[list[PutResult | BaseException], int]:
        box = mailbox(token=b"t" * 32)
        await store.create_mailbox(box)
        token = sha(b"t" * 32)
        bad: Any = object()  # the send fails after its reads (sealing it fails)
        results = await asyncio.gather(
            *(
                store.put_envelope(
                    box.mailbox_id,
                    token,
                    MessageId(os.urandom(16)),
                    bad if i == 5 else payload(),
                    DAY,
                )
                for i in range(10)
            ),
            return_exceptions=True,
        )
        return results, len(await store.pending(MailboxId(box.mailbox_id), 100))

    try:
        results, stored = asyncio.run(body())
    finally:
        store.close_sync()
    assert isinstance(results[5], Exception)
    assert [getattr(r, "outcome", None) for i, r in enumerate(results) if i != 5] == [PutOutcome.STORED] * 9
    assert stored == 9
