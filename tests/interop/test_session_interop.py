"""Sotto's 1:1 sessions against the real libsignal 0.103, in both roles.

Two long conversations (one started by each side) with traffic both ways and about 30% of the
messages delivered out of order, then negative controls that BOTH implementations must refuse:
a tampered MAC, a PreKey message without its Kyber fields, a message without its SPQR field
(with a valid MAC) and a replayed message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from sotto.crypto.cipher import aes256_cbc_encrypt
from sotto.crypto.kem import KemPublicKey
from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError, DecryptionError, DuplicateMessageError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from sotto.protocol.protobuf import bytes_field, decode_fields, uint_field
from sotto.protocol.record import SessionRecord
from tests.interop.oracle import Oracle, from_hex
from tests.protocol.parties import NOW_MS, Party, RemoteAddress

MESSAGES_EACH_WAY = 1_000
OUT_OF_ORDER = 0.3


@dataclass
class Libsignal:
    """A libsignal party held by the oracle."""

    oracle: Oracle
    handle: str
    address: ProtocolAddress

    @classmethod
    def create(cls, oracle: Oracle) -> Libsignal:
        reply = oracle.new_party()
        return cls(oracle, reply["party"], ProtocolAddress(reply["name"], reply["device"]))

    def _remote(self, peer: Party) -> dict[str, Any]:
        return {"party": self.handle, "remote_name": peer.name, "remote_device": peer.device_id}

    def bundle(self, **options: Any) -> PreKeyBundle:
        b = self.oracle.call("make_bundle", party=self.handle, now_ms=NOW_MS, **options)
        return PreKeyBundle(
            registration_id=b["registration_id"],
            device_id=b["device_id"],
            pre_key_id=b["pre_key_id"],
            pre_key_public=None
            if b["pre_key_pub"] is None
            else PublicKey.from_bytes(from_hex(b["pre_key_pub"])),
            signed_pre_key_id=b["signed_pre_key_id"],
            signed_pre_key_public=PublicKey.from_bytes(from_hex(b["signed_pre_key_pub"])),
            signed_pre_key_signature=from_hex(b["signed_pre_key_sig"]),
            identity_key=PublicKey.from_bytes(from_hex(b["identity_pub"])),
            kyber_pre_key_id=b["kyber_pre_key_id"],
            kyber_pre_key_public=KemPublicKey.from_bytes(from_hex(b["kyber_pre_key_pub"])),
            kyber_pre_key_signature=from_hex(b["kyber_pre_key_sig"]),
        )

    def process_bundle(self, peer: Party, bundle: PreKeyBundle) -> None:
        self.oracle.call(
            "process_bundle",
            **self._remote(peer),
            registration_id=bundle.registration_id,
            device_id=bundle.device_id,
            pre_key_id=bundle.pre_key_id,
            pre_key_pub=None if bundle.pre_key_public is None else bundle.pre_key_public.to_bytes(),
            signed_pre_key_id=bundle.signed_pre_key_id,
            signed_pre_key_pub=bundle.signed_pre_key_public.to_bytes(),
            signed_pre_key_sig=bundle.signed_pre_key_signature,
            identity_pub=bundle.identity_key.to_bytes(),
            kyber_pre_key_id=bundle.kyber_pre_key_id,
            kyber_pre_key_pub=bundle.kyber_pre_key_public.to_bytes(),
            kyber_pre_key_sig=bundle.kyber_pre_key_signature,
            now_ms=NOW_MS,
        )

    def encrypt_many(self, peer: Party, plaintexts: list[bytes]) -> list[CiphertextMessage]:
        reply = self.oracle.call("encrypt_many", **self._remote(peer), pts=plaintexts, now_ms=NOW_MS)
        return [
            CiphertextMessage(CiphertextMessageType(m["type"]), from_hex(m["bytes"]))
            for m in reply["messages"]
        ]

    def decrypt_many(self, peer: Party, messages: list[CiphertextMessage]) -> list[bytes]:
        batch = [{"type": int(m.type), "bytes": m.body.hex()} for m in messages]
        reply = self.oracle.call("decrypt_many", **self._remote(peer), messages=batch)
        return [from_hex(pt) for pt in reply["pts"]]

    def try_decrypt(self, peer: Party, message: CiphertextMessage) -> dict[str, Any]:
        return self.oracle.try_call(
            "decrypt", **self._remote(peer), type=int(message.type), bytes=message.body
        )

    def usable(self, peer: Party) -> bool:
        return bool(self.oracle.call("session_usable", **self._remote(peer), now_ms=NOW_MS)["usable"])


def _shuffle_some(rnd: random.Random, items: list[Any]) -> list[Any]:
    """Move about OUT_OF_ORDER of the items to random other positions."""
    out = list(items)
    for i in range(len(out)):
        if rnd.random() < OUT_OF_ORDER:
            j = rnd.randrange(len(out))
            out[i], out[j] = out[j], out[i]
    return out


def _converse(rnd: random.Random, sotto: Party, lib: Libsignal) -> tuple[int, int, int]:
    """Random batches both ways until each side has sent MESSAGES_EACH_WAY; returns counts."""
    sent_by_sotto = sent_by_lib = reordered = 0
    while sent_by_sotto < MESSAGES_EACH_WAY or sent_by_lib < MESSAGES_EACH_WAY:
        size = rnd.randrange(1, 40)
        plaintexts = [rnd.randbytes(rnd.randrange(0, 200)) for _ in range(size)]
        order = _shuffle_some(rnd, list(range(size)))
        reordered += sum(1 for i, j in enumerate(order) if i != j)
        if sent_by_sotto < MESSAGES_EACH_WAY and (sent_by_lib >= MESSAGES_EACH_WAY or rnd.random() < 0.5):
            messages = [sotto.encrypt(lib, pt) for pt in plaintexts]
            assert lib.decrypt_many(sotto, [messages[i] for i in order]) == [plaintexts[i] for i in order]
            sent_by_sotto += size
        else:
            messages = lib.encrypt_many(sotto, plaintexts)
            for i in order:
                assert sotto.decrypt(lib, messages[i]) == plaintexts[i]
            sent_by_lib += size
    return sent_by_sotto, sent_by_lib, reordered


@pytest.mark.parametrize("sotto_starts", [True, False], ids=["sotto-initiates", "libsignal-initiates"])
def test_long_conversation(oracle: Oracle, sotto_starts: bool) -> None:
    rnd = random.Random(2024 + sotto_starts)
    sotto = Party("3a7a4d5e-1c5b-4a8e-9a51-4c55ad1f0c21", 1, rnd.randbytes)
    lib = Libsignal.create(oracle)
    if sotto_starts:
        sotto.start_session(lib, lib.bundle(with_one_time=rnd.random() < 0.5))
    else:
        lib.process_bundle(sotto, sotto.bundle())
        (first,) = lib.encrypt_many(sotto, [b"first"])
        assert first.type == CiphertextMessageType.PREKEY
        assert sotto.decrypt(lib, first) == b"first"
    sent_sotto, sent_lib, reordered = _converse(rnd, sotto, lib)
    assert sent_sotto >= MESSAGES_EACH_WAY and sent_lib >= MESSAGES_EACH_WAY
    assert reordered >= 0.2 * (sent_sotto + sent_lib)
    assert lib.usable(sotto)
    restored = SessionRecord.from_bytes(sotto.sessions[lib.address].to_bytes())
    assert restored.to_bytes() == sotto.sessions[lib.address].to_bytes()


def _established(oracle: Oracle, seed: int) -> tuple[Party, Libsignal]:
    rnd = random.Random(seed)
    sotto = Party("5b0f7a1e-7c1d-4e8f-8a3b-2d9e6f4a1b7c", 1, rnd.randbytes)
    lib = Libsignal.create(oracle)
    sotto.start_session(lib, lib.bundle())
    first = sotto.encrypt(lib, b"hello")
    assert lib.decrypt_many(sotto, [first]) == [b"hello"]
    (reply,) = lib.encrypt_many(sotto, [b"hi"])
    assert sotto.decrypt(lib, reply) == b"hi"
    return sotto, lib


def _flip_last(message: CiphertextMessage) -> CiphertextMessage:
    return CiphertextMessage(message.type, message.body[:-1] + bytes((message.body[-1] ^ 0x01,)))


def test_tampered_mac_refused_by_both(oracle: Oracle) -> None:
    sotto, lib = _established(oracle, 1)
    ours = sotto.encrypt(lib, b"to libsignal")
    refused = lib.try_decrypt(sotto, _flip_last(ours))
    assert not refused["ok"]
    assert lib.decrypt_many(sotto, [ours]) == [b"to libsignal"]

    (theirs,) = lib.encrypt_many(sotto, [b"to sotto"])
    before = sotto.sessions[lib.address].to_bytes()
    with pytest.raises(DecryptionError):
        sotto.decrypt(lib, _flip_last(theirs))
    assert sotto.sessions[lib.address].to_bytes() == before
    assert sotto.decrypt(lib, theirs) == b"to sotto"


def _strip_fields(body: bytes, drop: set[int]) -> bytes:
    """Re-encode a message's protobuf (ascending field numbers) without the ``drop`` fields."""
    fields = decode_fields(body[1:])
    out = bytes(body[:1])
    for number in sorted(fields):
        value = fields[number]
        if number in drop:
            continue
        out += bytes_field(number, value) if isinstance(value, bytes) else uint_field(number, value)
    return out


