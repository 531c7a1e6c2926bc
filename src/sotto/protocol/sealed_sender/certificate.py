"""Sender and server certificates: who a sealed message claims to come from, and who vouches.

The chain has two links. A trust root signs a :class:`ServerCertificate` ``{1 key id, 2 key}``;
that server key signs a short-lived :class:`SenderCertificate` naming the sender's UUID,
device, identity key and expiry. The recipient knows only the trust root; a sealed message
carries the whole chain. Our server is its own trust root, so issuing is as ordinary an
operation as validating.

Wire forms (proto2, libsignal's ``sealed_sender.proto``)::

    ServerCertificate  {1 certificate = Certificate{1 id, 2 key (33 B)}, 2 signature}
    SenderCertificate  {1 certificate = Certificate{...}, 2 signature}
      Certificate      {1 e164, 2 device, 3 expires (fixed64 ms), 4 identity key (33 B),
                        5 server certificate | 8 known server certificate id,
                        6 uuid string | 7 uuid bytes}

Both signatures are XEdDSA over the inner ``certificate`` bytes exactly as received, so a
decoded certificate keeps those bytes and is never re-encoded. Decoding raises
:class:`~sotto.errors.DecodeError` only; validating raises
:class:`~sotto.errors.InvalidCertificateError` only.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sotto.crypto import xeddsa
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, InvalidCertificateError, InvalidKeyError
from sotto.protocol import protobuf as pb
from sotto.protocol.limits import MAX_DEVICE_ID

REVOKED_SERVER_KEY_IDS = frozenset({0xDEADC357})
"""Server key ids refused whatever their signature says. 0xDEADC357 is libsignal's test id for
the revocation path; a real revoked id would be added here."""

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


def _public_key(data: bytes) -> PublicKey:
    try:
        return PublicKey.from_bytes(data)
    except InvalidKeyError as e:
        raise DecodeError(f"bad public key in certificate: {e}") from None


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


def _signed_pair(data: bytes) -> tuple[bytes, bytes]:
    """Split the ``{1 certificate, 2 signature}`` envelope both certificate kinds share."""
    fields = pb.decode_fields(data)
    certificate = pb.get_bytes(fields, 1)
    signature = pb.get_bytes(fields, 2)
    assert certificate is not None and signature is not None
    return certificate, signature


def _verifies(key: PublicKey, message: bytes, signature: bytes) -> bool:
    return xeddsa.is_valid(key, message, signature)


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A server signing key, vouched for by the trust root."""

    key_id: int
    key: PublicKey
    certificate: bytes
    """The signed inner bytes, exactly as received or issued."""
    signature: bytes
    serialized: bytes

    @classmethod
    def issue(cls, key_id: int, key: PublicKey, trust_root: PrivateKey, rng: Rng) -> ServerCertificate:
        """Sign ``key`` under ``key_id`` with the trust root's private key."""
        if not 0 <= key_id <= _U32:
            raise ValueError("server key id must fit in 32 bits")
        certificate = pb.uint_field(1, key_id) + pb.bytes_field(2, key.to_bytes())
        signature = xeddsa.sign(trust_root, certificate, rng)
        serialized = pb.bytes_field(1, certificate) + pb.bytes_field(2, signature)
        return cls(key_id, key, certificate, signature, serialized)

    @classmethod
    def decode(cls, data: bytes) -> ServerCertificate:
        certificate, signature = _signed_pair(data)
        inner = pb.decode_fields(certificate)
        key_id = pb.get_uint(inner, 1)
        key_bytes = pb.get_bytes(inner, 2)
        assert key_id is not None and key_bytes is not None
        return cls(key_id, _public_key(key_bytes), certificate, signature, bytes(data))

    def encode(self) -> bytes:
        return self.serialized

    def is_valid(self, trust_root: PublicKey) -> bool:
        """True if not revoked and signed by ``trust_root``."""
        if self.key_id in REVOKED_SERVER_KEY_IDS:
            return False
        return _verifies(trust_root, self.certificate, self.signature)

    def validate(self, trust_root: PublicKey) -> None:
        if self.key_id in REVOKED_SERVER_KEY_IDS:
            raise InvalidCertificateError(f"server certificate key id {self.key_id:#x} is revoked")
        if not _verifies(trust_root, self.certificate, self.signature):
            raise InvalidCertificateError("server certificate is not signed by the trust root")

    def __repr__(self) -> str:
        return f"ServerCertificate(key_id={self.key_id:#x}, key={self.key!r})"


