"""Unpadded base64url: round trips, strictness, and DecodeError as the only failure."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.errors import DecodeError
from sotto.wire import b64


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    text = b64.encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64.decode(text) == data
    assert b64.decode(text, length=len(data)) == data


@given(st.text(max_size=80))
def test_decode_raises_only_decode_error(text: str) -> None:
    try:
        data = b64.decode(text)
    except DecodeError:
        return
    assert b64.encode(data) == text


@pytest.mark.parametrize(
    "text",
    [
        "AA==",  # padding
        "AA+/",  # the other alphabet
        "A",  # impossible length
        "AB",  # non-canonical: unused bits set
        "AAA ",
        "ÄÄÄÄ",
        "AAAA\n",
    ],
)
def test_refuses_non_canonical_or_foreign_text(text: str) -> None:
    with pytest.raises(DecodeError):
        b64.decode(text)


@given(st.binary(max_size=40), st.integers(0, 3))
def test_unused_bits_make_a_text_non_canonical(data: bytes, flip: int) -> None:
    text = b64.encode(data)
    if len(text) % 4 in (2, 3) and flip:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet[alphabet.index(text[-1]) ^ flip]
        with pytest.raises(DecodeError):
            b64.decode(text[:-1] + last)


def test_lengths() -> None:
    assert b64.decode(b64.encode(bytes(16)), length=16) == bytes(16)
    with pytest.raises(DecodeError):
        b64.decode(b64.encode(bytes(15)), length=16)
    with pytest.raises(DecodeError):
        b64.decode(b64.encode(bytes(11)), max_length=10)
    assert b64.decode(b64.encode(bytes(10)), max_length=10) == bytes(10)


def test_non_strings_are_refused() -> None:
    for value in (None, b"AAAA", 5):
        with pytest.raises(DecodeError):
            b64.decode(value)  # type: ignore[arg-type]


def test_matches_the_standard_library() -> None:
    data = bytes(range(256))
    assert b64.encode(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("length", [0, 1, 2, 3, 16, 32, 64])
@given(data=st.data())
def test_fixed_decoder_agrees_with_decode(length: int, data: st.DataObject) -> None:
    decode_fixed = b64.fixed_decoder(length)
    size = b64.encoded_length(length)
    text = data.draw(
        st.one_of(
            st.binary(min_size=length, max_size=length).map(b64.encode),
            st.text("AQgw-_+/=Ä \n" + "ABCabc019", min_size=max(0, size - 1), max_size=size + 1),
        )
    )
    try:
        expected: bytes | None = b64.decode(text, length=length)
    except DecodeError:
        expected = None
    if expected is None:
        with pytest.raises(DecodeError):
            decode_fixed(text)
    else:
        assert decode_fixed(text) == expected
    with pytest.raises(DecodeError):
        decode_fixed(None)
