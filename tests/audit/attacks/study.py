"""A small study for the attack tests: real clients in cadence mode on the real relay, with
outages, the operator's view recorded, and the truth written down beside it.

``people`` devices register, each from its own address; person ``i`` invites person ``i + 1``
(a ring) and, for a few ``i``, person ``i + 3`` as well, so people hold two to four contacts.
Each person sends a few texts at random times. During the run each device loses its network
``outages`` times for ``outage_s`` seconds at random moments: its requests fail before they
reach the relay, so the view shows nothing of it meanwhile.

The truth's mailbox owners come from the simulation's own knowledge that each address is one
device (the device that creates a mailbox owns it); device-on intervals are the run minus the
outages. Nothing here is an attack.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from sotto.audit import sim
from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import ASGIApp, Host
from sotto.audit.sim.scenario import address_of
from sotto.audit.sim.truth import MailboxLife, Person, Truth
from sotto.audit.sim.world import RELAY_URL, Device, close_device, new_device, relay_app
from sotto.errors import UnknownContactError
from sotto.server.config import ServerConfig
from sotto.server.observer import HttpExchange, MemorySink, Observer, ViewRecord
from sotto.wire import b64

LATENCY_S = 0.005
"""Each way of each request and frame: the relay sees a client's requests a few ms apart."""


@dataclass
class _Gate:
    """A device's network: while ``down``, its requests fail before they reach the relay."""

    app: ASGIApp
    down: bool = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.down and scope["type"] in ("http", "websocket"):
            raise httpx.ConnectError("the device is offline")
        await self.app(scope, receive, send)


@dataclass
class Study:
    records: list[ViewRecord]
    truth: Truth


def run_study(
    people: int = 10,
    *,
    hours: float = 4.0,
    tick_seconds: int = 120,
    outages: int = 2,
    outage_s: float = 1200.0,
    texts: int = 3,
    seed: int = 1,
    cadence: bool = True,
) -> Study:
    """Run the study (module docstring) and return the view and the truth."""
    settings = _Settings(people, hours, tick_seconds, outages, outage_s, texts, seed, cadence)
    return sim.run(lambda clock: _study(clock, settings))


@dataclass(frozen=True)
class _Settings:
    people: int
    hours: float
    tick_seconds: int
    outages: int
    outage_s: float
    texts: int
    seed: int
    cadence: bool


