"""The signed messages and credential headers both sides build from sotto.wire.auth."""

from __future__ import annotations

import base64
import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, InvalidSignatureError
from sotto.wire import auth, b64


def test_drain_message_layout() -> None:
    nonce, mailbox = bytes(range(32)), bytes(range(100, 116))
    assert auth.drain_message(nonce, mailbox) == b"sotto-drain-v1\x00" + nonce + mailbox


def test_http_message_layout() -> None:
    assert auth.http_message("delete", "/v1/mailboxes/x", 1700000000) == (
        b"sotto-mailbox-http-v1\x00DELETE\x00/v1/mailboxes/x\x001700000000"
    )


def test_signatures_bind_method_path_and_time() -> None:
    key = SigningKey.generate(seeded_rng(1))
    signed = key.sign(auth.http_message("GET", "/a", 5))
    key.public.verify(auth.http_message("GET", "/a", 5), signed)
    for other in (
        auth.http_message("PUT", "/a", 5),
        auth.http_message("GET", "/b", 5),
        auth.http_message("GET", "/a", 6),
    ):
        with pytest.raises(InvalidSignatureError):
            key.public.verify(other, signed)


@given(st.integers(0, 10**12 - 1), st.binary(min_size=64, max_size=64))
def test_mailbox_auth_round_trip(seconds: int, signature: bytes) -> None:
    assert auth.decode_mailbox_auth(auth.encode_mailbox_auth(seconds, signature)) == (seconds, signature)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "123",
        ".AAAA",
        "12a." + b64.encode(bytes(64)),
        "-1." + b64.encode(bytes(64)),
        "1." + b64.encode(bytes(63)),
        "1" * 13 + "." + b64.encode(bytes(64)),
        "1." + b64.encode(bytes(64)) + "=",
    ],
)
def test_mailbox_auth_refuses(header: str) -> None:
    with pytest.raises(DecodeError):
        auth.decode_mailbox_auth(header)


@given(st.binary(min_size=16, max_size=16), st.integers(1, 127), st.binary(min_size=32, max_size=32))
def test_device_auth_round_trip(account: bytes, device: int, secret: bytes) -> None:
    header = auth.encode_device_auth(account, device, secret)
    assert header.startswith("Basic ")
    assert auth.decode_device_auth(header) == (account, device, secret)


def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(user.encode()).decode()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer x",
        "Basic",
        "Basic !!!!",
        _basic("no-colon"),
        _basic(f"{b64.encode(os.urandom(16))}:{b64.encode(os.urandom(32))}"),
        _basic(f"{b64.encode(os.urandom(16))}.x:{b64.encode(os.urandom(32))}"),
        _basic(f"{b64.encode(os.urandom(16))}.1234:{b64.encode(os.urandom(32))}"),
        _basic(f"{b64.encode(os.urandom(15))}.1:{b64.encode(os.urandom(32))}"),
        _basic(f"{b64.encode(os.urandom(16))}.1:{b64.encode(os.urandom(31))}"),
        "Basic " + "A" * 400,
    ],
)
def test_device_auth_refuses(header: str) -> None:
    with pytest.raises(DecodeError):
        auth.decode_device_auth(header)


@given(st.text(max_size=300))
def test_header_decoders_raise_only_decode_error(text: str) -> None:
    for decoder in (auth.decode_device_auth, auth.decode_mailbox_auth):
        with contextlib.suppress(DecodeError):
            decoder(text)
    with contextlib.suppress(DecodeError):
        auth.decode_device_auth("Basic " + text)


@pytest.mark.parametrize("digits", ["²", "١٢", "1²"])
def test_non_ascii_digits_are_decode_errors(digits: str) -> None:
    with pytest.raises(DecodeError):
        auth.decode_mailbox_auth(f"{digits}." + b64.encode(bytes(64)))


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=20), st.binary(min_size=64, max_size=64))
def test_mailbox_auth_seconds_raise_only_decode_error(seconds: str, signature: bytes) -> None:
    with contextlib.suppress(DecodeError):
        auth.decode_mailbox_auth(f"{seconds}.{b64.encode(signature)}")
