"""Devices through forwarders in the simulation: the real relay behind its gateway, a real
forwarder per device, cadence-mode SDK clients whose schedule is held there, on virtual time.

Alice's host goes offline for ten ticks while Bob writes to her: the relay's view shows one
poll of each of her mailboxes and one send to Bob in every tick through it, and what Bob wrote
arrives once when she is back.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter

from sotto.audit import sim
from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import Host
from sotto.audit.sim.world import (
    FORWARDER_ADDRESS,
    RELAY_URL,
    device_forwarder,
    forwarded_network,
    gateway_key,
    relay_app,
)
from sotto.client import events as ev
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.sdk import Client
from sotto.server.config import ServerConfig
from sotto.server.observer import HttpExchange, MemorySink, Observer
from sotto.store.memory import MemoryStore
from sotto.wire import b64

TICK = 60
OUTAGE_TICKS = 10


def test_a_device_offline_for_ten_ticks_keeps_its_cadence_at_the_relay() -> None:
    async def main(clock: VirtualClock) -> dict[str, object]:
        rng = random.Random(7)
        sink = MemorySink()
        observer = Observer(sink, clock=clock)
        key = gateway_key(rng.randbytes)
        config = ServerConfig(cadence_tick_seconds=TICK)
        async with relay_app(clock, config=config, rng=rng.randbytes, observer=observer) as app:
            hosts = {
                name: Host(address, rng.randbytes) for name, address in (("A", "10.0.0.1"), ("B", "10.0.0.2"))
            }
            forwarders = {name: device_forwarder(app, clock, key, rng=rng.randbytes) for name in hosts}
            clients: dict[str, Client] = {}
            networks = {}
            for name, host in hosts.items():
                networks[name] = forwarded_network(forwarders[name], host, clock, key, rng=rng.randbytes)
                clients[name] = await Client.register(
                    MemoryStore(),
                    RELAY_URL,
                    name,
                    network=networks[name],
                    rng=rng.randbytes,
                    clock=clock.now_ms,
                    cadence=True,
                )
            seen: dict[str, list[str]] = {"A": [], "B": []}

            async def listen(name: str) -> None:
                async for event in clients[name].listen():
                    if isinstance(event, ev.MessageReceived):
                        seen[name].append(event.text)

            listeners = [asyncio.create_task(listen(name)) for name in clients]
            try:
                invite = await clients["A"].create_invite()
                await clients["B"].accept_invite(invite.link, "A")
                while not (clients["B"].is_ready("A") and clients["A"].is_ready("B")):
                    await asyncio.sleep(TICK)
                await asyncio.sleep(3 * TICK)
                cut = clock.now()
                hosts["A"].go_offline()
                await clients["B"].send_text("A", "one")
                await asyncio.sleep(OUTAGE_TICKS * TICK / 2)
                await clients["B"].send_text("A", "two")
                await asyncio.sleep(OUTAGE_TICKS * TICK / 2)
                back = clock.now()
                hosts["A"].go_online()
                await asyncio.sleep(6 * TICK)
                now = clients["A"].engine.now_ms()
                mine = {
                    b64.encode(m) for m in clients["A"].engine.read(lambda tx: mailbox_flow.to_drain(tx, now))
                }
                now = clients["B"].engine.now_ms()
                bobs = {
                    b64.encode(m) for m in clients["B"].engine.read(lambda tx: mailbox_flow.to_drain(tx, now))
                }
            finally:
                for listener in listeners:
                    listener.cancel()
                for name, client in clients.items():
                    await client.close()
                    await networks[name].aclose()
                for forwarder in forwarders.values():
                    await forwarder.aclose()
        return {
            "seen": seen,
            "cut": cut,
            "back": back,
            "mine": mine,
            "bobs": bobs,
            "view": sink.records,
        }

    out = sim.run(main)
    assert out["seen"] == {"A": ["one", "two"], "B": []}
    records = [r for r in out["view"] if isinstance(r, HttpExchange)]  # type: ignore[attr-defined]
    assert {r.addr for r in records} <= {None, FORWARDER_ADDRESS}  # no device address reaches the relay
    polls: Counter[tuple[int, str]] = Counter()
    sends: Counter[int] = Counter()
    for r in records:
        tick, parts = math.floor(r.t_us / 1e6 / TICK), r.path.split("/")
        if r.path.endswith("/poll") and parts[3] in out["mine"]:  # type: ignore[operator]
            polls[(tick, parts[3])] += 1
        elif r.path.endswith("/messages") and parts[3] in out["bobs"]:  # type: ignore[operator]
            sends[tick] += 1
    cut, back = math.floor(out["cut"] / TICK), math.floor(out["back"] / TICK)  # type: ignore[operator]
    for tick in range(cut - 2, back + 5):
        for mailbox in out["mine"]:  # type: ignore[attr-defined]
            assert polls[(tick, mailbox)] == 1, (tick - cut, polls)
        assert sends[tick] == 1, (tick - cut, sends)
