"""Test parties for the 1:1 protocol: one device each, its state in the reference store.

A :class:`Party` is a name for an :class:`~sotto.protocol.store.InMemoryProtocolStore` plus the
test clock and rng; every send and receive goes through :mod:`sotto.protocol.store`, so the
prekey, last-resort and trust bookkeeping under test is the library's, not a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol import store as protocol_store
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.messages import CiphertextMessage
from sotto.protocol.record import SessionRecord
from sotto.protocol.store import InMemoryProtocolStore

ALICE_NAME = "9d0652a3-dcc3-4d11-975f-74d61598733f"
BOB_NAME = "796abedb-ca4e-4f18-8803-1fde5b921f9f"
NOW_MS = 1_750_000_000_000
SIGNED_ID = 7
KYBER_ID = 9
FIRST_ONE_TIME_ID = 101


class Peer(Protocol):
    """Anything with an address: a :class:`Party` or a remote libsignal party."""

    @property
    def address(self) -> ProtocolAddress: ...


@dataclass(frozen=True)
class RemoteAddress:
    address: ProtocolAddress


@dataclass
class Party:
    """One device: a signed prekey (id 7), a last-resort Kyber prekey (id 9), one-time keys on demand."""

    name: str
    device_id: int
    rng: Rng
    identity_key_pair: KeyPair | None = None
    """Use this identity (another device of the same account) instead of a new one."""
    store: InMemoryProtocolStore = field(init=False)

    def __post_init__(self) -> None:
        identity = self.identity_key_pair or KeyPair.generate(self.rng)
        registration_id = int.from_bytes(self.rng(2), "big") & 0x3FFF
        self.store = InMemoryProtocolStore(
            identity, registration_id, ProtocolAddress(self.name, self.device_id)
        )
        self.store.save_signed_pre_key(SignedPreKeyRecord.generate(SIGNED_ID, identity, NOW_MS, self.rng))
        self.store.save_kyber_pre_key(
            KyberPreKeyRecord.generate(KYBER_ID, identity, NOW_MS, self.rng, last_resort=True)
        )
        self.store.next_pre_key_id = FIRST_ONE_TIME_ID

    @property
    def address(self) -> ProtocolAddress:
        return self.store.address

    @property
    def identity(self) -> KeyPair:
        return self.store.identity

    @property
    def registration_id(self) -> int:
        return self.store.registration_id

    @property
    def signed(self) -> SignedPreKeyRecord:
        return self.store.signed_pre_key

    @property
    def kyber(self) -> KyberPreKeyRecord:
        return self.store.last_resort_kyber_pre_key

    @property
    def sessions(self) -> dict[ProtocolAddress, SessionRecord]:
        return self.store.sessions

    @property
    def one_time(self) -> dict[int, PreKeyRecord]:
        return self.store.pre_keys

    @property
    def used_last_resort(self) -> set[tuple[int, int, bytes]]:
        return self.store.last_resort_uses

    def bundle(self, *, one_time: bool = True) -> PreKeyBundle:
        return self.store.bundle(pre_key=self.store.generate_pre_key(self.rng) if one_time else None)

    def start_session(self, peer: Peer, bundle: PreKeyBundle | None = None) -> None:
        if bundle is None:
            assert isinstance(peer, Party)
            bundle = peer.bundle()
        protocol_store.process_prekey_bundle(self.store, peer.address, bundle, now_ms=NOW_MS, rng=self.rng)

    def encrypt(self, peer: Peer, plaintext: bytes, now_ms: int = NOW_MS) -> CiphertextMessage:
        return protocol_store.message_encrypt(
            self.store, peer.address, plaintext, now_ms=now_ms, rng=self.rng
        )

    def decrypt(self, peer: Peer, message: CiphertextMessage) -> bytes:
        return protocol_store.message_decrypt(self.store, peer.address, message, rng=self.rng)


def make_pair(seed: int = 1) -> tuple[Party, Party]:
    rng = seeded_rng(seed)
    return Party(ALICE_NAME, 1, rng), Party(BOB_NAME, 2, rng)


def established_pair(seed: int = 1) -> tuple[Party, Party]:
    """Alice started the session and Bob answered once, so both send Whisper messages."""
    alice, bob = make_pair(seed)
    alice.start_session(bob)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hello")) == b"hello"
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi")) == b"hi"
    return alice, bob
