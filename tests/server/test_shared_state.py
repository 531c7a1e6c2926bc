"""Protective state shared between relay nodes (``sotto.server.shared_state``), against this
machine's Redis (127.0.0.1:6379; ``SOTTO_TEST_REDIS`` names another): buckets, single uses and
meters behave as the in-process ones and hold across two "nodes" (two clients with the same
secret), Redis holds only keyed hashes with lifetimes, and an unreachable Redis fails closed for
single uses and open (to the node's own limits) for buckets. Each test works in a namespace of its
own (a random secret), removed when it ends."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import math
import os
import re
import secrets
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from sotto.crypto.random import system_rng
from sotto.server import ServerConfig, create_app, ratelimit
from sotto.server.__main__ import main as server_main
from sotto.server.auth import ReplayGuard
from sotto.server.challenge import WorkGate, WorkVerdict
from sotto.server.config import RateLimit, RateLimits, WorkPolicy, storage_settings
from sotto.server.context import SOURCE_KEY_INFO
from sotto.server.gateway import (
    DATE_WINDOW_SECONDS,
    GATEWAY_PATH,
    GatewayCore,
    GatewayRefusal,
    gateway_key,
    with_gateway,
)
from sotto.server.ratelimit import ForwarderSource, RateLimitedError, RateLimiter, RateMeter
from sotto.server.server_key import ServerKey
from sotto.server.shared_state import (
    Claim,
    LocalState,
    RedisState,
    SharedStateUnavailableError,
    open_shared_state,
)
from sotto.server.storage import MemoryStorage
from sotto.server.storage.base import MailboxId
from sotto.wire import b64, bhttp, ohttp, work
from tests.server.bus.test_doorbell import free_port, private_server
from tests.server.conftest import GENEROUS, FakeClock, Mailbox, create_mailbox, payload, send

REDIS = os.environ.get("SOTTO_TEST_REDIS", "redis://127.0.0.1:6379")
NOW = 1_800_000_000.0
TIMEOUT = 30.0
"""Every test's bound on its event loop (a Redis call's own is 0.25 s)."""
JSON = "application/json"
HEADERS = {"content-type": ohttp.REQUEST_MEDIA_TYPE}
T = TypeVar("T")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens once the probe is closed


@pytest.fixture
def secret() -> Iterator[bytes]:
    """A fresh deployment secret; every key under its prefix is deleted afterwards."""
    key = secrets.token_bytes(32)
    yield key
    state = RedisState(REDIS, key)
    admin = redis.Redis.from_url(REDIS, socket_timeout=5)
    try:
        for name in admin.scan_iter(match=f"{state.prefix}*", count=1_000):
            admin.delete(name)
    finally:
        admin.close()


@pytest.fixture
def nodes(secret: bytes) -> tuple[RedisState, RedisState]:
    """Two nodes' views of one shared state (their connections are made, and closed, by
    :func:`_run` in the test's event loop)."""
    return RedisState(REDIS, secret), RedisState(REDIS, secret)


def _run(states: tuple[RedisState, ...], body: Coroutine[Any, Any, T]) -> T:
    """Run ``body`` in a fresh event loop, then close ``states``' connections in it."""

    async def main() -> T:
        try:
            return await asyncio.wait_for(body, TIMEOUT)
        finally:
            for state in states:
                await state.aclose()

    return asyncio.run(main())


def _keys(state: RedisState) -> dict[str, int]:
    """Every key of ``state``'s namespace with its remaining life in ms (-1: none)."""
    admin = redis.Redis.from_url(REDIS, socket_timeout=5)
    try:
        return {name.decode(): admin.pttl(name) for name in admin.scan_iter(match=f"{state.prefix}*")}
    finally:
        admin.close()


def _forget_everything(state: RedisState) -> None:
    """As a restart of Redis (which keeps nothing on disk here) would."""
    admin = redis.Redis.from_url(REDIS, socket_timeout=5)
    try:
        for name in admin.scan_iter(match=f"{state.prefix}*"):
            admin.delete(name)
    finally:
        admin.close()