def test_prekey_message_without_kyber_fields_refused_by_both(oracle: Oracle) -> None:
    rnd = random.Random(3)
    sotto = Party("0c2d7e3a-5f6b-4c1d-9e8f-7a6b5c4d3e2f", 1, rnd.randbytes)
    lib = Libsignal.create(oracle)
    sotto.start_session(lib, lib.bundle())
    ours = sotto.encrypt(lib, b"x")
    assert ours.type == CiphertextMessageType.PREKEY
    refused = lib.try_decrypt(sotto, CiphertextMessage(ours.type, _strip_fields(ours.body, {7, 8})))
    assert not refused["ok"] and "Kyber" in refused["error"]

    other = Party("1d3e8f4b-6a7c-4d2e-8f9a-8b7c6d5e4f3a", 1, rnd.randbytes)
    lib.process_bundle(other, other.bundle())
    (theirs,) = lib.encrypt_many(other, [b"y"])
    assert theirs.type == CiphertextMessageType.PREKEY
    with pytest.raises(DecodeError):
        PreKeySignalMessage.decode(_strip_fields(theirs.body, {7, 8}))
    assert other.decrypt(lib, theirs) == b"y"


def _without_spqr(sotto: Party, lib: Libsignal, plaintext: bytes) -> CiphertextMessage:
    """A Whisper message a pre-SPQR client would send: no pq_ratchet, no SPQR salt, valid MAC."""
    state = sotto.sessions[lib.address].current
    assert state is not None and state.pending_prekey is None
    keys = state.sender_chain.chain_key.message_keys(None)
    message = SignalMessage.create(
        mac_key=keys.mac_key,
        sender_identity=state.local_identity,
        receiver_identity=state.remote_identity,
        ratchet_key=state.sender_chain.ratchet_key.public,
        counter=state.sender_chain.chain_key.index,
        previous_counter=state.previous_counter,
        ciphertext=aes256_cbc_encrypt(keys.cipher_key, keys.iv, plaintext),
        pq_ratchet=b"",
    )
    return CiphertextMessage(CiphertextMessageType.WHISPER, message.serialized)


