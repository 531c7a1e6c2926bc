"""The plaintext inside a sealed row: a short list of typed values, tagged and length-prefixed.

Decoding authenticated bytes can still fail (a schema bug, a migration gone wrong): that is
:class:`~sotto.errors.StoreCorruptedError`, never an IndexError or a silent wrong value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from sotto.errors import StoreCorruptedError

Value = bytes | str | int | bool | None

_NONE, _BYTES, _STR, _INT, _TRUE, _FALSE = range(6)
_LENGTH = struct.Struct(">I")
_INT64 = struct.Struct(">q")


def pack(values: Sequence[Value]) -> bytes:
    """Encode ``values`` (ints must fit a signed 64-bit integer)."""
    out = bytearray()
    for value in values:
        if value is None:
            out.append(_NONE)
        elif value is True:
            out.append(_TRUE)
        elif value is False:
            out.append(_FALSE)
        elif isinstance(value, int):
            out.append(_INT)
            out += _INT64.pack(value)
        elif isinstance(value, str):
            data = value.encode("utf-8")
            out.append(_STR)
            out += _LENGTH.pack(len(data)) + data
        else:
            out.append(_BYTES)
            out += _LENGTH.pack(len(value)) + bytes(value)
    return bytes(out)


def unpack(data: bytes, count: int) -> list[Value]:
    """Decode exactly ``count`` values."""
    values: list[Value] = []
    pos = 0
    try:
        while pos < len(data):
            tag = data[pos]
            pos += 1
            if tag == _NONE:
                values.append(None)
            elif tag == _TRUE:
                values.append(True)
            elif tag == _FALSE:
                values.append(False)
            elif tag == _INT:
                values.append(_INT64.unpack_from(data, pos)[0])
                pos += _INT64.size
            elif tag in (_BYTES, _STR):
                (length,) = _LENGTH.unpack_from(data, pos)
                pos += _LENGTH.size
                if pos + length > len(data):
                    raise StoreCorruptedError("stored value truncated")
                chunk = data[pos : pos + length]
                pos += length
                values.append(chunk.decode("utf-8") if tag == _STR else bytes(chunk))
            else:
                raise StoreCorruptedError("unknown stored value tag")
    except (struct.error, UnicodeDecodeError):
        raise StoreCorruptedError("stored value does not decode") from None
    if len(values) != count:
        raise StoreCorruptedError(f"stored row has {len(values)} values, expected {count}")
    return values


def as_bytes(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise StoreCorruptedError("stored value is not bytes")
    return value


def as_str(value: Value) -> str:
    if not isinstance(value, str):
        raise StoreCorruptedError("stored value is not text")
    return value


def as_int(value: Value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoreCorruptedError("stored value is not an integer")
    return value


def as_opt_int(value: Value) -> int | None:
    return None if value is None else as_int(value)


def as_bool(value: Value) -> bool:
    if not isinstance(value, bool):
        raise StoreCorruptedError("stored value is not a flag")
    return value
