"""Padding to size buckets, so a length says no more than its bucket.

ISO/IEC 7816-4 style, as Signal pads plaintexts: ``data ‖ 0x80 ‖ 0x00…`` up to the smallest
bucket that fits. The same buckets serve plaintexts (inside the encryption) and envelopes (on
the wire, where the server refuses any other length).
"""

from __future__ import annotations

from sotto.errors import DecodeError

BUCKETS: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
MAX_PADDED = BUCKETS[-1]
MAX_UNPADDED = MAX_PADDED - 1


class PaddingTooLargeError(ValueError):
    """The data does not fit the largest bucket."""


def bucket_for(length: int) -> int:
    """The smallest bucket holding ``length`` bytes plus the 0x80 marker."""
    for bucket in BUCKETS:
        if length < bucket:
            return bucket
    raise PaddingTooLargeError(f"{length} bytes do not fit in {MAX_PADDED}-byte padding")


def is_bucket(length: int) -> bool:
    return length in BUCKETS


def pad(data: bytes) -> bytes:
    return data + b"\x80" + bytes(bucket_for(len(data)) - len(data) - 1)


def unpad(padded: bytes) -> bytes:
    """Strip the padding; DecodeError if ``padded`` is not a bucket or has no marker."""
    if not is_bucket(len(padded)):
        raise DecodeError("padded data is not a bucket size")
    end = len(padded.rstrip(b"\x00"))
    if end == 0 or padded[end - 1] != 0x80:
        raise DecodeError("padding marker missing")
    return padded[: end - 1]
