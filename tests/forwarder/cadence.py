"""Cadence-mode people through a forwarder, for the tests of what the relay sees when a device
goes quiet (``test_outage.py``, ``test_long_sleep.py``).

:class:`Cable` is a TCP proxy to the forwarder that a test can cut; :func:`alice_and_bob` makes two
cadence-mode SDK clients through the forwarder, Alice's through a cable; :func:`close_people`
ends them; :func:`cadence_requests` reads, from the relay's recorded view, when Alice polled each
of her mailboxes and when she sent to Bob; :func:`one_per_tick` checks those times keep the tick.
The relay and forwarder processes are the ``cadence_stack`` fixture (``conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.oblivious import fetch_key_config, oblivious_network
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork
from sotto.crypto.passphrase import Argon2Params
from sotto.server.observer import HttpExchange, read_view
from sotto.wire import b64

TICK_SECONDS = 1.0
"""The relay's cadence tick (`--cadence-tick 1`, set by `relay_with_gateway`)."""
PASSPHRASE = "correct horse battery staple"


class CadenceStack(NamedTuple):
    """The relay (1-second ticks, recording its operator's view to ``view``) and a forwarder."""

    relay: str
    forwarder: str
    view: Path


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


async def until(condition: Callable[[], bool], seconds: float, state: Callable[[], object] = str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"did not happen in time: {state()}"
        await asyncio.sleep(0.1)


async def _network(relay: str, forwarder: str, address: str) -> HttpNetwork:
    pinned = await fetch_key_config(relay + "/v1/gateway/keys")
    return oblivious_network(forwarder, pinned, relay_url=relay, local_address=address)


async def person(relay: str, forwarder: str, tmp: Path, name: str, address: str) -> Client:
    return await Client.create(
        tmp / name,
        relay,
        PASSPHRASE,
        name,
        network=await _network(relay, forwarder, address),
        kdf=Argon2Params.TESTING,
        cadence=True,
        receipt_delay=0.1,
    )


async def reopen(relay: str, forwarder: str, tmp: Path, name: str, address: str) -> Client:
    return await Client.open(
        tmp / name,
        PASSPHRASE,
        network=await _network(relay, forwarder, address),
        cadence=True,
        receipt_delay=0.1,
    )


async def alice_and_bob(
    stack: CadenceStack, tmp: Path, alice_address: str, bob_address: str
) -> tuple[Cable, str, Client, Client]:
    """A cable to the forwarder, the URL Alice reaches the forwarder at (through the cable), Alice
    and Bob (straight to the forwarder), each from their own local address."""
    cable = Cable(int(stack.forwarder.rsplit(":", 1)[1]))
    alice_forwarder = await cable.start()
    alice = await person(stack.relay, alice_forwarder, tmp, "Alice", alice_address)
    bob = await person(stack.relay, stack.forwarder, tmp, "Bob", bob_address)
    return cable, alice_forwarder, alice, bob


async def close_person(client: Client) -> None:
    network = client.engine.network
    await client.close()
    await network.aclose()


async def close_people(
    listeners: Iterable[asyncio.Task[None]], clients: Iterable[Client], cable: Cable
) -> None:
    """Stops the listeners, closes every client not closed yet (and its network), then the cable."""
    for listener in listeners:
        listener.cancel()
    for client in clients:
        if not client.engine.closed:
            await close_person(client)
    await cable.close()


def our_mailboxes(client: Client) -> set[str]:
    now = client.engine.now_ms()
    return {b64.encode(m) for m in client.engine.read(lambda tx: mailbox_flow.to_drain(tx, now))}


def run_bounds(alice: Client, bob: Client, mailboxes: set[str], cut: float, back: float) -> dict[str, object]:
    """What a check of the relay's view needs from a run, in seconds since the epoch: when Alice's
    cable was cut (``cut``) and joined again (``back``), when the run ended (``end``); her mailboxes
    (``mailboxes`` from before, and those she drains now) and Bob's."""
    return {
        "cut": cut,
        "back": back,
        "end": alice.engine.now_ms() / 1000,
        "alice_mailboxes": mailboxes | our_mailboxes(alice),
        "bob_mailboxes": our_mailboxes(bob),
    }


def cadence_requests(
    view: Path, alice_boxes: set[str], bob_boxes: set[str]
) -> tuple[dict[str, list[float]], list[float]]:
    """From the relay's view: when each of Alice's mailboxes was polled, and when Bob's were sent
    to (only Alice writes to Bob), in seconds since the epoch."""
    polls: dict[str, list[float]] = {mailbox: [] for mailbox in alice_boxes}
    sends: list[float] = []
    for record in read_view(view):
        if not isinstance(record, HttpExchange):
            continue
        at, parts = record.t_us / 1_000_000, record.path.split("/")
        if record.path.endswith("/poll") and parts[3] in alice_boxes:
            polls[parts[3]].append(at)
        elif record.path.endswith("/messages") and parts[3] in bob_boxes:
            sends.append(at)
    return polls, sends


def one_per_tick(times: list[float], ticks: range, what: str) -> None:
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
