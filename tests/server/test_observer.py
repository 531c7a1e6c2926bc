"""The operator's view: every route and every frame type the relay serves is recorded, with its
address, port, sizes and ids; recording changes no answer; bad input is recorded too; the data
directory snapshot and its free pages; ``sotto server --record-view`` on a real process."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from sotto.server import ServerConfig, create_app, ws
from sotto.server.__main__ import main as server_main
from sotto.server.app import ObservedRelayApp, RelayApp
from sotto.server.attachments import OFFSET_HEADER, TOKEN_HEADER
from sotto.server.auth import ReplayGuard
from sotto.server.context import RelayContext
from sotto.server.observer import (
    FileSink,
    HttpExchange,
    MemorySink,
    Observer,
    ViewRecord,
    WsClose,
    WsFrame,
    WsOpen,
    free_pages,
    read_view,
    snapshot_data_dir,
    wal_frames,
)
from sotto.server.server_key import ServerKey
from sotto.server.storage import MemoryStorage
from sotto.wire import auth, b64, frames
from sotto.wire.limits import MAX_FRAME_BYTES
from tests.server.conftest import (
    GENEROUS,
    FakeClock,
    Mailbox,
    kyber_key,
    payload,
    pre_key,
    signed_pre_key,
)

MAX_BODY = 4096
ALICE = ("198.51.100.7", 40_001)
BOB = ("203.0.113.9", 51_234)
CAROL = ("2001:db8::c4", 62_000)


def _rng(seed: bytes) -> Any:
    """A deterministic byte stream: two apps made with the same seed draw the same ids."""
    counter = 0

    def draw(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            counter += 1
            out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        return out[:n]

    return draw


@dataclass
class Observed:
    client: TestClient
    clock: FakeClock
    sink: MemorySink
    observer: Observer | None
    calls: list[Sent] = field(default_factory=list)

    def source(self, peer: tuple[str, int]) -> None:
        """Later requests and sockets come from ``peer`` (TestClient has one client address)."""
        self.client._transport.client = peer

    def http(self) -> list[HttpExchange]:
        return [r for r in self.sink.records if isinstance(r, HttpExchange)]


@contextlib.contextmanager
def observed_relay(tmp_path: Path, *, record: bool = True, seed: bytes = b"seed") -> Iterator[Observed]:
    clock, sink = FakeClock(), MemorySink()
    observer = Observer(sink, clock=clock) if record else None
    app = create_app(
        ServerConfig(data_dir=tmp_path / "data", rate_limits=GENEROUS, max_body_bytes=MAX_BODY),
        storage=MemoryStorage(),
        clock=clock,
        rng=_rng(seed),
        server_key=ServerKey(bytes(32)),
        observer=observer,
    )
    with TestClient(app, raise_server_exceptions=False, client=ALICE) as client:
        ctx: RelayContext = client.app.state.relay  # type: ignore[attr-defined]
        ctx.replay_guard = ReplayGuard(clock.now() - 3_600)
        yield Observed(client, clock, sink, observer)


# --------------------------------------------------------------------------- every route
def _served_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every HTTP route the app serves, through included routers,
    plus the delivery socket (served by RelayApp ahead of the routes)."""
    served: set[tuple[str, str]] = {("WEBSOCKET", ws.PATH)}

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))
            elif hasattr(route, "methods") and route.methods:
                served.update((m, prefix + route.path) for m in route.methods)
            elif hasattr(route, "path"):
                served.add(("WEBSOCKET", prefix + route.path))

    walk(app.routes, "")
    return served


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


@dataclass
class Sent:
    """One request as the client made it, to compare with its record."""

    peer: tuple[str, int]
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]
    response: httpx.Response


