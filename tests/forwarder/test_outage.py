"""A device that loses its network keeps its cadence at the relay: real processes on loopback.

The relay (``python -m sotto.server``, 1-second ticks, recording its operator's view) and a
forwarder (``python -m sotto.forwarder``) run as processes. Alice and Bob are cadence-mode SDK
clients through the forwarder, so each keeps its coming ticks' requests at the forwarder
(:mod:`sotto.client.schedule`). Alice reaches the forwarder through a cable this test can cut
(a TCP proxy on 127.0.0.1 that drops every connection while cut). Her cable is cut for several
ticks while Bob writes to her and she writes to him; then it is joined again. Later her app is
closed for a few ticks and opened again.

The relay's view shows one poll of each of her mailboxes and one send to Bob for every tick,
through the outage and the restart as before and after; everything written meanwhile arrives
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.oblivious import fetch_key_config, oblivious_network
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.server.observer import HttpExchange, read_view
from sotto.wire import b64
from tests.forwarder.processes import forwarder_process, relay_with_gateway

ALICE_ADDR, BOB_ADDR = "127.0.0.2", "127.0.0.3"
OUTAGE_TICKS = 6
TICK_SECONDS = 1.0
"""The relay's cadence tick (`--cadence-tick 1`, set by `relay_with_gateway`)."""
TURNS = 7
TO_ALICE = ("written while she was away", "and once more")
TO_BOB = "queued while offline"
AFTER_RESTART = "while your app was closed"


