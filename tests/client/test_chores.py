"""Account requests are not tied to mailbox requests, as the relay sees them.

Two SDK clients on the real relay app, on virtual time (:mod:`sotto.audit.sim`), with the
engine's real waits. Every HTTP request and WebSocket the relay is handed is noted with its
time, the device's address and its connection. Across a simulated day, a device's
account-authenticated requests (prekey checks and uploads, access tokens) fall near its polls,
sends or drain connections no more often than chance says, each on a connection of its own; an
invite's mailbox creation and access-token update, and the mailbox creations of one rotation,
come seconds apart. Automatic rotation is checked on a clock the test moves.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from sotto.audit import sim
from sotto.audit.sim import RELAY_URL, Host, VirtualClock, close_device, new_device, relay_app
from sotto.client.flows.mailboxes import ROTATION_MEAN_MS
from sotto.client.runtime import HOUSEKEEPING_MEAN_S, SPREAD_S, Engine
from sotto.client.sdk import Client
from sotto.crypto.random import seeded_rng
from sotto.server.config import ServerConfig
from sotto.store.memory import MemoryStore
from tests.client.fake_relay import FakeNetwork

DAY_S = 86_400.0
WINDOW_S = 1.0
"""Two requests this close are "adjacent" (the attack suite's coincidence window is 0.5 s)."""


@dataclass(frozen=True)
class Seen:
    at: float
    address: str
    connection: tuple[str, int]
    kind: str
    """"account", "bundle", "create", "delete", "poll", "send", "socket" or "other"."""


@dataclass
class Watch:
    """Every request the relay is handed, in order."""

    clock: VirtualClock
    seen: list[Seen] = field(default_factory=list)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                client = tuple(scope["client"])
                kind = "socket" if scope["type"] == "websocket" else _kind(scope)
                self.seen.append(Seen(self.clock.now(), client[0], (client[0], client[1]), kind))
            await app(scope, receive, send)

        return watched

    def of(self, address: str, *kinds: str, since: float = 0.0) -> list[Seen]:
        return [s for s in self.seen if s.address == address and s.kind in kinds and s.at >= since]


@pytest.fixture(autouse=True)
def real_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's real waits between an action's requests (virtual time costs nothing)."""
    monkeypatch.setattr(Engine, "spread_s", SPREAD_S)


def _kind(scope: Scope) -> str:
    path, method = scope["path"], scope["method"]
    headers = dict(scope["headers"])
    if b"authorization" in headers:
        return "account"
    if path.endswith("/bundle"):
        return "bundle"
    if path == "/v1/mailboxes" and method == "POST":
        return "create"
    if path.startswith("/v1/mailboxes/") and method == "DELETE":
        return "delete"
    if path.endswith("/poll"):
        return "poll"
    if path.endswith("/messages"):
        return "send"
    return "other"


def adjacent(events: list[Seen], to: list[Seen], window: float = WINDOW_S) -> int:
    """How many of ``events`` come within ``window`` seconds of one of ``to`` (either side)."""
    times = sorted(s.at for s in to)
    count = 0
    for event in events:
        i = bisect.bisect_left(times, event.at - window)
        count += i < len(times) and times[i] <= event.at + window
    return count


async def contacts(alice: Client, bob: Client, until: Callable[[], bool] | None = None) -> None:
    invite = await alice.create_invite()
    await bob.accept_invite(invite.link, "Alice")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3_600
    while not (bob.is_ready("Alice") and alice.is_ready("Bob")):
        assert loop.time() < deadline, "the two did not become contacts"
        await asyncio.sleep(1)


def day_of(cadence: bool) -> tuple[Watch, float]:
    """Alice and Bob become contacts, then a simulated day passes; the watch and when it began."""

    async def main(clock: VirtualClock) -> tuple[Watch, float]:
        watch = Watch(clock)
        config = ServerConfig(cadence_tick_seconds=300)
        async with relay_app(clock, config=config, rng=seeded_rng(99)) as app:
            relays = {RELAY_URL: watch.wrap(app)}
            alice = await new_device(
                relays, clock, "Alice", host=Host("10.0.0.1"), cadence=cadence, rng=seeded_rng(1)
            )
            bob = await new_device(
                relays, clock, "Bob", host=Host("10.0.0.2"), cadence=cadence, rng=seeded_rng(2)
            )
            try:
                await alice.client.start()
                await bob.client.start()
                await contacts(alice.client, bob.client)
                began = clock.now()
                for hour in range(24):
                    await bob.client.send_text("Alice", f"hour {hour}")
                    await asyncio.sleep(3_600)
            finally:
                await close_device(alice)
                await close_device(bob)
        return watch, began

    return sim.run(main)


def check_account_requests(watch: Watch, began: float, mailbox_kinds: tuple[str, ...]) -> None:
    account = watch.of("10.0.0.1", "account", since=began)
    mailbox = watch.of("10.0.0.1", *mailbox_kinds, since=began)
    # About one chore an hour, at random instants (exponential waits): a day holds some.
    assert 8 <= len(account) <= 60, len(account)
    assert len(mailbox) >= 20
    # Chance: the share of the day that lies within the window of one of Alice's mailbox
    # requests, times the account requests. Allow three times that, and at least two.
    chance = len(account) * min(1.0, len(mailbox) * 2 * WINDOW_S / DAY_S)
    assert adjacent(account, mailbox) <= max(2, 3 * chance), (adjacent(account, mailbox), chance)
    # Each on a connection no other request used.
    connections = [s.connection for s in watch.seen]
    assert all(connections.count(s.connection) == 1 for s in account)
    # Not on a grid: exponential gaps vary about as much as they are long.
    gaps = [b.at - a.at for a, b in itertools.pairwise(account)]
    mean = sum(gaps) / len(gaps)
    spread = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert spread > 0.4 * mean, (mean, spread)


def test_cadence_mode_account_requests_fall_near_polls_and_sends_only_by_chance() -> None:
    watch, began = day_of(cadence=True)
    check_account_requests(watch, began, ("poll", "send"))


def test_default_mode_account_requests_come_at_their_own_times_not_at_connections() -> None:
    watch, began = day_of(cadence=False)
    check_account_requests(watch, began, ("send", "socket"))
    # Not right after the drain connection opens (where the housekeeping used to run).
    sockets = watch.of("10.0.0.1", "socket", since=began)
    assert adjacent(watch.of("10.0.0.1", "account", since=began), sockets, window=5.0) == 0


def test_an_invites_mailbox_and_token_and_a_rotations_creations_come_seconds_apart() -> None:
    async def main(clock: VirtualClock) -> tuple[Watch, float, float, list[float]]:
        watch = Watch(clock)
        async with relay_app(clock, rng=seeded_rng(99)) as app:
            relays = {RELAY_URL: watch.wrap(app)}
            alice = await new_device(relays, clock, "Alice", host=Host("10.0.0.1"), rng=seeded_rng(1))
            others = [
                await new_device(relays, clock, name, host=Host(f"10.0.0.{i + 2}"), rng=seeded_rng(len(name)))
                for i, name in enumerate(("Bob", "Carol", "Dan"))
            ]
            try:
                await alice.client.start()
                await asyncio.sleep(60)  # after the registrations
                begun = clock.now()
                await alice.client.create_invite()
                invite_s = clock.now() - begun
                for other in others:
                    await other.client.start()
                    invite = await alice.client.create_invite()
                    await other.client.accept_invite(invite.link, "Alice")
                while len([c for c in alice.client.contacts() if alice.client.is_ready(c)]) < 3:
                    await asyncio.sleep(1)
                await asyncio.sleep(60)
                rotation = clock.now()
                assert await alice.client.rotate_mailboxes() == 3
                creations = [s.at for s in watch.of("10.0.0.1", "create", since=rotation)]
            finally:
                for device in (alice, *others):
                    await close_device(device)
        return watch, begun, invite_s, creations

    watch, begun, invite_s, creations = sim.run(main)
    low, high = SPREAD_S
    assert low <= invite_s <= high + 1
    # Each invite: the mailbox, then the token a uniform 2-12 s later, on another connection.
    first_create = watch.of("10.0.0.1", "create", since=begun)[0]
    first_token = watch.of("10.0.0.1", "account", since=first_create.at)[0]
    assert low <= first_token.at - first_create.at <= high + 1
    assert first_token.connection != first_create.connection
    # A rotation of three contacts: three creations, each pair seconds apart.
    assert len(creations) == 3
    assert all(b - a >= low for a, b in itertools.pairwise(creations))


def test_mailboxes_rotate_by_themselves_one_per_chore_at_random_ages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Engine, "spread_s", (0.0, 0.0))  # on the wall clock here
    now = [1_800_000_000_000]

    async def main() -> tuple[list[int], list[int]]:
        network = FakeNetwork()
        url = "http://relay.test"

        async def register(name: str) -> Client:
            return await Client.register(
                MemoryStore(), url, name, network=network, clock=lambda: now[0], rng=seeded_rng(len(name))
            )

        alice = await register("Alice")
        others = [await register(name) for name in ("Bob", "Carol", "Dan")]
        async with alice:
            for other in others:
                async with other:
                    await other.accept_invite((await alice.create_invite()).link, "Alice")
                    for _ in range(10):
                        await alice.sync(timeout=1, idle=0.02)
                        await other.sync(timeout=1, idle=0.02)
                        if alice.is_ready(other.display_name) and other.is_ready("Alice"):
                            break
            ages = alice.engine.read(lambda tx: [m.created_ms for m in tx.mailboxes.all()])
            assert not await alice.engine.rotate_due()  # nothing is due on the first day
            now[0] += int(1.5 * ROTATION_MEAN_MS) + 60_000  # older than any rotation age
            rotated = []
            for _ in range(3):
                before = {m.mailbox_id for m in alice.engine.read(lambda tx: tx.mailboxes.all())}
                assert await alice.engine.rotate_due()
                after = {m.mailbox_id for m in alice.engine.read(lambda tx: tx.mailboxes.all())}
                rotated.append(len(after - before))
            assert not await alice.engine.rotate_due()
        return ages, rotated

    ages, rotated = asyncio.run(asyncio.wait_for(main(), 60))
    assert len(ages) == 3
    assert rotated == [1, 1, 1]  # one new mailbox per chore: creations at the chores' instants


def test_chore_waits_are_exponential_with_the_stated_mean() -> None:
    async def main() -> list[float]:
        client = await Client.register(
            MemoryStore(), "http://relay.test", "Alice", network=FakeNetwork(), rng=seeded_rng(7)
        )
        async with client:
            return [client.engine.chore_delay() for _ in range(4_000)]

    waits = asyncio.run(main())
    mean = sum(waits) / len(waits)
    assert 0.9 * HOUSEKEEPING_MEAN_S <= mean <= 1.1 * HOUSEKEEPING_MEAN_S
    # Exponential: about 1 - 1/e of them fall below the mean, and the spread equals the mean.
    below = sum(w < HOUSEKEEPING_MEAN_S for w in waits) / len(waits)
    assert 0.59 <= below <= 0.67
