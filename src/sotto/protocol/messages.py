"""The 1:1 protocol's wire messages: SignalMessage (type 2) and PreKeySignalMessage (type 3)."""

from __future__ import annotations

import enum


class CiphertextMessageType(enum.IntEnum):
    """libsignal's ``CiphertextMessageType``: the number an envelope carries to say what is inside."""

    WHISPER = 2
    PREKEY = 3
    SENDER_KEY = 7
    PLAINTEXT = 8
