"""Invites: a link carrying a relay, an account and a one-time secret, and what the secret yields.

The inviter draws a 32-byte secret ``s``; everything else comes from it, so the link stays short::

    okm = HKDF-SHA256(ikm = s, salt = none, info = "sotto-invite-v1", 144 bytes)
    mailbox id (16) ‖ mailbox key seed (32, Ed25519) ‖ delivery token (32) ‖
    prekey access token (32) ‖ proof key (32)

The inviter creates the invite mailbox and registers the access token on its account; whoever
holds the link can fetch one prekey bundle and drop one contact request into that mailbox. The
request carries ``HMAC-SHA256(proof key, "sotto-invite-proof-v1" ‖ account id ‖ identity key)``:
the relay sees the tokens in transit but never ``s``, so it cannot forge a request.

The link (also the QR code's text)::

    sotto://invite?s=<server URL, base64url>&a=<account id, base64url>&k=<secret, base64url>

:func:`parse_link` raises :class:`~sotto.errors.DecodeError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.kdf import bytes_equal, hkdf_sha256, hmac_sha256
from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError
from sotto.wire import b64
from sotto.wire.limits import ID_LENGTH

SECRET_LENGTH = 32
INVITE_INFO = b"sotto-invite-v1"
PROOF_CONTEXT = b"sotto-invite-proof-v1"
LINK_PREFIX = "sotto://invite?"
MAX_LINK_LENGTH = 2_048
_TOKEN = 32


@dataclass(frozen=True, slots=True, repr=False)
class InviteKeys:
    """Everything an invite's secret yields."""

    mailbox_id: bytes
    mailbox_key: SigningKey
    delivery_token: bytes
    access_token: bytes
    proof_key: bytes

    def __repr__(self) -> str:
        return "InviteKeys(<secret>)"


def derive_invite_keys(secret: bytes) -> InviteKeys:
    if len(secret) != SECRET_LENGTH:
        raise ValueError(f"an invite secret is {SECRET_LENGTH} bytes")
    okm = hkdf_sha256(secret, ID_LENGTH + 4 * _TOKEN, INVITE_INFO)
    parts = [okm[:ID_LENGTH]] + [okm[ID_LENGTH + i * _TOKEN : ID_LENGTH + (i + 1) * _TOKEN] for i in range(4)]
    return InviteKeys(parts[0], SigningKey(parts[1]), parts[2], parts[3], parts[4])


def invite_proof(keys: InviteKeys, account_id: bytes, identity_key: PublicKey) -> bytes:
    """The acceptor's proof that it read the link (bound to its account and identity key)."""
    return hmac_sha256(keys.proof_key, PROOF_CONTEXT + account_id + identity_key.to_bytes())


def proof_is_valid(keys: InviteKeys, account_id: bytes, identity_key: PublicKey, proof: bytes) -> bool:
    return bytes_equal(invite_proof(keys, account_id, identity_key), proof)


@dataclass(frozen=True, slots=True, repr=False)
class InviteLink:
    """The three things a link carries."""

    server_url: str
    account_id: bytes
    secret: bytes

    def encode(self) -> str:
        return (
            f"{LINK_PREFIX}s={b64.encode(self.server_url.encode())}"
            f"&a={b64.encode(self.account_id)}&k={b64.encode(self.secret)}"
        )

    def __repr__(self) -> str:
        return "InviteLink(<secret>)"


def parse_link(link: str) -> InviteLink:
    """Parse a link exactly as :meth:`InviteLink.encode` writes it (surrounding spaces aside)."""
    if not isinstance(link, str) or len(link) > MAX_LINK_LENGTH:
        raise DecodeError("not an invite link")
    link = link.strip()
    if not link.startswith(LINK_PREFIX):
        raise DecodeError("an invite link starts with sotto://invite?")
    try:
        params = parse_qs(link[len(LINK_PREFIX) :], keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise DecodeError("malformed invite link") from None
    if set(params) != {"s", "a", "k"} or any(len(v) != 1 for v in params.values()):
        raise DecodeError("an invite link has exactly the parameters s, a and k")
    try:
        server_url = b64.decode(params["s"][0], max_length=512).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("server URL is not UTF-8") from None
    try:
        parts = urlsplit(server_url)
    except ValueError:
        raise DecodeError("malformed server URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DecodeError("server URL must be http(s)")
    return InviteLink(
        server_url,
        b64.decode(params["a"][0], length=ID_LENGTH),
        b64.decode(params["k"][0], length=SECRET_LENGTH),
    )
