"""Retry receipts: libsignal's ``DecryptionErrorMessage``, carried as ``PlaintextContent``.

A device that cannot decrypt a 1:1 message tells the sender so without needing the broken
session: it sends a :class:`PlaintextContent` (ciphertext message type 8, unencrypted inside the
sealed sender layer) holding a :class:`DecryptionErrorMessage`. The sender, if the message's
ratchet key is still its current one, archives the session, starts a new one and resends.

Wire format (libsignal 0.103 ``rust/protocol/src/protocol.rs`` and ``proto/service.proto``)::

    DecryptionErrorMessage = protobuf {
        1: ratchet_key  bytes    the failed SignalMessage's sender ratchet key (33 bytes);
                                 absent for a sender-key message
        2: timestamp    uint64   required: which message failed, as the sender can look it up
        3: device_id    uint32   the failed message's sender device (0 when absent)
    }
    PlaintextContent = 0xC0 ‖ Content { 8: decryption_error_message bytes } ‖ 0x80

``0xC0`` marks content that may travel unencrypted; ``0x80`` is the padding boundary (libsignal
writes no padding after it). libsignal's reader takes the first and last byte off and parses
the rest as ``Content``, so fields it does not know are skipped.

Sotto's extension: ``Content`` field :data:`PREKEY_BUNDLE_FIELD` carries the prekey bundle of
the device asking for the new session (:func:`encode_bundle`), because a Sotto relay hands out
bundles only to holders of an invite's access token; the sender starts the new session from it
instead of fetching one. The identity key is not in it: the receiver uses the one it trusts.

Contract: every ``decode`` here raises :class:`~sotto.errors.DecodeError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sotto.crypto.kem import KemPublicKey
from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError, InvalidKeyError
from sotto.protocol import protobuf as pb
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

PLAINTEXT_CONTEXT_IDENTIFIER_BYTE: Final = 0xC0
"""First byte of a serialized PlaintextContent (libsignal's ``PLAINTEXT_CONTEXT_IDENTIFIER_BYTE``)."""
PADDING_BOUNDARY_BYTE: Final = 0x80
"""Last byte of a serialized PlaintextContent (libsignal's ``PADDING_BOUNDARY_BYTE``)."""

CONTENT_DECRYPTION_ERROR_FIELD: Final = 8
"""``Content.decryption_error_message`` in libsignal's service.proto."""
PREKEY_BUNDLE_FIELD: Final = 101
"""Sotto's ``Content`` field for the requester's prekey bundle (far above libsignal's 1-8)."""

MAX_BUNDLE_BYTES: Final = 4_096
"""A bundle is about 1.8 KB (the Kyber1024 key is 1,569 bytes); anything far larger is refused."""


@dataclass(frozen=True, slots=True)
class DecryptionErrorMessage:
    """ "Your message could not be decrypted": which one, and on which ratchet key."""

    ratchet_key: PublicKey | None
    timestamp: int
    device_id: int
    serialized: bytes

    @classmethod
    def new(cls, ratchet_key: PublicKey | None, timestamp: int, device_id: int) -> DecryptionErrorMessage:
        """Build and encode (fields in libsignal's order: ratchet key, timestamp, device id)."""
        if not 0 <= timestamp < 1 << 64 or not 0 <= device_id < 1 << 32:
            raise ValueError("timestamp is a uint64 and device id a uint32")
        serialized = (
            (pb.bytes_field(1, ratchet_key.to_bytes()) if ratchet_key is not None else b"")
            + pb.uint_field(2, timestamp)
            + pb.uint_field(3, device_id)
        )
        return cls(ratchet_key, timestamp, device_id, serialized)

    @classmethod
    def for_original(
        cls, original: bytes, original_type: CiphertextMessageType, timestamp: int, device_id: int
    ) -> DecryptionErrorMessage:
        """The error message for a ciphertext that failed, as libsignal's ``for_original``.

        DecodeError if ``original`` does not parse as its type; ValueError for a plaintext
        original (it was not encrypted, so it cannot have failed to decrypt).
        """
        ratchet_key: PublicKey | None
        if original_type is CiphertextMessageType.WHISPER:
            ratchet_key = SignalMessage.decode(original).ratchet_key
        elif original_type is CiphertextMessageType.PREKEY:
            ratchet_key = PreKeySignalMessage.decode(original).message.ratchet_key
        elif original_type is CiphertextMessageType.SENDER_KEY:
            ratchet_key = None
        else:
            raise ValueError("no decryption error message for plaintext content: it is not encrypted")
        return cls.new(ratchet_key, timestamp, device_id)

    @classmethod
    def decode(cls, data: bytes) -> DecryptionErrorMessage:
        """Parse; raises DecodeError only. The timestamp is required, the rest optional."""
        data = bytes(data)
        fields = pb.decode_fields(data)
        timestamp = pb.get_uint(fields, 2, bits=64)
        assert timestamp is not None  # required: get_uint raised otherwise
        key_bytes = pb.get_bytes(fields, 1, required=False)
        device_id = pb.get_uint(fields, 3, required=False)
        try:
            ratchet_key = None if key_bytes is None else PublicKey.from_bytes(bytes(key_bytes))
        except InvalidKeyError as e:
            raise DecodeError(f"ratchet key: {e}") from None
        return cls(ratchet_key, timestamp, device_id or 0, data)

    def encode(self) -> bytes:
        return self.serialized


@dataclass(frozen=True, slots=True)
class PlaintextContent:
    """Content that may travel unencrypted (type 8): a decryption error message, and in Sotto
    optionally the requester's prekey bundle (still encoded; see :meth:`prekey_bundle`)."""

    decryption_error: DecryptionErrorMessage
    bundle: bytes | None
    serialized: bytes

    @classmethod
    def new(
        cls, decryption_error: DecryptionErrorMessage, bundle: PreKeyBundle | None = None
    ) -> PlaintextContent:
        body = pb.bytes_field(CONTENT_DECRYPTION_ERROR_FIELD, decryption_error.serialized)
        encoded_bundle = None if bundle is None else encode_bundle(bundle)
        if encoded_bundle is not None:
            body += pb.bytes_field(PREKEY_BUNDLE_FIELD, encoded_bundle)
        serialized = bytes((PLAINTEXT_CONTEXT_IDENTIFIER_BYTE,)) + body + bytes((PADDING_BOUNDARY_BYTE,))
        return cls(decryption_error, encoded_bundle, serialized)

    @classmethod
    def decode(cls, data: bytes) -> PlaintextContent:
        """Parse; raises DecodeError only (also for plaintext content without an error message)."""
        data = bytes(data)
        if len(data) < 2:
            raise DecodeError("PlaintextContent too short")
        if data[0] != PLAINTEXT_CONTEXT_IDENTIFIER_BYTE:
            raise DecodeError(f"not PlaintextContent (first byte {data[0]:#04x})")
        if data[-1] != PADDING_BOUNDARY_BYTE:
            raise DecodeError("PlaintextContent does not end at the padding boundary")
        fields = pb.decode_fields(data[1:-1])
        error = pb.get_bytes(fields, CONTENT_DECRYPTION_ERROR_FIELD, required=False)
        if error is None:
            raise DecodeError("PlaintextContent holds no decryption error message")
        bundle = pb.get_bytes(fields, PREKEY_BUNDLE_FIELD, required=False)
        if bundle is not None and len(bundle) > MAX_BUNDLE_BYTES:
            raise DecodeError("prekey bundle too large")
        return cls(DecryptionErrorMessage.decode(error), None if bundle is None else bytes(bundle), data)

    def prekey_bundle(self, identity_key: PublicKey) -> PreKeyBundle | None:
        """The requester's bundle under ``identity_key`` (the one we trust for them), if it sent
        one. DecodeError if it does not parse; its signatures are checked when a session starts."""
        return None if self.bundle is None else decode_bundle(self.bundle, identity_key)

    def encode(self) -> bytes:
        return self.serialized


def encode_bundle(bundle: PreKeyBundle) -> bytes:
    """A bundle without its identity key, as protobuf fields 1-10."""
    out = pb.uint_field(1, bundle.registration_id) + pb.uint_field(2, bundle.device_id)
    if bundle.pre_key_id is not None and bundle.pre_key_public is not None:
        out += pb.uint_field(3, bundle.pre_key_id) + pb.bytes_field(4, bundle.pre_key_public.to_bytes())
    return (
        out
        + pb.uint_field(5, bundle.signed_pre_key_id)
        + pb.bytes_field(6, bundle.signed_pre_key_public.to_bytes())
        + pb.bytes_field(7, bundle.signed_pre_key_signature)
        + pb.uint_field(8, bundle.kyber_pre_key_id)
        + pb.bytes_field(9, bundle.kyber_pre_key_public.to_bytes())
        + pb.bytes_field(10, bundle.kyber_pre_key_signature)
    )


def decode_bundle(data: bytes, identity_key: PublicKey) -> PreKeyBundle:
    """Parse :func:`encode_bundle`'s form; raises DecodeError only."""
    fields = pb.decode_fields(bytes(data))

    def uint(number: int) -> int:
        value = pb.get_uint(fields, number)
        assert value is not None
        return value

    def raw(number: int) -> bytes:
        value = pb.get_bytes(fields, number)
        assert value is not None
        return bytes(value)

    pre_key_id = pb.get_uint(fields, 3, required=False)
    pre_key = pb.get_bytes(fields, 4, required=False)
    if (pre_key_id is None) != (pre_key is None):
        raise DecodeError("one-time prekey id and key must come together")
    try:
        return PreKeyBundle(
            registration_id=uint(1),
            device_id=uint(2),
            pre_key_id=pre_key_id,
            pre_key_public=None if pre_key is None else PublicKey.from_bytes(bytes(pre_key)),
            signed_pre_key_id=uint(5),
            signed_pre_key_public=PublicKey.from_bytes(raw(6)),
            signed_pre_key_signature=raw(7),
            identity_key=identity_key,
            kyber_pre_key_id=uint(8),
            kyber_pre_key_public=KemPublicKey.from_bytes(raw(9)),
            kyber_pre_key_signature=raw(10),
        )
    except InvalidKeyError as e:
        raise DecodeError(f"prekey bundle: {e}") from None