# ------------------------------------------------------------------------------ buckets
def test_a_redis_bucket_answers_as_the_in_process_one(nodes: tuple[RedisState, RedisState]) -> None:
    limit = RateLimit(burst=3, per_second=0.5)
    local, shared = RateLimiter(limit), nodes[0].limiter("t", limit)
    steps = [(0.0, b"k"), (0.1, b"k"), (0.2, b"k"), (0.3, b"k"), (1.0, b"k"), (2.4, b"k"), (2.5, b"k")]
    steps += [(2.6, b"other"), (9.0, b"k"), (9.0, b"k"), (9.0, b"k"), (9.0, b"k")]

    async def body() -> None:
        for offset, key in steps:
            now = NOW + offset
            assert await shared.apeek(key, now) == local.peek(key, now), offset
            assert await shared.aretry_after(key, now) == local.retry_after(key, now), offset
            assert await shared.aallow(key, now) == local.allow(key, now), offset

    _run(nodes, body())


def test_the_in_process_limiter_answers_its_coroutines_as_its_methods() -> None:
    limit = RateLimit(burst=2, per_second=0.5)
    plain, awaited = RateLimiter(limit), LocalState().limiter("t", limit)

    async def body() -> None:
        for offset in (0.0, 0.1, 0.2, 3.0, 3.1):
            now = NOW + offset
            assert await awaited.apeek(b"k", now) == plain.peek(b"k", now)
            assert await awaited.aretry_after(b"k", now) == plain.retry_after(b"k", now)
            assert await awaited.aallow(b"k", now) == plain.allow(b"k", now)
        with pytest.raises(RateLimitedError):
            await awaited.acheck(b"k", NOW + 3.1)

    asyncio.run(body())


def test_a_bucket_is_one_budget_for_both_nodes(nodes: tuple[RedisState, RedisState]) -> None:
    a, b = (node.limiter("account_creation", RateLimit(burst=4, per_second=0.001)) for node in nodes)

    async def body() -> None:
        taken = [await limiter.aallow(b"source", NOW) for limiter in (a, b, a, b, a, b)]
        assert taken == [True, True, True, True, False, False]
        with pytest.raises(RateLimitedError) as refused:
            await b.acheck(b"source", NOW)
        assert refused.value.retry_after == 1_000  # one token at 0.001 a second
        # A forwarder's budget is its own, and forwarded_scale times larger.
        scaled = nodes[1].limiter("account_creation", RateLimit(4, 0.001), forwarded_scale=2)
        assert sum([await scaled.aallow(ForwarderSource(b"source"), NOW) for _ in range(10)]) == 8

    _run(nodes, body())


def test_another_deployment_shares_nothing(secret: bytes) -> None:
    ours, theirs = RedisState(REDIS, secret), RedisState(REDIS, secrets.token_bytes(32))
    limit = RateLimit(burst=1, per_second=0.001)

    async def body() -> None:
        assert await ours.limiter("x", limit).aallow(b"k", NOW)
        assert await theirs.limiter("x", limit).aallow(b"k", NOW)
        assert not await ours.limiter("x", limit).aallow(b"k", NOW)
        assert ours.prefix != theirs.prefix

    try:
        _run((ours, theirs), body())
    finally:
        _forget_everything(theirs)