def _call(
    relay: Observed,
    peer: tuple[str, int],
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> httpx.Response:
    relay.source(peer)
    content = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    sent_headers = dict(headers or {})
    if body is not None:
        sent_headers.setdefault("content-type", "application/json")
    url = path + ("?" + query if query else "")
    response: httpx.Response = relay.client.request(
        method, url, content=content or None, headers=sent_headers
    )
    relay.calls.append(Sent(peer, method, path, query, content, sent_headers, response))
    return response


def _signed(mailbox: Mailbox, relay: Observed, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    return mailbox.auth_header(method, path, relay.clock.now(), body)


def _drive_every_route(relay: Observed) -> list[Sent]:
    """A life on the relay that calls each route at least once, from three sources."""
    c = relay.clock
    secret = os.urandom(32)
    created = _call(
        relay,
        ALICE,
        "POST",
        "/v1/accounts",
        {
            "identity_key": b64.encode(b"\x05" + os.urandom(32)),
            "registration_id": 7,
            "device_secret": b64.encode(secret),
        },
    )
    assert created.status_code == 201
    account_id = created.json()["account_id"]
    device = {"Authorization": auth.encode_device_auth(b64.decode(account_id), 1, secret)}
    keys = {
        "signed_pre_key": signed_pre_key(1),
        "kyber_last_resort": kyber_key(2),
        "one_time_pre_keys": [pre_key(1)],
    }
    assert _call(relay, ALICE, "PUT", "/v1/accounts/me/keys", keys, headers=device).status_code == 204
    assert _call(relay, ALICE, "GET", "/v1/accounts/me/keys", headers=device).status_code == 200
    assert _call(relay, ALICE, "GET", "/v1/accounts/me", headers=device).status_code == 200
    assert (
        _call(
            relay, ALICE, "PUT", "/v1/accounts/me/username", {"username": "alice"}, headers=device
        ).status_code
        == 204
    )
    assert _call(relay, BOB, "GET", "/v1/usernames/alice").status_code == 200
    assert _call(relay, ALICE, "DELETE", "/v1/accounts/me/username", headers=device).status_code == 204
    token = os.urandom(32)
    body = {"token": b64.encode(token), "expires_day": 99_999}
    assert (
        _call(relay, ALICE, "PUT", "/v1/accounts/me/access-tokens", body, headers=device).status_code == 204
    )
    bundle = _call(
        relay,
        BOB,
        "GET",
        f"/v1/accounts/{account_id}/bundle",
        headers={"Sotto-Access-Token": b64.encode(token)},
    )
    assert bundle.status_code == 200
    token_hash = b64.encode(hashlib.sha256(token).digest())
    assert (
        _call(
            relay, ALICE, "DELETE", f"/v1/accounts/me/access-tokens/{token_hash}", headers=device
        ).status_code
        == 204
    )
    assert _call(relay, ALICE, "GET", "/v1/export", headers=device).status_code == 200
    blob = _call(relay, ALICE, "POST", "/v1/attachments", {"length": 4, "recipients": 1}, headers=device)
    assert blob.status_code == 201
    upload = {TOKEN_HEADER: blob.json()["upload_token"]}
    path = f"/v1/attachments/{blob.json()['attachment_id']}"
    assert _call(relay, ALICE, "HEAD", path, headers=upload).status_code == 200
    chunk = {**upload, OFFSET_HEADER: "0", "content-type": "application/octet-stream"}
    assert _call(relay, ALICE, "PATCH", path, b"blob", headers=chunk).status_code == 204
    assert _call(relay, BOB, "GET", path).status_code == 200
    mailbox = Mailbox()
    assert _call(relay, ALICE, "POST", "/v1/mailboxes", mailbox.create_body()).status_code == 201
    message_id = os.urandom(16)
    sent = _call(
        relay,
        BOB,
        "POST",
        f"/v1/mailboxes/{mailbox.id}/messages",
        {"message_id": b64.encode(message_id), "payload": b64.encode(payload(256))},
        headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
    )
    assert sent.status_code == 202
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    poll = json.dumps({"ack": [], "limit": 10}).encode()
    c.seconds += 1
    assert (
        _call(
            relay, CAROL, "POST", path, poll, headers=_signed(mailbox, relay, "POST", path, poll)
        ).status_code
        == 200
    )
    path = f"/v1/mailboxes/{mailbox.id}/export"
    c.seconds += 1
    assert _call(relay, CAROL, "GET", path, headers=_signed(mailbox, relay, "GET", path)).status_code == 200
    path = f"/v1/mailboxes/{mailbox.id}"
    c.seconds += 1
    assert (
        _call(relay, CAROL, "DELETE", path, headers=_signed(mailbox, relay, "DELETE", path)).status_code
        == 204
    )
    assert _call(relay, ALICE, "DELETE", "/v1/accounts/me", headers=device).status_code == 204
    for path in ("/v1/manifest", "/v1/health", "/v1/cadence", "/openapi.json"):
        assert _call(relay, BOB, "GET", path, query="x=1").status_code == 200
    assert _call(relay, BOB, "HEAD", "/openapi.json").status_code == 200
    return relay.calls


def test_every_route_is_recorded_with_address_port_sizes_and_ids(tmp_path: Path) -> None:
    with observed_relay(tmp_path) as relay:
        calls = _drive_every_route(relay)
        served = _served_routes(relay.client.app)
    records = relay.http()
    assert len(records) == len(calls)
    for call, record in zip(calls, records, strict=True):
        assert (record.addr, record.port) == call.peer
        assert (record.method, record.path, record.query) == (call.method, call.path, call.query)
        assert record.request_bytes == len(call.body)
        assert record.status == call.response.status_code
        assert record.response_bytes == len(call.response.content)
        assert record.duration_us >= 0
        recorded_headers = dict(record.headers)
        for name, value in call.headers.items():  # credentials in full
            assert recorded_headers[name.lower()] == value
        if call.path.startswith("/v1/mailboxes/"):
            assert record.mailboxes == (call.path.split("/")[3],)
        if "Authorization" in call.headers:
            assert record.accounts  # the device's account, read from its credentials
    by_path = {(r.method, r.path): r for r in records}
    create = next(r for r in records if r.path == "/v1/accounts")
    assert create.accounts == (calls[0].response.json()["account_id"],)  # from the answer
    send = next(r for r in records if r.path.endswith("/messages"))
    assert send.messages == (json.loads(calls[[c.path for c in calls].index(send.path)].body)["message_id"],)
    poll = next(r for r in records if r.path.endswith("/poll"))
    assert poll.messages == send.messages  # handed out in the answer
    bundle = next(r for r in records if r.path.endswith("/bundle"))
    assert bundle.accounts == (create.accounts[0],)
    # Every route served appears in the record.
    http_routes = {(m, t) for m, t in served if m != "WEBSOCKET"}
    unrecorded = {
        (m, t)
        for m, t in http_routes
        if not any(m == rm and _template_regex(t).match(rp) for rm, rp in by_path)
    }
    assert not unrecorded, f"routes the view test does not drive or the view does not record: {unrecorded}"
    # Connections: each source's requests share one keep-alive connection number, sources differ.
    conns = {
        (r.addr, r.port): {x.conn for x in records if (x.addr, x.port) == (r.addr, r.port)} for r in records
    }
    assert all(len(numbers) == 1 for numbers in conns.values())
    assert len({next(iter(n)) for n in conns.values()}) == 3


def test_the_route_check_notices_a_route_nobody_drives(tmp_path: Path) -> None:
    """A route added to the app is in ``_served_routes``, so the coverage check above would fail."""
    with observed_relay(tmp_path) as relay:
        app = relay.client.app
        assert isinstance(app, FastAPI)
        before = _served_routes(app)

        async def new_thing() -> dict[str, str]:
            return {}

        app.add_api_route("/v1/new-thing", new_thing, methods=["GET"])
        assert _served_routes(app) - before == {("GET", "/v1/new-thing")}


# --------------------------------------------------------------------------- every frame type
def _frame_type(frame: Any) -> str:
    t: str = orjson.loads(frames.encode(frame))["t"]
    return t


def _sample_frames() -> dict[type, Any]:
    i, m = bytes(16), bytes(16)
    return {
        frames.Challenge: frames.Challenge(bytes(32)),
        frames.Subscribed: frames.Subscribed((m,), ()),
        frames.Envelope: frames.Envelope(m, i, 1, bytes(256)),
        frames.Sent: frames.Sent(i, False),
        frames.SendFailed: frames.SendFailed(i, "not_found"),
        frames.Error: frames.Error("malformed", "x"),
        frames.Subscribe: frames.Subscribe(()),
        frames.Ack: frames.Ack(()),
        frames.Send: frames.Send(m, bytes(32), i, bytes(256)),
    }


def test_every_frame_type_is_recorded_in_its_direction(tmp_path: Path) -> None:
    samples = _sample_frames()
    server_types = {_frame_type(samples[c]) for c in typing.get_args(frames.ServerFrame)}
    client_types = {_frame_type(samples[c]) for c in typing.get_args(frames.ClientFrame)}
    assert set(samples) == set(typing.get_args(frames.ServerFrame)) | set(typing.get_args(frames.ClientFrame))
    with observed_relay(tmp_path) as relay:
        client = relay.client
        mailbox = Mailbox()
        assert client.post("/v1/mailboxes", json=mailbox.create_body()).status_code == 201
        relay.source(BOB)
        first = os.urandom(16)
        with client.websocket_connect(ws.PATH) as sender:
            frames.decode_server_frame(sender.receive_text())
            sender.send_text(
                frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, first, payload(512)))
            )
            assert isinstance(frames.decode_server_frame(sender.receive_text()), frames.Sent)
            stranger = Mailbox()
            sender.send_text(
                frames.encode(frames.Send(stranger.mailbox_id, stranger.token, os.urandom(16), payload(256)))
            )
            assert isinstance(frames.decode_server_frame(sender.receive_text()), frames.SendFailed)
        relay.source(CAROL)
        with client.websocket_connect(ws.PATH) as drain:
            challenge = frames.decode_server_frame(drain.receive_text())
            assert isinstance(challenge, frames.Challenge)
            drain.send_text(
                json.dumps({"t": "subscribe", "mailboxes": [mailbox.drain_proof(challenge.nonce)]})
            )
            assert isinstance(frames.decode_server_frame(drain.receive_text()), frames.Subscribed)
            envelope = frames.decode_server_frame(drain.receive_text())
            assert isinstance(envelope, frames.Envelope)
            drain.send_text(frames.encode(frames.Ack((frames.EnvelopeRef(envelope.mailbox, envelope.id),))))
            drain.send_text("not json")
            assert isinstance(frames.decode_server_frame(drain.receive_text()), frames.Error)
            with pytest.raises(WebSocketDisconnect):
                drain.receive_text()
    records = relay.sink.records
    seen = [r for r in records if isinstance(r, WsFrame)]
    assert {r.type for r in seen if r.direction == "out"} >= server_types
    assert {r.type for r in seen if r.direction == "in"} >= client_types
    for r in seen:
        assert (r.addr, r.port) in (BOB, CAROL) and r.size > 0 and r.opcode == "text"
    mid, fid = mailbox.id, b64.encode(first)
    by_type: dict[tuple[str | None, str], WsFrame] = {}
    for r in seen:
        by_type.setdefault((r.type, r.direction), r)  # the first of each
    assert by_type["send", "in"].mailboxes == (mid,) and by_type["send", "in"].messages == (fid,)
    assert by_type["sent", "out"].messages == (fid,)
    assert by_type["subscribe", "in"].mailboxes == (mid,)
    assert by_type["subscribed", "out"].mailboxes == (mid,)
    assert by_type["envelope", "out"].mailboxes == (mid,) and by_type["envelope", "out"].messages == (fid,)
    assert by_type["ack", "in"].mailboxes == (mid,) and by_type["ack", "in"].messages == (fid,)
    assert by_type["envelope", "out"].size == len(frames.encode(envelope))
    assert by_type[None, "in"].size == len("not json")  # refused, and recorded
    opens = [r for r in records if isinstance(r, WsOpen)]
    closes = [r for r in records if isinstance(r, WsClose)]
    assert [(o.addr, o.port) for o in opens] == [BOB, CAROL]
    assert {(c.addr, c.port, c.direction, c.code) for c in closes} >= {(*CAROL, "out", ws.CLOSE_MALFORMED)}
    assert {r.conn for r in seen if (r.addr, r.port) == BOB} == {opens[0].conn}
    assert opens[0].conn != opens[1].conn


