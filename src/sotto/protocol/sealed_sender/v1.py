"""Sealed sender v1: one recipient, the sender's identity hidden inside two encryption layers.

::

    0x11 ‖ protobuf {1 E.pub (33 B), 2 encrypted static, 3 encrypted message}

With an ephemeral key pair ``E`` and the identity keys ``IK_S`` (sender) and ``IK_R`` (recipient):

- ``chain ‖ ck1 ‖ mk1 = HKDF(salt = "UnidentifiedDelivery" ‖ IK_R ‖ E.pub, ikm = DH(E, IK_R), 96)``;
  ``encrypted static = CTR(ck1, IK_S.pub) ‖ HMAC(mk1, ·)[:10]`` hides who sends;
- ``_ ‖ ck2 ‖ mk2 = HKDF(salt = chain ‖ encrypted static, ikm = DH(IK_S, IK_R), 96)``;
  ``encrypted message = CTR(ck2, USMC) ‖ HMAC(mk2, ·)[:10]`` proves the sender holds IK_S.

The recipient then insists that the certificate inside names that same IK_S; otherwise any
holder of a valid certificate could pose as its subject. CTR is AES-256 from an all-zero counter
block; the MAC covers the ciphertext only and is cut to 10 bytes (both as libsignal does).
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto.cipher import aes256_ctr_zero
from sotto.crypto.dh import agree
from sotto.crypto.kdf import bytes_equal, hkdf_sha256, hmac_sha256
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError, InvalidCertificateError, InvalidKeyError, SottoError
from sotto.protocol import protobuf as pb
from sotto.protocol.labels import SEALED_SENDER_V1_SALT_PREFIX
from sotto.protocol.sealed_sender.content import UnidentifiedSenderMessageContent

VERSION = 0x11
"""Written by :func:`seal_v1`. On reading, a major version (high nibble) of 0 or 1 is v1."""
MAJOR_VERSIONS = frozenset({0, 1})
MAC_LENGTH = 10
_HKDF_LENGTH = 96


@dataclass(frozen=True, slots=True)
class SealedSenderV1Message:
    """The v1 envelope before any decryption."""

    version: int
    ephemeral_public: PublicKey
    encrypted_static: bytes
    encrypted_message: bytes

    @classmethod
    def decode(cls, data: bytes) -> SealedSenderV1Message:
        """Parse the envelope; raises DecodeError only."""
        if not data:
            raise DecodeError("empty sealed sender message")
        if data[0] >> 4 not in MAJOR_VERSIONS:
            raise DecodeError(f"not a sealed sender v1 message (version byte {data[0]:#04x})")
        fields = pb.decode_fields(data[1:])
        ephemeral = pb.get_bytes(fields, 1)
        encrypted_static = pb.get_bytes(fields, 2)
        encrypted_message = pb.get_bytes(fields, 3)
        assert ephemeral is not None and encrypted_static is not None and encrypted_message is not None
        try:
            ephemeral_public = PublicKey.from_bytes(ephemeral)
        except InvalidKeyError as e:
            raise DecodeError(f"bad ephemeral key: {e}") from None
        return cls(data[0], ephemeral_public, encrypted_static, encrypted_message)

    def encode(self) -> bytes:
        return (
            bytes((self.version,))
            + pb.bytes_field(1, self.ephemeral_public.to_bytes())
            + pb.bytes_field(2, self.encrypted_static)
            + pb.bytes_field(3, self.encrypted_message)
        )

    def __repr__(self) -> str:
        return (
            f"SealedSenderV1Message(version={self.version:#04x}, "
            f"encrypted_message=<{len(self.encrypted_message)} bytes>)"
        )


def _ctr_hmac_encrypt(cipher_key: bytes, mac_key: bytes, plaintext: bytes) -> bytes:
    ciphertext = aes256_ctr_zero(cipher_key, plaintext)
    return ciphertext + hmac_sha256(mac_key, ciphertext)[:MAC_LENGTH]


def _ctr_hmac_decrypt(cipher_key: bytes, mac_key: bytes, data: bytes) -> bytes:
    if len(data) < MAC_LENGTH:
        raise DecryptionError
    ciphertext, their_mac = data[:-MAC_LENGTH], data[-MAC_LENGTH:]
    if not bytes_equal(hmac_sha256(mac_key, ciphertext)[:MAC_LENGTH], their_mac):
        raise DecryptionError
    return aes256_ctr_zero(cipher_key, ciphertext)


def _ephemeral_keys(shared: bytes, recipient: PublicKey, ephemeral: PublicKey) -> tuple[bytes, bytes, bytes]:
    salt = SEALED_SENDER_V1_SALT_PREFIX + recipient.to_bytes() + ephemeral.to_bytes()
    okm = hkdf_sha256(shared, _HKDF_LENGTH, b"", salt=salt)
    return okm[:32], okm[32:64], okm[64:]


def _static_keys(shared: bytes, chain_key: bytes, encrypted_static: bytes) -> tuple[bytes, bytes]:
    # 96 bytes derived and the first 32 dropped, mirroring the ephemeral derivation.
    okm = hkdf_sha256(shared, _HKDF_LENGTH, b"", salt=chain_key + encrypted_static)
    return okm[32:64], okm[64:]


def seal_v1(
    sender_identity: KeyPair,
    recipient_identity: PublicKey,
    content: UnidentifiedSenderMessageContent,
    rng: Rng,
) -> bytes:
    """Encrypt ``content`` to ``recipient_identity`` without revealing the sender."""
    ephemeral = KeyPair.generate(rng)
    chain_key, cipher_key, mac_key = _ephemeral_keys(
        agree(ephemeral.private, recipient_identity), recipient_identity, ephemeral.public
    )
    encrypted_static = _ctr_hmac_encrypt(cipher_key, mac_key, sender_identity.public.to_bytes())
    static_cipher, static_mac = _static_keys(
        agree(sender_identity.private, recipient_identity), chain_key, encrypted_static
    )
    encrypted_message = _ctr_hmac_encrypt(static_cipher, static_mac, content.serialized)
    return SealedSenderV1Message(VERSION, ephemeral.public, encrypted_static, encrypted_message).encode()


def open_v1(our_identity: KeyPair, data: bytes) -> tuple[UnidentifiedSenderMessageContent, PublicKey]:
    """Decrypt a v1 message addressed to ``our_identity``; return the USMC and the sender's key.

    Any failure to reach an authenticated, well-formed USMC is :class:`DecryptionError`. A USMC
    whose certificate names a key other than the one that authenticated the message is
    :class:`InvalidCertificateError`. The certificate chain itself is not checked here.
    """
    try:
        message = SealedSenderV1Message.decode(data)
        chain_key, cipher_key, mac_key = _ephemeral_keys(
            agree(our_identity.private, message.ephemeral_public),
            our_identity.public,
            message.ephemeral_public,
        )
        static_bytes = _ctr_hmac_decrypt(cipher_key, mac_key, message.encrypted_static)
        sender_key = PublicKey.from_bytes(static_bytes)
        static_cipher, static_mac = _static_keys(
            agree(our_identity.private, sender_key), chain_key, message.encrypted_static
        )
        content = UnidentifiedSenderMessageContent.decode(
            _ctr_hmac_decrypt(static_cipher, static_mac, message.encrypted_message)
        )
    except DecryptionError:
        raise
    except SottoError:  # framing, bad keys, low-order points, a malformed USMC
        raise DecryptionError from None
    if not bytes_equal(content.sender_certificate.identity_key.to_bytes(), static_bytes):
        raise InvalidCertificateError("sender certificate names another identity key")
    return content, sender_key
