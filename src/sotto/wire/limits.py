"""Sizes and counts both sides enforce, each with its reason."""

from __future__ import annotations

ID_LENGTH = 16
"""Account ids, mailbox ids and message ids: 128 random bits, never guessable or meaningful."""

DELIVERY_TOKEN_LENGTH = 32
"""A delivery token is a 256-bit secret; the server keeps only its SHA-256."""

DEVICE_SECRET_LENGTH = 32
"""A device's password is 256 random bits, so a fast hash is enough to store it."""

NONCE_LENGTH = 32
"""Drain challenge nonce."""

MAX_FRAME_BYTES = 131_072
"""A WebSocket frame: a 64 KiB payload in base64url plus JSON fits with room to spare."""

MAX_UNACKED_PER_CONNECTION = 256
"""Envelopes pushed before the server waits for acks: bounds memory per slow reader."""

MAX_SUBSCRIPTIONS_PER_CONNECTION = 1_000
"""Mailboxes one connection may drain."""

MAX_ACK_IDS_PER_FRAME = 1_000

MAX_ONE_TIME_KEYS_PER_UPLOAD = 100
"""Per kind (EC and Kyber) per upload, as Signal-Server allows."""

DEFAULT_MAILBOX_TTL_DAYS = 30
MAX_MAILBOX_TTL_DAYS = 90
DEFAULT_ENVELOPE_TTL_DAYS = 30

HTTP_AUTH_WINDOW_SECONDS = 300
"""Mailbox-signed HTTP requests are accepted within ±5 minutes of the server clock."""
