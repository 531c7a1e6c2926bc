"""The exact bytes each signature covers, and the device credential header.

Both sides build these strings here, so a signature made by the client is checked against the
same bytes by the server.
"""

from __future__ import annotations

import base64
import binascii

from sotto.errors import DecodeError
from sotto.wire import b64
from sotto.wire.limits import DEVICE_SECRET_LENGTH, ID_LENGTH

DRAIN_CONTEXT = b"sotto-drain-v1"
HTTP_CONTEXT = b"sotto-mailbox-http-v1"


def drain_message(nonce: bytes, mailbox_id: bytes) -> bytes:
    """What a mailbox key signs to drain ``mailbox_id`` on a connection that sent ``nonce``."""
    return DRAIN_CONTEXT + b"\x00" + nonce + mailbox_id


def http_message(method: str, path: str, unix_seconds: int) -> bytes:
    """What a mailbox key signs to authorize one HTTP request."""
    return b"\x00".join((HTTP_CONTEXT, method.upper().encode(), path.encode(), str(unix_seconds).encode()))


def encode_mailbox_auth(unix_seconds: int, signature: bytes) -> str:
    return f"{unix_seconds}.{b64.encode(signature)}"


def decode_mailbox_auth(header: str) -> tuple[int, bytes]:
    seconds, sep, signature = header.partition(".")
    # isdigit() alone accepts digits int() refuses ("²"), and headers arrive as latin-1.
    if not sep or not seconds.isascii() or not seconds.isdigit() or len(seconds) > 12:
        raise DecodeError("malformed mailbox auth header")
    return int(seconds), b64.decode(signature, length=64)


def encode_device_auth(account_id: bytes, device_id: int, secret: bytes) -> str:
    user = f"{b64.encode(account_id)}.{device_id}:{b64.encode(secret)}"
    return "Basic " + base64.b64encode(user.encode()).decode()


def decode_device_auth(header: str) -> tuple[bytes, int, bytes]:
    """``(account_id, device_id, secret)`` from an Authorization header; DecodeError otherwise."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or len(value) > 256:
        raise DecodeError("expected Basic credentials")
    try:
        user = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise DecodeError("malformed Basic credentials") from None
    login, sep, secret = user.partition(":")
    account, dot, device = login.partition(".")
    if not sep or not dot or not device.isascii() or not device.isdigit() or len(device) > 3:
        raise DecodeError("malformed Basic credentials")
    return (
        b64.decode(account, length=ID_LENGTH),
        int(device),
        b64.decode(secret, length=DEVICE_SECRET_LENGTH),
    )
