"""Every KDF info string and domain-separation label the protocol uses, each named once.

Spelling matters: these bytes are the wire contract with libsignal 0.103.
"""

from __future__ import annotations

from typing import Final

PQXDH_INFO: Final = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
"""PQXDH's HKDF info; output 96 bytes = root key ‖ chain key ‖ SPQR auth key."""

PQXDH_PREFIX: Final = b"\xff" * 32
"""Prepended to the DH outputs before HKDF in PQXDH (the curve's discontinuity bytes)."""

ROOT_INFO: Final = b"WhisperRatchet"
"""Root-key KDF of the DH ratchet: salt = root key, ikm = DH output, 64 bytes out."""

MESSAGE_KEYS_INFO: Final = b"WhisperMessageKeys"
"""Message keys from a message-key seed: 80 bytes = AES key ‖ HMAC key ‖ IV."""

CHAIN_MESSAGE_SEED: Final = b"\x01"
"""HMAC input that turns a chain key into a message-key seed."""

CHAIN_NEXT: Final = b"\x02"
"""HMAC input that advances a chain key."""

SPQR_CHAIN_START: Final = b"Signal PQ Ratchet V1 Chain  Start"
"""SPQR chain start (note the two spaces): 96 bytes = next root ‖ A→B seed ‖ B→A seed."""

SPQR_CHAIN_NEXT: Final = b"Signal PQ Ratchet V1 Chain Next"
"""SPQR chain step, info = 4-byte big-endian index ‖ this label; 64 bytes = next seed ‖ key."""

SPQR_CHAIN_ADD_EPOCH: Final = b"Signal PQ Ratchet V1 Chain Add Epoch"
"""SPQR epoch addition (the ML-KEM braid; unused in chain-only mode)."""

SEALED_SENDER_V1_SALT_PREFIX: Final = b"UnidentifiedDelivery"
"""Sealed sender v1 ephemeral salt prefix: ‖ recipient identity ‖ ephemeral public."""

SEALED_SENDER_V2_R: Final = b"Sealed Sender v2: r (2023-08)"
SEALED_SENDER_V2_K: Final = b"Sealed Sender v2: K"
SEALED_SENDER_V2_DH: Final = b"Sealed Sender v2: DH"
SEALED_SENDER_V2_DH_SENDER: Final = b"Sealed Sender v2: DH-sender"

SENDER_KEY_INFO: Final = b"WhisperGroup"
"""Sender-key message keys: 48 bytes = IV ‖ AES-256 key."""
