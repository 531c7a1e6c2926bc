"""SignalMessage and PreKeySignalMessage: round trips, versions, and the decode contract."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.errors import DecodeError, UnsupportedVersionError
from sotto.protocol import messages
from sotto.protocol.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage
from tests.protocol.parties import established_pair, make_pair


def _prekey_bytes() -> bytes:
    alice, bob = make_pair(11)
    alice.start_session(bob)
    return alice.encrypt(bob, b"prekey payload").body


def _whisper_bytes() -> bytes:
    alice, bob = established_pair(12)
    return alice.encrypt(bob, b"whisper payload").body


PREKEY = _prekey_bytes()
WHISPER = _whisper_bytes()
WHISPER_WITH_ADDRESSES = PreKeySignalMessage.decode(PREKEY).message.serialized


def test_message_types_match_libsignal() -> None:
    assert [int(t) for t in CiphertextMessageType] == [2, 3, 7, 8]


def test_round_trips_keep_the_exact_bytes() -> None:
    whisper = SignalMessage.decode(WHISPER)
    assert whisper.serialized == WHISPER
    assert WHISPER[0] == 0x44 and whisper.version == 4
    assert len(whisper.mac) == 8
    assert whisper.pq_ratchet[:2] == b"\x01\x01"
    prekey = PreKeySignalMessage.decode(PREKEY)
    assert prekey.serialized == PREKEY
    assert prekey.message.addresses is not None
    assert len(prekey.kyber_ciphertext) == 1569 and prekey.kyber_ciphertext[0] == 0x08
    rebuilt = PreKeySignalMessage.create(
        registration_id=prekey.registration_id,
        pre_key_id=prekey.pre_key_id,
        signed_pre_key_id=prekey.signed_pre_key_id,
        kyber_pre_key_id=prekey.kyber_pre_key_id,
        kyber_ciphertext=prekey.kyber_ciphertext,
        base_key=prekey.base_key,
        identity_key=prekey.identity_key,
        message=prekey.message,
    )
    assert rebuilt.serialized == PREKEY


@pytest.mark.parametrize("nibble", [0, 1, 2, 3, 5, 15])
def test_refused_versions(nibble: int) -> None:
    for data, decoder in ((WHISPER, SignalMessage.decode), (PREKEY, PreKeySignalMessage.decode)):
        with pytest.raises(UnsupportedVersionError):
            decoder(bytes(((nibble << 4) | 4,)) + data[1:])


def test_low_nibble_is_ignored() -> None:
    assert SignalMessage.decode(b"\x43" + WHISPER[1:]).counter == SignalMessage.decode(WHISPER).counter


def test_short_and_empty_inputs() -> None:
    for data in (b"", b"\x44", WHISPER[:8]):
        with pytest.raises(DecodeError):
            SignalMessage.decode(data)
    with pytest.raises(DecodeError):
        PreKeySignalMessage.decode(b"")


def _decodes_or_refuses(data: bytes) -> None:
    for decoder in (SignalMessage.decode, PreKeySignalMessage.decode):
        with contextlib.suppress(DecodeError, UnsupportedVersionError):
            decoder(data)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    _decodes_or_refuses(data)
    _decodes_or_refuses(b"\x44" + data)


@settings(max_examples=200, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(["flip", "truncate", "insert", "delete"]))
def test_mutations_of_valid_messages_raise_only_decode_errors(rnd: random.Random, how: str) -> None:
    for original in (WHISPER, PREKEY):
        data = bytearray(original)
        for _ in range(rnd.randrange(1, 4)):
            pos = rnd.randrange(len(data))
            if how == "flip":
                data[pos] ^= 1 << rnd.randrange(8)
            elif how == "truncate":
                del data[pos:]
                if not data:
                    break
            elif how == "insert":
                data.insert(pos, rnd.randrange(256))
            else:
                del data[pos]
                if not data:
                    break
        _decodes_or_refuses(bytes(data))


def _outcome(decode: Callable[[bytes], object], data: bytes) -> object:
    try:
        return decode(data)
    except DecodeError:
        return DecodeError


def _decode_any_layout_only(body: bytes) -> object:
    return messages._decode_any_layout(body)


def _decode_usual_layout_first(body: bytes, mac: bytes = bytes(8)) -> object:
    # The fast path reads the body in place, between the version byte and the MAC.
    return messages._decode_usual_layout(b"\x44" + body + mac) or messages._decode_any_layout(body)


@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
def test_usual_layout_decoder_agrees_with_the_general_one(rnd: random.Random, how: str) -> None:
    # The fast path for the usual field order must give the general parser's answer on any body.
    body = bytearray(
        SignalMessage.decode(WHISPER_WITH_ADDRESSES if rnd.random() < 0.5 else WHISPER).serialized[1:-8]
    )
    for _ in range(rnd.randrange(1, 4)):
        pos = rnd.randrange(len(body) + 1)
        if how == "flip" and pos < len(body):
            body[pos] ^= 1 << rnd.randrange(8)
        elif how == "truncate":
            del body[pos:]
        elif how == "insert":
            body.insert(
                pos, rnd.choice([0x08, 0x0A, 0x10, 0x18, 0x22, 0x2A, 0x32, 0x80, 0xFF, rnd.randrange(256)])
            )
        elif how == "delete" and pos < len(body):
            del body[pos]
        elif how == "splice":
            body[pos:pos] = body[rnd.randrange(len(body) + 1) :][: rnd.randrange(1, 40)]
    data = bytes(body)
    # MAC bytes of 0xFF continue a varint that runs off the body: the fast path must not read into them.
    mac = bytes(rnd.choice([0x00, 0xFF, rnd.randrange(256)]) for _ in range(8))
    fast = _outcome(lambda b: _decode_usual_layout_first(b, mac), data)
    assert fast == _outcome(_decode_any_layout_only, data)


def _with_counters(counter: int, previous_counter: int) -> SignalMessage:
    message = SignalMessage.decode(WHISPER)
    return SignalMessage.create(
        mac_key=bytes(32),
        sender_identity=message.ratchet_key,
        receiver_identity=message.ratchet_key,
        ratchet_key=message.ratchet_key,
        counter=counter,
        previous_counter=previous_counter,
        ciphertext=message.ciphertext,
        pq_ratchet=message.pq_ratchet,
        addresses=bytes(36),
    )


@pytest.mark.parametrize("counter", [0, 1, 127, 128, 2**21, 2**32 - 1])
def test_usual_layout_round_trips_counters(counter: int) -> None:
    rebuilt = _with_counters(counter, counter // 2)
    assert SignalMessage.decode(rebuilt.serialized) == rebuilt
    body = rebuilt.serialized[1:-8]
    assert messages._decode_usual_layout(rebuilt.serialized) == messages._decode_any_layout(body)


@pytest.mark.parametrize(("counter", "previous_counter"), [(2**32, 0), (0, 2**32), (2**64 - 1, 1)])
def test_counters_above_32_bits_are_refused(counter: int, previous_counter: int) -> None:
    with pytest.raises(DecodeError):
        SignalMessage.decode(_with_counters(counter, previous_counter).serialized)


def test_reprs_show_no_ciphertext() -> None:
    whisper = SignalMessage.decode(WHISPER)
    assert whisper.ciphertext.hex()[:16] not in repr(whisper)
    prekey = PreKeySignalMessage.decode(PREKEY)
    assert prekey.kyber_ciphertext.hex()[2:18] not in repr(prekey)
