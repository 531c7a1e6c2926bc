"""The proto2 codec: round trips, varint edges, refused wire types, and DecodeError only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32 - 1, 2**63, 2**64 - 1])
def test_varint_round_trip(value: int) -> None:
    encoded = pb.encode_varint(value)
    assert pb.read_varint(encoded, 0) == (value, len(encoded))
    assert pb.read_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, len(encoded) + 1)


def test_varint_known_encodings() -> None:
    assert pb.encode_varint(0) == b"\x00"
    assert pb.encode_varint(300) == b"\xac\x02"
    assert pb.encode_varint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert len(pb.encode_varint(2**64 - 1)) == 10
    with pytest.raises(ValueError):
        pb.encode_varint(-1)


def test_varint_ten_bytes_is_the_maximum() -> None:
    assert pb.read_varint(b"\xff" * 9 + b"\x01", 0) == (2**64 - 1, 10)
    with pytest.raises(DecodeError):
        pb.read_varint(b"\xff" * 10 + b"\x01", 0)  # 11 bytes: overlong
    with pytest.raises(DecodeError):
        pb.read_varint(b"\x80" * 10 + b"\x00", 0)  # overlong zero


def test_varint_above_64_bits_is_refused() -> None:
    for last in (0x02, 0x7F):
        with pytest.raises(DecodeError):
            pb.read_varint(b"\xff" * 9 + bytes((last,)), 0)
    with pytest.raises(DecodeError):
        pb.decode_fields(b"\x08" + b"\xff" * 9 + b"\x02")


def test_field_key_above_32_bits_is_refused() -> None:
    assert pb.decode_fields(pb.uint_field(2**29 - 1, 1)) == {2**29 - 1: 1}
    with pytest.raises(DecodeError):
        pb.decode_fields(pb.uint_field(2**29, 1))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80" * 9])
def test_truncated_varint(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.read_varint(data, 0)


def test_fields_round_trip() -> None:
    message = (
        pb.uint_field(1, 3)
        + pb.bytes_field(2, b"\x05" + bytes(32))
        + pb.fixed64_field(3, 2**64 - 1)
        + pb.bytes_field(4, b"")
        + pb.uint_field(5, 2**32 - 1)
    )
    fields = pb.decode_fields(message)
    assert fields == {1: 3, 2: b"\x05" + bytes(32), 3: 2**64 - 1, 4: b"", 5: 2**32 - 1}
    assert pb.get_uint(fields, 1) == 3
    assert pb.get_bytes(fields, 2) == b"\x05" + bytes(32)
    assert pb.get_bytes(fields, 4) == b""
    assert pb.get_uint(fields, 3, bits=64) == 2**64 - 1


def test_known_wire_bytes() -> None:
    assert pb.uint_field(1, 150) == b"\x08\x96\x01"
    assert pb.bytes_field(2, b"testing") == b"\x12\x07testing"
    assert pb.fixed64_field(1, 1) == b"\x09" + (1).to_bytes(8, "little")
    assert pb.decode_fields(b"\x0d\x01\x00\x00\x00") == {1: 1}  # fixed32


def test_unknown_fields_are_kept_and_last_value_wins() -> None:
    assert pb.decode_fields(pb.uint_field(1, 1) + pb.uint_field(1, 2)) == {1: 2}
    assert pb.decode_fields(pb.uint_field(99, 7) + pb.bytes_field(2**29 - 1, b"x")) == {
        99: 7,
        2**29 - 1: b"x",
    }


@pytest.mark.parametrize("key", [b"\x00", b"\x02\x00", b"\x05\x00\x00\x00\x00", b"\x80\x00"])
def test_field_number_zero_is_refused(key: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.decode_fields(key)


@pytest.mark.parametrize("wire_type", [3, 4, 6, 7])
def test_group_and_reserved_wire_types_are_refused(wire_type: int) -> None:
    with pytest.raises(DecodeError):
        pb.decode_fields(pb.encode_varint(1 << 3 | wire_type) + b"\x00" * 8)


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x05abc",  # length past the end
        b"\x12",  # missing length
        b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 2^64 - 1 length
        b"\x09\x00\x00",  # truncated fixed64
        b"\x0d\x00",  # truncated fixed32
        b"\x08",  # missing varint value
        b"\x08\x80",  # truncated varint value
        b"\x80",  # truncated key
    ],
)
def test_truncated_messages(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.decode_fields(data)


def test_get_bytes_and_get_uint_checks() -> None:
    fields = pb.decode_fields(pb.uint_field(1, 2**32) + pb.bytes_field(2, b"x") + pb.uint_field(3, 5))
    with pytest.raises(DecodeError):
        pb.get_bytes(fields, 1)  # an integer where bytes are expected
    with pytest.raises(DecodeError):
        pb.get_uint(fields, 2)  # bytes where an integer is expected
    with pytest.raises(DecodeError):
        pb.get_uint(fields, 1)  # 2^32 does not fit in 32 bits
    assert pb.get_uint(fields, 1, bits=33) == 2**32
    with pytest.raises(DecodeError):
        pb.get_uint(fields, 3, bits=2)
    assert pb.get_uint(fields, 3, bits=3) == 5
    with pytest.raises(DecodeError):
        pb.get_bytes(fields, 9)
    with pytest.raises(DecodeError):
        pb.get_uint(fields, 9)
    assert pb.get_bytes(fields, 9, required=False) is None
    assert pb.get_uint(fields, 9, required=False) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decode_fields_raises_only_decode_error(data: bytes) -> None:
    try:
        fields = pb.decode_fields(data)
    except DecodeError:
        return
    for number, value in fields.items():
        assert number >= 1
        assert isinstance(value, (int, bytes))


field_values = st.one_of(
    st.tuples(st.just("uint"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
    st.tuples(st.just("fixed64"), st.integers(0, 2**64 - 1)),
)


@settings(deadline=None)
@given(st.dictionaries(st.integers(1, 2**29 - 1), field_values, max_size=8))
def test_encode_then_decode(spec: dict[int, tuple[str, int | bytes]]) -> None:
    parts = []
    for number in sorted(spec):
        kind, value = spec[number]
        if kind == "bytes":
            assert isinstance(value, bytes)
            parts.append(pb.bytes_field(number, value))
        else:
            assert isinstance(value, int)
            parts.append(pb.uint_field(number, value) if kind == "uint" else pb.fixed64_field(number, value))
    assert pb.decode_fields(b"".join(parts)) == {n: v for n, (_, v) in spec.items()}
