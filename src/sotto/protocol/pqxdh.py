"""PQXDH: the handshake that starts a session (libsignal-wire §4; PQXDH spec).

Initiator A, responder B. The input key material is ``0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS``:
DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B) when a
one-time prekey is used, SS = the Kyber1024 secret for B's signed Kyber prekey. HKDF-SHA256
(no salt, info ``WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024``) gives 96 bytes: root key ‖
chain key ‖ SPQR key. Keeping these terms and their order is what the security proofs assume.

Each side returns exactly two things: the values that travel on the wire and the secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto import kem
from sotto.crypto.dh import agree, is_canonical
from sotto.crypto.kdf import hkdf_sha256
from sotto.crypto.kem import KemKeyPair
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecryptionError, InvalidKeyAgreementError, InvalidKeyError, InvalidPreKeyBundleError
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.labels import PQXDH_INFO, PQXDH_PREFIX


@dataclass(frozen=True, slots=True, repr=False)
class HandshakeSecret:
    """The 96 derived bytes, split: initial root key, initial chain key, SPQR chain seed."""

    root_key: bytes
    chain_key: bytes
    pqr_key: bytes

    @classmethod
    def derive(cls, secret_input: bytes) -> HandshakeSecret:
        okm = hkdf_sha256(secret_input, 96, PQXDH_INFO)
        return cls(okm[:32], okm[32:64], okm[64:96])

    def __repr__(self) -> str:
        return "HandshakeSecret(<secret>)"


@dataclass(frozen=True, slots=True)
class InitiatorMessage:
    """What the initiator sends so the responder can run PQXDH: its base key and the KEM ciphertext."""

    base_key: PublicKey
    kyber_ciphertext: bytes


def initiate(
    bundle: PreKeyBundle, our_identity: KeyPair, rng: Rng
) -> tuple[InitiatorMessage, HandshakeSecret]:
    """Run A's side against a bundle (the caller has validated it).

    Raises InvalidPreKeyBundleError if a bundle key is unusable (an all-zero agreement, an
    invalid Kyber key).
    """
    base_key = KeyPair.generate(rng)
    try:
        parts = [
            PQXDH_PREFIX,
            agree(our_identity.private, bundle.signed_pre_key_public),
            agree(base_key.private, bundle.identity_key),
            agree(base_key.private, bundle.signed_pre_key_public),
        ]
        if bundle.pre_key_public is not None:
            parts.append(agree(base_key.private, bundle.pre_key_public))
        kyber_secret, kyber_ciphertext = kem.encapsulate(bundle.kyber_pre_key_public)
    except (InvalidKeyAgreementError, InvalidKeyError) as exc:
        raise InvalidPreKeyBundleError(f"unusable bundle key: {exc}") from None
    parts.append(kyber_secret)
    return InitiatorMessage(base_key.public, kyber_ciphertext), HandshakeSecret.derive(b"".join(parts))


def respond(
    *,
    our_identity: KeyPair,
    our_signed_pre_key: KeyPair,
    our_one_time_pre_key: KeyPair | None,
    our_kyber_pre_key: KemKeyPair,
    their_identity: PublicKey,
    their_base_key: PublicKey,
    kyber_ciphertext: bytes,
) -> HandshakeSecret:
    """Run B's side. A non-canonical base key or any failing agreement is DecryptionError."""
    if not is_canonical(their_base_key):
        raise DecryptionError("incoming base key is invalid")
    try:
        parts = [
            PQXDH_PREFIX,
            agree(our_signed_pre_key.private, their_identity),
            agree(our_identity.private, their_base_key),
            agree(our_signed_pre_key.private, their_base_key),
        ]
        if our_one_time_pre_key is not None:
            parts.append(agree(our_one_time_pre_key.private, their_base_key))
        parts.append(our_kyber_pre_key.decapsulate(kyber_ciphertext))
    except (InvalidKeyAgreementError, InvalidKeyError):
        raise DecryptionError from None
    return HandshakeSecret.derive(b"".join(parts))
