"""UnidentifiedSenderMessageContent (USMC): what a sealed envelope carries.

::

    USMC {1 type, 2 sender certificate, 3 content, 4 content hint, 5 group id}

``content`` is an already-encrypted inner message (a SignalMessage, PreKeySignalMessage or
SenderKeyMessage) or a PlaintextContent; sealed sender treats it as opaque bytes plus a type.
The wire enum of field 1 differs from CiphertextMessageType in one place: a PreKey message is
1 here and 3 there. We keep the CiphertextMessageType value (what a caller dispatches on) and
translate at the wire.

The content hint tells the recipient what to do on failure: absent (0) shows an error at once,
1 (resendable) waits for a resend, 2 (implicit) shows nothing. Unknown hints are kept as-is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender.certificate import SenderCertificate


class ContentHint(IntEnum):
    DEFAULT = 0
    RESENDABLE = 1
    IMPLICIT = 2


# CiphertextMessageType <-> the USMC's own enum in field 1 (only PreKey differs: 3 vs 1).
_WIRE_TYPE_OF = {
    CiphertextMessageType.PREKEY: 1,
    CiphertextMessageType.WHISPER: 2,
    CiphertextMessageType.SENDER_KEY: 7,
    CiphertextMessageType.PLAINTEXT: 8,
}
_CIPHERTEXT_TYPE_OF = {wire: ct for ct, wire in _WIRE_TYPE_OF.items()}


@dataclass(frozen=True, slots=True)
class UnidentifiedSenderMessageContent:
    """The sealed payload: the sender's certificate and one inner message."""

    message_type: CiphertextMessageType
    """What ``content`` is: WHISPER (2), PREKEY (3), SENDER_KEY (7) or PLAINTEXT (8)."""
    sender_certificate: SenderCertificate
    content: bytes
    content_hint: int
    group_id: bytes | None
    serialized: bytes
    """The encoded form, exactly as received or built (a decrypted USMC is never re-encoded)."""

    @classmethod
    def new(
        cls,
        message_type: int,
        sender_certificate: SenderCertificate,
        content: bytes,
        content_hint: int = ContentHint.DEFAULT,
        group_id: bytes | None = None,
    ) -> UnidentifiedSenderMessageContent:
        """Build and encode; an empty group id is the same as none, as in libsignal."""
        if message_type not in _WIRE_TYPE_OF:
            raise ValueError(f"message type {message_type} cannot travel in sealed sender")
        message_type = CiphertextMessageType(message_type)
        if not 0 <= content_hint <= 0x7FFF_FFFF:
            raise ValueError("content hint must be a non-negative 31-bit value")
        group_id = group_id or None
        serialized = (
            pb.uint_field(1, _WIRE_TYPE_OF[message_type])
            + pb.bytes_field(2, sender_certificate.serialized)
            + pb.bytes_field(3, content)
            + (pb.uint_field(4, int(content_hint)) if content_hint else b"")
            + (pb.bytes_field(5, group_id) if group_id is not None else b"")
        )
        return cls(message_type, sender_certificate, bytes(content), int(content_hint), group_id, serialized)

    @classmethod
    def decode(cls, data: bytes) -> UnidentifiedSenderMessageContent:
        """Parse; raises DecodeError only (a bad embedded certificate included)."""
        fields = pb.decode_fields(data)
        wire_type = pb.get_uint(fields, 1)
        certificate = pb.get_bytes(fields, 2)
        content = pb.get_bytes(fields, 3)
        assert wire_type is not None and certificate is not None and content is not None
        if wire_type not in _CIPHERTEXT_TYPE_OF:
            raise DecodeError(f"unknown sealed content type {wire_type}")
        # An enum is an int32 on the wire; a negative one arrives as a 64-bit varint.
        hint = pb.get_uint(fields, 4, required=False, bits=31)
        group_id = pb.get_bytes(fields, 5, required=False)
        return cls(
            _CIPHERTEXT_TYPE_OF[wire_type],
            SenderCertificate.decode(certificate),
            content,
            hint or 0,
            group_id,
            bytes(data),
        )

    def encode(self) -> bytes:
        return self.serialized

    def __repr__(self) -> str:
        return (
            f"UnidentifiedSenderMessageContent(message_type={self.message_type.name}, "
            f"sender={self.sender_certificate.sender_uuid}.{self.sender_certificate.sender_device_id}, "
            f"content=<{len(self.content)} bytes>, content_hint={self.content_hint}, "
            f"group_id={'<set>' if self.group_id is not None else None})"
        )
