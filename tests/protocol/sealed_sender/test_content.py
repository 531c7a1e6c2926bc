"""UnidentifiedSenderMessageContent: the type mapping, optional fields and strict decoding."""

from __future__ import annotations

import pytest

from sotto.errors import DecodeError
from sotto.protocol.protobuf import bytes_field, decode_fields, uint_field
from sotto.protocol.sealed_sender import ContentHint, UnidentifiedSenderMessageContent
from tests.protocol.sealed_sender.helpers import PLAINTEXT, PREKEY, SENDER_KEY, WHISPER, World


@pytest.mark.parametrize(
    ("message_type", "wire"), [(PREKEY, 1), (WHISPER, 2), (SENDER_KEY, 7), (PLAINTEXT, 8)]
)
def test_type_maps_to_the_usmc_enum_and_back(message_type: int, wire: int) -> None:
    w = World.create()
    usmc = w.content(w.party(), b"body", message_type)
    assert decode_fields(usmc.serialized)[1] == wire
    back = UnidentifiedSenderMessageContent.decode(usmc.encode())
    assert back == usmc
    assert back.message_type == message_type


def test_optional_fields() -> None:
    w = World.create()
    alice = w.party()
    plain = w.content(alice)
    assert set(decode_fields(plain.serialized)) == {1, 2, 3}
    assert plain.content_hint == ContentHint.DEFAULT
    assert plain.group_id is None
    full = w.content(alice, content_hint=ContentHint.IMPLICIT, group_id=b"\x01\x02")
    fields = decode_fields(full.serialized)
    assert fields[4] == 2
    assert fields[5] == b"\x01\x02"
    back = UnidentifiedSenderMessageContent.decode(full.serialized)
    assert (back.content_hint, back.group_id) == (ContentHint.IMPLICIT, b"\x01\x02")
    # libsignal treats an empty group id as none
    assert w.content(alice, group_id=b"").group_id is None
    # unknown hints survive
    assert (
        UnidentifiedSenderMessageContent.decode(w.content(alice, content_hint=9).serialized).content_hint == 9
    )


def test_encoding_is_in_field_order_like_prost() -> None:
    w = World.create()
    alice = w.party()
    usmc = w.content(alice, b"xyz", SENDER_KEY, content_hint=1, group_id=b"g")
    expected = (
        uint_field(1, 7)
        + bytes_field(2, alice.certificate.serialized)
        + bytes_field(3, b"xyz")
        + uint_field(4, 1)
        + bytes_field(5, b"g")
    )
    assert usmc.serialized == expected


def test_new_refuses_types_that_cannot_be_sealed() -> None:
    w = World.create()
    alice = w.party()
    for bad in (0, 1, 4, 9):
        with pytest.raises(ValueError):
            w.content(alice, message_type=bad)
    with pytest.raises(ValueError):
        w.content(alice, content_hint=-1)


def test_decode_refuses_malformed_content() -> None:
    w = World.create()
    cert = w.party().certificate.serialized
    good = {1: uint_field(1, 2), 2: bytes_field(2, cert), 3: bytes_field(3, b"c")}
    UnidentifiedSenderMessageContent.decode(b"".join(good.values()))
    cases = [
        {**good, 1: uint_field(1, 3)},  # 3 is CiphertextMessageType PreKey, not a USMC type
        {**good, 1: uint_field(1, 0)},
        {**good, 1: bytes_field(1, b"\x02")},
        {k: v for k, v in good.items() if k != 1},
        {k: v for k, v in good.items() if k != 2},
        {k: v for k, v in good.items() if k != 3},
        {**good, 2: bytes_field(2, cert[:-1])},
        {**good, 4: uint_field(4, 1 << 40)},
        {**good, 5: uint_field(5, 1)},
    ]
    for fields in cases:
        with pytest.raises(DecodeError):
            UnidentifiedSenderMessageContent.decode(b"".join(fields.values()))


def test_repr_hides_content_and_group_id() -> None:
    w = World.create()
    usmc = w.content(w.party(), b"SECRET-PLAINTEXT", PLAINTEXT, group_id=b"GROUP-ID-BYTES")
    text = repr(usmc)
    assert "SECRET" not in text
    assert b"SECRET-PLAINTEXT".hex() not in text
    assert "GROUP-ID" not in text
    assert "16 bytes" in text
