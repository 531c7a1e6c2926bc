"""Opening any sealed envelope: decrypt, check the certificate, refuse our own messages.

The version byte's high nibble picks the format (0 or 1: v1, 2: v2). The order of checks is
libsignal's: the cryptography first (which also binds the certificate's key to the message),
then the certificate chain and expiry, then the self-send rule. A message that claims to come
from our own UUID and device is refused: the server must never be able to echo our messages
back at us as if from a peer.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.errors import DecryptionError, SelfSendError, UnsupportedVersionError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.sealed_sender import v1, v2
from sotto.protocol.sealed_sender.certificate import SenderCertificate, ServerCertificate
from sotto.protocol.sealed_sender.content import UnidentifiedSenderMessageContent


def _same_uuid(a: str, b: str) -> bool:
    """Compare UUID strings by value where both parse, so letter case cannot dodge the check."""
    try:
        return uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return a == b


def open_sealed(
    our_identity: KeyPair,
    data: bytes,
    trust_root: PublicKey | Collection[PublicKey],
    now_ms: int,
    our_address: ProtocolAddress,
    *,
    our_e164: str | None = None,
    known_server_certificates: Mapping[int, ServerCertificate] | None = None,
) -> tuple[UnidentifiedSenderMessageContent, SenderCertificate]:
    """Open a v1 message or a v2 received form addressed to ``our_identity``.

    ``our_address`` is our own ACI and device, for the self-send rule. Returns the content and
    its validated certificate. Raises :class:`DecryptionError` for
    anything an attacker could probe, :class:`UnsupportedVersionError` for an unknown version,
    :class:`InvalidCertificateError` for a certificate that is malformed in its chain, expired,
    revoked or names another key, and :class:`SelfSendError` for a message from ourselves.
    """
    if not data:
        raise DecryptionError
    major = data[0] >> 4
    if major in v1.MAJOR_VERSIONS:
        content, _ = v1.open_v1(our_identity, data)
    elif major == v2.MAJOR_VERSION:
        content, _ = v2.open_v2(our_identity, data)
    else:
        raise UnsupportedVersionError(f"unknown sealed sender version {major}")
    certificate = content.sender_certificate
    certificate.validate(trust_root, now_ms, known_server_certificates)
    is_us = _same_uuid(certificate.sender_uuid, our_address.name) or (
        our_e164 is not None and certificate.sender_e164 == our_e164
    )
    if is_us and certificate.sender_device_id == our_address.device_id:
        raise SelfSendError("sealed sender message from our own device")
    return content, certificate