def test_refused_frames_are_recorded(tmp_path: Path) -> None:
    oversized = '{"t":"send","pad":"' + "a" * MAX_FRAME_BYTES + '"}'
    with observed_relay(tmp_path) as relay:
        relay.source(BOB)
        with relay.client.websocket_connect(ws.PATH) as sock:
            sock.receive_text()
            sock.send_bytes(b"\x00\x01binary")
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    sock.receive_text()
        with relay.client.websocket_connect(ws.PATH) as sock:
            sock.receive_text()
            sock.send_text(oversized)
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    sock.receive_text()
    frames_in = [r for r in relay.sink.records if isinstance(r, WsFrame) and r.direction == "in"]
    assert [(r.opcode, r.type, r.size) for r in frames_in] == [
        ("binary", None, 8),
        ("text", "send", len(oversized)),
    ]
    codes = [r.code for r in relay.sink.records if isinstance(r, WsClose) and r.direction == "out"]
    assert codes == [ws.CLOSE_MALFORMED, ws.CLOSE_TOO_LARGE]


def test_bad_http_input_is_recorded(tmp_path: Path) -> None:
    with observed_relay(tmp_path) as relay:
        client = relay.client
        big = client.post(
            "/v1/mailboxes", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"}
        )
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(4):
                yield b"y" * MAX_BODY

        chunked = client.post("/v1/mailboxes", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        broken = client.post(
            "/v1/accounts", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400
        missing = client.get("/v1/nothing/here")
        assert missing.status_code == 404
    big_r, chunked_r, broken_r, missing_r = relay.http()
    assert big_r.status == 413 and dict(big_r.headers)["content-length"] == str(MAX_BODY + 1)
    assert big_r.response_bytes == len(big.content)
    assert chunked_r.status == 413 and chunked_r.request_bytes > MAX_BODY  # read up to the limit
    assert broken_r.status == 400 and broken_r.request_bytes == len(b"{not json")
    assert (missing_r.path, missing_r.status) == ("/v1/nothing/here", 404)


# --------------------------------------------------------------------------- nothing changes
def _session(relay: Observed) -> list[Any]:
    """Requests and frames whose answers depend only on the app (seeded ids, a fixed clock)."""
    out: list[Any] = []
    client = relay.client
    mailbox = Mailbox(mailbox_id=bytes(range(16)), token=bytes(32))
    requests: list[tuple[str, str, bytes]] = [
        (
            "POST",
            "/v1/accounts",
            json.dumps(
                {
                    "identity_key": b64.encode(b"\x05" + bytes(32)),
                    "registration_id": 1,
                    "device_secret": b64.encode(bytes(32)),
                }
            ).encode(),
        ),
        ("POST", "/v1/mailboxes", json.dumps(mailbox.create_body()).encode()),
        (
            "POST",
            f"/v1/mailboxes/{mailbox.id}/messages",
            json.dumps({"message_id": b64.encode(bytes(16)), "payload": b64.encode(bytes(256))}).encode(),
        ),
        ("POST", "/v1/mailboxes", b"x" * (MAX_BODY + 1)),
        ("POST", "/v1/accounts", b"{"),
        ("GET", "/v1/accounts/me", b""),
        ("GET", "/v1/cadence", b""),
        ("GET", "/v1/manifest", b""),
        ("DELETE", "/v1/cadence", b""),
    ]
    for method, path, body in requests:
        headers = {"content-type": "application/json", "Sotto-Delivery-Token": b64.encode(mailbox.token)}
        r = client.request(method, path, content=body or None, headers=headers)
        out.append((r.status_code, sorted(r.headers.items()), r.content))
    with client.websocket_connect(ws.PATH) as sock:
        challenge = frames.decode_server_frame(sock.receive_text())
        assert isinstance(challenge, frames.Challenge)
        out.append(challenge.nonce)
        sock.send_text(json.dumps({"t": "subscribe", "mailboxes": [mailbox.drain_proof(challenge.nonce)]}))
        out.extend(sock.receive_text() for _ in range(2))  # subscribed, the envelope
        sock.send_text("[]")
        out.append(sock.receive_text())
        with pytest.raises(WebSocketDisconnect) as closed:
            sock.receive_text()
        out.append(closed.value.code)
    return out


def test_recording_changes_no_answer(tmp_path: Path) -> None:
    with observed_relay(tmp_path / "a", record=False) as plain:
        without = _session(plain)
    with observed_relay(tmp_path / "b", record=True) as recorded:
        with_view = _session(recorded)
    assert without == with_view
    assert len(recorded.sink.records) > 10 and not plain.sink.records


def test_recording_is_off_by_default_and_then_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(ServerConfig(data_dir=tmp_path))
    assert type(app) is RelayApp
    observed = create_app(ServerConfig(data_dir=tmp_path), observer=Observer(MemorySink()))
    assert type(observed) is ObservedRelayApp
    seen: dict[str, Any] = {}

    def fake_run(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr("sotto.server.__main__.run", fake_run)
    server_main(["--data", str(tmp_path)])
    assert seen["record_view"] is None
    server_main(["--data", str(tmp_path), "--record-view", str(tmp_path / "view.jsonl")])
    assert seen["record_view"] == tmp_path / "view.jsonl"


# --------------------------------------------------------------------------- connections
def test_connection_numbers_follow_keep_alive_and_socket_ends() -> None:
    clock = FakeClock()
    obs = Observer(MemorySink(), clock=clock, keep_alive_seconds=10)
    a, b = ("10.0.0.1", 5000, None), ("10.0.0.1", 5001, None)
    t = obs.now_us()
    first = obs.open_conn(a, t)
    obs.close_conn(a, t, ended=False)
    assert obs.open_conn(a, t + 5_000_000) == first  # the same keep-alive connection
    obs.close_conn(a, t + 5_000_000, ended=False)
    assert obs.open_conn(b, t) != first  # another port: another connection
    later = obs.open_conn(a, t + 16_000_000)  # idle beyond keep-alive: the relay closed it
    assert later not in (first,)
    obs.close_conn(a, t + 16_000_000, ended=True)  # a WebSocket on it ended
    assert obs.open_conn(a, t + 16_000_001) not in (first, later)


def test_requests_without_an_address_each_get_a_number_of_their_own() -> None:
    observer = Observer(MemorySink())
    keyed = ("192.0.2.1", 5000, None)
    first = observer.open_conn(keyed, 0)
    numbers = [observer.open_conn(None, 1) for _ in range(3)]
    for _ in range(3):
        observer.close_conn(None, 2, ended=False)
    assert len({first, *numbers}) == 4
    assert observer.open_conn(keyed, 3) == first  # the addressed connection keeps its number
    assert observer.tracked == 1  # addressless requests are not held


def test_connection_numbering_forgets_closed_connections() -> None:
    clock = FakeClock()
    obs = Observer(MemorySink(), clock=clock, keep_alive_seconds=10)
    t = obs.now_us()
    for port in range(10_000):
        key = ("10.0.0.1", port, None)
        obs.open_conn(key, t)
        obs.close_conn(key, t, ended=False)
        t += 10_000  # 100 new connections a second
    assert obs.tracked < 5_000  # not one entry per connection ever seen


# --------------------------------------------------------------------------- sinks
def test_file_sink_appends_json_lines_that_read_back(tmp_path: Path) -> None:
    path = tmp_path / "view" / "view.jsonl"
    records: list[ViewRecord] = [
        HttpExchange(
            1,
            1,
            "198.51.100.7",
            1,
            "GET",
            "/v1/health",
            "",
            (("authorization", "Basic x"),),
            0,
            200,
            15,
            7,
            (),
            (),
            ("acc",),
        ),
        WsOpen(2, 2, "2001:db8::1", 2, "/v1/ws", "", ()),
        WsFrame(3, 2, "2001:db8::1", 2, "in", "text", "send", 900, ("m",), ("i",)),
        WsClose(4, 2, None, None, "out", 4400),
    ]
    sink = FileSink(path)
    for record in records[:2]:
        sink.write(record)
    sink.close()
    again = FileSink(path)  # a restarted relay appends
    for record in records[2:]:
        again.write(record)
    again.close()
    with path.open("ab") as torn:
        torn.write(b'{"kind":"http","t_us":')
    assert read_view(path) == records
    assert json.loads(path.read_text().splitlines()[0])["kind"] == "http"


# --------------------------------------------------------------------------- the data directory
def test_free_pages_are_read_from_the_raw_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA secure_delete = OFF")  # the relay turns it on; here remnants stay
    conn.execute("CREATE TABLE t (v BLOB)")
    marker = b"REMNANT-" + os.urandom(8).hex().encode()
    conn.executemany("INSERT INTO t VALUES (?)", [(marker + bytes(3000),) for _ in range(50)])
    conn.commit()
    conn.execute("DELETE FROM t")
    conn.commit()
    expected = conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.close()
    raw = db.read_bytes()
    pages = free_pages(raw)
    assert expected > 10 and len(pages) == expected
    assert any(marker in page for page in pages.values())  # deleted rows, readable from free pages
    assert free_pages(b"not a database") == {}
    assert free_pages(raw[:100] + b"\x00" * 50) == {}  # truncated: no page to walk


def test_wal_frames_are_read_from_the_raw_log(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (v BLOB)")
    marker = b"IN-THE-LOG-" + os.urandom(8).hex().encode()
    conn.execute("INSERT INTO t VALUES (?)", (marker,))
    conn.commit()
    wal = (tmp_path / "w.db-wal").read_bytes()
    frames_ = wal_frames(wal)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert len(frames_) == (len(wal) - 32) // (24 + page_size) >= 2
    assert all(f.current for f in frames_) and frames_[-1].commit > 0
    assert any(marker in f.data for f in frames_)
    assert wal_frames(b"not a log") == [] and wal_frames(wal[:32]) == []


def test_snapshot_copies_the_data_directory_byte_for_byte(tmp_path: Path) -> None:
    from sotto.server.storage import SqliteStorage

    store = SqliteStorage.in_dir(tmp_path)
    try:
        (tmp_path / "server.key").write_bytes(bytes(32))
        snap = snapshot_data_dir(tmp_path, t_us=42)
        assert snap.t_us == 42
        assert snap.files["relay.db"] == (tmp_path / "relay.db").read_bytes()
        assert snap.files["server.key"] == bytes(32)
        assert set(snap.files) == {p.name for p in tmp_path.iterdir() if p.is_file()}
        assert isinstance(snap.free_pages(), dict) and isinstance(snap.wal_frames(), list)
    finally:
        store.close_sync()


# --------------------------------------------------------------------------- a real relay process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _raw_get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: relay\r\nauthorization: Basic Y2FuYXJ5\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65_536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        rest += sock.recv(65_536)
    return head.split(b" ")[1]


def test_sotto_server_record_view_on_a_real_process(tmp_path: Path) -> None:
    port, view = _free_port(), tmp_path / "view.jsonl"
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sotto.cli",
                "server",
                "--port",
                str(port),
                "--data",
                str(tmp_path / "data"),
                "--record-view",
                str(view),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "relay did not start"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.1", 0)) as keep_alive:
            local = keep_alive.getsockname()[1]
            assert _raw_get(keep_alive, "/v1/health") == b"200"
            assert _raw_get(keep_alive, "/v1/cadence?x=1") == b"200"
        with socket.create_connection(("127.0.0.1", port)) as other:
            other_port = other.getsockname()[1]
            assert _raw_get(other, "/v1/nothing") == b"404"
        with connect(f"ws://127.0.0.1:{port}/v1/ws") as sock:
            ws_port = sock.socket.getsockname()[1]
            assert isinstance(frames.decode_server_frame(sock.recv()), frames.Challenge)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    records = read_view(view)
    http = [r for r in records if isinstance(r, HttpExchange)]
    mine = [r for r in http if r.port in (local, other_port)]
    assert [(r.addr, r.port, r.path, r.query, r.status) for r in mine] == [
        ("127.0.0.1", local, "/v1/health", "", 200),
        ("127.0.0.1", local, "/v1/cadence", "x=1", 200),
        ("127.0.0.1", other_port, "/v1/nothing", "", 404),
    ]
    assert mine[0].conn == mine[1].conn != mine[2].conn  # keep-alive reuse is one connection
    assert all(dict(r.headers)["authorization"] == "Basic Y2FuYXJ5" and r.response_bytes > 0 for r in mine)
    assert mine[0].t_us <= mine[1].t_us <= mine[2].t_us
    opened = [r for r in records if isinstance(r, WsOpen)]
    assert [(r.addr, r.port) for r in opened] == [("127.0.0.1", ws_port)]
    pushed = [r for r in records if isinstance(r, WsFrame)]
    assert [(r.direction, r.type, r.port) for r in pushed] == [("out", "challenge", ws_port)]
    assert any(isinstance(r, WsClose) and r.port == ws_port for r in records)
    assert "recording the operator's view" in log.read_text()


def test_the_document_names_every_record_kind_and_field() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "operator-view.md").read_text(encoding="utf-8")
    for cls in (HttpExchange, WsOpen, WsFrame, WsClose):
        assert f"`{cls.KIND}`" in text
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in text, (cls.KIND, f.name)
