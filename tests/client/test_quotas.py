"""The relay's 507s as the client meets them (relay-protocol §7), through the real relay with
small quotas: each is its own error type on both send paths, and a full mailbox loses nothing:
the outbox keeps what was refused and delivers it, in order, once the mailbox drains."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from sotto.client import events as ev
from sotto.client.sdk import Client
from sotto.client.transport import DeviceCredentials, HttpNetwork, HttpRelay, relay_error
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.keys import KeyPair
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import system_rng
from sotto.errors import MailboxFullError, QuotaExceededError, RelayError, RelayFullError
from sotto.server.config import Quotas
from sotto.wire import api
from sotto.wire.padding import pad
from tests.client.running_relay import free_port, running_relay

T = TypeVar("T")
SMALL = Quotas(mailbox_envelopes=3, account_access_tokens=2, min_free_disk_bytes=0)
FULL_DISK = Quotas(min_free_disk_bytes=2**62)
"""A floor no filesystem clears: every write that grows the data is refused."""
PASSPHRASE = "pass phrase"


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 90))


def _account() -> api.CreateAccount:
    return api.CreateAccount(
        identity_key=KeyPair.generate(system_rng).public.to_bytes(),
        registration_id=7,
        device_secret=system_rng(32),
    )


def _mailbox() -> tuple[api.CreateMailbox, bytes]:
    token = system_rng(32)
    key = SigningKey.generate(system_rng)
    return api.CreateMailbox(mailbox_id=system_rng(16), auth_key=key.public.raw, delivery_token=token), token


@pytest.fixture
def small(tmp_path: Path) -> Iterator[str]:
    with running_relay(tmp_path / "relay", free_port(), quotas=SMALL) as url:
        yield url


@pytest.mark.parametrize("websocket_sends", [True, False])
def test_a_full_mailbox_is_a_typed_error_on_either_send_path(small: str, websocket_sends: bool) -> None:
    async def main() -> None:
        network = HttpNetwork(websocket_sends=websocket_sends)
        try:
            relay = network.relay(small)
            body, token = _mailbox()
            await relay.create_mailbox(body)
            for _ in range(SMALL.mailbox_envelopes):
                await relay.send(body.mailbox_id, token, system_rng(16), pad(b"x"))
            with pytest.raises(MailboxFullError) as refused:
                await relay.send(body.mailbox_id, token, system_rng(16), pad(b"x"))
            assert (refused.value.status, refused.value.code) == (507, "mailbox_full")
        finally:
            await network.aclose()

    run(main)


def test_an_account_over_its_quota_is_a_typed_error(small: str) -> None:
    async def main() -> None:
        network = HttpNetwork()
        try:
            relay = network.relay(small)
            request = _account()
            created = await relay.create_account(request)
            device = DeviceCredentials(created.account_id, created.device_id, request.device_secret)
            for _ in range(SMALL.account_access_tokens):
                await relay.add_access_token(device, system_rng(32), 999_999)
            with pytest.raises(QuotaExceededError) as refused:
                await relay.add_access_token(device, system_rng(32), 999_999)
            assert (refused.value.status, refused.value.code) == (507, "quota_exceeded")
        finally:
            await network.aclose()

    run(main)


def test_a_relay_short_of_disk_is_a_typed_error_for_creations_and_sends(tmp_path: Path) -> None:
    data = tmp_path / "relay"
    body, token = _mailbox()

    async def before(url: str) -> None:
        network = HttpNetwork()
        try:
            await network.relay(url).create_mailbox(body)
        finally:
            await network.aclose()

    async def full(url: str) -> None:
        network = HttpNetwork()
        try:
            relay: HttpRelay = network.relay(url)
            for attempt in (
                lambda: relay.create_account(_account()),
                lambda: relay.create_mailbox(_mailbox()[0]),
                lambda: relay.send(body.mailbox_id, token, system_rng(16), pad(b"x")),
            ):
                with pytest.raises(RelayFullError) as refused:
                    await attempt()
                assert (refused.value.status, refused.value.code) == (507, "relay_full")
        finally:
            await network.aclose()

    with running_relay(data, free_port()) as url:
        run(lambda: before(url))
    with running_relay(data, free_port(), quotas=FULL_DISK) as url:
        run(lambda: full(url))


def test_other_refusals_stay_plain_relay_errors() -> None:
    assert type(relay_error(507, "something_new", "?")) is RelayError
    assert type(relay_error(404, "mailbox_full", "?")) is RelayError
    assert isinstance(relay_error(507, "mailbox_full", "full"), MailboxFullError)


def test_a_full_mailbox_keeps_the_texts_queued_and_delivers_them_in_order_once_drained(
    small: str, tmp_path: Path
) -> None:
    async def new(name: str) -> Client:
        return await Client.create(
            tmp_path / name, small, PASSPHRASE, name, kdf=Argon2Params.TESTING, receipt_delay=0.1
        )

    async def collect(client: Client, count: int) -> list[str]:
        seen: list[str] = []
        for _ in range(30):
            events = await client.sync(timeout=2, idle=0.2)
            seen += [e.text for e in events if isinstance(e, ev.MessageReceived)]
            if len(seen) >= count:
                break
        return seen

    async def main() -> None:
        alice, bob = await new("Alice"), await new("Bob")
        async with alice:
            async with bob:
                invite = await alice.create_invite()
                await bob.accept_invite(invite.link, "Alice")
                for _ in range(20):
                    await alice.sync(timeout=1, idle=0.1)
                    await bob.sync(timeout=1, idle=0.1)
                    if bob.is_ready("Alice") and alice.is_ready("Bob"):
                        break
                assert bob.is_ready("Alice") and alice.is_ready("Bob")
            # Bob is away: his mailbox for Alice takes 3 envelopes, and Alice writes 6.
            for i in range(6):
                await alice.send_text("Bob", f"text {i}")
            before = alice.engine.now_ms()
            left = await alice.flush()
            assert left == 3  # refused as mailbox_full: kept, not dropped
            assert alice.pending_outbox() == 3
            assert isinstance(alice.last_refusal, MailboxFullError)
            # The first refused is retried from half a minute on, not at once (a full mailbox
            # empties when Bob reads); the ones behind it wait for it, in order.
            queued = alice.engine.read(lambda tx: tx.outbox.all())
            assert queued[0].next_attempt_ms >= before + 22_500
            assert await alice.flush() == 3  # refused again: reported once all the same
            held = [e for e in await alice.sync(timeout=1, idle=0.1) if isinstance(e, ev.SendHeld)]
            assert [e.reason for e in held] == ["mailbox_full"]
            assert held[0].message_id == alice.history("Bob")[3].message_id
            assert all(not isinstance(e, ev.SendFailed) for e in await alice.sync(timeout=0.5, idle=0.1))
            bob = await Client.open(tmp_path / "Bob", PASSPHRASE, receipt_delay=0.1)
            async with bob:
                first = await collect(bob, 3)
                assert await alice.flush() == 0  # drained: the rest goes now
                rest = await collect(bob, 3)
                assert alice.last_refusal is None
            assert first + rest == [f"text {i}" for i in range(6)]

    run(main)
