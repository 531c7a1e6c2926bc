"""Test parties for the 1:1 protocol: an identity, prekey records and an address each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import (
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    build_bundle,
)
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType, PreKeySignalMessage
from sotto.protocol.record import SessionRecord

ALICE_NAME = "9d0652a3-dcc3-4d11-975f-74d61598733f"
BOB_NAME = "796abedb-ca4e-4f18-8803-1fde5b921f9f"
NOW_MS = 1_750_000_000_000


class Peer(Protocol):
    """Anything with an address: a :class:`Party` or a remote libsignal party."""

    @property
    def address(self) -> ProtocolAddress: ...


@dataclass(frozen=True)
class RemoteAddress:
    address: ProtocolAddress


@dataclass
class Party:
    """One device: its keys, its prekey stores (plain dicts) and its session records by peer."""

    name: str
    device_id: int
    rng: Rng
    identity: KeyPair = field(init=False)
    registration_id: int = field(init=False)
    signed: SignedPreKeyRecord = field(init=False)
    kyber: KyberPreKeyRecord = field(init=False)
    one_time: dict[int, PreKeyRecord] = field(default_factory=dict)
    used_last_resort: set[tuple[int, int, bytes]] = field(default_factory=set)
    sessions: dict[ProtocolAddress, SessionRecord] = field(default_factory=dict)
    _next_prekey_id: int = 100

    def __post_init__(self) -> None:
        self.identity = KeyPair.generate(self.rng)
        self.registration_id = int.from_bytes(self.rng(2), "big") & 0x3FFF
        self.signed = SignedPreKeyRecord.generate(7, self.identity, NOW_MS, self.rng)
        self.kyber = KyberPreKeyRecord.generate(9, self.identity, NOW_MS, self.rng, last_resort=True)

    @property
    def address(self) -> ProtocolAddress:
        return ProtocolAddress(self.name, self.device_id)

    def bundle(self, *, one_time: bool = True) -> PreKeyBundle:
        pre_key = None
        if one_time:
            self._next_prekey_id += 1
            pre_key = PreKeyRecord.generate(self._next_prekey_id, self.rng)
            self.one_time[pre_key.id] = pre_key
        return build_bundle(
            registration_id=self.registration_id,
            device_id=self.device_id,
            identity_key=self.identity.public,
            signed_pre_key=self.signed,
            kyber_pre_key=self.kyber,
            pre_key=pre_key,
        )

    def start_session(self, peer: Peer, bundle: PreKeyBundle | None = None) -> None:
        if bundle is None:
            assert isinstance(peer, Party)
            bundle = peer.bundle()
        self.sessions[peer.address] = session.process_prekey_bundle(
            self.sessions.get(peer.address),
            our_identity=self.identity,
            our_registration_id=self.registration_id,
            our_address=self.address,
            their_address=peer.address,
            bundle=bundle,
            now_ms=NOW_MS,
            rng=self.rng,
        )

    def encrypt(self, peer: Peer, plaintext: bytes, now_ms: int = NOW_MS) -> CiphertextMessage:
        record, message = session.encrypt(
            self.sessions.get(peer.address),
            plaintext,
            our_address=self.address,
            their_address=peer.address,
            now_ms=now_ms,
            rng=self.rng,
        )
        self.sessions[peer.address] = record
        return message

    def decrypt(self, peer: Peer, message: CiphertextMessage) -> bytes:
        record = self.sessions.get(peer.address)
        if message.type == CiphertextMessageType.PREKEY:
            parsed = PreKeySignalMessage.decode(message.body)
            result = session.decrypt_prekey_message(
                record,
                parsed,
                our_identity=self.identity,
                our_registration_id=self.registration_id,
                our_address=self.address,
                their_address=peer.address,
                signed_pre_key=self.signed if parsed.signed_pre_key_id == self.signed.id else None,
                kyber_pre_key=self.kyber if parsed.kyber_pre_key_id == self.kyber.id else None,
                one_time_pre_key=None if parsed.pre_key_id is None else self.one_time.get(parsed.pre_key_id),
                used_last_resort=self.used_last_resort,
                rng=self.rng,
            )
            if result.used_one_time_pre_key_id is not None:
                del self.one_time[result.used_one_time_pre_key_id]
            if result.last_resort_use is not None:
                self.used_last_resort.add(result.last_resort_use)
            self.sessions[peer.address] = result.record
            return result.plaintext
        assert message.type == CiphertextMessageType.WHISPER
        new_record, plaintext = session.decrypt_signal_message(
            record, message.body, our_address=self.address, their_address=peer.address, rng=self.rng
        )
        self.sessions[peer.address] = new_record
        return plaintext


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
