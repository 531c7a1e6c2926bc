"""Envelope sizes on the wire, so a size does not tell a contact request from a text.

Every envelope is sealed and padded to a bucket (:mod:`sotto.wire.padding`): texts, receipts and
covers fit 1,024 bytes, but a contact request (a PreKey message carrying an ML-KEM-1024
ciphertext, sealed) needs 4,096, and nothing else does. So its bucket alone would show the relay
which envelope starts a contact, and when.

Just before an envelope leaves, :class:`EnvelopeSizes` pads it further with zeros
(:func:`widen`). The padding already ends ``0x80 0x00…``, so more zeros are more of the same
padding: the receiver strips them with the rest (:func:`sotto.wire.padding.unpad`), and nothing
inside the seal (the libsignal message, its MAC) changes.

* **Cadence mode**: every envelope goes out at :data:`CONTACT_REQUEST_SIZE` (4,096 bytes):
  covers, texts, receipts and contact requests of a tick all have the same length.
* **Default mode**: an envelope smaller than that is widened to it with probability
  :data:`DEFAULT_WIDEN_PROBABILITY` (one half), so contact requests share their bucket with
  about as many envelopes of every other kind as stay in theirs. The coin is a keyed hash of the
  envelope's id under a key drawn when the client starts: a retry of the same envelope keeps its
  size (the relay would see one id at two sizes otherwise), and the relay cannot compute it. A
  retry after a restart draws again.

Envelopes larger than :data:`CONTACT_REQUEST_SIZE` (long texts, groups with long names) keep
their own bucket in both modes.
"""

from __future__ import annotations

import hashlib
from typing import Final

from sotto.crypto.random import Rng
from sotto.wire.padding import is_bucket

CONTACT_REQUEST_SIZE: Final = 4096
"""The bucket of the largest contact request (a 256-byte name, a 512-byte relay address): the
size every cadence-mode envelope goes out at."""

DEFAULT_WIDEN_PROBABILITY: Final = 0.5
"""Default mode: the chance that an envelope smaller than a contact request is sent at its size."""

_COIN_BYTES = 8


class NotPaddedError(ValueError):
    """The payload is not a padded envelope (not a bucket long, or no padding marker at its end)."""


def widen(payload: bytes, size: int) -> bytes:
    """``payload`` (a padded envelope) padded on to ``size`` bytes; as it is if already that long."""
    if not is_bucket(size):
        raise ValueError(f"{size} is not a padding bucket")
    if not is_bucket(len(payload)) or payload.rstrip(b"\x00")[-1:] != b"\x80":
        raise NotPaddedError("not a padded envelope")
    if len(payload) >= size:
        return payload
    return payload + bytes(size - len(payload))


class EnvelopeSizes:
    """The size each envelope goes out at (module docstring)."""

    def __init__(self, *, cadence: bool, rng: Rng, widen_probability: float = DEFAULT_WIDEN_PROBABILITY):
        if not 0.0 <= widen_probability <= 1.0:
            raise ValueError("widen_probability must be within [0, 1]")
        self.cadence = cadence
        self._threshold = round(widen_probability * (1 << (8 * _COIN_BYTES)))
        self._rng = rng
        self._key: bytes | None = None
        """Drawn at the first coin (cadence mode never needs one)."""

    def __repr__(self) -> str:
        return f"EnvelopeSizes(cadence={self.cadence})"

    def for_wire(self, message_id: bytes, payload: bytes) -> bytes:
        """The payload as it goes out: widened as the mode asks."""
        if self.cadence or len(payload) >= CONTACT_REQUEST_SIZE or self._widens(message_id):
            return widen(payload, CONTACT_REQUEST_SIZE)
        return payload

    def _widens(self, message_id: bytes) -> bool:
        if self._key is None:
            self._key = self._rng(32)
        coin = hashlib.blake2b(message_id, key=self._key, digest_size=_COIN_BYTES, person=b"sotto-size")
        return int.from_bytes(coin.digest()) < self._threshold


__all__ = ["CONTACT_REQUEST_SIZE", "DEFAULT_WIDEN_PROBABILITY", "EnvelopeSizes", "NotPaddedError", "widen"]
