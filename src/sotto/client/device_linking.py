"""Linking a device over the relay: the new device's side (:class:`LinkListener`: make the
one-use provisioning mailbox, wait for the provisioning message, check it) and the existing
device's side (:func:`post_provisioning`). The bytes are :mod:`sotto.client.linking`'s; what the
store keeps is :mod:`sotto.client.flows.devices`'."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sotto.client import device_list as dl
from sotto.client import linking
from sotto.client.transport import Network, Relay
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError, DeviceListError, LinkError
from sotto.wire import api
from sotto.wire.padding import pad, unpad

MAILBOX_TTL_DAYS = 1
"""The provisioning mailbox lives a day at most on the relay (it is deleted once read)."""
POLL_INTERVAL_S = 0.5
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Linked:
    """What the new device received and checked."""

    provisioning: linking.Provisioning
    device: dl.Device
    """This device's entry in the account's device list."""

    def __repr__(self) -> str:
        return f"Linked(device_id={self.device.device_id}, {self.provisioning!r})"


class LinkListener:
    """The new device's half: a link to show, and the wait for what an existing device sends."""

    def __init__(self, network: Network, server_url: str, device_name: str, rng: Rng) -> None:
        self._network = network
        self.ephemeral = KeyPair.generate(rng)
        self.device_key = KeyPair.generate(rng)
        self.request = linking.DeviceLink(
            server_url, rng(linking.SECRET_LENGTH), self.ephemeral.public, self.device_key.public, device_name
        )
        self._keys = linking.derive_link_keys(self.request.secret)

    def __repr__(self) -> str:
        return "LinkListener(<secret>)"

    @property
    def link(self) -> str:
        return self.request.encode()

    async def open(self) -> None:
        """Create the one-use provisioning mailbox on the relay."""
        await self._relay().create_mailbox(
            api.CreateMailbox(
                mailbox_id=self._keys.mailbox_id,
                auth_key=self._keys.mailbox_key.public.raw,
                delivery_token=self._keys.delivery_token,
                ttl_days=MAILBOX_TTL_DAYS,
            )
        )

    def _relay(self) -> Relay:
        return self._network.relay(self.request.server_url)

    async def receive(
        self, *, timeout: float = DEFAULT_TIMEOUT_S, sleep: Callable[[float], object] = asyncio.sleep
    ) -> Linked:
        """Wait for the provisioning message, open and check it; LinkError if it does not come
        in ``timeout`` seconds or does not check (then the link is spent: show a new one)."""
        parts: list[linking.Part] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        acks: list[bytes] = []
        while True:
            polled = await self._relay().poll(self._keys.mailbox_id, self._keys.mailbox_key, acks, 32)
            acks = [envelope.id for envelope in polled.envelopes]
            try:
                parts += [linking.decode_part(unpad(envelope.payload)) for envelope in polled.envelopes]
                sealed = linking.join(parts)
            except DecodeError:
                raise LinkError("the provisioning message is malformed") from None
            if sealed is not None:
                break
            if loop.time() >= deadline:
                raise LinkError("no device answered the link in time")
            if not polled.more:
                await sleep(POLL_INTERVAL_S)  # type: ignore[misc]
        try:
            message = linking.Provisioning.decode(linking.open_sealed(sealed, self.request, self.ephemeral))
            device = linking.check(message, self.device_key.public)
        except (DecodeError, DecryptionError, DeviceListError, ValueError):
            raise LinkError("the provisioning message does not check") from None
        return Linked(message, device)

    async def close(self) -> None:
        """Delete the provisioning mailbox (best effort: it expires in a day anyway)."""
        await self._relay().delete_mailbox(self._keys.mailbox_id, self._keys.mailbox_key)


async def post_provisioning(
    network: Network, link: linking.DeviceLink, provisioning: linking.Provisioning, rng: Rng
) -> None:
    """Seal ``provisioning`` to the device that showed ``link`` and post it, part by part, to
    its provisioning mailbox."""
    keys = linking.derive_link_keys(link.secret)
    relay = network.relay(link.server_url)
    for part in linking.parts(linking.seal(provisioning.encode(), link, rng)):
        await relay.send(keys.mailbox_id, keys.delivery_token, rng(16), pad(part.encode()))
