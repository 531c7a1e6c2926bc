"""Budgets for requests through the gateway: they carry no client address, so they count by the
forwarder they came through, apart from direct clients and from every other forwarder."""

from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.crypto.random import system_rng
from sotto.server import ServerConfig, create_app
from sotto.server.config import RateLimit
from sotto.server.gateway import GATEWAY_PATH, gateway_key, with_gateway
from sotto.server.ratelimit import FORWARDED_BY, ForwarderSource, RateLimiter, source_key
from sotto.server.server_key import ServerKey
from sotto.server.storage import MemoryStorage
from sotto.wire import bhttp, ohttp
from tests.server.conftest import GENEROUS, FakeClock, Mailbox
from tests.server.test_gateway import REQ, create_mailbox_request

FORWARDER_A, FORWARDER_B, DIRECT = "192.0.2.1", "192.0.2.2", "198.51.100.9"
NEVER = 1e-9
"""A refill rate that gives nothing back within a test."""


@dataclasses.dataclass
class From:
    """Outermost: each request comes from the address in its ``x-test-from`` header."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sender = dict(scope["headers"]).get(b"x-test-from", b"203.0.113.1").decode()
            scope = {**scope, "client": (sender, 40_000)}
        await self.app(scope, receive, send)


@dataclasses.dataclass
class Relay:
    client: TestClient
    clock: FakeClock
    key: ohttp.GatewayKey

    def create_through(self, forwarder: str) -> int:
        """Create a mailbox through the gateway from ``forwarder``: the inner status (or the
        plain status of the gateway's refusal)."""
        dated = create_mailbox_request(Mailbox(), (b"date", _http_date(self.clock.now())))
        enc, context = ohttp.encapsulate_request(self.key.config, bhttp.encode_request(dated), system_rng)
        answer = self.client.post(GATEWAY_PATH, content=enc, headers={**REQ, "x-test-from": forwarder})
        if answer.headers["content-type"] != ohttp.RESPONSE_MEDIA_TYPE:
            return int(answer.status_code)
        return bhttp.decode_response(ohttp.decapsulate_response(context, answer.content)).status

    def create_direct(self, address: str) -> int:
        body: dict[str, Any] = Mailbox().create_body()
        return int(self.client.post("/v1/mailboxes", json=body, headers={"x-test-from": address}).status_code)


def _http_date(seconds: float) -> bytes:
    return email.utils.formatdate(seconds, usegmt=True).encode()


def _relay(tmp_path: Path, *, gateway_limit: RateLimit | None) -> Iterator[Relay]:
    clock = FakeClock()
    limits = dataclasses.replace(GENEROUS, mailbox_creation=RateLimit(burst=3, per_second=NEVER))
    config = ServerConfig(data_dir=tmp_path / "data", rate_limits=limits, forwarded_scale=2)
    app = create_app(config, storage=MemoryStorage(), clock=clock)
    key = gateway_key(ServerKey(bytes(range(32))))
    wrapped = From(with_gateway(app, key, clock=clock, limit=gateway_limit))
    with TestClient(wrapped, raise_server_exceptions=False) as client:
        yield Relay(client, clock, key)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    yield from _relay(tmp_path, gateway_limit=None)


def test_a_flooding_forwarder_spends_its_own_budget_and_no_one_elses(relay: Relay) -> None:
    # Per source: 3 creations; a forwarder counts as one source at twice that (forwarded_scale 2).
    assert [relay.create_through(FORWARDER_A) for _ in range(8)] == [201] * 6 + [429] * 2
    # Another forwarder, a direct client, and a direct client on the flooding forwarder's own
    # address each still have their whole budget.
    assert [relay.create_through(FORWARDER_B) for _ in range(7)] == [201] * 6 + [429]
    assert [relay.create_direct(DIRECT) for _ in range(4)] == [201] * 3 + [429]
    assert [relay.create_direct(FORWARDER_A) for _ in range(4)] == [201] * 3 + [429]
    assert relay.create_through(FORWARDER_A) == 429


def test_the_gateway_refuses_a_forwarder_over_its_budget_before_opening_anything(tmp_path: Path) -> None:
    for relay in _relay(tmp_path, gateway_limit=RateLimit(burst=2, per_second=NEVER)):
        assert [relay.create_through(FORWARDER_A) for _ in range(2)] == [201, 201]
        refused = relay.client.post(
            GATEWAY_PATH, content=b"junk", headers={**REQ, "x-test-from": FORWARDER_A}
        )
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert [relay.create_through(FORWARDER_B) for _ in range(2)] == [201, 201]
        assert relay.create_direct(FORWARDER_A) == 201  # the relay's own paths are not counted here


def test_a_forwarded_source_is_kept_apart_from_the_same_network_asking_directly() -> None:
    direct = {"client": (FORWARDER_A, 1)}
    forwarded = {"client": None, FORWARDED_BY: source_key(direct)}
    other = {"client": None, FORWARDED_BY: source_key({"client": (FORWARDER_B, 1)})}
    assert isinstance(source_key(forwarded), ForwarderSource)
    assert not isinstance(source_key(direct), ForwarderSource)
    assert len({source_key(direct), source_key(forwarded), source_key(other)}) == 3
    limiter = RateLimiter(RateLimit(burst=1, per_second=NEVER), forwarded_scale=3)
    assert [limiter.allow(source_key(forwarded), 0.0) for _ in range(4)] == [True] * 3 + [False]
    assert [limiter.allow((source_key(forwarded), b"name"), 0.0) for _ in range(4)] == [True] * 3 + [False]
    assert [limiter.allow(source_key(direct), 0.0) for _ in range(2)] == [True, False]
    assert limiter.retry_after(source_key(forwarded), 0.0) >= 1
    with pytest.raises(ValueError, match="forwarded_scale"):
        RateLimiter(RateLimit(1, 1), forwarded_scale=0.5)
    with pytest.raises(ValueError, match="forwarded_scale"):
        ServerConfig(forwarded_scale=0)
