"""The signed messages and credential headers both sides build from sotto.wire.auth."""

from __future__ import annotations

import base64
import contextlib
import hashlib

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


NONCE = bytes(range(16))


def test_http_message_layout() -> None:
    body = b'{"ack":[]}'
    assert auth.http_message("delete", "/v1/mailboxes/x", 1_700_000_000_123, NONCE, body) == (
        b"sotto-mailbox-http-v2\x00"
        + (1_700_000_000_123).to_bytes(8, "big")
        + NONCE
        + hashlib.sha256(body).digest()
        + b"DELETE\x00/v1/mailboxes/x"
    )
    # An empty body is hashed too.
    assert auth.http_message("GET", "/a", 5, NONCE, b"")[-32 - 6 : -6] == hashlib.sha256(b"").digest()


def test_signatures_bind_method_path_time_nonce_and_body() -> None:
    key = SigningKey.generate(seeded_rng(1))
    signed = key.sign(auth.http_message("GET", "/a", 5, NONCE, b"x"))
    key.public.verify(auth.http_message("GET", "/a", 5, NONCE, b"x"), signed)
    for other in (
        auth.http_message("PUT", "/a", 5, NONCE, b"x"),
        auth.http_message("GET", "/b", 5, NONCE, b"x"),
        auth.http_message("GET", "/a", 6, NONCE, b"x"),
        auth.http_message("GET", "/a", 5, bytes(16), b"x"),
        auth.http_message("GET", "/a", 5, NONCE, b"y"),
        auth.http_message("GET", "/a", 5, NONCE, b""),
    ):
        with pytest.raises(InvalidSignatureError):
            key.public.verify(other, signed)


def test_http_message_refuses_a_wrong_nonce_or_time() -> None:
    with pytest.raises(ValueError):
        auth.http_message("GET", "/a", 5, bytes(15), b"")
    with pytest.raises(ValueError):
        auth.http_message("GET", "/a", -1, NONCE, b"")


@given(st.integers(0, 10**15 - 1), st.binary(min_size=64, max_size=64), st.binary(min_size=16, max_size=16))
def test_mailbox_auth_round_trip(ms: int, signature: bytes, nonce: bytes) -> None:
    assert auth.decode_mailbox_auth(auth.encode_mailbox_auth(ms, signature, nonce)) == (ms, nonce, signature)


_N, _S = b64.encode(bytes(16)), b64.encode(bytes(64))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "123",
        ".AAAA",
        f"1.{_S}",  # the v1 layout, without a nonce
        f"12a.{_N}.{_S}",
        f"-1.{_N}.{_S}",
        f"1.{_N}.{b64.encode(bytes(63))}",
        f"1.{b64.encode(bytes(15))}.{_S}",
        f"{'1' * 16}.{_N}.{_S}",
        f"1.{_N}.{_S}=",
        f"1.{_N}.{_S}.",
        f"1..{_S}",
    ],
)
def test_mailbox_auth_refuses(header: str) -> None:
    with pytest.raises(DecodeError):
        auth.decode_mailbox_auth(header)


@pytest.mark.parametrize(
    ("header", "ms"),
    [
        ("1700000000000", 1_700_000_000_000),
        (None, None),
        ("", None),
        ("1e3", None),
        ("²", None),
        ("1" * 16, None),
    ],
)
def test_sign_time(header: str | None, ms: int | None) -> None:
    assert auth.decode_sign_time(header) == ms


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
        _basic(f"{b64.encode(bytes(range(16)))}:{b64.encode(bytes(range(32)))}"),
        _basic(f"{b64.encode(bytes(range(16)))}.x:{b64.encode(bytes(range(32)))}"),
        _basic(f"{b64.encode(bytes(range(16)))}.1234:{b64.encode(bytes(range(32)))}"),
        _basic(f"{b64.encode(bytes(range(15)))}.1:{b64.encode(bytes(range(32)))}"),
        _basic(f"{b64.encode(bytes(range(16)))}.1:{b64.encode(bytes(range(31)))}"),
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
        auth.decode_mailbox_auth(f"{digits}.{_N}.{_S}")


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=20), st.binary(min_size=64, max_size=64))
def test_mailbox_auth_seconds_raise_only_decode_error(seconds: str, signature: bytes) -> None:
    with contextlib.suppress(DecodeError):
        auth.decode_mailbox_auth(f"{seconds}.{_N}.{b64.encode(signature)}")
