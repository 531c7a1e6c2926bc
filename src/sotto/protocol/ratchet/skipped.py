"""Message-key seeds kept for messages that have not arrived yet (``MKSKIPPED``).

libsignal keeps at most :data:`~sotto.protocol.limits.MAX_MESSAGE_KEYS` per receiver chain and
evicts the oldest one stored; a message whose seed was evicted reads as a duplicate. The seed
(not the derived keys) is stored because the SPQR key that salts the message keys is only known
when the message arrives.

Instances are immutable: every change returns a new object, so a failed decryption can simply
drop the new one. Only a chain that is touched gets copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from sotto.protocol.limits import MAX_MESSAGE_KEYS


class SkippedKeys(Mapping[int, bytes]):
    """Counter → message-key seed, in insertion order (oldest first); the repr hides the seeds."""

    __slots__ = ("_seeds",)

    def __init__(self, seeds: Mapping[int, bytes] | None = None) -> None:
        self._seeds: dict[int, bytes] = dict(seeds) if seeds else {}

    def __getitem__(self, counter: int) -> bytes:
        return self._seeds[counter]

    def __iter__(self) -> Iterator[int]:
        return iter(self._seeds)

    def __len__(self) -> int:
        return len(self._seeds)

    def __contains__(self, counter: object) -> bool:
        return counter in self._seeds

    def with_added(self, items: Iterable[tuple[int, bytes]], limit: int = MAX_MESSAGE_KEYS) -> SkippedKeys:
        """A copy with ``items`` appended, the oldest evicted beyond ``limit``."""
        seeds = dict(self._seeds)
        for counter, seed in items:
            seeds[counter] = seed
        excess = len(seeds) - limit
        if excess > 0:
            for counter in list(seeds)[:excess]:
                del seeds[counter]
        return SkippedKeys._adopt(seeds)

    def without(self, counter: int) -> SkippedKeys:
        seeds = dict(self._seeds)
        del seeds[counter]
        return SkippedKeys._adopt(seeds)

    @classmethod
    def _adopt(cls, seeds: dict[int, bytes]) -> SkippedKeys:
        new = cls.__new__(cls)
        new._seeds = seeds
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SkippedKeys) and self._seeds == other._seeds

    def __hash__(self) -> int:
        return hash(tuple(self._seeds))

    def __repr__(self) -> str:
        return f"SkippedKeys(count={len(self._seeds)})"


EMPTY_SKIPPED_KEYS = SkippedKeys()