class Cable:
    """A TCP proxy to ``target`` that can be cut: while cut, every connection is dropped."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            for writer in list(self._open):
                writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.set_cut(True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if self.cut:
                        break
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort() if self.cut else dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.difference_update((writer, up_writer))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("outage")
    view = root / "view.jsonl"
    with (
        relay_with_gateway(root / "data", root / "relay.log", view) as relay,
        forwarder_process(relay, root / "forwarder.log") as forwarder,
    ):
        yield relay, forwarder, view


async def until(condition: Callable[[], bool], seconds: float, state: Callable[[], object] = str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"did not happen in time: {state()}"
        await asyncio.sleep(0.1)


async def person(relay: str, forwarder: str, tmp: Path, name: str, address: str) -> Client:
    pinned = await fetch_key_config(relay + "/v1/gateway/keys")
    network = oblivious_network(forwarder, pinned, relay_url=relay, local_address=address)
    return await Client.create(
        tmp / name,
        relay,
        "correct horse battery staple",
        name,
        network=network,
        kdf=Argon2Params.TESTING,
        cadence=True,
        receipt_delay=0.1,
    )


async def reopen(relay: str, forwarder: str, tmp: Path, name: str, address: str) -> Client:
    pinned = await fetch_key_config(relay + "/v1/gateway/keys")
    network = oblivious_network(forwarder, pinned, relay_url=relay, local_address=address)
    return await Client.open(
        tmp / name,
        "correct horse battery staple",
        network=network,
        cadence=True,
        receipt_delay=0.1,
    )


def our_mailboxes(client: Client) -> set[str]:
    now = client.engine.now_ms()
    return {b64.encode(m) for m in client.engine.read(lambda tx: mailbox_flow.to_drain(tx, now))}


def run_outage(relay: str, forwarder: str, tmp: Path) -> dict[str, object]:
    async def main() -> dict[str, object]:
        port = int(forwarder.rsplit(":", 1)[1])
        cable = Cable(port)
        alice_forwarder = await cable.start()
        alice = await person(relay, alice_forwarder, tmp, "Alice", ALICE_ADDR)
        bob = await person(relay, forwarder, tmp, "Bob", BOB_ADDR)
        seen: dict[str, list[ev.Event]] = {"Alice": [], "Bob": []}

        async def listen(client: Client) -> None:
            async for event in client.listen():
                seen[client.display_name].append(event)

        def texts(name: str) -> list[str]:
            return [e.text for e in seen[name] if isinstance(e, ev.MessageReceived)]

        listeners = [asyncio.create_task(listen(c)) for c in (alice, bob)]
        try:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            await until(lambda: bob.is_ready("Alice") and alice.is_ready("Bob"), 90)
            # Turns enough that each side's sending chain moves on more often than the other
            # keeps old chains: covers built ahead on an old chain would no longer open.
            for turn in range(TURNS):
                await alice.send_text("Bob", f"a{turn}")
                await until(lambda: len(texts("Bob")) == turn + 1, 60, lambda: seen)  # noqa: B023
                await bob.send_text("Alice", f"b{turn}")
                await until(lambda: len(texts("Alice")) == turn + 1, 60, lambda: seen)  # noqa: B023
            await asyncio.sleep(3)  # the schedule built ahead again for the new contact
            loop = asyncio.get_running_loop()
            cut_at = loop.time()
            cable.set_cut(True)
            cut_unix = alice.engine.now_ms() / 1000
            await bob.send_text("Alice", TO_ALICE[0])
            await alice.send_text("Bob", TO_BOB)  # queued: it leaves when she is back
            await asyncio.sleep(OUTAGE_TICKS / 2)
            await bob.send_text("Alice", TO_ALICE[1])
            await asyncio.sleep(max(0.0, OUTAGE_TICKS - (loop.time() - cut_at)))
            back_unix = alice.engine.now_ms() / 1000
            cable.set_cut(False)
            await until(
                lambda: len(texts("Alice")) >= TURNS + 2 and len(texts("Bob")) >= TURNS + 1,
                60,
                lambda: (seen, cable.cut),
            )
            await asyncio.sleep(4)  # anything duplicated would have come by now
            # Alice's app is closed and opened again: her schedule runs on meanwhile, and the new
            # run takes it over rather than adding a second cadence.
            mailboxes = our_mailboxes(alice)
            listeners[0].cancel()
            network = alice.engine.network
            await alice.close()
            await network.aclose()
            closed_unix = bob.engine.now_ms() / 1000
            await bob.send_text("Alice", AFTER_RESTART)
            await asyncio.sleep(3)
            alice = await reopen(relay, alice_forwarder, tmp, "Alice", ALICE_ADDR)
            listeners[0] = asyncio.create_task(listen(alice))
            await until(lambda: len(texts("Alice")) >= TURNS + 3, 60, lambda: seen)
            await asyncio.sleep(4)
            return {
                "rejected": [
                    e for events in seen.values() for e in events if isinstance(e, ev.EnvelopeRejected)
                ],
                "alice": texts("Alice"),
                "bob": texts("Bob"),
                "cut": cut_unix,
                "back": back_unix,
                "closed": closed_unix,
                "end": alice.engine.now_ms() / 1000,
                "alice_mailboxes": mailboxes | our_mailboxes(alice),
                "bob_mailboxes": our_mailboxes(bob),
            }
        finally:
            for listener in listeners:
                listener.cancel()
            for client in (alice, bob):
                if not client.engine.closed:
                    network = client.engine.network
                    await client.close()
                    await network.aclose()
            await cable.close()

    return asyncio.run(asyncio.wait_for(main(), 240))


@pytest.fixture(scope="module")
def outage(stack: tuple[str, str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    relay, forwarder, _ = stack
    return run_outage(relay, forwarder, tmp_path_factory.mktemp("people"))


def test_what_was_written_during_the_outage_arrives_once(outage: dict[str, object]) -> None:
    assert outage["alice"] == [*(f"b{i}" for i in range(TURNS)), *TO_ALICE, AFTER_RESTART]
    assert outage["bob"] == [*(f"a{i}" for i in range(TURNS)), TO_BOB]
    assert outage["rejected"] == []  # every cover, built ahead or not, opened at its contact


def test_the_relay_sees_the_same_cadence_through_the_outage(
    stack: tuple[str, str, Path], outage: dict[str, object]
) -> None:
    _, _, view = stack
    cut, back = float(outage["cut"]), float(outage["back"])  # type: ignore[arg-type]
    alice_boxes: set[str] = outage["alice_mailboxes"]  # type: ignore[assignment]
    bob_boxes: set[str] = outage["bob_mailboxes"]  # type: ignore[assignment]
    records = [r for r in read_view(view) if isinstance(r, HttpExchange)]
    polls: dict[str, list[float]] = {mailbox: [] for mailbox in alice_boxes}
    sends: list[float] = []
    for record in records:
        at = record.t_us / 1_000_000
        parts = record.path.split("/")
        if record.path.endswith("/poll") and parts[3] in alice_boxes:
            polls[parts[3]].append(at)
        elif record.path.endswith("/messages") and parts[3] in bob_boxes:
            sends.append(at)  # only Alice writes to Bob's mailboxes
    end = float(outage["end"])  # type: ignore[arg-type]
    # from before the cut, through the outage, the app closed and opened again, to the end
    ticks = range(math.floor(cut) - 2, math.floor(end) - 1)
    assert len(ticks) >= OUTAGE_TICKS + 12
    assert math.floor(back) < math.floor(float(outage["closed"])) < math.floor(end) - 5  # type: ignore[arg-type]
    for mailbox in alice_boxes:
        _one_per_tick(polls[mailbox], ticks, f"polls of {mailbox}")
    _one_per_tick(sends, ticks, "sends")


def _one_per_tick(times: list[float], ticks: range, what: str) -> None:
    """As many requests as ticks, with no tick left out: an outage the schedule did not cover
    would leave a gap of several ticks, and a second schedule would double the count. A release
    the loaded machine delays may cross into the next second, so this counts and measures gaps
    rather than asking for one request in each second."""
    inside = sorted(t for t in times if ticks.start <= t < ticks.stop)
    assert abs(len(inside) - len(ticks)) <= 1, (what, len(inside), len(ticks))
    gaps = [later - earlier for earlier, later in itertools.pairwise(inside)]
    assert inside and inside[0] - ticks.start < 2 * TICK_SECONDS, (what, inside[:1])
    assert ticks.stop - inside[-1] < 2 * TICK_SECONDS, (what, inside[-1:])
    assert max(gaps) < 2.5 * TICK_SECONDS, (what, max(gaps))
