"""Attachment blobs on the relay: resumable uploads, downloads, deletion after every recipient's
fetch or 30 days, quota and disk refusals, and what the files hold."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from sotto.protocol import attachment as att
from sotto.server import attachments
from sotto.server.attachment_store import COLUMNS, MAX_BLOB_BYTES, BlobStore
from sotto.wire import b64
from tests.server.conftest import Relay, create_account, make_relay
from tests.server.test_bounds import live_relay

CHUNK = 64 * 1024


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    yield from make_relay(tmp_path)
    attachments.STORES.pop((tmp_path / "data" / "attachments").resolve(), None)


def create(relay: Relay, length: int, recipients: int = 1, account: Any = None) -> tuple[str, str]:
    account = account or create_account(relay.client)
    response = relay.client.post(
        "/v1/attachments", json={"length": length, "recipients": recipients}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["attachment_id"], body["upload_token"]


def patch(relay: Relay, blob_id: str, token: str, offset: int, data: bytes) -> Any:
    return relay.client.patch(
        f"/v1/attachments/{blob_id}",
        content=data,
        headers={
            "Sotto-Upload-Token": token,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


def offset_of(relay: Relay, blob_id: str, token: str) -> int:
    response = relay.client.head(f"/v1/attachments/{blob_id}", headers={"Sotto-Upload-Token": token})
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def upload(relay: Relay, data: bytes, recipients: int = 1) -> str:
    blob_id, token = create(relay, len(data), recipients)
    for start in range(0, len(data), CHUNK):
        response = patch(relay, blob_id, token, start, data[start : start + CHUNK])
        assert response.status_code == 204, response.text
        assert int(response.headers["Upload-Offset"]) == min(start + CHUNK, len(data))
    return blob_id


def test_blob_limit_is_the_largest_attachment() -> None:
    assert att.encrypted_size(att.MAX_ATTACHMENT_SIZE) == MAX_BLOB_BYTES


def test_upload_in_chunks_then_download(relay: Relay) -> None:
    data = os.urandom(5 * CHUNK + 123)
    blob_id = upload(relay, data, recipients=3)
    response = relay.client.get(f"/v1/attachments/{blob_id}")
    assert response.status_code == 200 and response.content == data
    resumed = relay.client.get(f"/v1/attachments/{blob_id}", headers={"Range": "bytes=70000-"})
    assert resumed.status_code == 206 and resumed.content == data[70000:]
    assert resumed.headers["Content-Range"] == f"bytes 70000-{len(data) - 1}/{len(data)}"


def test_an_encrypted_attachment_round_trips_through_the_relay(relay: Relay) -> None:
    plaintext = os.urandom(200_000)
    key, iv = os.urandom(64), os.urandom(16)
    blob, digest = att.encrypt(plaintext, key, iv)
    blob_id = upload(relay, blob)
    fetched = relay.client.get(f"/v1/attachments/{blob_id}").content
    assert att.decrypt(fetched, key, digest, len(plaintext)) == plaintext


def test_upload_killed_at_half_resumes_resending_at_most_one_chunk(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk in flight when the uploader died was written but not recorded: the upload
    resumes at the last recorded offset, and only that chunk is sent again."""
    data = os.urandom(10 * CHUNK)
    blob_id, token = create(relay, len(data))
    for start in range(0, 5 * CHUNK, CHUNK):
        assert patch(relay, blob_id, token, start, data[start : start + CHUNK]).status_code == 204
    store = attachments.STORES[(relay.ctx.config.data_dir / "attachments").resolve()]
    real_fsync = os.fsync

    def die_after_write(fd: int) -> None:
        real_fsync(fd)
        raise KeyboardInterrupt  # the process dies between the write and its record

    monkeypatch.setattr(os, "fsync", die_after_write)
    with pytest.raises(KeyboardInterrupt):
        store.append(b64.decode(blob_id), b64.decode(token), 5 * CHUNK, data[5 * CHUNK : 6 * CHUNK])
    monkeypatch.setattr(os, "fsync", real_fsync)
    # A new uploader asks where to go on, and sends the rest.
    resume_at = offset_of(relay, blob_id, token)
    assert resume_at == 5 * CHUNK
    sent = 0
    for start in range(resume_at, len(data), CHUNK):
        assert patch(relay, blob_id, token, start, data[start : start + CHUNK]).status_code == 204
        sent += CHUNK
    assert sent - (len(data) - 6 * CHUNK) == CHUNK  # one chunk again, no more
    assert relay.client.get(f"/v1/attachments/{blob_id}").content == data


