"""Retry receipts: DecryptionErrorMessage and PlaintextContent as libsignal 0.103 encodes them."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.decryption_error import (
    DecryptionErrorMessage,
    PlaintextContent,
    decode_bundle,
    encode_bundle,
)
from sotto.protocol.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
NOW_MS = 1_750_000_000_000


def _bundle(identity: KeyPair, *, one_time: bool = True, seed: int = 2) -> PreKeyBundle:
    rng = seeded_rng(seed)
    signed = SignedPreKeyRecord.generate(7, identity, NOW_MS, rng)
    kyber = KyberPreKeyRecord.generate(9, identity, NOW_MS, rng, last_resort=True)
    pre_key = PreKeyRecord.generate(101, rng) if one_time else None
    return PreKeyBundle(
        registration_id=1234,
        device_id=1,
        pre_key_id=None if pre_key is None else pre_key.id,
        pre_key_public=None if pre_key is None else pre_key.key_pair.public,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.key_pair.public,
        signed_pre_key_signature=signed.signature,
        identity_key=identity.public,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key_public=kyber.key_pair.public,
        kyber_pre_key_signature=kyber.signature,
    )


def _first_message() -> bytes:
    """A PreKey message from Alice to Bob, as a session sends it."""
    rng = seeded_rng(1)
    alice, bob = KeyPair.generate(rng), KeyPair.generate(rng)
    record = session.process_prekey_bundle(
        None,
        our_identity=alice,
        our_registration_id=77,
        our_address=ALICE,
        their_address=BOB,
        bundle=_bundle(bob),
        now_ms=NOW_MS,
        rng=rng,
    )
    _, message = session.encrypt(record, b"hi", our_address=ALICE, their_address=BOB, now_ms=NOW_MS, rng=rng)
    assert message.type is CiphertextMessageType.PREKEY
    return message.body


def test_for_original_takes_the_ratchet_key_of_a_prekey_and_a_whisper_message() -> None:
    prekey = _first_message()
    inner = PreKeySignalMessage.decode(prekey).message
    for original, kind in (
        (prekey, CiphertextMessageType.PREKEY),
        (inner.serialized, CiphertextMessageType.WHISPER),
    ):
        dem = DecryptionErrorMessage.for_original(original, kind, 0x2_0000_0001, 0x8086_2021)
        parsed = DecryptionErrorMessage.decode(dem.encode())
        assert parsed.ratchet_key is not None
        assert parsed.ratchet_key.to_bytes() == inner.ratchet_key.to_bytes()
        assert (parsed.timestamp, parsed.device_id) == (0x2_0000_0001, 0x8086_2021)


def test_sender_key_originals_have_no_ratchet_key_and_plaintext_ones_are_refused() -> None:
    dem = DecryptionErrorMessage.for_original(b"anything", CiphertextMessageType.SENDER_KEY, 5, 1)
    assert DecryptionErrorMessage.decode(dem.encode()).ratchet_key is None
    with pytest.raises(ValueError, match="plaintext"):
        DecryptionErrorMessage.for_original(b"", CiphertextMessageType.PLAINTEXT, 5, 7)
    with pytest.raises(DecodeError):
        DecryptionErrorMessage.for_original(b"\x33garbage", CiphertextMessageType.WHISPER, 5, 7)


def test_the_encoding_is_libsignals_field_by_field() -> None:
    key = KeyPair.generate(seeded_rng(3)).public
    dem = DecryptionErrorMessage.new(key, 1_700_000_000_123, 1)
    assert dem.encode() == pb.bytes_field(1, key.to_bytes()) + pb.uint_field(
        2, 1_700_000_000_123
    ) + pb.uint_field(3, 1)
    content = PlaintextContent.new(dem)
    assert content.encode() == b"\xc0" + pb.bytes_field(8, dem.encode()) + b"\x80"


def test_a_missing_timestamp_is_refused_and_a_missing_device_id_is_zero() -> None:
    with pytest.raises(DecodeError):
        DecryptionErrorMessage.decode(pb.uint_field(3, 1))
    assert DecryptionErrorMessage.decode(pb.uint_field(2, 9)).device_id == 0
    with pytest.raises(DecodeError):
        DecryptionErrorMessage.decode(pb.bytes_field(1, b"\x05" + bytes(31)) + pb.uint_field(2, 9))


def test_plaintext_content_carries_a_bundle_that_round_trips() -> None:
    identity = KeyPair.generate(seeded_rng(4))
    for one_time in (True, False):
        bundle = _bundle(identity, one_time=one_time)
        content = PlaintextContent.new(DecryptionErrorMessage.new(None, 42, 1), bundle)
        parsed = PlaintextContent.decode(content.encode())
        assert parsed.decryption_error.timestamp == 42
        assert parsed.prekey_bundle(identity.public) == bundle
        assert decode_bundle(encode_bundle(bundle), identity.public) == bundle
        parsed.prekey_bundle(identity.public).validate()  # type: ignore[union-attr]
    assert (
        PlaintextContent.decode(PlaintextContent.new(DecryptionErrorMessage.new(None, 1, 1)).encode()).bundle
        is None
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc0",
        b"\x08\x80",
        b"\xc0" + pb.bytes_field(8, pb.uint_field(2, 1)),
        b"\xc0" + pb.uint_field(1, 1) + b"\x80",
    ],
)
def test_malformed_plaintext_content_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        PlaintextContent.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_raise_only_decode_error(data: bytes) -> None:
    identity = KeyPair.generate(seeded_rng(5)).public
    for decode in (
        DecryptionErrorMessage.decode,
        PlaintextContent.decode,
        lambda d: decode_bundle(d, identity),
        lambda d: PlaintextContent.decode(b"\xc0" + pb.bytes_field(8, pb.uint_field(2, 1)) + d + b"\x80"),
    ):
        with contextlib.suppress(DecodeError):
            decode(data)


def test_whisper_original_from_a_signal_message_object() -> None:
    inner = PreKeySignalMessage.decode(_first_message()).message
    assert isinstance(inner, SignalMessage)
    dem = DecryptionErrorMessage.for_original(inner.serialized, CiphertextMessageType.WHISPER, 1, 1)
    assert dem.ratchet_key is not None
