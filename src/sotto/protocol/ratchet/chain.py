"""The symmetric-key ratchet: a chain key CK_i yields message key seed i and CK_{i+1}.

Double Ratchet spec §2.2 as libsignal does it: ``seed_i = HMAC-SHA256(CK_i, 0x01)``,
``CK_{i+1} = HMAC-SHA256(CK_i, 0x02)``. The message keys come from
``HKDF-SHA256(ikm = seed_i, salt = SPQR message key, info = "WhisperMessageKeys")``, 80 bytes:
AES-256 key ‖ HMAC-SHA256 key ‖ CBC IV. Mixing in the SPQR key is what makes this the
"triple ratchet".
"""

from __future__ import annotations

from typing import Final, NamedTuple

from sotto.crypto.kdf import hkdf_sha256, hmac_sha256, hmac_sha256_pair
from sotto.protocol.labels import CHAIN_MESSAGE_SEED, CHAIN_NEXT, MESSAGE_KEYS_INFO
from sotto.protocol.values import new_tuple

KEY_LENGTH: Final = 32
_MESSAGE_KEYS_LENGTH: Final = 80


class ChainKey(NamedTuple):
    """``CK_i``: a 32-byte chain key and the index of the message it will key next.

    A ``NamedTuple`` (immutable, and cheaper to build than a frozen dataclass): each message
    sent or received builds one. Its ``index`` field hides the tuple's ``index`` method,
    which nothing here calls.
    """

    key: bytes
    index: int  # type: ignore[assignment]

    def message_key_seed(self) -> bytes:
        """The seed for message ``index`` (kept as-is for skipped messages)."""
        return hmac_sha256(self.key, CHAIN_MESSAGE_SEED)

    def next(self) -> ChainKey:
        return ChainKey(hmac_sha256(self.key, CHAIN_NEXT), self.index + 1)

    def step(self) -> tuple[bytes, ChainKey]:
        """``(seed_i, CK_{i+1})``: what each message sent or received takes from the chain.

        Both HMACs share one keyed state, which is cheaper than :meth:`message_key_seed`
        followed by :meth:`next`.
        """
        seed, next_key = hmac_sha256_pair(self.key, CHAIN_MESSAGE_SEED, CHAIN_NEXT)
        return seed, new_tuple(ChainKey, (next_key, self.index + 1))

    def message_keys(self, spqr_key: bytes | None) -> MessageKeys:
        return MessageKeys.derive(self.message_key_seed(), self.index, spqr_key)

    def __repr__(self) -> str:
        return f"ChainKey(index={self.index}, key=<secret>)"


def derive_message_keys(seed: bytes, spqr_key: bytes | None) -> tuple[bytes, bytes, bytes]:
    """``(AES-256 key, HMAC-SHA256 key, CBC IV)`` for one message, as :class:`MessageKeys` holds them.

    The ratchet calls this directly, unpacking the three at once: a message's keys then live
    only in local variables, and no object is built per message for them.
    """
    okm = hkdf_sha256(seed, _MESSAGE_KEYS_LENGTH, MESSAGE_KEYS_INFO, spqr_key)
    return okm[:32], okm[32:64], okm[64:80]


class MessageKeys(NamedTuple):
    """The keys for one message: AES-256-CBC key and IV, HMAC-SHA256 key.

    A ``NamedTuple`` (immutable, cheaper to build than a frozen dataclass).
    """

    cipher_key: bytes
    mac_key: bytes
    iv: bytes
    counter: int

    @classmethod
    def derive(cls, seed: bytes, counter: int, spqr_key: bytes | None) -> MessageKeys:
        cipher_key, mac_key, iv = derive_message_keys(seed, spqr_key)
        return cls(cipher_key, mac_key, iv, counter)

    def __repr__(self) -> str:
        return f"MessageKeys(counter={self.counter}, <secret>)"