# ------------------------------------------------------------------------------ what Redis holds
def test_redis_holds_keyed_hashes_with_lifetimes(nodes: tuple[RedisState, RedisState]) -> None:
    state = nodes[0]
    address, mailbox, nonce, salt = b"\x0a\x00\x00\x07", os.urandom(16), os.urandom(16), os.urandom(16)

    async def body() -> None:
        await state.limiter("account_creation", RateLimit(burst=10, per_second=2)).aallow(address, NOW)
        await state.limiter("username_lookup_per_name", RateLimit(10, 1 / 60)).aallow((address, b"name"), NOW)
        guard = ReplayGuard(NOW - 10, memory=state.single_use("replay", capacity=10))
        await guard.abegin()
        assert await guard.aaccept(mailbox, nonce, int(NOW * 1000), NOW)
        await state.single_use("work", capacity=10).aclaim(salt, NOW + 120, NOW, dated=NOW)
        await state.meter("work1", 300).aadd(NOW)

    _run(nodes, body())
    held = _keys(state)
    assert len(held) == 6
    forms = [b.hex() for b in (address, mailbox, nonce, salt, mailbox + nonce)]
    forms += [b64.encode(b) for b in (mailbox, nonce, salt)] + ["10.0.0.7"]
    for name, life in held.items():
        assert not any(form in name for form in forms), name
        if name == state.prefix + "epoch":
            assert life == -1  # a time, no identity: kept for as long as Redis runs
            continue
        kind = name[len(state.prefix) :].split(":")[0]
        assert kind in ("bucket", "once", "meter"), name
        assert life > 0, name
    lives = {name.split(":")[3]: ms for name, ms in held.items() if ":bucket:" in name}
    assert lives["account_creation"] <= 1_500  # refilled after 1 token / 2 per s, + 1 s slack
    assert lives["username_lookup_per_name"] <= 61_000
    once = {name.split(":")[3]: ms for name, ms in held.items() if ":once:" in name}
    assert 299_000 < once["replay"] <= 300_001  # until its time leaves the 300 s window
    assert 119_000 < once["work"] <= 120_000  # until the challenge expires
    values = redis.Redis.from_url(REDIS, socket_timeout=5)
    try:
        for name in held:
            if values.type(name) == b"hash":
                stored = values.hgetall(name)
                assert set(stored) <= {b"t", b"u", b"c"}  # tokens, updated, count: numbers only
    finally:
        values.close()


# ------------------------------------------------------------------------------ single uses
def test_a_signed_request_accepted_on_one_node_is_refused_on_the_other(
    nodes: tuple[RedisState, RedisState],
) -> None:
    a, b = (ReplayGuard(NOW - 60, memory=n.single_use("replay", capacity=10)) for n in nodes)
    mailbox, nonce, ms = os.urandom(16), os.urandom(16), int(NOW * 1000)

    async def body() -> None:
        assert await a.aaccept(mailbox, nonce, ms, NOW)
        assert not await b.aaccept(mailbox, nonce, ms, NOW + 1)
        assert not await a.aaccept(mailbox, nonce, ms, NOW + 2)
        assert await b.aaccept(os.urandom(16), nonce, ms, NOW + 2)  # another mailbox's nonce

    _run(nodes, body())


def test_a_guard_on_shared_state_has_no_synchronous_answer(nodes: tuple[RedisState, RedisState]) -> None:
    guard = ReplayGuard(NOW - 60, memory=nodes[0].single_use("replay", capacity=10))
    with pytest.raises(TypeError):
        guard.accept(os.urandom(16), os.urandom(16), int(NOW * 1000), NOW)
    gate = WorkGate(WorkPolicy(), os.urandom(32), NOW - 10, shared=nodes[0])
    with pytest.raises(TypeError):
        gate.difficulty(work.Purpose.ACCOUNT, NOW)
    core = GatewayCore(gateway_key(ServerKey(bytes(32))))
    core.share_replay(nodes[0].single_use("gateway", capacity=10))
    with pytest.raises(TypeError):
        core.open(b"", NOW)


