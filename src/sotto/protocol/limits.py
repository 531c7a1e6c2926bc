"""The protocol's limits, each with the reason it exists. Values match libsignal 0.103."""

from __future__ import annotations

from typing import Final

MAX_FORWARD_JUMPS: Final = 25_000
"""A counter may run at most this far ahead of its chain: deriving more keys on an attacker's
say-so would be a cheap CPU denial of service. Unlimited for a session with oneself."""

MAX_MESSAGE_KEYS: Final = 2_000
"""Skipped message keys cached per receiver chain (oldest evicted): bounds the state size while
tolerating heavy reordering. An evicted key makes its message read as a duplicate."""

MAX_RECEIVER_CHAINS: Final = 5
"""Receiver chains kept per session, so late messages from earlier DH ratchet steps decrypt."""

ARCHIVED_STATES_MAX_LENGTH: Final = 40
"""Previous session states kept per peer, so messages sent on an older session still decrypt
after a reset or a simultaneous initiation."""

MAX_UNACKNOWLEDGED_SESSION_AGE_MS: Final = 30 * 24 * 3600 * 1000
"""An initiator's session that never got a reply is not used for sending after 30 days."""

MAX_SENDER_KEY_STATES: Final = 5
"""Sender-key states kept per (sender, distribution id)."""

SPQR_MAX_JUMP: Final = 25_000
"""SPQR chain: the same forward limit as the Double Ratchet."""

SPQR_MAX_OOO_KEYS: Final = 2_000
"""SPQR chain: out-of-order keys kept per direction."""

MAX_REGISTRATION_ID: Final = 0x3FFF
"""Registration ids are 14-bit (sealed sender v2 packs them in 14 bits)."""

MAX_DEVICE_ID: Final = 127
"""Device ids are 1..127 (one byte in sealed sender v2 and in the addresses field)."""
