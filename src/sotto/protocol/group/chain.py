"""The sender chain: a hash chain of keys, one per group message, as libsignal derives it.

From a chain key ``CK_i`` at iteration ``i``::

    seed_i   = HMAC-SHA256(CK_i, 0x01)
    CK_i+1   = HMAC-SHA256(CK_i, 0x02)
    IV_i ‖ K_i = HKDF-SHA256(ikm = seed_i, no salt, info "WhisperGroup", 48 bytes)  (16 ‖ 32)

Only the seed is stored for a skipped message; the IV and key are derived when it is used.
There is no ratchet: whoever holds ``CK_i`` reads every later message of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto.kdf import hkdf_sha256, hmac_sha256
from sotto.errors import InvalidSessionStateError
from sotto.protocol.labels import CHAIN_MESSAGE_SEED, CHAIN_NEXT, SENDER_KEY_INFO

MAX_ITERATION = 0xFFFF_FFFF
"""Iterations travel as uint32; a chain that reaches the top cannot go on."""

_IV_LENGTH = 16
_KEY_MATERIAL_LENGTH = 48


@dataclass(frozen=True, slots=True)
class SenderMessageKey:
    """The key for one message: ``iteration`` and the seed its IV and AES key come from."""

    iteration: int
    seed: bytes

    def iv_and_cipher_key(self) -> tuple[bytes, bytes]:
        okm = hkdf_sha256(self.seed, _KEY_MATERIAL_LENGTH, SENDER_KEY_INFO)
        return okm[:_IV_LENGTH], okm[_IV_LENGTH:]

    def __repr__(self) -> str:
        return f"SenderMessageKey(iteration={self.iteration}, seed=<secret>)"


@dataclass(frozen=True, slots=True)
class SenderChainKey:
    """``CK_i``: the chain key at ``iteration``, which yields message ``i``'s key and ``CK_i+1``."""

    iteration: int
    chain_key: bytes

    def message_key(self) -> SenderMessageKey:
        return SenderMessageKey(self.iteration, hmac_sha256(self.chain_key, CHAIN_MESSAGE_SEED))

    def next(self) -> SenderChainKey:
        if self.iteration >= MAX_ITERATION:
            raise InvalidSessionStateError("sender chain is exhausted")
        return SenderChainKey(self.iteration + 1, hmac_sha256(self.chain_key, CHAIN_NEXT))

    def __repr__(self) -> str:
        return f"SenderChainKey(iteration={self.iteration}, chain_key=<secret>)"