def test_after_redis_forgets_older_signatures_are_refused(nodes: tuple[RedisState, RedisState]) -> None:
    """A restarted Redis remembers nothing, so it refuses what is dated before its new memory
    began, as a restarted process does; the guard then names a time that passes."""
    memory = nodes[0].single_use("replay", capacity=10)
    guard = ReplayGuard(NOW - 3_600, memory=memory)
    mailbox, nonce, ms = os.urandom(16), os.urandom(16), int(NOW * 1000)

    async def body() -> None:
        assert await guard.aaccept(mailbox, nonce, ms, NOW)
        _forget_everything(nodes[0])
        later = NOW + 0.5
        assert not await guard.aaccept(mailbox, nonce, ms, later)  # the replay a restart would let in
        assert guard.sign_time(later) >= int(later * 1000)
        named = guard.sign_time(later)
        assert guard.fresh(named, named / 1000)
        assert await guard.aaccept(mailbox, os.urandom(16), named, named / 1000)

    _run(nodes, body())


def test_a_node_dates_the_shared_memory_from_its_start(nodes: tuple[RedisState, RedisState]) -> None:
    """On a fresh Redis the epoch is the first node's start (written at start, or by its first
    claim if it never said so), so what that node signs after its start passes."""
    first = ReplayGuard(NOW - 60, memory=nodes[0].single_use("replay", capacity=10))
    second = ReplayGuard(NOW - 30, memory=nodes[1].single_use("replay", capacity=10))
    mailbox = os.urandom(16)

    async def body() -> None:
        # No abegin: the first claim writes this node's start, not its own time.
        assert await first.aaccept(mailbox, os.urandom(16), int((NOW - 50) * 1000), NOW)
        await second.abegin()  # too late to move it: the memory began with the first node
        assert await second.aaccept(mailbox, os.urandom(16), int((NOW - 20) * 1000), NOW)
        assert second.not_before_ms == math.ceil((NOW - 30) * 1000)  # its own start rule binds
        assert first._memory.epoch == NOW - 60

    _run(nodes, body())


def test_a_challenge_answered_on_one_node_is_spent_on_the_other(nodes: tuple[RedisState, RedisState]) -> None:
    policy = WorkPolicy(free_per_minute=1, window_seconds=60, base_bits=1, max_bits=2)
    key = os.urandom(32)
    a, b = (WorkGate(policy, key, NOW - 10, shared=node) for node in nodes)

    async def body() -> None:
        await a.acreated(work.Purpose.ACCOUNT, NOW)
        await a.acreated(work.Purpose.ACCOUNT, NOW)
        # The rate is relay-wide: creations counted on one node raise what the other asks.
        assert await b.adifficulty(work.Purpose.ACCOUNT, NOW) >= 1
        challenge = a.challenge(work.Purpose.ACCOUNT, 1, NOW, system_rng)
        header = _solve(challenge, 1)
        assert await a.aadmit(work.Purpose.ACCOUNT, header, NOW + 1) is WorkVerdict.SOLVED
        assert await b.aadmit(work.Purpose.ACCOUNT, header, NOW + 1) is WorkVerdict.REPLAYED

    _run(nodes, body())


def _solve(challenge: bytes, bits: int) -> str:
    return work.encode_header(challenge, work.solve(challenge, bits))


def test_a_meter_counts_for_every_node(nodes: tuple[RedisState, RedisState]) -> None:
    local = RateMeter(300)
    a, b = (node.meter("m", 300) for node in nodes)

    async def body() -> None:
        for offset, meter in ((0, a), (10, b), (10, a), (200, b)):
            await meter.aadd(NOW + offset)
            local.add(NOW + offset)
        assert await a.acount(NOW + 400) == pytest.approx(local.count(NOW + 400))
        assert await b.acount(NOW + 400) == pytest.approx(local.count(NOW + 400))

    _run(nodes, body())


# ------------------------------------------------------------------------------ the gateway
def _shared_cores(nodes: tuple[RedisState, RedisState]) -> tuple[ohttp.GatewayKey, GatewayCore, GatewayCore]:
    key = gateway_key(ServerKey(bytes(32)))
    a, b = GatewayCore(key), GatewayCore(key)
    a.share_replay(nodes[0].single_use("gateway", capacity=10))
    b.share_replay(nodes[1].single_use("gateway", capacity=10))
    return key, a, b


