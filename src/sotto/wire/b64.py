"""Unpadded base64url, the one text encoding of bytes on the wire."""

from __future__ import annotations

import base64
import binascii
import re

from sotto.errors import DecodeError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str, *, length: int | None = None, max_length: int | None = None) -> bytes:
    """Decode strictly (no padding, no other alphabet, canonical); DecodeError on anything else."""
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise DecodeError("not unpadded base64url")
    if max_length is not None and len(text) > (max_length * 4 + 2) // 3:
        raise DecodeError("base64url value too long")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("not unpadded base64url") from None
    if encode(data) != text:
        raise DecodeError("non-canonical base64url")
    if length is not None and len(data) != length:
        raise DecodeError(f"expected {length} bytes, got {len(data)}")
    if max_length is not None and len(data) > max_length:
        raise DecodeError(f"at most {max_length} bytes allowed, got {len(data)}")
    return data
