"""The Diffie-Hellman ratchet's root key: ``(RK', CK) = KDF_RK(RK, DH(ours, theirs))``.

``KDF_RK`` is HKDF-SHA256 with the current root key as salt, the X25519 output as input key
material and info ``WhisperRatchet``; 64 bytes out: the next root key ‖ the new chain key.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto.dh import agree
from sotto.crypto.kdf import hkdf_sha256
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.protocol.labels import ROOT_INFO
from sotto.protocol.ratchet.chain import ChainKey


@dataclass(frozen=True, slots=True, repr=False)
class RootKey:
    """``RK``: 32 bytes that only ever move forward through :meth:`create_chain`."""

    key: bytes

    def create_chain(
        self, their_ratchet_key: PublicKey, our_ratchet_key: PrivateKey
    ) -> tuple[RootKey, ChainKey]:
        """One KDF_RK step; raises InvalidKeyAgreementError on an all-zero DH output."""
        okm = hkdf_sha256(agree(our_ratchet_key, their_ratchet_key), 64, ROOT_INFO, salt=self.key)
        return RootKey(okm[:32]), ChainKey(okm[32:], 0)

    def __repr__(self) -> str:
        return "RootKey(<secret>)"
