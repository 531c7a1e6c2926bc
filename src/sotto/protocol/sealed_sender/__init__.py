"""Sealed sender: messages whose envelope does not say who sent them.

The sender's identity travels encrypted, as a server-signed :class:`SenderCertificate` inside
the :class:`UnidentifiedSenderMessageContent`; the server sees only the recipient. v1 seals to
one recipient (:func:`seal_v1`); v2 encrypts once for many (:func:`seal_v2`) and the server
splits the result with :class:`SentMessage` (which imports no cryptography) without being able
to read it. :func:`open_sealed`
opens either and checks the certificate. Nothing here depends on the ratchet: the inner
content is opaque bytes plus a message type.
"""

from __future__ import annotations

from sotto.protocol.sealed_sender.certificate import (
    REVOKED_SERVER_KEY_IDS,
    SenderCertificate,
    ServerCertificate,
)
from sotto.protocol.sealed_sender.content import ContentHint, UnidentifiedSenderMessageContent
from sotto.protocol.sealed_sender.open import open_sealed
from sotto.protocol.sealed_sender.sent_message import SentMessage, SentRecipient
from sotto.protocol.sealed_sender.v1 import SealedSenderV1Message, open_v1, seal_v1
from sotto.protocol.sealed_sender.v2 import ReceivedMessage, SealedRecipient, open_v2, seal_v2

__all__ = [
    "REVOKED_SERVER_KEY_IDS",
    "ContentHint",
    "ReceivedMessage",
    "SealedRecipient",
    "SealedSenderV1Message",
    "SenderCertificate",
    "SentMessage",
    "SentRecipient",
    "ServerCertificate",
    "UnidentifiedSenderMessageContent",
    "open_sealed",
    "open_v1",
    "open_v2",
    "seal_v1",
    "seal_v2",
]