@dataclass(frozen=True, slots=True)
class SenderCertificate:
    """A sender's UUID, device and identity key, signed by a server key until ``expiration_ms``."""

    sender_uuid: str
    sender_e164: str | None
    sender_device_id: int
    expiration_ms: int
    identity_key: PublicKey
    signer: ServerCertificate | int
    """The embedded server certificate, or the id of one the validator already knows."""
    certificate: bytes
    """The signed inner bytes, exactly as received or issued."""
    signature: bytes
    serialized: bytes

    @classmethod
    def issue(
        cls,
        *,
        sender_uuid: str,
        sender_device_id: int,
        identity_key: PublicKey,
        expiration_ms: int,
        signer: ServerCertificate,
        signer_key: PrivateKey,
        rng: Rng,
        sender_e164: str | None = None,
        uuid_as_bytes: bool = False,
    ) -> SenderCertificate:
        """Sign a certificate for one device of ``sender_uuid`` with the server key.

        ``uuid_as_bytes`` writes the UUID as 16 raw bytes (field 7) instead of a string (field 6);
        libsignal reads both, and writes the string.
        """
        if not 1 <= sender_device_id <= MAX_DEVICE_ID:
            raise ValueError(f"device id must be 1..{MAX_DEVICE_ID}")
        if not 0 <= expiration_ms <= _U64:
            raise ValueError("expiration must fit in 64 bits")
        if signer_key.public_key() != signer.key:
            raise ValueError("signer_key does not match the server certificate's key")
        if uuid_as_bytes:
            parsed = uuid.UUID(sender_uuid)
            sender_uuid = str(parsed)
            uuid_field = pb.bytes_field(7, parsed.bytes)
        else:
            uuid_field = pb.bytes_field(6, sender_uuid.encode("utf-8"))
        # prost's order: plain fields by number, then the signer oneof, then the uuid oneof.
        certificate = (
            (pb.bytes_field(1, sender_e164.encode("utf-8")) if sender_e164 is not None else b"")
            + pb.uint_field(2, sender_device_id)
            + pb.fixed64_field(3, expiration_ms)
            + pb.bytes_field(4, identity_key.to_bytes())
            + pb.bytes_field(5, signer.serialized)
            + uuid_field
        )
        signature = xeddsa.sign(signer_key, certificate, rng)
        serialized = pb.bytes_field(1, certificate) + pb.bytes_field(2, signature)
        return cls(
            sender_uuid,
            sender_e164,
            sender_device_id,
            expiration_ms,
            identity_key,
            signer,
            certificate,
            signature,
            serialized,
        )

    @classmethod
    def decode(cls, data: bytes) -> SenderCertificate:
        certificate, signature = _signed_pair(data)
        inner = pb.decode_fields(certificate)

        device = pb.get_uint(inner, 2)
        assert device is not None
        if not 1 <= device <= MAX_DEVICE_ID:
            raise DecodeError(f"sender device id {device} out of range")
        expiration = pb.get_uint(inner, 3, bits=64)
        key_bytes = pb.get_bytes(inner, 4)
        assert expiration is not None and key_bytes is not None

        # Each oneof must be set exactly once; prost would silently keep the last member.
        if (5 in inner) == (8 in inner):
            raise DecodeError("sender certificate needs exactly one signer (field 5 or 8)")
        signer: ServerCertificate | int
        if 5 in inner:
            embedded = pb.get_bytes(inner, 5)
            assert embedded is not None
            signer = ServerCertificate.decode(embedded)
        else:
            known_id = pb.get_uint(inner, 8)
            assert known_id is not None
            signer = known_id

        if (6 in inner) == (7 in inner):
            raise DecodeError("sender certificate needs exactly one sender uuid (field 6 or 7)")
        if 6 in inner:
            raw = pb.get_bytes(inner, 6)
            assert raw is not None
            sender_uuid = _utf8(raw, "sender uuid")
        else:
            raw = pb.get_bytes(inner, 7)
            assert raw is not None
            if len(raw) != 16:
                raise DecodeError("sender uuid bytes must be 16 bytes")
            sender_uuid = str(uuid.UUID(bytes=bytes(raw)))

        e164_raw = pb.get_bytes(inner, 1, required=False)
        sender_e164 = None if e164_raw is None else _utf8(e164_raw, "sender e164")

        return cls(
            sender_uuid,
            sender_e164,
            device,
            expiration,
            _public_key(key_bytes),
            signer,
            certificate,
            signature,
            bytes(data),
        )

    def encode(self) -> bytes:
        return self.serialized

    def server_certificate(
        self, known_server_certificates: Mapping[int, ServerCertificate] | None = None
    ) -> ServerCertificate:
        """The signer: embedded, or looked up by id; an unknown id is InvalidCertificateError."""
        if isinstance(self.signer, ServerCertificate):
            return self.signer
        found = (known_server_certificates or {}).get(self.signer)
        if found is None:
            raise InvalidCertificateError(f"unknown server certificate id {self.signer:#x}")
        return found

    def validate(
        self,
        trust_root: PublicKey | Collection[PublicKey],
        now_ms: int,
        known_server_certificates: Mapping[int, ServerCertificate] | None = None,
    ) -> None:
        """Check the chain to a trust root, then the server's signature, then the expiry.

        With several trust roots (a rotation in progress), every root is tried, so timing does
        not tell which one matched. Valid through ``expiration_ms`` inclusive, as in libsignal.
        """
        roots = [trust_root] if isinstance(trust_root, PublicKey) else list(trust_root)
        server = self.server_certificate(known_server_certificates)
        if server.key_id in REVOKED_SERVER_KEY_IDS:
            raise InvalidCertificateError(f"server certificate key id {server.key_id:#x} is revoked")
        any_valid = False
        for root in roots:
            any_valid |= server.is_valid(root)
        if not any_valid:
            raise InvalidCertificateError("server certificate is not signed by a trust root")
        if not _verifies(server.key, self.certificate, self.signature):
            raise InvalidCertificateError("sender certificate is not signed by the server key")
        if now_ms > self.expiration_ms:
            raise InvalidCertificateError(f"sender certificate expired at {self.expiration_ms} ms")

    def __repr__(self) -> str:
        signer = self.signer.key_id if isinstance(self.signer, ServerCertificate) else self.signer
        return (
            f"SenderCertificate(sender={self.sender_uuid}.{self.sender_device_id}, "
            f"expiration_ms={self.expiration_ms}, server_key_id={signer:#x})"
        )
