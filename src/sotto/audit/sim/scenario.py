"""A first scenario: people in a ring of contacts chatting for a while, every request real.

``people`` devices register on one in-process relay, each from its own address. Person ``i``
invites person ``i + 1`` (the last invites the first; two people are one pair), so everyone has
two contacts. Then each sends ``texts_per_contact`` texts to each contact at uniform random
times in the first half of the run, and the second half lets the last ones arrive. Every event
each client reports is kept, so a caller can check that every text arrived once and was
acknowledged by a delivery receipt.

This is a smoke test of the machinery and a way to time it, not a model of people: that is
:mod:`sotto.audit.sim.people` (contact formation, sessions, outages, restarts), run by
:mod:`sotto.audit.sim.study`.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sotto.audit.sim.clock import VirtualClock
from sotto.audit.sim.network import ASGIApp, Host
from sotto.audit.sim.world import RELAY_URL, Device, close_device, new_device, relay_app
from sotto.client import events as ev
from sotto.server.config import ServerConfig
from sotto.store.model import MessageId


def address_of(index: int) -> str:
    """Address number ``index``: 10.0.0.1, 10.0.0.2, … (here one per device; a study gives one per
    household)."""
    number = (10 << 24) + index + 1
    return ".".join(str((number >> shift) & 255) for shift in (24, 16, 8, 0))


@dataclass
class ChatResult:
    """What happened: texts sent and received per (sender, receiver) and what the app saw."""

    sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(sender, receiver, text) → times sent."""
    received: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(sender as the receiver names them, receiver, text) → times received."""
    receipts: set[MessageId] = field(default_factory=set)
    """Ids of sent messages whose delivery receipt came back."""
    sent_ids: set[MessageId] = field(default_factory=set)
    contacts_added: int = 0
    events: Counter[str] = field(default_factory=Counter)
    virtual_seconds: float = 0.0
    loop_jumps: int = 0


async def chat_ring(
    clock: VirtualClock,
    people: int,
    *,
    cadence: bool,
    seconds: float,
    texts_per_contact: int = 2,
    tick_seconds: int = 300,
    seed: int = 0,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    config: ServerConfig | None = None,
) -> ChatResult:
    """Run the scenario (module docstring) for ``seconds`` of virtual time; what happened.

    ``wrap`` wraps the relay app as the devices see it (to watch requests); ``config`` is the
    relay's (by default its defaults with a ``tick_seconds`` tick)."""
    if people < 2:
        raise ValueError("a ring needs two people")
    rng = random.Random(seed)
    result = ChatResult()
    loop = asyncio.get_running_loop()
    started = loop.time()
    config = config or ServerConfig(cadence_tick_seconds=tick_seconds)
    async with relay_app(clock, config=config, rng=rng.randbytes) as app:
        relays = {RELAY_URL: app if wrap is None else wrap(app)}
        devices: list[Device] = []
        for i in range(people):
            devices.append(
                await new_device(
                    relays,
                    clock,
                    f"p{i}",
                    host=Host(address_of(i), rng.randbytes),
                    cadence=cadence,
                    rng=rng.randbytes,
                )
            )

        known: dict[tuple[str, str], asyncio.Event] = {}

        def knows(device: Device, name: str) -> asyncio.Event:
            return known.setdefault((device.name, name), asyncio.Event())

        async def listen(device: Device) -> None:
            async for event in device.client.listen():
                result.events[type(event).__name__] += 1
                if isinstance(event, ev.MessageReceived):
                    key = (event.contact.name, device.name, event.text)
                    result.received[key] += 1
                elif isinstance(event, ev.DeliveryReceiptReceived):
                    result.receipts.update(event.message_ids)
                elif isinstance(event, ev.ContactAdded):
                    result.contacts_added += 1
                    knows(device, event.contact.name).set()

        listeners = [asyncio.create_task(listen(d), name=f"listen-{d.name}") for d in devices]
        try:
            pairs = [(i, (i + 1) % people) for i in range(people if people > 2 else 1)]
            for inviter, invitee in pairs:
                invite = await devices[inviter].client.create_invite()
                await devices[invitee].client.accept_invite(invite.link, devices[inviter].name)
                knows(devices[invitee], devices[inviter].name).set()

            async def send_later(sender: Device, receiver: Device, text: str, at: float) -> None:
                await asyncio.sleep(at)
                await knows(sender, receiver.name).wait()  # an inviter learns of the contact late
                message_id = await sender.client.send_text(receiver.name, text)
                result.sent[(sender.name, receiver.name, text)] += 1
                result.sent_ids.add(message_id)

            senders = []
            for inviter, invitee in pairs:
                for a, b in ((inviter, invitee), (invitee, inviter)):
                    for k in range(texts_per_contact):
                        text = f"{devices[a].name} to {devices[b].name} #{k}"
                        at = rng.uniform(0, seconds / 2)
                        senders.append(asyncio.create_task(send_later(devices[a], devices[b], text, at)))
            await asyncio.sleep(seconds - (loop.time() - started))
            await asyncio.gather(*senders)
        finally:
            for device in devices:
                await close_device(device)
            await asyncio.gather(*listeners, return_exceptions=True)
    result.virtual_seconds = loop.time() - started
    result.loop_jumps = getattr(loop, "jumps", 0)
    return result


__all__ = ["ChatResult", "address_of", "chat_ring"]
