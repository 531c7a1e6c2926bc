"""The Oblivious HTTP gateway in front of the relay app: sealed requests in, sealed answers out,
no client address or connection reaching the app, and every bad input refused before it."""

from __future__ import annotations

import email.utils
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.crypto.random import system_rng
from sotto.server import ServerConfig, create_app
from sotto.server.gateway import (
    DATE_PROBLEM,
    DATE_WINDOW_SECONDS,
    GATEWAY_PATH,
    KEYS_PATH,
    OHTTP_KEY_PROBLEM,
    ReplayWindow,
    gateway_key,
    load_gateway_key,
    with_gateway,
)
from sotto.server.observer import HttpExchange, MemorySink, Observer
from sotto.server.server_key import ServerKey, load_or_create
from sotto.server.storage import MemoryStorage
from sotto.wire import b64, bhttp, ohttp
from tests.server.conftest import GENEROUS, FakeClock, Mailbox
from tests.server.test_attachments import upload

REQ = {"content-type": ohttp.REQUEST_MEDIA_TYPE}


@dataclass
class Spy:
    """Between the gateway and the app: every scope that reached the app."""

    app: ASGIApp
    scopes: list[Scope] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.scopes.append(scope)
        await self.app(scope, receive, send)


@dataclass
class Gateway:
    client: TestClient
    clock: FakeClock
    key: ohttp.GatewayKey
    spy: Spy
    sink: MemorySink

    def seal(
        self, request: bhttp.Request, *, date: float | None = None
    ) -> tuple[bytes, ohttp.ResponseContext]:
        when = self.clock.now() if date is None else date
        dated = bhttp.Request(
            request.method,
            request.scheme,
            request.authority,
            request.path,
            (*request.headers, (b"date", email.utils.formatdate(when, usegmt=True).encode())),
            request.content,
        )
        return ohttp.encapsulate_request(self.key.config, bhttp.encode_request(dated), system_rng)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(GATEWAY_PATH, content=body, headers=headers or REQ)

    def exchange(self, request: bhttp.Request, **options: Any) -> bhttp.Response:
        enc, context = self.seal(request, **options)
        answer = self.post(enc)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == ohttp.RESPONSE_MEDIA_TYPE
        return bhttp.decode_response(ohttp.decapsulate_response(context, answer.content))

    def inner(self) -> list[Scope]:
        return [s for s in self.spy.scopes if s["path"] not in (GATEWAY_PATH, KEYS_PATH)]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    clock = FakeClock()
    sink = MemorySink()
    observer = Observer(sink, clock=clock)
    key = gateway_key(ServerKey(bytes(range(32))))
    app = create_app(
        ServerConfig(data_dir=tmp_path / "data", rate_limits=GENEROUS),
        storage=MemoryStorage(),
        clock=clock,
        observer=observer,
    )
    spy = Spy(app)
    wrapped = with_gateway(spy, key, clock=clock, observer=observer)
    with TestClient(wrapped, raise_server_exceptions=False) as client:
        yield Gateway(client, clock, key, spy, sink)


def create_mailbox_request(mailbox: Mailbox, *extra: tuple[bytes, bytes]) -> bhttp.Request:
    body = json.dumps(mailbox.create_body()).encode()
    fields = ((b"content-type", b"application/json"), *extra)
    return bhttp.Request(b"POST", b"https", b"relay.example", b"/v1/mailboxes", fields, body)


# ---------------------------------------------------------------------------- keys
def test_the_key_is_derived_from_the_server_key_and_published(gateway: Gateway, tmp_path: Path) -> None:
    assert gateway_key(ServerKey(bytes(range(32)))).config == gateway.key.config
    assert gateway_key(ServerKey(bytes(32))).config.public_key != gateway.key.config.public_key
    data = tmp_path / "other"
    assert load_gateway_key(data).config == gateway_key(load_or_create(data)).config
    answer = gateway.client.get(KEYS_PATH)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == ohttp.KEYS_MEDIA_TYPE
    assert ohttp.decode_key_configs(answer.content) == (gateway.key.config,)
    assert "GatewayKey(key_id=1" in repr(gateway.key) and "<secret>" in repr(gateway.key)