async def _study(clock: VirtualClock, settings: _Settings) -> Study:
    n, hours, tick_seconds = settings.people, settings.hours, settings.tick_seconds
    outages, outage_s, texts, seed = settings.outages, settings.outage_s, settings.texts, settings.seed
    rng = random.Random(seed)
    sink = MemorySink()
    config = ServerConfig(cadence_tick_seconds=tick_seconds)
    seconds = hours * 3600
    start_us = round(clock.now() * 1e6)
    end_us = start_us + round(seconds * 1e6)
    truth = Truth(start_us=start_us, end_us=end_us, settings={"people": n, "hours": hours, "seed": seed})
    async with relay_app(
        clock, config=config, rng=rng.randbytes, observer=Observer(sink, clock=clock)
    ) as app:
        gates = [_Gate(app) for _ in range(n)]
        devices: list[Device] = []
        joined: list[int] = []
        for i in range(n):
            await asyncio.sleep(rng.uniform(5, 60))  # people join one after another
            joined.append(round(clock.now() * 1e6))
            devices.append(
                await new_device(
                    {RELAY_URL: gates[i]},
                    clock,
                    f"p{i}",
                    host=Host(address_of(i), rng.randbytes),
                    cadence=settings.cadence,
                    rng=rng.randbytes,
                    latency_s=LATENCY_S,
                )
            )
        pairs = [(i, (i + 1) % n) for i in range(n)] + [(i, (i + 3) % n) for i in range(0, n, 3)]
        pairs = list(
            dict.fromkeys(p for p in pairs if p[0] != p[1] and (p[1], p[0]) not in pairs[: pairs.index(p)])
        )
        listeners = [asyncio.create_task(_drain(d)) for d in devices]
        for a, b in pairs:
            await asyncio.sleep(rng.uniform(30, 300))  # contacts form one after another
            invite = await devices[a].client.create_invite()
            await asyncio.sleep(rng.uniform(10, 120))  # the link travels out of band
            await devices[b].client.accept_invite(invite.link, devices[a].name)
            truth.contacts.append((devices[a].name, devices[b].name, round(clock.now() * 1e6)))

        base_us = round(clock.now() * 1e6)
        rest = seconds - (base_us - start_us) / 1e6
        downs: dict[int, list[tuple[float, float]]] = {}
        for i in range(n):
            for _ in range(outages):
                begin = rng.uniform(0.05 * rest, rest - outage_s)
                downs.setdefault(i, []).append((begin, begin + outage_s))

        async def outage(i: int, begin: float, end: float) -> None:
            await asyncio.sleep(begin)
            gates[i].down = True
            await asyncio.sleep(end - begin)
            gates[i].down = False

        async def text(a: int, b: int, at: float) -> None:
            await asyncio.sleep(at)
            for _ in range(20):  # an inviter learns of the contact when its request arrives
                try:
                    await devices[a].client.send_text(devices[b].name, "hello")
                    return
                except UnknownContactError:
                    await asyncio.sleep(tick_seconds)

        tasks = [asyncio.create_task(outage(i, *span)) for i, spans in downs.items() for span in spans]
        for a, b in pairs:
            for _ in range(texts):
                tasks.append(asyncio.create_task(text(a, b, rng.uniform(0, rest / 2))))
                tasks.append(asyncio.create_task(text(b, a, rng.uniform(0, rest / 2))))
        await asyncio.sleep(seconds - (clock.now() * 1e6 - start_us) / 1e6)
        await asyncio.gather(*tasks)
        for device in devices:
            await close_device(device)
        await asyncio.gather(*listeners, return_exceptions=True)

    for i, device in enumerate(devices):
        merged = _merge(sorted(downs.get(i, [])))
        on, at = [], joined[i]
        for begin, end in merged:
            on.append((at, base_us + round(begin * 1e6)))
            at = base_us + round(end * 1e6)
        on.append((at, end_us))
        truth.people[device.name] = Person(
            device.name,
            b64.encode(device.client.account_id),
            device.host.address,
            settings.cadence,
            device_on=on,
        )
    _mailboxes(truth, sink.records, {d.host.address: d.name for d in devices})
    return Study(list(sink.records), truth)


def _pairs(n: int) -> list[tuple[int, int]]:
    """Who invites whom: a ring, and a chord from every third person."""
    found: dict[frozenset[int], tuple[int, int]] = {}
    for a, b in [(i, (i + 1) % n) for i in range(n)] + [(i, (i + 3) % n) for i in range(0, n, 3)]:
        if a != b:
            found.setdefault(frozenset((a, b)), (a, b))
    return list(found.values())


async def _drain(device: Device) -> None:
    async for _ in device.client.listen():
        pass


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for begin, end in spans:
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def _mailboxes(truth: Truth, records: list[ViewRecord], person_at: dict[str, str]) -> None:
    """Mailbox lives from the simulation's knowledge of which device is at which address."""
    created: dict[str, tuple[str, int]] = {}
    deleted: dict[str, int] = {}
    writers: dict[str, Counter[str]] = {}
    for r in records:
        if not isinstance(r, HttpExchange) or r.addr not in person_at or not 200 <= r.status < 300:
            continue
        who = person_at[r.addr]
        if r.method == "POST" and r.path == "/v1/mailboxes":
            for m in r.mailboxes:
                created.setdefault(m, (who, r.t_us))
        elif r.method == "DELETE" and r.path.startswith("/v1/mailboxes/"):
            for m in r.mailboxes:
                deleted.setdefault(m, r.t_us)
        elif r.path.endswith("/messages"):
            for m in r.mailboxes:
                writers.setdefault(m, Counter())[who] += 1
    for m, (owner, t) in created.items():
        writer = writers[m].most_common(1)[0][0] if m in writers else ""
        truth.mailboxes.append(MailboxLife(m, owner, writer, t, deleted.get(m)))
