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
from sotto.server.answering import CLAIM_SECONDS, RELEASE_UNREAD_BYTES, SWEEP_EVERY, Answering
from sotto.server.storage.base import MailboxId
from sotto.wire import b64
from tests.server.conftest import Mailbox
from tests.server.test_bounds import live_relay

A, B = MailboxId(b"a" * 16), MailboxId(b"b" * 16)


def test_a_mailbox_has_one_answer_out_at_a_time() -> None:
    async def main() -> None:
        answering = Answering()
        first = await answering.claim(A)
        assert answering.try_claim(A) is None
        assert await answering.claim(B) is not None  # other mailboxes are not held up
        second = asyncio.create_task(answering.claim(A))
        await asyncio.sleep(0.01)
        assert not second.done()  # it waits for the first answer to be taken
        answering.release(first)
        claimed = await asyncio.wait_for(second, 1)
        assert answering.try_claim(A) is None
        answering.release(claimed)
        assert answering.try_claim(A) is not None

    asyncio.run(main())


def test_an_answer_never_taken_stops_holding_its_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answering_module, "CLAIM_SECONDS", 0.05)

    async def main() -> None:
        answering = Answering()
        stale = await answering.claim(A)  # never released
        loop = asyncio.get_running_loop()
        before = loop.time()
        fresh = await asyncio.wait_for(answering.claim(A), 1)
        assert loop.time() - before >= 0.04
        answering.release(stale)  # a late end does not free the mailbox from the later answer
        assert answering.try_claim(A) is None
        answering.release(fresh)
        answering.release(fresh)  # twice is harmless
        assert len(answering) == 0

    asyncio.run(main())


def test_claims_never_released_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answering_module, "CLAIM_SECONDS", 0.05)

    async def main() -> None:
        answering = Answering()
        for n in range(SWEEP_EVERY):  # answers that never ended
            answering.try_claim(MailboxId(n.to_bytes(16, "big")))
        await asyncio.sleep(0.06)
        for n in range(SWEEP_EVERY):
            answering.try_claim(MailboxId((SWEEP_EVERY + n).to_bytes(16, "big")))
        assert len(answering) == SWEEP_EVERY

    asyncio.run(main())


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


def test_a_poll_while_the_mailboxs_answer_is_unread_waits_for_it(tmp_path: Path) -> None:
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

            def poll(timeout: float = 30) -> httpx.Response:
                request = _poll_request(mailbox)
                head, body = request.split(b"\r\n\r\n", 1)
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[2:])
                return client.post(
                    f"/v1/mailboxes/{mailbox.id}/poll", content=body, headers=headers, timeout=timeout
                )

            # Another poll of the mailbox waits while that answer is out, and reads nothing.
            with pytest.raises(httpx.ReadTimeout):
                poll(timeout=1.0)

            # Once the answer is read to its end, the next poll is answered at once.
            data = b""
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            while not data.rstrip().endswith(b"}") or len(data) < 8 * 65_536:
                chunk = slow.recv(1 << 20)
                assert chunk
                data += chunk
            started = time.monotonic()
            answered = poll()
            assert answered.status_code == 200, answered.text[:200]
            assert len(answered.json()["envelopes"]) == 8
            assert time.monotonic() - started < CLAIM_SECONDS
            slow.close()


def test_an_answer_holds_its_mailbox_until_the_peer_has_taken_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answering_module, "RELEASE_CHECK_SECONDS", 0.01)
    left = [3 * RELEASE_UNREAD_BYTES, 2 * RELEASE_UNREAD_BYTES, RELEASE_UNREAD_BYTES]

    async def main() -> None:
        registry = Answering()
        claim = await registry.claim(A)
        registry.release_when_taken(claim, lambda: left.pop(0) if left else 0)
        assert registry.try_claim(A) is None  # its last bytes are not taken yet
        while left:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        assert registry.try_claim(A) is not None

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
        registry.release_when_taken(await registry.claim(A), never)
        assert len(registry) == 1
        await asyncio.sleep(0.2)
        assert len(registry) == 0

    asyncio.run(main())
    assert asked == 5  # checked until the claim time ran out, then no more