# ---------------------------------------------------------------------------- the way through
def test_a_sealed_request_reaches_the_app_with_no_address_and_none_of_the_outer_headers(
    gateway: Gateway,
) -> None:
    mailbox = Mailbox()
    enc, context = gateway.seal(create_mailbox_request(mailbox, (b"sotto-x", b"kept")))
    outer = {**REQ, "x-forwarded-for": "198.51.100.7", "user-agent": "someone's browser"}
    answer = gateway.post(enc, outer)
    assert answer.status_code == 200
    response = bhttp.decode_response(ohttp.decapsulate_response(context, answer.content))
    assert response.status == 201
    (scope,) = gateway.inner()
    assert scope["client"] is None and scope["server"] is None
    names = {bytes(n) for n, _ in scope["headers"]}
    assert b"x-forwarded-for" not in names and b"user-agent" not in names and b"date" not in names
    assert (b"host", b"relay.example") in scope["headers"] and (b"sotto-x", b"kept") in scope["headers"]
    # the mailbox exists: a send through the gateway lands in it, a poll through it reads it
    send = bhttp.Request(
        b"POST",
        b"https",
        b"relay.example",
        f"/v1/mailboxes/{mailbox.id}/messages".encode(),
        (
            (b"content-type", b"application/json"),
            (b"sotto-delivery-token", b64.encode(mailbox.token).encode()),
        ),
        json.dumps({"message_id": b64.encode(bytes(16)), "payload": b64.encode(bytes(256))}).encode(),
    )
    assert gateway.exchange(send).status == 202
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = b'{"ack": [], "limit": 10}'
    headers = mailbox.auth_header("POST", path, gateway.clock.now(), body)
    poll = bhttp.Request(
        b"POST",
        b"https",
        b"relay.example",
        path.encode(),
        (
            (b"content-type", b"application/json"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ),
        body,
    )
    polled = gateway.exchange(poll)
    assert polled.status == 200, polled.content
    assert len(json.loads(polled.content)["envelopes"]) == 1


def test_the_operator_view_shows_the_forwarder_outside_and_no_address_inside(gateway: Gateway) -> None:
    gateway.exchange(create_mailbox_request(Mailbox()))
    records = [r for r in gateway.sink.records if isinstance(r, HttpExchange)]
    outer = [r for r in records if r.path == GATEWAY_PATH]
    inner = [r for r in records if r.path == "/v1/mailboxes"]
    assert len(outer) == 1 and outer[0].addr == "testclient"
    assert len(inner) == 1 and inner[0].addr is None and inner[0].port is None


def test_each_request_through_the_gateway_has_a_connection_number_of_its_own(gateway: Gateway) -> None:
    for _ in range(3):
        gateway.exchange(create_mailbox_request(Mailbox()))
    records = [r for r in gateway.sink.records if isinstance(r, HttpExchange)]
    outer = {r.conn for r in records if r.path == GATEWAY_PATH}
    inner = [r.conn for r in records if r.path == "/v1/mailboxes"]
    assert len(outer) == 1  # the forwarder's one kept-alive connection
    assert len(set(inner)) == 3 and not outer & set(inner)


def test_other_paths_and_the_lifespan_pass_through(gateway: Gateway) -> None:
    assert gateway.client.get("/v1/health").json() == {"status": "ok"}
    assert gateway.spy.scopes[-1]["client"] == ("testclient", 50000)


def test_a_query_string_and_an_error_status_come_back_sealed(gateway: Gateway) -> None:
    request = bhttp.Request(b"GET", b"https", b"relay.example", b"/v1/mailboxes/nope/export?x=1")
    response = gateway.exchange(request)
    assert response.status >= 400
    assert gateway.inner()[-1]["query_string"] == b"x=1"


# ---------------------------------------------------------------------------- refusals
def _refused(gateway: Gateway, answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json()
    assert problem["code"] == code and problem["status"] == status
    assert gateway.inner() == []
    return problem


def test_a_replayed_request_is_refused_and_reaches_the_app_once(gateway: Gateway) -> None:
    enc, _ = gateway.seal(create_mailbox_request(Mailbox()))
    assert gateway.post(enc).status_code == 200
    assert len(gateway.inner()) == 1
    answer = gateway.post(enc)
    assert answer.status_code == 400 and answer.json()["code"] == "replayed"
    assert len(gateway.inner()) == 1


def test_malformed_wrong_key_and_tampered_requests_never_reach_the_app(gateway: Gateway) -> None:
    _refused(gateway, gateway.post(b"\x01\x00"), 400, "malformed")
    enc, _ = gateway.seal(create_mailbox_request(Mailbox()))
    wrong_key = bytes([enc[0] ^ 0xFF]) + enc[1:]
    assert _refused(gateway, gateway.post(wrong_key), 400, "ohttp_key")["type"] == OHTTP_KEY_PROBLEM
    wrong_aead = enc[:5] + b"\x00\x09" + enc[7:]
    assert _refused(gateway, gateway.post(wrong_aead), 400, "ohttp_key")["type"] == OHTTP_KEY_PROBLEM
    tampered = enc[:-1] + bytes([enc[-1] ^ 1])
    _refused(gateway, gateway.post(tampered), 400, "decryption_failed")
    # the untampered one still goes through: a forged copy did not burn it
    assert gateway.post(enc).status_code == 200


def test_oversized_and_wrongly_typed_bodies_and_other_methods_are_refused(gateway: Gateway) -> None:
    big = bytes(ohttp.MAX_ENCAPSULATED_BYTES + 1)
    _refused(gateway, gateway.post(big), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as read
        for _ in range(ohttp.MAX_ENCAPSULATED_BYTES // 65_536 + 2):
            yield bytes(65_536)

    _refused(gateway, gateway.client.post(GATEWAY_PATH, content=chunks(), headers=REQ), 413, "too_large")
    enc, _ = gateway.seal(create_mailbox_request(Mailbox()))
    _refused(gateway, gateway.post(enc, {"content-type": "application/json"}), 415, "unsupported_media_type")
    _refused(gateway, gateway.client.get(GATEWAY_PATH), 405, "method_not_allowed")


def _sealed_problem(gateway: Gateway, enc: bytes, context: ohttp.ResponseContext) -> bhttp.Response:
    answer = gateway.post(enc)
    assert answer.status_code == 200
    response = bhttp.decode_response(ohttp.decapsulate_response(context, answer.content))
    assert response.status == 400
    assert gateway.inner() == []
    return response


def test_a_date_outside_the_window_gets_a_sealed_date_problem_with_the_gateways_date(
    gateway: Gateway,
) -> None:
    for offset in (DATE_WINDOW_SECONDS + 5, -(DATE_WINDOW_SECONDS + 5)):
        enc, context = gateway.seal(create_mailbox_request(Mailbox()), date=gateway.clock.now() + offset)
        response = _sealed_problem(gateway, enc, context)
        assert json.loads(response.content)["type"] == DATE_PROBLEM
        (date,) = [v for n, v in response.headers if n == b"date"]
        assert email.utils.parsedate_to_datetime(date.decode()).timestamp() == int(gateway.clock.now())


def test_no_date_or_a_request_that_is_not_binary_http_or_names_the_gateway_is_refused_sealed(
    gateway: Gateway,
) -> None:
    undated = bhttp.encode_request(create_mailbox_request(Mailbox()))
    enc, context = ohttp.encapsulate_request(gateway.key.config, undated, system_rng)
    assert json.loads(_sealed_problem(gateway, enc, context).content)["type"] == DATE_PROBLEM
    enc, context = ohttp.encapsulate_request(gateway.key.config, b"\x07not bhttp", system_rng)
    assert json.loads(_sealed_problem(gateway, enc, context).content)["code"] == "malformed"
    loop = bhttp.Request(b"POST", b"https", b"relay.example", GATEWAY_PATH.encode())
    enc, context = gateway.seal(loop)
    assert json.loads(_sealed_problem(gateway, enc, context).content)["code"] == "bad_path"


def test_a_copy_sent_after_the_replay_memory_forgot_it_fails_on_its_date(gateway: Gateway) -> None:
    enc, context = gateway.seal(create_mailbox_request(Mailbox()))
    assert gateway.post(enc).status_code == 200
    gateway.clock.seconds += 2 * DATE_WINDOW_SECONDS + 1
    answer = gateway.post(enc)
    assert answer.status_code == 200  # not remembered any more, so it opens...
    response = bhttp.decode_response(ohttp.decapsulate_response(context, answer.content))
    assert (
        response.status == 400 and json.loads(response.content)["type"] == DATE_PROBLEM
    )  # ...and is refused
    assert len(gateway.inner()) == 1


def test_a_full_replay_window_refuses_rather_than_forgets(tmp_path: Path) -> None:
    window = ReplayWindow(memory_seconds=10, max_entries=2)
    assert window.remember(b"a", 0) and window.remember(b"b", 1)
    assert not window.remember(b"c", 2) and not window.seen(b"c", 2)
    assert window.seen(b"a", 9.9) and not window.seen(b"a", 10.5) and len(window) == 1
    assert window.remember(b"c", 10.5)

    clock = FakeClock()
    key = gateway_key(ServerKey(bytes(32)))
    app = create_app(
        ServerConfig(data_dir=tmp_path, rate_limits=GENEROUS), storage=MemoryStorage(), clock=clock
    )
    spy = Spy(app)
    with TestClient(with_gateway(spy, key, clock=clock, max_replay_entries=1)) as client:
        gw = Gateway(client, clock, key, spy, MemorySink())
        assert gw.post(gw.seal(create_mailbox_request(Mailbox()))[0]).status_code == 200
        answer = gw.post(gw.seal(create_mailbox_request(Mailbox()))[0])
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert len(gw.inner()) == 1


def test_an_answer_is_sealed_not_plain(gateway: Gateway) -> None:
    request = bhttp.Request(b"GET", b"https", b"relay.example", b"/v1/health")
    enc, context = gateway.seal(request)
    answer = gateway.post(enc)
    assert answer.status_code == 200
    assert bhttp.decode_response(ohttp.decapsulate_response(context, answer.content)).status == 200
    assert b"ok" not in answer.content


# ---------------------------------------------------------------------------- mounting
def test_the_relay_mounts_the_gateway_unless_told_not_to(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from sotto.server.__main__ import main as server_main
    from sotto.server.config import RateLimit, storage_settings
    from sotto.server.gateway import GatewayMiddleware
    from sotto.server.runner import uvicorn_config

    mounted = uvicorn_config(ServerConfig(data_dir=tmp_path / "on")).app
    assert isinstance(mounted, GatewayMiddleware) and mounted.limiter is not None
    assert mounted.limiter.limit == ServerConfig().rate_limits.forwarded
    assert not isinstance(
        uvicorn_config(ServerConfig(data_dir=tmp_path / "off", gateway=False)).app, GatewayMiddleware
    )
    options = SimpleNamespace(
        mailbox_quota=1,
        mailbox_quota_mib=1,
        token_quota=1,
        prekey_quota=1,
        min_free_disk_mib=0,
        checkpoint_interval=2.0,
        gateway=False,
        forwarder_burst=5.0,
        forwarder_per_second=0.5,
    )
    settings = storage_settings(options)
    assert settings["gateway"] is False
    assert settings["rate_limits"].forwarded == RateLimit(5.0, 0.5)
    with pytest.raises(SystemExit):
        server_main(["--cadence-tick", "0"])


# ---------------------------------------------------------------------------- answers too large
def test_an_answer_over_the_limit_is_stopped_so_a_blob_is_not_spent(gateway: Gateway) -> None:
    """A whole blob larger than a sealed answer holds: the gateway answers 502 and stops the
    relay's answer at the send that crosses the limit, so the blob's one fetch is not counted
    (clients fetch such a blob in pieces through a forwarder) and a direct download still
    gets it."""
    data = os.urandom(bhttp.DEFAULT_LIMITS.max_content + 200_000)
    blob_id = upload(cast("Any", SimpleNamespace(client=gateway.client)), data, recipients=1)
    request = bhttp.Request(b"GET", b"https", b"relay.example", f"/v1/attachments/{blob_id}".encode())
    assert gateway.exchange(request).status == 502
    piece = bhttp.Request(
        b"GET",
        b"https",
        b"relay.example",
        f"/v1/attachments/{blob_id}".encode(),
        ((b"range", b"bytes=0-99"),),
    )
    assert gateway.exchange(piece).content == data[:100]
    whole = gateway.client.get(f"/v1/attachments/{blob_id}")
    assert whole.status_code == 200 and whole.content == data
    assert gateway.client.get(f"/v1/attachments/{blob_id}").status_code == 404
