"""The delivery WebSocket: challenge, subscribe, push, ack, send, the window, and close codes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from sotto.errors import RelayStorageError
from sotto.server.config import RateLimit
from sotto.server.logging import Stats
from sotto.server.relay import Ref
from sotto.server.runner import DeliveryProtocol
from sotto.server.storage.base import MailboxId, MessageId, drained_expiry
from sotto.server.storage.sqlite import id_tag
from sotto.server.ws import SEND_MANY, AckDeleter
from sotto.wire import b64, frames
from sotto.wire.limits import MAX_FRAME_BYTES, MAX_UNACKED_PER_CONNECTION
from tests.server.conftest import DAY, GENEROUS, Mailbox, Relay, create_mailbox, make_relay, payload, send
from tests.server.test_bounds import live_relay


def _frame(ws: WebSocketTestSession) -> frames.ServerFrame:
    return frames.decode_server_frame(ws.receive_text())


def _subscribe(
    ws: WebSocketTestSession, *mailboxes: Mailbox, nonce: bytes | None = None
) -> frames.Subscribed:
    if nonce is None:
        challenge = _frame(ws)
        assert isinstance(challenge, frames.Challenge)
        nonce = challenge.nonce
    ws.send_text(json.dumps({"t": "subscribe", "mailboxes": [m.drain_proof(nonce) for m in mailboxes]}))
    reply = _frame(ws)
    assert isinstance(reply, frames.Subscribed)
    return reply


def _ack(ws: WebSocketTestSession, *envelopes: frames.Envelope) -> None:
    ws.send_text(frames.encode(frames.Ack(tuple(frames.EnvelopeRef(e.mailbox, e.id) for e in envelopes))))


def _envelopes(ws: WebSocketTestSession, n: int) -> list[frames.Envelope]:
    out = []
    for _ in range(n):
        frame = _frame(ws)
        assert isinstance(frame, frames.Envelope), frame
        out.append(frame)
    return out


def _pending(relay: Relay, mailbox: Mailbox) -> list[dict[str, Any]]:
    path = f"/v1/mailboxes/{mailbox.id}/export"
    headers = mailbox.auth_header("GET", path, int(relay.clock.now()))
    rows: list[dict[str, Any]] = relay.client.get(path, headers=headers).json()["tables"]["envelopes"]
    return rows


def _closed_with(ws: WebSocketTestSession) -> int:
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_text()
    return closed.value.code


def test_pending_then_live_then_ack(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    ids = [os.urandom(16) for _ in range(3)]
    for i, message_id in enumerate(ids[:2]):
        assert send(client, mailbox, message_id, payload(256, i)).status_code == 202
    with client.websocket_connect("/v1/ws") as ws:
        assert _subscribe(ws, mailbox) == frames.Subscribed((mailbox.mailbox_id,), ())
        first = _envelopes(ws, 2)
        assert [e.id for e in first] == ids[:2]
        assert [e.payload for e in first] == [payload(256, 0), payload(256, 1)]
        assert {e.day for e in first} == {DAY} and {e.mailbox for e in first} == {mailbox.mailbox_id}
        send(client, mailbox, ids[2], payload(512, 9))
        (live,) = _envelopes(ws, 1)
        assert live.id == ids[2] and live.payload == payload(512, 9)
        _ack(ws, *first)
        # A send on the same socket is answered after the acks before it were handled.
        ws.send_text(frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, os.urandom(16), payload())))
        assert isinstance(_frame(ws), frames.Sent | frames.Envelope)
    tag = id_tag(mailbox.mailbox_id, ids[2])
    assert next(r["id_tag"] for r in _pending(any_relay, mailbox)) == b64.encode(tag)


def test_nothing_is_deleted_without_ack(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    message_id = os.urandom(16)
    send(client, mailbox, message_id, payload())
    for _ in range(2):  # delivered, not acked, the connection drops: delivered again
        with client.websocket_connect("/v1/ws") as ws:
            _subscribe(ws, mailbox)
            (envelope,) = _envelopes(ws, 1)
            assert envelope.id == message_id
    with client.websocket_connect("/v1/ws") as ws:
        _subscribe(ws, mailbox)
        (envelope,) = _envelopes(ws, 1)
        _ack(ws, envelope)
        ws.send_text(frames.encode(frames.Ack(())))
    assert _pending(any_relay, mailbox) == []


def test_acks_for_mailboxes_not_subscribed_are_ignored(relay: Relay) -> None:
    client = relay.client
    mine, theirs = create_mailbox(client), create_mailbox(client)
    message_id = os.urandom(16)
    send(client, theirs, message_id, payload())
    with client.websocket_connect("/v1/ws") as ws:
        _subscribe(ws, mine)
        ws.send_text(frames.encode(frames.Ack((frames.EnvelopeRef(theirs.mailbox_id, message_id),))))
        ws.send_text(frames.encode(frames.Send(mine.mailbox_id, mine.token, os.urandom(16), payload())))
        assert isinstance(_frame(ws), frames.Sent | frames.Envelope)
    assert len(_pending(relay, theirs)) == 1


def test_bad_signatures_and_unknown_mailboxes_are_refused_alike(any_relay: Relay) -> None:
    client = any_relay.client
    good, other = create_mailbox(client), create_mailbox(client)
    unknown = Mailbox()
    with client.websocket_connect("/v1/ws") as ws:
        challenge = _frame(ws)
        assert isinstance(challenge, frames.Challenge)
        forged = {"id": other.id, "sig": good.drain_proof(challenge.nonce)["sig"]}
        stale = good.drain_proof(os.urandom(32))
        ws.send_text(
            json.dumps(
                {
                    "t": "subscribe",
                    "mailboxes": [
                        good.drain_proof(challenge.nonce),
                        forged,
                        unknown.drain_proof(challenge.nonce),
                    ],
                }
            )
        )
        reply = _frame(ws)
        assert reply == frames.Subscribed((good.mailbox_id,), (other.mailbox_id, unknown.mailbox_id))
        ws.send_text(json.dumps({"t": "subscribe", "mailboxes": [{**stale, "id": other.id}]}))
        assert _frame(ws) == frames.Subscribed((), (other.mailbox_id,))


def test_subscribing_moves_the_mailbox_expiry(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client, Mailbox(ttl_days=3))
    any_relay.clock.advance_days(2)
    with client.websocket_connect("/v1/ws") as ws:
        _subscribe(ws, mailbox)
    expires = drained_expiry(mailbox.mailbox_id, DAY + 2, 3)  # DAY + 5 at the earliest
    any_relay.clock.advance_days(expires - 1 - (DAY + 2))  # past the original expiry, within the new one
    assert send(client, mailbox, os.urandom(16), payload()).status_code == 202
    any_relay.clock.advance_days(1)
    assert send(client, mailbox, os.urandom(16), payload()).status_code == 404


def test_ws_send_dedupes_and_fails_alike(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    message_id = os.urandom(16)
    with client.websocket_connect("/v1/ws") as ws:
        assert isinstance(_frame(ws), frames.Challenge)
        ws.send_text(frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, message_id, payload())))
        assert _frame(ws) == frames.Sent(message_id, duplicate=False)
        ws.send_text(frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, message_id, payload(512))))
        assert _frame(ws) == frames.Sent(message_id, duplicate=True)
        wrong = os.urandom(16)
        ws.send_text(frames.encode(frames.Send(mailbox.mailbox_id, os.urandom(32), wrong, payload())))
        assert _frame(ws) == frames.SendFailed(wrong, "not_found")
        ws.send_text(frames.encode(frames.Send(os.urandom(16), mailbox.token, wrong, payload())))
        assert _frame(ws) == frames.SendFailed(wrong, "not_found")
    assert len(_pending(any_relay, mailbox)) == 1


def test_a_duplicate_ws_send_asks_the_mailbox_listeners_to_read_it_again(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    rechecked: list[MailboxId] = []
    any_relay.ctx.fanout.subscribe(MailboxId(mailbox.mailbox_id), lambda _: None, rechecked.append)
    message_id = os.urandom(16)
    with client.websocket_connect("/v1/ws") as ws:
        assert isinstance(_frame(ws), frames.Challenge)
        ws.send_text(frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, message_id, payload())))
        assert _frame(ws) == frames.Sent(message_id, duplicate=False)
        assert rechecked == []
        ws.send_text(frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, message_id, payload())))
        assert _frame(ws) == frames.Sent(message_id, duplicate=True)
        assert rechecked == [mailbox.mailbox_id]


def test_at_most_256_unacked_per_connection(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox, probe = create_mailbox(client), create_mailbox(client)
    total = MAX_UNACKED_PER_CONNECTION + 44
    with client.websocket_connect("/v1/ws") as sender:
        _frame(sender)
        for _ in range(total):
            sender.send_text(
                frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, os.urandom(16), payload()))
            )
        for _ in range(total):
            assert isinstance(_frame(sender), frames.Sent)
    with client.websocket_connect("/v1/ws") as ws:
        _subscribe(ws, mailbox)
        first = _envelopes(ws, MAX_UNACKED_PER_CONNECTION)
        # The window is full: the next frame is the answer to this send, not an envelope.
        probe_id = os.urandom(16)
        ws.send_text(frames.encode(frames.Send(probe.mailbox_id, probe.token, probe_id, payload())))
        assert _frame(ws) == frames.Sent(probe_id, duplicate=False)
        _ack(ws, *first[:10])
        more = _envelopes(ws, 10)
        assert not {e.id for e in more} & {e.id for e in first}
        _ack(ws, *first[10:], *more)
        rest = _envelopes(ws, total - MAX_UNACKED_PER_CONNECTION - 10)
        _ack(ws, *rest)
        seen = [e.id for e in first + more + rest]
        assert len(set(seen)) == total
        ws.send_text(frames.encode(frames.Send(probe.mailbox_id, probe.token, probe_id, payload())))
        assert _frame(ws) == frames.Sent(probe_id, duplicate=True)
    assert _pending(any_relay, mailbox) == []


def test_live_overflow_falls_back_to_storage(any_relay: Relay) -> None:
    """More live envelopes than the queue holds: the rest come from storage, none lost or doubled."""
    client = any_relay.client
    mailbox = create_mailbox(client)
    total = 400
    with client.websocket_connect("/v1/ws") as ws, client.websocket_connect("/v1/ws") as sender:
        _subscribe(ws, mailbox)
        _frame(sender)
        for _ in range(total):
            sender.send_text(
                frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, os.urandom(16), payload()))
            )
        for _ in range(total):
            assert isinstance(_frame(sender), frames.Sent)
        received: list[frames.Envelope] = []
        while len(received) < total:
            batch = _envelopes(ws, min(MAX_UNACKED_PER_CONNECTION, total - len(received)))
            received += batch
            _ack(ws, *batch)
        assert len({e.id for e in received}) == total
        probe = os.urandom(16)
        sender.send_text(frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, probe, payload())))
        assert _frame(sender) == frames.Sent(probe, duplicate=False)
        (last,) = _envelopes(ws, 1)
        assert last.id == probe


# ---------------------------------------------------------------------------- close codes
@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"t": 1}',
        '{"t": "nope"}',
        '{"t": "subscribe", "mailboxes": "x"}',
        '{"t": "ack", "ids": [{"mailbox": "AAAA", "id": "AAAA"}]}',
        json.dumps({"t": "send", "mailbox": b64.encode(bytes(16)), "token": b64.encode(bytes(32)),
                    "id": b64.encode(bytes(16)), "payload": b64.encode(bytes(300))}),
    ],
)  # fmt: skip
def test_malformed_frames_close_4400(relay: Relay, text: str) -> None:
    with relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        ws.send_text(text)
        assert _closed_with(ws) == 4400


def test_an_error_frame_names_the_reason_before_the_close(relay: Relay) -> None:
    with relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        ws.send_text("not json")
        error = json.loads(ws.receive_text())
        assert error["t"] == "error" and error["code"] == "malformed" and error["message"]
        assert _closed_with(ws) == 4400
    with relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        ws.send_text("x" * (MAX_FRAME_BYTES + 1))
        assert json.loads(ws.receive_text())["code"] == "too_large"
        assert _closed_with(ws) == 4413


def test_binary_frames_close_4400(relay: Relay) -> None:
    with relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        ws.send_bytes(b'{"t":"ack","ids":[]}')
        assert _closed_with(ws) == 4400


def test_oversized_frames_close_4413(relay: Relay) -> None:
    with relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        ws.send_text('{"t":"ack","ids":[]}' + " " * MAX_FRAME_BYTES)
        assert _closed_with(ws) == 4413


@pytest.fixture
def strict_relay(tmp_path: Path) -> Iterator[Relay]:
    limits = dataclasses.replace(GENEROUS, ws_frames=RateLimit(burst=5, per_second=0.001))
    yield from make_relay(tmp_path, limits=limits, ws_idle_seconds=0.3)


def test_too_many_frames_close_4429(strict_relay: Relay) -> None:
    with strict_relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        for _ in range(6):
            ws.send_text('{"t":"ack","ids":[]}')
        assert _closed_with(ws) == 4429


def test_idle_connections_close_4408(strict_relay: Relay) -> None:
    with strict_relay.client.websocket_connect("/v1/ws") as ws:
        _frame(ws)
        assert _closed_with(ws) == 4408


def test_a_closed_connection_leaves_no_listener(relay: Relay) -> None:
    client: TestClient = relay.client
    mailbox = create_mailbox(client)
    with client.websocket_connect("/v1/ws") as ws:
        _subscribe(ws, mailbox)
        assert len(relay.ctx.fanout) == 1  # type: ignore[arg-type]
    send(client, mailbox, os.urandom(16), payload())
    assert len(relay.ctx.fanout) == 0  # type: ignore[arg-type]


def test_keep_alives_hold_an_idle_timer_off(tmp_path: Path) -> None:
    for relay in make_relay(tmp_path, ws_idle_seconds=0.3):
        mailbox = create_mailbox(relay.client)
        with relay.client.websocket_connect("/v1/ws") as ws:
            challenge = _frame(ws)
            assert isinstance(challenge, frames.Challenge)
            for _ in range(6):  # 0.6 s in all, never 0.3 s quiet
                time.sleep(0.1)
                ws.send_text(frames.encode(frames.Ack(())))
            assert _subscribe(ws, mailbox, nonce=challenge.nonce).mailboxes == (mailbox.mailbox_id,)
            assert _closed_with(ws) == 4408


def test_sends_beyond_the_inflight_limit_wait_for_a_slot(tmp_path: Path) -> None:
    for relay in make_relay(tmp_path, "sqlite", ws_max_inflight_sends=1):
        mailbox = create_mailbox(relay.client)
        ids = [os.urandom(16) for _ in range(20)]
        with relay.client.websocket_connect("/v1/ws") as ws:
            _frame(ws)
            for message_id in ids:
                ws.send_text(
                    frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, message_id, payload()))
                )
            answers = [_frame(ws) for _ in ids]
        assert {a.id for a in answers if isinstance(a, frames.Sent)} == set(ids)
        assert len(_pending(relay, mailbox)) == 20


class _Listening:
    """A stand-in connection for AckDeleter: records what it is told."""

    def __init__(self) -> None:
        self.deleted: list[Ref] = []
        self.closed: list[int] = []

    def _deleted(self, refs: list[Ref]) -> None:
        self.deleted += refs

    async def _close(self, code: int, reason: str) -> None:
        self.closed.append(code)


class _Deletes:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[Ref]] = []
        self.fail = fail

    async def delete_envelopes(self, refs: list[Ref]) -> int:
        self.calls.append(list(refs))
        if self.fail:
            raise RelayStorageError("down")
        return len(refs)


def _deleter(storage: _Deletes, **kwargs: Any) -> AckDeleter:
    ctx = SimpleNamespace(storage=storage, stats=Stats())
    return AckDeleter(ctx, **kwargs)  # type: ignore[arg-type]


def _refs(n: int) -> list[Ref]:
    return [(MailboxId(os.urandom(16)), MessageId(os.urandom(16))) for _ in range(n)]


def test_acks_of_all_connections_are_deleted_in_one_call() -> None:
    async def scenario() -> None:
        storage = _Deletes()
        acks = _deleter(storage, linger=0.05)
        first, second = _Listening(), _Listening()
        mine, theirs = _refs(2), _refs(1)
        acks.add(first, mine)  # type: ignore[arg-type]
        acks.add(second, theirs)  # type: ignore[arg-type]
        assert acks.pending == 3 and storage.calls == []
        await asyncio.sleep(0.1)
        assert storage.calls == [mine + theirs]
        assert first.deleted == mine and second.deleted == theirs and acks.pending == 0

    asyncio.run(scenario())


def test_acks_are_deleted_at_once_when_many_or_drained() -> None:
    async def scenario() -> None:
        storage = _Deletes()
        acks = _deleter(storage, linger=60, max_refs=3)
        connection = _Listening()
        acks.add(connection, _refs(3))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert len(storage.calls) == 1
        acks.add(connection, _refs(1))  # type: ignore[arg-type]
        await acks.drain()
        assert len(storage.calls) == 2 and len(connection.deleted) == 4 and acks.pending == 0

    asyncio.run(scenario())


def test_a_failed_delete_closes_the_connections_that_acked() -> None:
    async def scenario() -> None:
        storage = _Deletes(fail=True)
        acks = _deleter(storage)
        connections = [_Listening(), _Listening()]
        for connection in connections:
            acks.add(connection, _refs(1))  # type: ignore[arg-type]
        await acks.drain()
        # Reported anyway, so the window reads them again: they are still stored.
        assert all(len(c.deleted) == 1 and c.closed == [1013] for c in connections)

    asyncio.run(scenario())


def test_a_burst_of_frames_goes_out_in_one_write_on_the_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under uvicorn, what the pusher has queued is handed over as one :data:`SEND_MANY` event;
    the frames arrive whole and in order."""
    events: list[tuple[str, int]] = []
    plain_send = DeliveryProtocol.send

    async def recording_send(self: DeliveryProtocol, message: Any) -> None:
        events.append((message["type"], len(message.get("texts", ()))))
        await plain_send(self, message)

    monkeypatch.setattr(DeliveryProtocol, "send", recording_send)
    with live_relay(tmp_path) as live, httpx.Client(base_url=f"http://127.0.0.1:{live.port}") as http:
        mailbox = create_mailbox(http, Mailbox())  # type: ignore[arg-type]
        ids = [os.urandom(16) for _ in range(40)]
        for n, message_id in enumerate(ids):
            assert send(http, mailbox, message_id, payload(fill=n)).status_code == 202  # type: ignore[arg-type]
        with connect(f"ws://127.0.0.1:{live.port}/v1/ws") as ws:
            challenge = frames.decode_server_frame(ws.recv(timeout=30))
            assert isinstance(challenge, frames.Challenge)
            proof = mailbox.drain_proof(challenge.nonce)
            ws.send(json.dumps({"t": "subscribe", "mailboxes": [proof]}))
            received: list[frames.Envelope] = []
            while len(received) < len(ids):
                frame = frames.decode_server_frame(ws.recv(timeout=30))
                if isinstance(frame, frames.Envelope):
                    received.append(frame)
    assert [e.id for e in received] == ids
    assert [e.payload for e in received] == [payload(fill=n) for n in range(len(ids))]
    assert any(kind == SEND_MANY and count > 1 for kind, count in events), events
