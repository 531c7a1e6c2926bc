"""One poll answer at a time per mailbox (:mod:`sotto.server.answering`): the registry alone,
then on a running relay with a client that does not read its answer."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from sotto.server import answering as answering_module
from sotto.server.answering import (
    CLAIM_SECONDS,
    RELEASE_UNREAD_BYTES,
    SWEEP_EVERY,
    Answering,
    PollInProgressError,
)
from sotto.server.storage.base import MailboxId
from sotto.wire import b64
from tests.server.conftest import Mailbox
from tests.server.test_bounds import live_relay

A, B = MailboxId(b"a" * 16), MailboxId(b"b" * 16)


def test_a_mailbox_has_one_answer_out_at_a_time() -> None:
    answering = Answering()
    first = answering.claim(A, 100.0)
    try:
        answering.claim(A, 101.0)
    except PollInProgressError as e:
        assert e.status == 429 and e.code == "poll_in_progress"
        assert e.retry_after == round(CLAIM_SECONDS - 1.0)
    else:
        raise AssertionError("a second answer of the same mailbox was allowed")
    assert answering.try_claim(A, 101.0) is None
    answering.claim(B, 101.0)  # other mailboxes are not held up
    answering.release(first)
    answering.claim(A, 101.5)
    assert len(answering) == 2


def test_an_answer_stops_holding_its_mailbox_after_the_claim_time() -> None:
    answering = Answering()
    stale = answering.claim(A, 100.0)
    fresh = answering.claim(A, 100.0 + CLAIM_SECONDS)  # the stale one never ended
    answering.release(stale)  # its end does not free the mailbox from the later answer
    assert answering.try_claim(A, 100.0 + CLAIM_SECONDS + 1) is None
    answering.release(fresh)
    answering.release(fresh)  # twice is harmless
    assert len(answering) == 0


def test_claims_never_released_are_swept() -> None:
    answering = Answering()
    for n in range(2 * SWEEP_EVERY):  # answers that never ended: the first half long ago
        answering.claim(MailboxId(n.to_bytes(16, "big")), 0.0 if n < SWEEP_EVERY else CLAIM_SECONDS + 1)
    assert len(answering) == SWEEP_EVERY


def _poll_request(mailbox: Mailbox) -> bytes:
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = json.dumps({"ack": [], "limit": 256}).encode()
    headers = mailbox.auth_header("POST", path, time.time(), body)
    lines = [
        f"POST {path} HTTP/1.1",
        "host: x",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_poll_while_the_mailboxs_answer_is_unread_is_refused_before_any_read(tmp_path: Path) -> None:
    with live_relay(tmp_path, write_stall_seconds=600.0) as relay:
        url = f"http://127.0.0.1:{relay.port}"
        mailbox = Mailbox()
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.post("/v1/mailboxes", json=mailbox.create_body()).status_code == 201
            for _ in range(8):  # half a megabyte pending
                sent = client.post(
                    f"/v1/mailboxes/{mailbox.id}/messages",
                    json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(bytes(65_536))},
                    headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
                )
                assert sent.status_code == 202, sent.text

            # A client asks, and does not read: its answer stays out.
            slow = relay.connect(SO_RCVBUF=4_096)
            slow.sendall(_poll_request(mailbox))
            slow.settimeout(30)
            assert slow.recv(1_000).startswith(b"HTTP/1.1 200 ")

            def poll() -> httpx.Response:
                request = _poll_request(mailbox)
                head, body = request.split(b"\r\n\r\n", 1)
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[2:])
                return client.post(f"/v1/mailboxes/{mailbox.id}/poll", content=body, headers=headers)

            refused = poll()
            assert refused.status_code == 429, refused.text[:200]
            assert refused.json()["code"] == "poll_in_progress"
            assert 1 <= int(refused.headers["retry-after"]) <= CLAIM_SECONDS

            # Once the answer is read to its end, the next poll is answered.
            data = b""
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            while not data.rstrip().endswith(b"}") or len(data) < 8 * 65_536:
                chunk = slow.recv(1 << 20)
                assert chunk
                data += chunk
            deadline = time.monotonic() + 30
            while (answered := poll()).status_code == 429:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert answered.status_code == 200, answered.text[:200]
            assert len(answered.json()["envelopes"]) == 8
            slow.close()


def test_an_answer_holds_its_mailbox_until_the_peer_has_taken_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answering_module, "RELEASE_CHECK_SECONDS", 0.01)
    left = [3 * RELEASE_UNREAD_BYTES, 2 * RELEASE_UNREAD_BYTES, RELEASE_UNREAD_BYTES]

    async def main() -> None:
        registry = Answering()
        claim = registry.claim(A, 0.0)
        registry.release_when_taken(claim, lambda: left.pop(0) if left else 0)
        assert registry.try_claim(A, 1.0) is None  # its last bytes are not taken yet
        while left:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        assert registry.try_claim(A, 1.0) is not None

    asyncio.run(main())


def test_an_answer_never_taken_frees_its_mailbox_after_the_claim_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answering_module, "RELEASE_CHECK_SECONDS", 0.01)
    monkeypatch.setattr(answering_module, "CLAIM_SECONDS", 0.05)
    asked = 0

    def never() -> int:
        nonlocal asked
        asked += 1
        return 1 << 20

    async def main() -> None:
        registry = Answering()
        registry.release_when_taken(registry.claim(A, 0.0), never)
        assert len(registry) == 1
        await asyncio.sleep(0.2)
        assert len(registry) == 0

    asyncio.run(main())
    assert asked == 5  # checked until the claim time ran out, then no more
