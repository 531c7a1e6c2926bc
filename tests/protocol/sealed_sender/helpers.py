"""A small sealed-sender world for tests: a trust root, a server key, and certified parties.

Each party's keys live in the reference protocol store (:mod:`sotto.protocol.store`), so a test
can go on to open what it seals with ``sealed_sender_decrypt``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.sealed_sender import (
    SealedRecipient,
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
)
from sotto.protocol.store import InMemoryProtocolStore

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000
WHISPER = 2
PREKEY = 3
SENDER_KEY = 7
PLAINTEXT = 8


@dataclass
class Party:
    """A certified device: its state in the reference protocol store, plus its sender certificate."""

    store: InMemoryProtocolStore
    certificate: SenderCertificate

    @property
    def identity(self) -> KeyPair:
        return self.store.identity

    @property
    def registration_id(self) -> int:
        return self.store.registration_id

    @property
    def address(self) -> ProtocolAddress:
        return self.store.address

    @property
    def uuid(self) -> str:
        return self.store.address.name

    @property
    def device_id(self) -> int:
        return self.store.address.device_id


@dataclass
class World:
    rng: Rng
    root: KeyPair
    server: KeyPair
    server_certificate: ServerCertificate
    _counter: int = field(default=0)

    @classmethod
    def create(cls, seed: int = 7, key_id: int = 1) -> World:
        rng = seeded_rng(seed)
        root = KeyPair.generate(rng)
        server = KeyPair.generate(rng)
        return cls(rng, root, server, ServerCertificate.issue(key_id, server.public, root.private, rng))

    def certify(
        self, identity: KeyPair, sender_uuid: str, device_id: int = 1, expiration_ms: int = NOW_MS + DAY_MS
    ) -> SenderCertificate:
        return SenderCertificate.issue(
            sender_uuid=sender_uuid,
            sender_device_id=device_id,
            identity_key=identity.public,
            expiration_ms=expiration_ms,
            signer=self.server_certificate,
            signer_key=self.server.private,
            rng=self.rng,
        )

    def party(self, device_id: int = 1) -> Party:
        self._counter += 1
        identity = KeyPair.generate(self.rng)
        party_uuid = str(uuid.UUID(bytes=self.rng(16), version=4))
        store = InMemoryProtocolStore(identity, 1000 + self._counter, ProtocolAddress(party_uuid, device_id))
        return Party(store, self.certify(identity, party_uuid, device_id))

    def content(
        self, sender: Party, body: bytes = b"inner message", message_type: int = WHISPER, **kw: object
    ) -> UnidentifiedSenderMessageContent:
        return UnidentifiedSenderMessageContent.new(message_type, sender.certificate, body, **kw)  # type: ignore[arg-type]


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[position] ^= mask
    return bytes(out)


SHARE = 48  # C (32) + AT (16)


def fixed(party: Party) -> bytes:
    return b"\x00" + uuid.UUID(party.uuid).bytes


def recipients_for(parties: list[Party], devices: int = 1) -> list[SealedRecipient]:
    return [
        SealedRecipient(
            p.uuid, [(d, (p.registration_id + d) & 0x3FFF) for d in range(1, devices + 1)], p.identity.public
        )
        for p in parties
    ]