async def _started_long_ago(state: RedisState) -> None:
    """Date the shared memory an hour back, as a node that started then would have."""
    memory = state.single_use("replay", capacity=1)
    memory.begin(NOW - 3_600)
    await memory.abegin()


def test_the_gateway_refuses_a_copy_sent_to_another_node(nodes: tuple[RedisState, RedisState]) -> None:
    key, a, b = _shared_cores(nodes)
    enc, _ = _sealed(key, NOW)

    async def body() -> None:
        await _started_long_ago(nodes[0])
        await a.aopen(enc, NOW)
        with pytest.raises(GatewayRefusal) as refused:
            await b.aopen(enc, NOW + 1)
        assert (refused.value.status, refused.value.code) == (400, "replayed")

    _run(nodes, body())


def test_after_redis_forgets_the_gateway_refuses_what_it_may_have_accepted(
    nodes: tuple[RedisState, RedisState],
) -> None:
    """The epoch rule for the gateway: once Redis restarted empty, a request whose Date could
    have passed before (earlier than the new memory's start plus the window) is refused, sealed,
    and the refusal's Date is the earliest that passes; a request with that Date goes through."""
    key, a, b = _shared_cores(nodes)
    window = a.window_seconds
    enc, _ = _sealed(key, NOW)

    async def body() -> None:
        await _started_long_ago(nodes[0])
        await a.aopen(enc, NOW)
        _forget_everything(nodes[0])  # Redis restarted: the digest is gone
        later = NOW + 5
        with pytest.raises(GatewayRefusal) as refused:
            await b.aopen(enc, later)  # the copy an empty Redis would have let through
        assert (refused.value.status, refused.value.code) == (400, "date")
        assert refused.value.context is not None  # sealed to the client
        assert refused.value.date is not None and refused.value.date >= later + window
        fresh_date = refused.value.date
        # A fresh request dated now is refused too (it cannot be told from an old one)...
        with pytest.raises(GatewayRefusal):
            await a.aopen(_sealed(key, later)[0], later)
        # ...and one dated as the refusal said passes, on either node.
        opened = await a.aopen(_sealed(key, fresh_date)[0], later)
        assert opened.request.path == b"/v1/cadence"
        # Once the window has passed since the restart, dates near the clock pass again.
        settled = fresh_date + 1
        assert (await b.aopen(_sealed(key, settled)[0], settled)).request.path == b"/v1/cadence"

    _run(nodes, body())


def test_the_in_process_gateway_opens_alike_with_or_without_awaiting() -> None:
    key = gateway_key(ServerKey(bytes(32)))
    core = GatewayCore(key)
    first, second = _sealed(key, NOW)[0], _sealed(key, NOW)[0]
    assert core.open(first, NOW).request.path == b"/v1/cadence"
    assert asyncio.run(core.aopen(second, NOW)).request.path == b"/v1/cadence"
    for enc in (first, second):
        with pytest.raises(GatewayRefusal) as refused:
            asyncio.run(core.aopen(enc, NOW + 1))
        assert refused.value.code == "replayed"
        with pytest.raises(GatewayRefusal):
            core.open(enc, NOW + 1)


def _sealed(key: ohttp.GatewayKey, when: float) -> tuple[bytes, ohttp.ResponseContext]:
    date = email.utils.formatdate(when, usegmt=True).encode()
    request = bhttp.Request(b"GET", b"https", b"relay", b"/v1/cadence", ((b"date", date),), b"")
    return ohttp.encapsulate_request(key.config, bhttp.encode_request(request), system_rng)