def test_chunk_at_the_wrong_offset_is_refused(relay: Relay) -> None:
    blob_id, token = create(relay, 3 * CHUNK)
    assert patch(relay, blob_id, token, 0, bytes(CHUNK)).status_code == 204
    for wrong in (0, 2 * CHUNK):
        response = patch(relay, blob_id, token, wrong, bytes(CHUNK))
        assert response.status_code == 409 and response.json()["code"] == "offset_mismatch"
        assert str(CHUNK) in response.json()["message"]
    assert offset_of(relay, blob_id, token) == CHUNK
    bad = relay.client.patch(
        f"/v1/attachments/{blob_id}", content=b"x", headers={"Sotto-Upload-Token": token}
    )
    assert bad.status_code in (400, 422)


def test_chunk_past_the_length_is_refused(relay: Relay) -> None:
    blob_id, token = create(relay, 100)
    response = patch(relay, blob_id, token, 0, bytes(101))
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert offset_of(relay, blob_id, token) == 0


def test_wrong_token_or_unknown_id_is_one_404(relay: Relay) -> None:
    blob_id, token = create(relay, 100)
    other = b64.encode(os.urandom(32))
    unknown = b64.encode(os.urandom(16))
    answers = [
        patch(relay, blob_id, other, 0, b"x"),
        patch(relay, unknown, token, 0, b"x"),
        patch(relay, "not-an-id", token, 0, b"x"),
        relay.client.head(f"/v1/attachments/{blob_id}", headers={"Sotto-Upload-Token": other}),
        relay.client.head(f"/v1/attachments/{blob_id}"),
        relay.client.get(f"/v1/attachments/{unknown}"),
    ]
    assert [a.status_code for a in answers] == [404] * 6
    assert offset_of(relay, blob_id, token) == 0


def test_download_before_the_upload_ends_is_refused(relay: Relay) -> None:
    blob_id, token = create(relay, 2 * CHUNK)
    patch(relay, blob_id, token, 0, bytes(CHUNK))
    response = relay.client.get(f"/v1/attachments/{blob_id}")
    assert response.status_code == 409 and response.json()["code"] == "upload_incomplete"


def test_range_past_the_end_is_refused_and_other_forms_ignored(relay: Relay) -> None:
    blob_id = upload(relay, bytes(1000), recipients=5)
    assert relay.client.get(f"/v1/attachments/{blob_id}", headers={"Range": "bytes=1000-"}).status_code == 416
    for value in ("bytes=0-10,20-30", "items=0-", "bytes=-5"):  # other forms: ignored, the whole blob
        assert relay.client.get(f"/v1/attachments/{blob_id}", headers={"Range": value}).status_code == 200
    for value in ("bytes=10-9", "bytes=1000-1005"):
        assert relay.client.get(f"/v1/attachments/{blob_id}", headers={"Range": value}).status_code == 416


def test_a_blob_fetched_in_pieces_counts_once_at_its_end(relay: Relay) -> None:
    """Bounded ranges (a client whose answers are bounded: through a forwarder): each piece is
    exactly its bytes, and only the piece that reaches the end counts as the fetch."""
    data = os.urandom(3 * CHUNK + 100)
    blob_id = upload(relay, data, recipients=1)
    got = b""
    for start in range(0, len(data), CHUNK):
        answer = relay.client.get(
            f"/v1/attachments/{blob_id}", headers={"Range": f"bytes={start}-{start + CHUNK - 1}"}
        )
        assert answer.status_code == 206
        end = min(start + CHUNK, len(data))
        assert answer.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(data)}"
        assert int(answer.headers["Content-Length"]) == end - start
        got += answer.content
        if end < len(data):  # not the last piece: the blob stays, and again gives the same bytes
            again = relay.client.get(
                f"/v1/attachments/{blob_id}", headers={"Range": f"bytes={start}-{end - 1}"}
            )
            assert again.content == answer.content
    assert got == data
    assert relay.client.get(f"/v1/attachments/{blob_id}").status_code == 404
    assert all(p.name.startswith("attachments.db") for p in store_files(relay))


def test_creation_needs_an_account_and_a_sane_body(relay: Relay) -> None:
    assert relay.client.post("/v1/attachments", json={"length": 10, "recipients": 1}).status_code == 401
    account = create_account(relay.client)
    for body in (
        {"length": 0, "recipients": 1},
        {"length": MAX_BLOB_BYTES + 1, "recipients": 1},
        {"length": 10, "recipients": 0},
        {"length": 10, "recipients": 1001},
        {"length": "10", "recipients": 1},
        {"length": 10},
    ):
        response = relay.client.post("/v1/attachments", json=body, headers=account.headers)
        assert response.status_code == 422, body


def test_upload_budget_per_account_is_a_429(relay: Relay) -> None:
    account = create_account(relay.client)
    create(relay, MAX_BLOB_BYTES, account=account)
    create(relay, MAX_BLOB_BYTES, account=account)
    response = relay.client.post(
        "/v1/attachments", json={"length": MAX_BLOB_BYTES, "recipients": 1}, headers=account.headers
    )
    assert response.status_code == 429 and "Retry-After" in response.headers
    create(relay, 1000)  # another account is not held back


