"""Padding buckets: pad/unpad round trips, bucket choice, and DecodeError as unpad's only failure."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.errors import DecodeError
from sotto.wire import padding


@given(st.binary(max_size=5000))
def test_round_trip_to_the_smallest_bucket(data: bytes) -> None:
    padded = padding.pad(data)
    assert padding.is_bucket(len(padded))
    assert len(padded) == min(b for b in padding.BUCKETS if b > len(data))
    assert padding.unpad(padded) == data


def test_bucket_edges() -> None:
    assert padding.bucket_for(0) == 256
    assert padding.bucket_for(255) == 256
    assert padding.bucket_for(256) == 512
    assert padding.bucket_for(padding.MAX_UNPADDED) == padding.MAX_PADDED
    with pytest.raises(padding.PaddingTooLargeError):
        padding.bucket_for(padding.MAX_PADDED)
    with pytest.raises(padding.PaddingTooLargeError):
        padding.pad(bytes(padding.MAX_PADDED))


def test_largest_plaintext_round_trips() -> None:
    data = b"\x80" * padding.MAX_UNPADDED
    assert padding.unpad(padding.pad(data)) == data


@given(st.binary(max_size=1100))
def test_unpad_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        padding.unpad(data)


@pytest.mark.parametrize("data", [b"", bytes(256), bytes(255) + b"\x01", b"x" * 300, b"\x80" + bytes(254)])
def test_unpad_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        padding.unpad(data)


def test_trailing_zero_bytes_of_the_data_survive() -> None:
    data = b"abc\x00\x00"
    assert padding.unpad(padding.pad(data)) == data