def test_two_relay_apps_behind_their_gateways_share_the_replay_window(tmp_path: Path) -> None:
    server_key = ServerKey(os.urandom(32))
    clock = FakeClock()
    key = gateway_key(server_key)
    config = ServerConfig(data_dir=tmp_path, rate_limits=GENEROUS, shared_state=REDIS)
    apps = [create_app(config, storage=MemoryStorage(), clock=clock, server_key=server_key) for _ in "ab"]
    try:
        with (
            TestClient(with_gateway(apps[0], key, clock=clock)) as a,
            TestClient(with_gateway(apps[1], key, clock=clock)) as b,
        ):
            # The nodes' start dated the fresh Redis's memory: for one window after it, the
            # gateway refuses a Date it cannot tell from one accepted before (sealed, naming
            # the earliest Date that passes).
            sealed, context = _sealed(key, clock.now())
            early = a.post(GATEWAY_PATH, content=sealed, headers=HEADERS)
            assert early.status_code == 200  # sealed to the client
            answer = bhttp.decode_response(ohttp.decapsulate_response(context, early.content))
            assert answer.status == 400 and b'"code": "date"' in answer.content
            (named,) = [v for n, v in answer.headers if n == b"date"]
            assert email.utils.parsedate_to_datetime(named.decode()).timestamp() >= clock.now() + 59
            clock.seconds += DATE_WINDOW_SECONDS
            enc, _ = _sealed(key, clock.now())
            assert a.post(GATEWAY_PATH, content=enc, headers=HEADERS).status_code == 200
            copy = b.post(GATEWAY_PATH, content=enc, headers=HEADERS)
            assert (copy.status_code, copy.json()["code"]) == (400, "replayed")
    finally:
        for app in apps:
            _forget_everything(app.state.relay.shared)


# ------------------------------------------------------------------------------ Redis away
def test_an_unreachable_redis_fails_closed_for_single_uses_and_open_for_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = [0.0]
    state = RedisState(f"redis://127.0.0.1:{_closed_port()}", os.urandom(32), monotonic=lambda: ticks[0])
    relay_logger = logging.getLogger("sotto.server")
    relay_logger.addHandler(caplog.handler)  # whether or not a relay set its logger apart

    async def body() -> None:
        with pytest.raises(SharedStateUnavailableError) as closed:
            await state.single_use("replay", capacity=10).aclaim(b"n", NOW + 1, NOW)
        assert (closed.value.status, closed.value.code) == (503, "shared_state_unavailable")
        guard = ReplayGuard(NOW - 10, memory=state.single_use("replay", capacity=10))
        with pytest.raises(SharedStateUnavailableError):
            await guard.aaccept(os.urandom(16), os.urandom(16), int(NOW * 1000), NOW)
        limiter = state.limiter("x", RateLimit(burst=2, per_second=0.001))
        assert [await limiter.aallow(b"k", NOW) for _ in range(3)] == [True, True, False]  # its own
        with pytest.raises(RateLimitedError):
            await limiter.acheck(b"k", NOW)
        meter = state.meter("m", 60)
        await meter.aadd(NOW)
        assert await meter.acount(NOW) == 1.0
        ticks[0] += 30  # later in the same outage
        with pytest.raises(SharedStateUnavailableError):
            await state.single_use("gateway", capacity=1).aseen(b"d", NOW)

    with caplog.at_level(logging.ERROR, logger="sotto.server"):
        _run((state,), body())
    relay_logger.removeHandler(caplog.handler)
    records = {id(r): r for r in caplog.records}.values()  # a record propagated to root comes twice
    lines = [r.getMessage() for r in records if "SharedStateUnavailable" in r.getMessage()]
    # One line, the type only (the relay's log limit may add how many earlier lines of this
    # process it held back, from other tests).
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"error SharedStateUnavailableError \[ConnectionError\]( \(\d+ lines held back\))?", lines[0]
    )
    assert state.outages == 2  # tried again once RETRY_SECONDS had passed, not on every check


