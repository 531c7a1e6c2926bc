"""Who may do what: device credentials, mailbox signatures, delivery and access tokens.

Three kinds of proof, none of them tying a mailbox to an account:

* a **device** proves itself with its 32-byte secret (Basic header); the relay keeps SHA-256;
* a **mailbox** owner signs with the mailbox's Ed25519 key: the connection's challenge nonce to
  drain it, or ``METHOD ‖ path ‖ seconds`` for an HTTP call;
* a **sender** presents the mailbox's delivery token, an **invitee** the account's access token;
  both are compared as SHA-256 hashes in constant time.

Every failure a prober could tell apart collapses into one answer (401 for device and bundle
calls, 404 for mailboxes).
"""

from __future__ import annotations

from sotto.crypto.ed25519 import SigningPublicKey
from sotto.crypto.kdf import bytes_equal, sha256
from sotto.errors import DecodeError, InvalidKeyError, InvalidSignatureError, RelayError
from sotto.server.storage.base import AccountId, DeviceRecord, MailboxRecord, Storage
from sotto.wire import auth as wire_auth
from sotto.wire import b64
from sotto.wire.limits import DELIVERY_TOKEN_LENGTH, HTTP_AUTH_WINDOW_SECONDS

UNAUTHORIZED = RelayError(401, "unauthorized", "missing or wrong credentials")
MAILBOX_NOT_FOUND = RelayError(404, "not_found", "no such mailbox")


def token_hash(token: bytes) -> bytes:
    """What the relay stores for a secret it must recognise but never needs to know."""
    return sha256(token)


def parse_token(header: str | None) -> bytes | None:
    """A delivery or access token from its header, or None when absent or malformed."""
    if header is None:
        return None
    try:
        return b64.decode(header, length=DELIVERY_TOKEN_LENGTH)
    except DecodeError:
        return None


async def authenticate_device(storage: Storage, authorization: str | None) -> DeviceRecord:
    """The device named by a Basic header whose secret matches; :data:`UNAUTHORIZED` otherwise."""
    if authorization is None:
        raise UNAUTHORIZED
    try:
        account_id, device_id, secret = wire_auth.decode_device_auth(authorization)
    except DecodeError:
        raise UNAUTHORIZED from None
    device = await storage.get_device(AccountId(account_id), device_id)
    presented = token_hash(secret)
    # Hash and compare even for an unknown device, so both failures cost the same.
    held = device.secret_hash if device is not None else bytes(len(presented))
    if not bytes_equal(held, presented) or device is None:
        raise UNAUTHORIZED
    return device


def mailbox_request_ok(
    mailbox: MailboxRecord | None, header: str | None, method: str, path: str, *, now: float, today: int
) -> bool:
    """Whether ``header`` is a fresh signature of this request by the mailbox's key."""
    if mailbox is None or header is None or mailbox.expires_day <= today:
        return False
    try:
        seconds, signature = wire_auth.decode_mailbox_auth(header)
    except DecodeError:
        return False
    if abs(now - seconds) > HTTP_AUTH_WINDOW_SECONDS:
        return False
    return signature_ok(mailbox.auth_key, wire_auth.http_message(method, path, seconds), signature)


def drain_ok(mailbox: MailboxRecord | None, nonce: bytes, signature: bytes, today: int) -> bool:
    """Whether ``signature`` proves the right to drain ``mailbox`` on the connection with ``nonce``."""
    if mailbox is None or mailbox.expires_day <= today:
        return False
    return signature_ok(mailbox.auth_key, wire_auth.drain_message(nonce, mailbox.mailbox_id), signature)


def signature_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        SigningPublicKey(public_key).verify(message, signature)
    except (InvalidKeyError, InvalidSignatureError):
        return False
    return True
