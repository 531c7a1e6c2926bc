"""Proof of work from the client's side (relay-protocol §8), against the real relay: a busy
relay's challenge is solved and the call sent again without the caller seeing it; the SDK
registers through one, and a mailbox creation solves its own; a challenge over the client's
cap, or answers the relay keeps refusing, end in typed errors; hard challenges are solved off
the loop's thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sotto.client import work as solver
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.keys import KeyPair
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import system_rng
from sotto.errors import WorkRequiredError, WorkTooHardError
from sotto.server.config import WorkPolicy
from sotto.wire import api, work
from tests.client.running_relay import free_port, running_relay

T = TypeVar("T")

BUSY_AFTER_ONE = WorkPolicy(free_per_minute=0.002, window_seconds=3_600, base_bits=8, max_bits=12)
"""Free for the first creation only (a free count of 0.002 × 3,600 / 60 = 0.12), then
8 + ⌊log2(count / 0.12)⌋ bits: 11 after one creation."""


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 90))


def _request() -> api.CreateAccount:
    return api.CreateAccount(
        identity_key=KeyPair.generate(system_rng).public.to_bytes(),
        registration_id=7,
        device_secret=system_rng(32),
    )


class Calls:
    """What reached the relay for ``POST path``: whether each carried ``Sotto-Work``, and the
    status of each answer."""

    def __init__(self, path: str = "/v1/accounts") -> None:
        self.path = path
        self.answers: list[tuple[bool, int]] = []

    def wrap(self, app: Any) -> Any:
        async def watched(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != self.path:
                await app(scope, receive, send)
                return
            worked = any(name == work.WORK_HEADER.encode() for name, _ in scope["headers"])

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    self.answers.append((worked, message["status"]))
                await send(message)

            await app(scope, receive, sending)

        return watched


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[tuple[str, Calls]]:
    calls = Calls()
    with running_relay(tmp_path / "relay", free_port(), wrap=calls.wrap, work=BUSY_AFTER_ONE) as url:
        yield url, calls


def test_a_challenge_is_solved_and_the_creation_sent_again(busy: tuple[str, Calls]) -> None:
    url, calls = busy

    async def main() -> None:
        network = HttpNetwork()
        try:
            relay = network.relay(url)
            await relay.create_account(_request())  # quiet: no challenge, no extra round trip
            assert calls.answers == [(False, 201)]
            await relay.create_account(_request())  # busy now
            assert calls.answers[1:] == [(False, 428), (True, 201)]
        finally:
            await network.aclose()

    run(main)


def test_a_mailbox_creation_solves_its_challenge_too(tmp_path: Path) -> None:
    calls = Calls("/v1/mailboxes")
    policy = WorkPolicy(mailbox_free_per_minute=0.002, window_seconds=3_600, base_bits=8, max_bits=12)

    async def main(url: str) -> None:
        network = HttpNetwork()
        try:
            relay = network.relay(url)
            for _ in range(2):
                key = SigningKey.generate(system_rng)
                body = api.CreateMailbox(
                    mailbox_id=system_rng(16), auth_key=key.public.raw, delivery_token=system_rng(32)
                )
                await relay.create_mailbox(body)
            assert calls.answers == [(False, 201), (False, 428), (True, 201)]
        finally:
            await network.aclose()

    with running_relay(tmp_path, free_port(), wrap=calls.wrap, work=policy) as url:
        run(lambda: main(url))


def test_the_sdk_registers_through_a_challenge(busy: tuple[str, Calls], tmp_path: Path) -> None:
    url, calls = busy

    async def main() -> None:
        for name in ("Alice", "Bob"):
            client = await Client.create(tmp_path / name, url, "pass phrase", name, kdf=Argon2Params.TESTING)
            async with client:
                assert client.account_id
        assert calls.answers == [(False, 201), (False, 428), (True, 201)]

    run(main)


def test_a_challenge_over_the_clients_cap_is_a_typed_error_before_any_work(busy: tuple[str, Calls]) -> None:
    url, calls = busy

    async def main() -> None:
        network = HttpNetwork(max_work_bits=8)  # the relay asks for 8 + ⌊log2(1 / 0.12)⌋ = 11 bits
        try:
            relay = network.relay(url)
            await relay.create_account(_request())
            with pytest.raises(WorkTooHardError) as refused:
                await relay.create_account(_request())
            assert (refused.value.difficulty, refused.value.cap, refused.value.status) == (11, 8, 428)
            assert calls.answers == [(False, 201), (False, 428)]
        finally:
            await network.aclose()

    run(main)


def test_answers_the_relay_keeps_refusing_end_in_a_typed_error(tmp_path: Path) -> None:
    calls = Calls()
    instant = WorkPolicy(
        free_per_minute=0.002, window_seconds=3_600, base_bits=1, max_bits=2, challenge_seconds=0.001
    )

    async def main(url: str) -> None:
        network = HttpNetwork()
        try:
            relay = network.relay(url)
            await relay.create_account(_request())
            with pytest.raises(WorkRequiredError) as refused:
                await relay.create_account(_request())  # each answer arrives after its challenge expired
            assert (refused.value.status, refused.value.code) == (428, "work_expired")
            assert calls.answers[1:] == [(False, 428), (True, 428), (True, 428)]
        finally:
            await network.aclose()

    with running_relay(tmp_path, free_port(), wrap=calls.wrap, work=instant) as url:
        run(lambda: main(url))


def test_hard_challenges_are_solved_off_the_loops_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = work.solve_range

    def watched(challenge: bytes, difficulty: int, start: int, count: int) -> bytes | None:
        threads.append(threading.current_thread())
        return real(challenge, difficulty, start, count)

    monkeypatch.setattr(work, "solve_range", watched)
    challenge = _challenge(solver.INLINE_BELOW_BITS)

    async def main() -> bytes:
        return await solver.solve(challenge)

    nonce = run(main)
    assert work.meets(challenge, nonce, solver.INLINE_BELOW_BITS)
    assert threads and threading.main_thread() not in threads


def test_easy_challenges_are_solved_in_place_and_bad_ones_refused() -> None:
    challenge = _challenge(solver.INLINE_BELOW_BITS - 1)
    assert work.meets(challenge, run(lambda: solver.solve(challenge)), solver.INLINE_BELOW_BITS - 1)
    with pytest.raises(WorkRequiredError):
        run(lambda: solver.solve(b"not a challenge"))


def _challenge(bits: int) -> bytes:
    return work.Challenge(work.Purpose.ACCOUNT, bits, 0, bytes(16), bytes(16)).to_bytes()