class SilentRedis:
    """A TCP server on 127.0.0.1 that accepts connections, reads what is sent and never answers:
    a Redis that hangs without closing its connections. ``heard`` is set when bytes arrive."""

    def __init__(self) -> None:
        self.heard = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._peers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._peers.append(writer)
        while await reader.read(4096):
            self.heard.set()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._peers:
            writer.close()
        await self._server.wait_closed()


def test_a_silent_redis_stalls_only_the_requests_that_wait_on_it(tmp_path: Path) -> None:
    """While a signed poll waits on a Redis that never answers, the node answers other requests;
    the poll then gets its typed 503 (single uses fail closed), within the call timeout."""

    async def body() -> None:
        silent = SilentRedis()
        async with silent as url:
            clock = FakeClock()
            config = ServerConfig(data_dir=tmp_path, rate_limits=GENEROUS, shared_state=url)
            app = create_app(
                config, storage=MemoryStorage(), clock=clock, server_key=ServerKey(os.urandom(32))
            )
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://relay") as client,
            ):
                mailbox = Mailbox()
                created = await client.post("/v1/mailboxes", json=mailbox.create_body())
                assert created.status_code == 201  # the limits fell back to this node's own
                state = app.state.relay.shared
                assert isinstance(state, RedisState)
                while not state.available:  # the start and the creation found it silent
                    await asyncio.sleep(0.05)
                silent.heard.clear()
                clock.seconds += 3_600  # past the start rule
                path = f"/v1/mailboxes/{mailbox.id}/poll"
                raw = b'{"ack":[]}'
                headers = {**mailbox.auth_header("POST", path, clock.now(), raw), "content-type": JSON}
                poll = asyncio.create_task(client.post(path, content=raw, headers=headers))
                await silent.heard.wait()  # the poll's first check is on its way to Redis
                health = await client.get("/v1/health")
                assert health.status_code == 200
                assert not poll.done()  # answered while the poll still waits on Redis
                refused = await poll
                assert refused.status_code == 503
                assert refused.json()["code"] == "shared_state_unavailable"

    asyncio.run(asyncio.wait_for(body(), TIMEOUT))


def test_a_relay_without_its_redis_refuses_signed_calls_and_changes_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    config = ServerConfig(
        data_dir=tmp_path, rate_limits=GENEROUS, shared_state=f"redis://127.0.0.1:{_closed_port()}"
    )
    with TestClient(
        create_app(config, storage=storage, clock=clock), raise_server_exceptions=False
    ) as client:
        mailbox = create_mailbox(client, Mailbox())  # limits fall back to this node's own
        assert send(client, mailbox, os.urandom(16), payload()).status_code == 202
        path = f"/v1/mailboxes/{mailbox.id}/poll"
        body = b'{"ack":[]}'
        clock.seconds += 3_600  # past the start rule
        headers = {**mailbox.auth_header("POST", path, clock.now(), body), "content-type": "application/json"}
        refused = client.post(path, content=body, headers=headers)
        assert refused.status_code == 503
        assert refused.json()["code"] == "shared_state_unavailable"
    pending = asyncio.run(storage.pending(MailboxId(mailbox.mailbox_id), 10, max_bytes=1 << 20))
    assert len(pending) == 1  # the poll neither acked nor moved anything


def test_nodes_sharing_state_name_a_client_network_alike() -> None:
    """The key that hashes client networks comes from the server key once state is shared, so
    every node (every process) with that key counts a source as the same one."""
    held = ratelimit._SOURCE_KEY
    try:
        key = ServerKey(bytes(range(32))).derive(SOURCE_KEY_INFO)
        ratelimit.share_source_key(key)
        named = ratelimit.source_key({"client": ("192.0.2.7", 1234)})
        expected = hashlib.blake2b(bytes([192, 0, 2, 7]), digest_size=12, key=key).digest()
        assert named == expected
        ratelimit.share_source_key(os.urandom(32))  # another deployment names it otherwise
        assert ratelimit.source_key({"client": ("192.0.2.7", 1234)}) != expected
        with pytest.raises(ValueError):
            ratelimit.share_source_key(b"short")
    finally:
        ratelimit._SOURCE_KEY = held


