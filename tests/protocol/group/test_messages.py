"""SKDM and SKM wire codec: layout, sizes, versions, and the decoders' contract on any bytes."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, InvalidSignatureError, UnsupportedVersionError
from sotto.protocol.group import SenderKeyDistributionMessage, SenderKeyMessage
from sotto.protocol.protobuf import bytes_field, uint_field
from tests.protocol.group.helpers import make_group

DISTRIBUTION = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000001")


def sample_skdm() -> SenderKeyDistributionMessage:
    return SenderKeyDistributionMessage(
        distribution_id=DISTRIBUTION,
        chain_id=0x7FFF_FFFF,
        iteration=7,
        chain_key=bytes(range(32)),
        signing_key=KeyPair.generate(seeded_rng(1)).public,
    )


def test_skdm_layout_matches_libsignal() -> None:
    skdm = sample_skdm()
    encoded = skdm.encode()
    assert encoded[0] == 0x33
    expected_body = (
        bytes_field(1, DISTRIBUTION.bytes)
        + uint_field(2, 0x7FFF_FFFF)
        + uint_field(3, 7)
        + bytes_field(4, bytes(range(32)))
        + bytes_field(5, skdm.signing_key.to_bytes())
    )
    assert encoded[1:] == expected_body
    assert SenderKeyDistributionMessage.decode(encoded) == skdm


def test_message_sizes_match_libsignal() -> None:
    """libsignal 0.103: SKDM 96 B, SKM 109 B for 11 bytes of plaintext (chain ids of 31 bits)."""
    group = make_group()
    group.sender = group.sender.with_state_at(0, replace(group.sender.states[0], chain_id=0x7000_0000))
    skm = group.send(b"hello group")
    assert len(skm) == 109
    assert len(sample_skdm().encode()) == 96


def test_skm_decode_and_signature() -> None:
    rng = seeded_rng(2)
    signer = KeyPair.generate(rng)
    skm = SenderKeyMessage.create(
        distribution_id=DISTRIBUTION,
        chain_id=5,
        iteration=9,
        ciphertext=b"c" * 32,
        signing_key=signer.private,
        rng=rng,
    )
    decoded = SenderKeyMessage.decode(skm.encode())
    assert decoded == skm
    assert (decoded.distribution_id, decoded.chain_id, decoded.iteration, decoded.ciphertext) == (
        DISTRIBUTION,
        5,
        9,
        b"c" * 32,
    )
    decoded.verify_signature(signer.public)
    with pytest.raises(InvalidSignatureError):
        decoded.verify_signature(KeyPair.generate(rng).public)


def test_low_nibble_of_the_version_byte_is_ignored() -> None:
    encoded = sample_skdm().encode()
    assert SenderKeyDistributionMessage.decode(b"\x34" + encoded[1:]) == sample_skdm()


@pytest.mark.parametrize("version_byte", [0x03, 0x23, 0x43, 0x44, 0xF3])
def test_other_versions_are_unsupported(version_byte: int) -> None:
    skdm = sample_skdm().encode()
    with pytest.raises(UnsupportedVersionError):
        SenderKeyDistributionMessage.decode(bytes([version_byte]) + skdm[1:])
    skm = make_group().send(b"x")
    with pytest.raises(UnsupportedVersionError):
        SenderKeyMessage.decode(bytes([version_byte]) + skm[1:])


@pytest.mark.parametrize(
    "body",
    [
        b"",  # nothing
        bytes_field(1, b"short uuid") + uint_field(2, 1) + uint_field(3, 0) + bytes_field(4, bytes(32)),
        bytes_field(1, DISTRIBUTION.bytes) + uint_field(3, 0) + bytes_field(4, bytes(32)),  # no chain id
        bytes_field(1, DISTRIBUTION.bytes) + uint_field(2, 1) + bytes_field(4, bytes(32)),  # no iteration
        bytes_field(1, DISTRIBUTION.bytes) + uint_field(2, 1) + uint_field(3, 0),  # no ciphertext
        bytes_field(1, DISTRIBUTION.bytes) + uint_field(2, 2**32) + uint_field(3, 0) + bytes_field(4, b"x"),
    ],
)
def test_malformed_skm_bodies(body: bytes) -> None:
    with pytest.raises(DecodeError):
        SenderKeyMessage.decode(b"\x33" + body + bytes(64))


def test_malformed_skdms() -> None:
    good = sample_skdm()
    key = good.signing_key.to_bytes()
    base = bytes_field(1, DISTRIBUTION.bytes) + uint_field(2, 1) + uint_field(3, 0)
    for body in (
        base + bytes_field(4, bytes(31)) + bytes_field(5, key),  # short chain key
        base + bytes_field(4, bytes(32)) + bytes_field(5, key[1:] + b"\x00"),  # bad key type
        base + bytes_field(4, bytes(32)) + bytes_field(5, key + b"\x00"),  # long key
        base + bytes_field(4, bytes(32)) + bytes_field(6, key),  # no signing key
    ):
        with pytest.raises(DecodeError):
            SenderKeyDistributionMessage.decode(b"\x33" + body)
    with pytest.raises(DecodeError):
        SenderKeyDistributionMessage.decode(good.encode()[:64])


def test_reprs_hide_the_chain_key() -> None:
    skdm = sample_skdm()
    assert bytes(range(32)).hex() not in repr(skdm)
    assert "<secret>" in repr(skdm)
    skm = make_group().send(b"top secret plaintext")
    assert "top secret" not in repr(SenderKeyMessage.decode(skm))


def _decode_any(data: bytes) -> None:
    with contextlib.suppress(DecodeError, UnsupportedVersionError):
        SenderKeyDistributionMessage.decode(data)
    with contextlib.suppress(DecodeError, UnsupportedVersionError):
        SenderKeyMessage.decode(data)


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=300))
def test_decoders_on_arbitrary_bytes(data: bytes) -> None:
    _decode_any(data)
    _decode_any(b"\x33" + data)


VALID_SKDM = sample_skdm().encode()
VALID_SKM = make_group().send(b"a valid sender key message")


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([VALID_SKDM, VALID_SKM]),
    st.lists(st.tuples(st.integers(min_value=0, max_value=200), st.integers(0, 255)), max_size=4),
    st.integers(min_value=0, max_value=200),
)
def test_decoders_on_mutated_valid_messages(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    _decode_any(bytes(data))
    _decode_any(bytes(data[: len(data) - cut]))
