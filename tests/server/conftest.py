"""A relay app on a fake clock, driven through Starlette's TestClient, with small request helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import system_rng
from sotto.server import ServerConfig, create_app
from sotto.server.auth import ReplayGuard
from sotto.server.clock import SECONDS_PER_DAY
from sotto.server.config import RateLimit, RateLimits
from sotto.server.context import RelayContext
from sotto.server.storage import MemoryStorage, SqliteStorage, Storage
from sotto.wire import auth, b64

DAY = 20_000


@dataclass
class FakeClock:
    seconds: float = DAY * SECONDS_PER_DAY + 43_200.0

    def now(self) -> float:
        return self.seconds

    def advance_days(self, days: int) -> None:
        self.seconds += days * SECONDS_PER_DAY


GENEROUS = RateLimits(
    account_creation=RateLimit(10_000, 10_000),
    mailbox_creation=RateLimit(10_000, 10_000),
    username_lookup=RateLimit(10_000, 10_000),
    username_lookup_per_name=RateLimit(10_000, 10_000),
    bundle_fetch=RateLimit(10_000, 10_000),
    bundle_fetch_per_account=RateLimit(10_000, 10_000),
    username_claim=RateLimit(10_000, 10_000),
    anonymous_failures=RateLimit(10_000, 10_000),
    poll_per_mailbox=RateLimit(10_000, 10_000),
)


@dataclass
class Relay:
    """A running app and the clock it reads."""

    client: TestClient
    clock: FakeClock
    storage: Storage

    @property
    def ctx(self) -> RelayContext:
        ctx: RelayContext = self.client.app.state.relay  # type: ignore[attr-defined]
        return ctx


def make_relay(
    tmp_path: Path, backend: str = "memory", limits: RateLimits = GENEROUS, **config: Any
) -> Iterator[Relay]:
    clock = FakeClock()
    storage: Storage = MemoryStorage() if backend == "memory" else SqliteStorage.in_dir(tmp_path / "data")
    app = create_app(
        ServerConfig(data_dir=tmp_path / "data", rate_limits=limits, **config), storage=storage, clock=clock
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        relay = Relay(client, clock, storage)
        # As if started an hour ago: signatures dated now pass the start rule (tested on its own).
        relay.ctx.replay_guard = ReplayGuard(clock.now() - 3_600)
        yield relay
    if isinstance(storage, SqliteStorage):
        storage.close_sync()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    yield from make_relay(tmp_path)


@pytest.fixture(params=["memory", "sqlite"])
def any_relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Relay]:
    yield from make_relay(tmp_path, request.param)


# ---------------------------------------------------------------------------- key material
def ec_key() -> str:
    return b64.encode(b"\x05" + os.urandom(32))


def kem_key() -> str:
    return b64.encode(b"\x08" + os.urandom(1568))


def sig() -> str:
    return b64.encode(os.urandom(64))


def pre_key(key_id: int) -> dict[str, Any]:
    return {"id": key_id, "public_key": ec_key()}


def signed_pre_key(key_id: int) -> dict[str, Any]:
    return {"id": key_id, "public_key": ec_key(), "signature": sig()}


def kyber_key(key_id: int) -> dict[str, Any]:
    return {"id": key_id, "public_key": kem_key(), "signature": sig()}


@dataclass
class Account:
    account_id: bytes
    device_id: int
    secret: bytes
    identity_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": auth.encode_device_auth(self.account_id, self.device_id, self.secret)}

    @property
    def id(self) -> str:
        return b64.encode(self.account_id)


def create_account(client: TestClient) -> Account:
    secret = os.urandom(32)
    identity = ec_key()
    response = client.post(
        "/v1/accounts",
        json={"identity_key": identity, "registration_id": 4321, "device_secret": b64.encode(secret)},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(b64.decode(body["account_id"]), body["device_id"], secret, identity)


@dataclass
class Mailbox:
    mailbox_id: bytes = field(default_factory=lambda: os.urandom(16))
    key: SigningKey = field(default_factory=lambda: SigningKey.generate(system_rng))
    token: bytes = field(default_factory=lambda: os.urandom(32))
    ttl_days: int = 30

    @property
    def id(self) -> str:
        return b64.encode(self.mailbox_id)

    def create_body(self) -> dict[str, Any]:
        return {
            "mailbox_id": self.id,
            "auth_key": b64.encode(self.key.public.raw),
            "delivery_token": b64.encode(self.token),
            "ttl_days": self.ttl_days,
        }

    def auth_header(self, method: str, path: str, seconds: float, body: bytes = b"") -> dict[str, str]:
        """A signature dated ``seconds`` over ``body`` (send it with ``content=``), fresh nonce."""
        ms, nonce = int(seconds * 1000), os.urandom(auth.HTTP_NONCE_LENGTH)
        signature = self.key.sign(auth.http_message(method, path, ms, nonce, body))
        return {"Sotto-Mailbox-Auth": auth.encode_mailbox_auth(ms, signature, nonce)}

    def drain_proof(self, nonce: bytes) -> dict[str, str]:
        return {"id": self.id, "sig": b64.encode(self.key.sign(auth.drain_message(nonce, self.mailbox_id)))}


def create_mailbox(client: TestClient, mailbox: Mailbox | None = None) -> Mailbox:
    mailbox = mailbox or Mailbox()
    response = client.post("/v1/mailboxes", json=mailbox.create_body())
    assert response.status_code == 201, response.text
    return mailbox


def payload(size: int = 256, fill: int = 0) -> bytes:
    return bytes([fill]) * size


def send(
    client: TestClient, mailbox: Mailbox, message_id: bytes, data: bytes, token: bytes | None = None
) -> Any:
    return client.post(
        f"/v1/mailboxes/{mailbox.id}/messages",
        json={"message_id": b64.encode(message_id), "payload": b64.encode(data)},
        headers={"Sotto-Delivery-Token": b64.encode(token if token is not None else mailbox.token)},
    )