def test_message_without_spqr_refused_by_both(oracle: Oracle) -> None:
    sotto, lib = _established(oracle, 4)
    refused = lib.try_decrypt(sotto, _without_spqr(sotto, lib, b"downgrade"))
    assert not refused["ok"]

    # libsignal cannot be made to send without SPQR, so Sotto gets libsignal's message with the
    # field cut out (tests/protocol/ratchet covers a pre-SPQR message with a valid MAC).
    (theirs,) = lib.encrypt_many(sotto, [b"with spqr"])
    stripped = CiphertextMessage(theirs.type, _strip_fields(theirs.body[:-8], {5}) + theirs.body[-8:])
    before = sotto.sessions[lib.address].to_bytes()
    with pytest.raises(DecryptionError):
        sotto.decrypt(lib, stripped)
    assert sotto.sessions[lib.address].to_bytes() == before
    assert sotto.decrypt(lib, theirs) == b"with spqr"
    assert lib.decrypt_many(sotto, [sotto.encrypt(lib, b"still fine")]) == [b"still fine"]


def test_replayed_messages_refused_by_both(oracle: Oracle) -> None:
    sotto, lib = _established(oracle, 5)
    ours = sotto.encrypt(lib, b"once")
    assert lib.decrypt_many(sotto, [ours]) == [b"once"]
    replay = lib.try_decrypt(sotto, ours)
    assert not replay["ok"] and "Duplicate" in replay["error"]

    (theirs,) = lib.encrypt_many(sotto, [b"once too"])
    assert sotto.decrypt(lib, theirs) == b"once too"
    with pytest.raises(DuplicateMessageError):
        sotto.decrypt(lib, theirs)


def test_replayed_prekey_message_refused_by_both(oracle: Oracle) -> None:
    rnd = random.Random(6)
    sotto = Party("2e4f9a5c-7b8d-4e3f-9a0b-9c8d7e6f5a4b", 1, rnd.randbytes)
    lib = Libsignal.create(oracle)
    sotto.start_session(lib, lib.bundle())
    ours = sotto.encrypt(lib, b"first")
    assert lib.decrypt_many(sotto, [ours]) == [b"first"]
    assert not lib.try_decrypt(sotto, ours)["ok"]

    lib.process_bundle(sotto, sotto.bundle())
    (theirs,) = lib.encrypt_many(sotto, [b"prekey"])
    assert theirs.type == CiphertextMessageType.PREKEY
    assert sotto.decrypt(lib, theirs) == b"prekey"
    with pytest.raises(DuplicateMessageError):
        sotto.decrypt(lib, theirs)


def test_addresses_binding_checked_by_libsignal(oracle: Oracle) -> None:
    """A PreKey message bound to another recipient ServiceId is refused by libsignal."""
    rnd = random.Random(7)
    sotto = Party("3f5a0b6d-8c9e-4f4a-8b1c-0d9e8f7a6b5c", 1, rnd.randbytes)
    lib = Libsignal.create(oracle)
    elsewhere = RemoteAddress(ProtocolAddress("4a6b1c7e-9d0f-4a5b-9c2d-1e0f9a8b7c6d", 1))
    bundle = lib.bundle()
    sotto.start_session(elsewhere, bundle)
    misbound = sotto.encrypt(elsewhere, b"wrong recipient")
    assert not lib.try_decrypt(sotto, misbound)["ok"]
    sotto.start_session(lib, bundle)
    assert lib.decrypt_many(sotto, [sotto.encrypt(lib, b"right recipient")]) == [b"right recipient"]
