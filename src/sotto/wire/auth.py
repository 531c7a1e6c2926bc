"""The exact bytes each signature covers, and the device credential header.

Both sides build these strings here, so a signature made by the client is checked against the
same bytes by the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from sotto.errors import DecodeError
from sotto.wire import b64
from sotto.wire.limits import DEVICE_SECRET_LENGTH, ID_LENGTH

DRAIN_CONTEXT = b"sotto-drain-v1"
HTTP_CONTEXT = b"sotto-mailbox-http-v2"
HTTP_NONCE_LENGTH = 16
"""Random bytes per signed request: the relay remembers each (mailbox, nonce) for the window."""
HTTP_AUTH_PAST_MS = 300_000
"""A signed HTTP request is accepted up to 5 minutes after the time it carries (relay clock)..."""
HTTP_AUTH_FUTURE_MS = 0
"""...and not before it. A client whose clock is ahead gets a 401 naming the relay's time
(``Sotto-Sign-Time``), signs again with it and keeps the difference. With no future times, a
relay that refuses times before its own start accepts nothing its previous process accepted."""
SIGN_TIME_HEADER = "sotto-sign-time"


def drain_message(nonce: bytes, mailbox_id: bytes) -> bytes:
    """What a mailbox key signs to drain ``mailbox_id`` on a connection that sent ``nonce``."""
    return DRAIN_CONTEXT + b"\x00" + nonce + mailbox_id


def http_message(method: str, path: str, unix_ms: int, nonce: bytes, body: bytes) -> bytes:
    """What a mailbox key signs to authorize one HTTP request.

    ``context ‖ 0x00 ‖ unix milliseconds (8 bytes, big-endian) ‖ nonce (16) ‖ SHA-256(body) (32) ‖ METHOD ‖
    0x00 ‖ path``: the fixed-length fields first and the path last, so no two requests share
    these bytes. ``body`` is the exact request body (empty for GET and DELETE; its hash is still
    there).
    """
    if len(nonce) != HTTP_NONCE_LENGTH:
        raise ValueError(f"the nonce must be {HTTP_NONCE_LENGTH} bytes")
    if not 0 <= unix_ms < 2**63:
        raise ValueError("time out of range")
    return b"".join(
        (
            HTTP_CONTEXT,
            b"\x00",
            unix_ms.to_bytes(8, "big"),
            nonce,
            hashlib.sha256(body).digest(),
            method.upper().encode(),
            b"\x00",
            path.encode(),
        )
    )


def encode_mailbox_auth(unix_ms: int, signature: bytes, nonce: bytes) -> str:
    """``<unix milliseconds>.<nonce b64url>.<signature b64url>``."""
    return f"{unix_ms}.{b64.encode(nonce)}.{b64.encode(signature)}"


def decode_mailbox_auth(header: str) -> tuple[int, bytes, bytes]:
    """``(unix_ms, nonce, signature)`` from a ``Sotto-Mailbox-Auth`` header; DecodeError otherwise."""
    parts = header.split(".")
    if len(parts) != 3:
        raise DecodeError("malformed mailbox auth header")
    ms, nonce, signature = parts
    # isdigit() alone accepts digits int() refuses ("²"), and headers arrive as latin-1.
    if not ms.isascii() or not ms.isdigit() or len(ms) > 15:
        raise DecodeError("malformed mailbox auth header")
    return int(ms), b64.decode(nonce, length=HTTP_NONCE_LENGTH), b64.decode(signature, length=64)


def decode_sign_time(header: str | None) -> int | None:
    """The time a relay's 401 asks the next signature to carry, or None when absent or malformed."""
    if header is None or not header.isascii() or not header.isdigit() or len(header) > 15:
        return None
    return int(header)


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
