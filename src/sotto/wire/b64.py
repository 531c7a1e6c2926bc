"""Unpadded base64url, the one text encoding of bytes on the wire.

Every envelope crosses this module twice on the relay's hot path, so both directions are a
couple of C calls: :func:`decode` checks length and alphabet before decoding (the decoder's
strict mode refuses anything outside the standard alphabet, and the URL-safe one is mapped onto
it with the standard's own ``+``, ``/`` and ``=`` made invalid), then checks the unused bits of
the last character, which is what makes the text canonical.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable

from sotto.errors import DecodeError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
"""URL-safe to standard; ``*`` is outside both alphabets, so a strict decode refuses it."""
_TO_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_PADDING = ("", None, "==", "=")
_UNUSED_BITS = (0, 0, 0x0F, 0x03)
"""Per ``len % 4``: the bits of the last character that a canonical encoding leaves at zero."""


def encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL_SAFE).rstrip(b"=").decode("ascii")


def encode_ascii(data: bytes) -> bytes:
    """:func:`encode`'s text as ASCII bytes, for answers assembled as bytes."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL_SAFE).rstrip(b"=")


def encoded_length(size: int) -> int:
    """The length of :func:`encode` of ``size`` bytes."""
    return (size * 4 + 2) // 3


def decode(text: str, *, length: int | None = None, max_length: int | None = None) -> bytes:
    """Decode strictly (no padding, no other alphabet, canonical); DecodeError on anything else."""
    if not isinstance(text, str) or not text.isascii():
        raise DecodeError("not unpadded base64url")
    size = len(text)
    padding = _PADDING[size % 4]
    if padding is None:
        raise DecodeError("not unpadded base64url")
    if length is not None and size != encoded_length(length):
        raise DecodeError(f"expected {length} bytes, got about {size * 3 // 4}")
    if max_length is not None and size > encoded_length(max_length):
        raise DecodeError(f"at most {max_length} bytes allowed, got about {size * 3 // 4}")
    try:
        data = binascii.a2b_base64(
            text.encode("ascii").translate(_TO_STANDARD) + padding.encode(), strict_mode=True
        )
    except binascii.Error:
        raise DecodeError("not unpadded base64url") from None
    if padding and _ALPHABET.index(text[-1]) & _UNUSED_BITS[size % 4]:
        raise DecodeError("non-canonical base64url")
    return data


def fixed_decoder(length: int) -> Callable[[object], bytes]:
    """:func:`decode` with ``length=length``, for the ids and keys of every frame: one regular
    expression checks alphabet, length and the unused bits of the last character at once."""
    size = encoded_length(length)
    unused = _UNUSED_BITS[size % 4]
    last = "".join(c for i, c in enumerate(_ALPHABET) if not i & unused)
    pattern = re.compile(f"[{re.escape(_ALPHABET)}]{{{size - 1}}}[{re.escape(last)}]" if size else "")
    padding = (_PADDING[size % 4] or "").encode()

    def decode_fixed(text: object) -> bytes:
        if type(text) is not str or pattern.fullmatch(text) is None:
            raise DecodeError(f"expected {length} bytes of unpadded, canonical base64url")
        return binascii.a2b_base64(text.encode("ascii").translate(_TO_STANDARD) + padding)

    return decode_fixed