# ------------------------------------------------------------------------------ selection
def test_the_url_selects_the_backend() -> None:
    assert isinstance(open_shared_state(None, bytes(32)), LocalState)
    state = open_shared_state(REDIS, bytes(32))
    assert isinstance(state, RedisState) and state.shared
    assert _run((state,), state.aping())
    with pytest.raises(ValueError, match="redis"):
        open_shared_state("memcached://127.0.0.1", bytes(32))
    with pytest.raises(ValueError, match="redis"):
        ServerConfig(shared_state="http://127.0.0.1:6379")
    assert _run((), LocalState().single_use("x", capacity=1).aclaim(b"k", NOW + 1, NOW)) is Claim.FIRST


def test_the_command_line_takes_a_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        server_main(["--shared-state", "http://127.0.0.1:6379"])
    assert "--shared-state must be a redis:// URL" in capsys.readouterr().err
    options = SimpleNamespace(
        shared_state=REDIS,
        mailbox_quota=1,
        mailbox_quota_mib=1,
        token_quota=1,
        prekey_quota=1,
        min_free_disk_mib=0,
        checkpoint_interval=1.0,
    )
    assert ServerConfig(**storage_settings(options)).shared_state == REDIS
    del options.shared_state
    assert ServerConfig(**storage_settings(options)).shared_state is None


def test_rate_limits_are_shared_through_the_relay_app(tmp_path: Path) -> None:
    """Two relay apps on one Redis: a source's account creations count once for both."""
    server_key = ServerKey(os.urandom(32))
    limits = RateLimits(account_creation=RateLimit(burst=3, per_second=0.0001))
    config = ServerConfig(data_dir=tmp_path, rate_limits=limits, shared_state=REDIS)
    clock = FakeClock()
    apps = [create_app(config, storage=MemoryStorage(), clock=clock, server_key=server_key) for _ in "ab"]
    body = {"identity_key": b64.encode(b"\x05" + bytes(32)), "registration_id": 1}
    try:
        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
            codes = [
                client.post(
                    "/v1/accounts", json={**body, "device_secret": b64.encode(os.urandom(32))}
                ).status_code
                for client in (a, b, a, b, a)
            ]
        assert codes == [201, 201, 201, 429, 429]
    finally:
        for app in apps:
            _forget_everything(app.state.relay.shared)


def test_redis_going_away_and_coming_back_empty(tmp_path: Path) -> None:
    """A private redis-server stopped under a node: signed requests are refused (503) while it is
    away; once it is back (empty, as a restart leaves it), they are checked again, and what was
    dated before its new memory began is refused, so nothing accepted before the outage passes."""
    port = free_port()
    ticks = [0.0]
    mailbox, nonce, ms = os.urandom(16), os.urandom(16), int(NOW * 1000)

    async def body() -> None:
        with private_server("redis", port) as stop:
            guard = ReplayGuard(NOW - 60, memory=state.single_use("replay", capacity=10))
            assert await guard.aaccept(mailbox, nonce, ms, NOW)
            stop()
            with pytest.raises(SharedStateUnavailableError):
                await guard.aaccept(mailbox, os.urandom(16), ms, NOW + 1)
        ticks[0] += 2  # past RETRY_SECONDS: the next check tries Redis again
        with private_server("redis", port):
            later = NOW + 2
            assert not await guard.aaccept(mailbox, nonce, ms, later)  # the replay an empty Redis allows
            fresh = guard.sign_time(later)
            assert fresh >= int(later * 1000)
            assert await guard.aaccept(mailbox, os.urandom(16), fresh, fresh / 1000)
            await state.aclose()

    state = RedisState(f"redis://127.0.0.1:{port}", os.urandom(32), monotonic=lambda: ticks[0])
    asyncio.run(asyncio.wait_for(body(), TIMEOUT))
