"""The slice of proto2's wire format that Signal's messages use.

Contract: :func:`decode_fields` raises :class:`~sotto.errors.DecodeError` and nothing else, on
any input. Unknown fields are kept (a MAC covers the bytes as sent, so nothing is re-encoded);
a repeated scalar field keeps the last value, as proto2 does. Encoders write fields in the
order given, which is ascending field number in every caller, as libsignal's prost does.
"""

from __future__ import annotations

from typing import Final

from sotto.errors import DecodeError

VARINT: Final = 0
FIXED64: Final = 1
LENGTH_DELIMITED: Final = 2
FIXED32: Final = 5

_MAX_VARINT_BYTES: Final = 10
_VARINT_SHIFTS: Final = tuple(range(7, 7 * _MAX_VARINT_BYTES, 7))
"""Shifts of a varint's second to tenth bytes."""
_ONE_BYTE_VARINTS: Final = tuple(bytes((value,)) for value in range(0x80))
"""Tags, lengths and small counters: most varints a message carries are one or two bytes."""

Fields = dict[int, "int | bytes"]


def encode_varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    if 0x80 <= value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Return ``(value, next_position)``."""
    # Byte by byte with no slicing or length checks (running off the end is the IndexError):
    # a message carries four to six varints, most of them one to three bytes long.
    try:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
        result = byte & 0x7F
        for shift in _VARINT_SHIFTS:
            pos += 1
            byte = buf[pos]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                if result >> 64:  # a tenth byte above 1, as prost refuses it
                    raise DecodeError("varint exceeds 64 bits")
                return result, pos + 1
    except IndexError:
        raise DecodeError("truncated varint") from None
    raise DecodeError("overlong varint")


def bytes_field(number: int, value: bytes) -> bytes:
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(value)) + value


def uint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def fixed64_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | FIXED64) + value.to_bytes(8, "little")


def decode_fields(buf: bytes) -> Fields:
    """Map field number to its last value: ``int`` for varint/fixed, ``bytes`` for length-delimited."""
    out: Fields = {}
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = read_varint(buf, pos)
        if key >> 32:  # field numbers stop at 2^29 - 1, so a key fits in 32 bits (prost checks this)
            raise DecodeError("field key exceeds 32 bits")
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire_type == VARINT:
            out[number], pos = read_varint(buf, pos)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos)
            if length > n - pos:
                raise DecodeError("length-delimited field runs past the end")
            out[number] = buf[pos : pos + length]
            pos += length
        elif wire_type == FIXED64:
            if pos + 8 > n:
                raise DecodeError("truncated fixed64")
            out[number] = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > n:
                raise DecodeError("truncated fixed32")
            out[number] = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
    return out


def get_bytes(fields: Fields, number: int, *, required: bool = True) -> bytes | None:
    value = fields.get(number)
    if value is None:
        if required:
            raise DecodeError(f"missing field {number}")
        return None
    if not isinstance(value, bytes):
        raise DecodeError(f"field {number} is not length-delimited")
    return value


def get_uint(fields: Fields, number: int, *, required: bool = True, bits: int = 32) -> int | None:
    value = fields.get(number)
    if value is None:
        if required:
            raise DecodeError(f"missing field {number}")
        return None
    if not isinstance(value, int):
        raise DecodeError(f"field {number} is not an integer")
    if value >> bits:
        raise DecodeError(f"field {number} exceeds {bits} bits")
    return value
