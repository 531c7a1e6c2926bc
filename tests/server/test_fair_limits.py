"""Fair limits over HTTP: each source network has its own budget, so one that floods an
anonymous call cannot starve another; username claims are throttled like lookups; and floods
of strangers' bundle fetches make no limiter state at all."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.server import ServerConfig, create_app
from sotto.server.config import RateLimit, RateLimits
from sotto.server.context import RelayContext
from sotto.server.storage import MemoryStorage
from sotto.wire import api, b64, work
from tests.server.conftest import (
    GENEROUS,
    FakeClock,
    Mailbox,
    Relay,
    create_account,
    create_mailbox,
    ec_key,
    make_relay,
    payload,
    send,
)

HONEST, ABUSIVE = "127.0.0.1", "127.0.0.2"


def _from_header(app: ASGIApp) -> ASGIApp:
    """Let each test request name the address it comes from (x-source), as a socket would."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-source":
                    scope["client"] = (value.decode(), 40_000)
        await app(scope, receive, send)

    return wrapped


@dataclasses.dataclass
class Sources:
    client: TestClient
    ctx: RelayContext

    def post(self, source: str, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers={"x-source": source, **kwargs.pop("headers", {})}, **kwargs)


def _sources(limits: RateLimits) -> Iterator[Sources]:
    app = create_app(ServerConfig(rate_limits=limits), storage=MemoryStorage(), clock=FakeClock())
    with TestClient(_from_header(app), raise_server_exceptions=False) as client:
        yield Sources(client, app.state.relay)


@pytest.fixture
def defaults() -> Iterator[Sources]:
    yield from _sources(RateLimits())


def _account_body() -> dict[str, Any]:
    return {"identity_key": ec_key(), "registration_id": 7, "device_secret": b64.encode(os.urandom(32))}


def test_a_flooding_source_cannot_starve_account_creation(defaults: Sources) -> None:
    flood = [defaults.post(ABUSIVE, "/v1/accounts", json=_account_body()).status_code for _ in range(400)]
    assert flood.count(429) >= 150
    # The flood made the relay busy: an honest creation now costs a solved challenge, and gets in.
    honest = [_create_solving(defaults, HONEST) for _ in range(10)]
    assert honest == [201] * 10


def _create_solving(sources: Sources, source: str) -> int:
    """One creation from ``source``, solving the relay's challenge if it asks (relay-protocol §8)."""
    body = _account_body()
    answer = sources.post(source, "/v1/accounts", json=body)
    if answer.status_code == 428:
        challenge = api.WorkRequired.model_validate(answer.json()).challenge
        nonce = work.solve(challenge, work.Challenge.from_bytes(challenge).difficulty)
        header = {"Sotto-Work": work.encode_header(challenge, nonce)}
        answer = sources.post(source, "/v1/accounts", json=body, headers=header)
    return int(answer.status_code)


def test_a_flooding_source_cannot_starve_mailbox_creation(tmp_path: Path) -> None:
    limits = dataclasses.replace(RateLimits(), mailbox_creation=RateLimit(burst=20, per_second=0.001))
    for sources in _sources(limits):
        flood = [sources.post(ABUSIVE, "/v1/mailboxes", json=Mailbox().create_body()) for _ in range(100)]
        assert [r.status_code for r in flood].count(429) == 80
        honest = [sources.post(HONEST, "/v1/mailboxes", json=Mailbox().create_body()) for _ in range(10)]
        assert [r.status_code for r in honest] == [201] * 10


def test_a_flooding_source_cannot_starve_username_lookups(defaults: Sources) -> None:
    get = defaults.client.get
    flood = [get("/v1/usernames/nobody", headers={"x-source": ABUSIVE}).status_code for _ in range(200)]
    assert flood.count(429) >= 60
    honest = [get("/v1/usernames/nobody", headers={"x-source": HONEST}).status_code for _ in range(5)]
    assert honest == [404] * 5


def test_username_claims_are_throttled_per_account_and_per_source(defaults: Sources) -> None:
    client = defaults.client
    prober = create_account(client)
    claims = [
        client.put(
            "/v1/accounts/me/username",
            json={"username": f"probe{n}"},
            headers={**prober.headers, "x-source": ABUSIVE},
        ).status_code
        for n in range(50)
    ]
    assert claims.count(204) == 20 and claims.count(429) == 30
    # Another account from the same source is held by the source's budget too...
    other = create_account(client)
    other_claim = client.put(
        "/v1/accounts/me/username", json={"username": "mine"}, headers={**other.headers, "x-source": ABUSIVE}
    )
    assert other_claim.status_code == 429
    # ...while an account elsewhere claims freely.
    honest = client.put(
        "/v1/accounts/me/username", json={"username": "mine"}, headers={**other.headers, "x-source": HONEST}
    )
    assert honest.status_code == 204


def test_refused_credentials_use_up_the_source_and_only_it(defaults: Sources) -> None:
    client = defaults.client
    mailbox = create_mailbox(client)
    wrong = [
        client.post(
            f"/v1/mailboxes/{mailbox.id}/messages",
            json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(payload())},
            headers={"Sotto-Delivery-Token": b64.encode(os.urandom(32)), "x-source": ABUSIVE},
        ).status_code
        for _ in range(300)
    ]
    assert wrong.count(404) == 200 and wrong.count(429) == 100
    assert send(client, mailbox, os.urandom(16), payload()).status_code == 202


def test_strangers_bundle_fetches_make_no_limiter_state(defaults: Sources) -> None:
    client = defaults.client
    victim = create_account(client)
    for _ in range(500):
        answer = client.get(
            f"/v1/accounts/{victim.id}/bundle",
            headers={
                "Sotto-Access-Token": b64.encode(os.urandom(32)),
                "x-source": f"127.1.{_ // 250}.{_ % 250}",
            },
        )
        assert answer.status_code == 401
    assert len(defaults.ctx.limits.bundle_fetch) == 0
    assert len(defaults.ctx.limits.bundle_fetch_per_account) == 0


def test_polls_of_one_mailbox_are_limited_and_answers_are_capped(tmp_path: Path) -> None:
    limits = dataclasses.replace(GENEROUS, poll_per_mailbox=RateLimit(burst=3, per_second=0.001))
    for relay in make_relay(tmp_path, limits=limits, poll_reply_max_bytes=3 * 65_536):
        mailbox, other = create_mailbox(relay.client), create_mailbox(relay.client)
        for _ in range(5):
            assert send(relay.client, mailbox, os.urandom(16), payload(65_536)).status_code == 202
        first = _poll(relay, mailbox)
        assert first.status_code == 200
        assert len(first.json()["envelopes"]) == 3 and first.json()["more"] is True
        assert [_poll(relay, mailbox).status_code for _ in range(3)] == [200, 200, 429]
        assert _poll(relay, other).status_code == 200  # another mailbox has its own budget


def _poll(relay: Relay, mailbox: Mailbox) -> Any:
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    content = b'{"ack":[],"limit":256}'
    headers = mailbox.auth_header("POST", path, relay.clock.now(), content)
    return relay.client.post(path, content=content, headers={**headers, "content-type": "application/json"})