def test_quota_and_disk_floor_refusals_are_clear(relay: Relay, tmp_path: Path) -> None:
    directory = (relay.ctx.config.data_dir / "attachments").resolve()
    attachments.STORES[directory] = BlobStore(directory, quota_bytes=10_000, min_free_disk_bytes=0)
    create(relay, 6_000)
    account = create_account(relay.client)
    full = relay.client.post(
        "/v1/attachments", json={"length": 5_000, "recipients": 1}, headers=account.headers
    )
    assert full.status_code == 507 and full.json()["code"] == "quota_exceeded"
    store = attachments.STORES[directory]
    attachments.STORES[directory] = BlobStore(
        directory, quota_bytes=10**12, min_free_disk_bytes=store.free_disk() + 10**12
    )
    low = relay.client.post("/v1/attachments", json={"length": 100, "recipients": 1}, headers=account.headers)
    assert low.status_code == 507 and low.json()["code"] == "relay_full"


def store_files(relay: Relay) -> list[Path]:
    return sorted((relay.ctx.config.data_dir / "attachments").iterdir())


@pytest.mark.parametrize("length", [10_000, CHUNK, 3 * CHUNK])
def test_deleted_once_every_recipient_fetched_it(relay: Relay, length: int) -> None:
    data = os.urandom(length)
    blob_id = upload(relay, data, recipients=2)
    assert relay.client.get(f"/v1/attachments/{blob_id}", headers={"Range": "bytes=1-"}).status_code == 206
    assert relay.client.get(f"/v1/attachments/{blob_id}").content == data
    assert relay.client.get(f"/v1/attachments/{blob_id}").status_code == 404
    assert all(p.name.startswith("attachments.db") for p in store_files(relay))  # no blob file


def test_deleted_after_thirty_days_and_abandoned_uploads_after_two(relay: Relay) -> None:
    kept = upload(relay, bytes(1000), recipients=5)
    abandoned, token = create(relay, 1000)
    store = attachments.store_of(relay.ctx)
    relay.clock.advance_days(2)
    assert store.sweep(relay.ctx.today()) == 1
    assert (
        relay.client.head(f"/v1/attachments/{abandoned}", headers={"Sotto-Upload-Token": token}).status_code
        == 404
    )
    relay.clock.advance_days(27)
    assert store.sweep(relay.ctx.today()) == 0
    relay.clock.advance_days(1)
    assert store.sweep(relay.ctx.today()) == 1
    assert relay.client.get(f"/v1/attachments/{kept}").status_code == 404


def test_data_held_lists_exactly_the_columns() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "data-held.md").read_text(encoding="utf-8")
    section = text.split("\n## Attachments\n")[1].split("\n## ")[0]
    assert tuple(re.findall(r"(?m)^\| `(\w+)` \|", section)) == COLUMNS


def test_files_hold_no_plaintext_no_account_and_no_key_after_deletion(relay: Relay) -> None:
    data = b"attachment bytes as uploaded " * 2000
    blob_id = upload(relay, data)
    directory = relay.ctx.config.data_dir / "attachments"
    conn = sqlite3.connect(directory / "attachments.db")
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(blobs)")]
        (key,) = conn.execute("SELECT key FROM blobs").fetchone()
    finally:
        conn.close()
    assert tuple(columns) == COLUMNS
    (blob_file,) = [p for p in store_files(relay) if not p.name.startswith("attachments.db")]
    at_rest = blob_file.read_bytes()
    assert len(at_rest) == len(data) and b"attachment bytes" not in at_rest
    assert blob_id not in blob_file.name and b64.decode(blob_id).hex() not in blob_file.name
    assert relay.client.get(f"/v1/attachments/{blob_id}").content == data
    assert not blob_file.exists()
    for path in store_files(relay):
        held = path.read_bytes()
        assert bytes(key) not in held and b64.decode(blob_id) not in held, path.name


def test_a_fetch_counts_when_the_client_hangs_up_at_its_last_byte(tmp_path: Path) -> None:
    """Over a real connection, a client that resets it the moment it has every byte: each of
    twenty such downloads counts, so the blob is deleted after the last."""
    with live_relay(tmp_path) as live, httpx.Client(base_url=f"http://127.0.0.1:{live.port}") as client:
        data = os.urandom(10_000)
        blob_id = upload(cast(Relay, SimpleNamespace(client=client)), data, recipients=20)
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
                sock.sendall(f"GET /v1/attachments/{blob_id} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
                answer = b""
                while not answer.endswith(data):
                    piece = sock.recv(65_536)
                    assert piece, answer[:200]
                    answer += piece
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
        folder = tmp_path / "data" / "attachments"
        deadline = time.monotonic() + 30
        while any(len(p.name) == 32 for p in folder.iterdir()):  # the blob's file
            assert time.monotonic() < deadline, "the blob outlived its last fetch"
            time.sleep(0.05)
    attachments.STORES.pop(folder.resolve(), None)
