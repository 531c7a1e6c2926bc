"""Sender-key state: one chain per (sender, distribution id, chain id), kept in a record.

A :class:`SenderKeyState` is one sender chain: its id, the current chain key, the sender's
signing key (with the private half only on the sender's own device) and the seeds of skipped
messages. A :class:`SenderKeyRecord` holds the states one member knows for one
(sender, distribution id), newest first, at most ``MAX_SENDER_KEY_STATES``: a re-keyed sender
starts a new chain, and late messages on the previous chains still decrypt.

Both types are immutable; every change returns a new value, so a caller that keeps the old
one after a failure has lost nothing.

Stored form (``SenderKeyRecord.to_bytes``), big-endian, version 1::

    0x01 ‖ distribution uuid (16) ‖ state count (1) ‖ states
    state = message version (1) ‖ chain id (4) ‖ iteration (4) ‖ chain key (32)
            ‖ signing public key (33) ‖ 0x00 | 0x01 ‖ private key (32)
            ‖ skipped count (2) ‖ (iteration (4) ‖ seed (32)) × count, oldest first
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sotto.crypto.kdf import bytes_equal, hmac_sha256
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.errors import DecodeError, DuplicateMessageError, InvalidKeyError, MessageTooFarAheadError
from sotto.protocol.group.chain import SenderChainKey, SenderMessageKey
from sotto.protocol.group.messages import SENDER_KEY_VERSION
from sotto.protocol.labels import CHAIN_MESSAGE_SEED, CHAIN_NEXT
from sotto.protocol.limits import MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES

RECORD_FORMAT_VERSION = 1

_STATE_HEAD = struct.Struct(">BII32s33sB")
_SKIPPED_COUNT = struct.Struct(">H")
_SKIPPED_ENTRY = struct.Struct(">I32s")
_RECORD_HEAD = struct.Struct(">B16sB")
_PRIVATE_KEY_LENGTH = 32


@dataclass(frozen=True, slots=True)
class SenderKeyState:
    """One sender chain as one member sees it.

    ``skipped`` maps an iteration to its message-key seed, in insertion order (oldest first),
    so eviction drops the oldest; treat it as read-only.
    """

    chain_id: int
    chain_key: SenderChainKey
    signing_key: PublicKey
    # Left out of ==: it is determined by signing_key, and private keys do not compare.
    signing_private: PrivateKey | None = field(default=None, compare=False)
    skipped: Mapping[int, bytes] = field(default_factory=dict)
    message_version: int = SENDER_KEY_VERSION

    @property
    def iteration(self) -> int:
        return self.chain_key.iteration

    def advance(self) -> SenderKeyState:
        """The state after sending (or receiving in order) the current iteration."""
        return replace(self, chain_key=self.chain_key.next())

    def message_key(self, iteration: int) -> tuple[SenderKeyState, SenderMessageKey]:
        """The key for ``iteration`` and the state after using it (the input is left as it was).

        A past iteration must still have its seed cached, else it is a duplicate (or its key was
        evicted, which reads the same). A future one may be at most ``MAX_FORWARD_JUMPS`` ahead;
        the seeds passed over are cached, at most ``MAX_MESSAGE_KEYS`` of them.
        """
        current = self.chain_key.iteration
        if iteration < current:
            seed = self.skipped.get(iteration)
            if seed is None:
                raise DuplicateMessageError(current, iteration)
            remaining = dict(self.skipped)
            del remaining[iteration]
            return replace(self, skipped=remaining), SenderMessageKey(iteration, seed)
        if iteration - current > MAX_FORWARD_JUMPS:
            raise MessageTooFarAheadError(current, iteration)
        reached = self.chain_key
        skipped: Mapping[int, bytes] = self.skipped
        if iteration > current:
            reached, skipped = self._skip_to(iteration)
        return replace(self, chain_key=reached.next(), skipped=skipped), reached.message_key()

    def _skip_to(self, iteration: int) -> tuple[SenderChainKey, dict[int, bytes]]:
        chain_key = self.chain_key.chain_key
        skipped = dict(self.skipped)
        # A seed older than the newest MAX_MESSAGE_KEYS would be evicted at once: do not compute it.
        keep_from = iteration - MAX_MESSAGE_KEYS
        for i in range(self.chain_key.iteration, iteration):
            if i >= keep_from:
                skipped[i] = hmac_sha256(chain_key, CHAIN_MESSAGE_SEED)
            chain_key = hmac_sha256(chain_key, CHAIN_NEXT)
        while len(skipped) > MAX_MESSAGE_KEYS:
            del skipped[next(iter(skipped))]
        return SenderChainKey(iteration, chain_key), skipped

    def __repr__(self) -> str:
        return (
            f"SenderKeyState(chain_id={self.chain_id}, iteration={self.iteration}, "
            f"signing_key={self.signing_key!r}, can_sign={self.signing_private is not None}, "
            f"skipped={len(self.skipped)})"
        )

    # ------------------------------------------------------------------ stored form

    def to_bytes(self) -> bytes:
        private = self.signing_private
        out = bytearray(
            _STATE_HEAD.pack(
                self.message_version,
                self.chain_id,
                self.chain_key.iteration,
                self.chain_key.chain_key,
                self.signing_key.to_bytes(),
                0 if private is None else 1,
            )
        )
        if private is not None:
            out += private.to_bytes()
        out += _SKIPPED_COUNT.pack(len(self.skipped))
        for iteration, seed in self.skipped.items():
            out += _SKIPPED_ENTRY.pack(iteration, seed)
        return bytes(out)

    @classmethod
    def read_from(cls, data: bytes, pos: int) -> tuple[SenderKeyState, int]:
        """Parse one state at ``pos``; return it and the position after it. Raises DecodeError only."""
        version, chain_id, iteration, chain_key, public_bytes, has_private = _unpack(_STATE_HEAD, data, pos)
        pos += _STATE_HEAD.size
        if version != SENDER_KEY_VERSION:
            raise DecodeError(f"stored sender-key state has message version {version}")
        try:
            public = PublicKey.from_bytes(public_bytes)
        except InvalidKeyError as e:
            raise DecodeError(f"stored signing key: {e}") from None
        private: PrivateKey | None = None
        if has_private == 1:
            raw = data[pos : pos + _PRIVATE_KEY_LENGTH]
            if len(raw) != _PRIVATE_KEY_LENGTH:
                raise DecodeError("truncated signing private key")
            pos += _PRIVATE_KEY_LENGTH
            private = PrivateKey(raw)
            if not bytes_equal(private.public_key().raw, public.raw):
                raise DecodeError("stored signing private key does not match its public key")
        elif has_private != 0:
            raise DecodeError("bad private-key flag")
        (count,) = _unpack(_SKIPPED_COUNT, data, pos)
        pos += _SKIPPED_COUNT.size
        if count > MAX_MESSAGE_KEYS:
            raise DecodeError("too many skipped message keys")
        skipped: dict[int, bytes] = {}
        for _ in range(count):
            skipped_iteration, seed = _unpack(_SKIPPED_ENTRY, data, pos)
            pos += _SKIPPED_ENTRY.size
            if skipped_iteration >= iteration or skipped_iteration in skipped:
                raise DecodeError("skipped message key out of place")
            skipped[skipped_iteration] = seed
        state = cls(
            chain_id=chain_id,
            chain_key=SenderChainKey(iteration, chain_key),
            signing_key=public,
            signing_private=private,
            skipped=skipped,
            message_version=version,
        )
        return state, pos


def _unpack(layout: struct.Struct, data: bytes, pos: int) -> tuple[Any, ...]:
    if pos + layout.size > len(data):
        raise DecodeError("truncated sender-key record")
    return layout.unpack_from(data, pos)


@dataclass(frozen=True, slots=True)
class SenderKeyRecord:
    """The sender-key states one member holds for one (sender, distribution id), newest first."""

    distribution_id: uuid.UUID
    states: tuple[SenderKeyState, ...]

    def newest(self) -> SenderKeyState | None:
        return self.states[0] if self.states else None

    def state_for_chain(self, chain_id: int) -> tuple[int, SenderKeyState] | None:
        """The index and state for ``chain_id``, or None."""
        for index, state in enumerate(self.states):
            if state.chain_id == chain_id:
                return index, state
        return None

    def with_state_at(self, index: int, state: SenderKeyState) -> SenderKeyRecord:
        states = list(self.states)
        states[index] = state
        return replace(self, states=tuple(states))

    def with_new_state(self, state: SenderKeyState) -> SenderKeyRecord:
        """Add a chain as libsignal does when an SKDM arrives.

        A chain we already hold (same chain id and signing key) keeps its progress and moves to
        the front; a different key under that chain id replaces it; the oldest state beyond
        ``MAX_SENDER_KEY_STATES`` is dropped.
        """
        existing = next(
            (
                s
                for s in self.states
                if s.chain_id == state.chain_id and bytes_equal(s.signing_key.raw, state.signing_key.raw)
            ),
            None,
        )
        kept = [s for s in self.states if s.chain_id != state.chain_id]
        front = existing if existing is not None else state
        return replace(self, states=(front, *kept[: MAX_SENDER_KEY_STATES - 1]))

    def __repr__(self) -> str:
        chains = ", ".join(str(s.chain_id) for s in self.states)
        return f"SenderKeyRecord(distribution_id={self.distribution_id}, chains=[{chains}])"

    # ------------------------------------------------------------------ stored form

    def to_bytes(self) -> bytes:
        out = bytearray(
            _RECORD_HEAD.pack(RECORD_FORMAT_VERSION, self.distribution_id.bytes, len(self.states))
        )
        for state in self.states:
            out += state.to_bytes()
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyRecord:
        """Load a stored record; anything malformed is :class:`DecodeError`."""
        if not data:
            raise DecodeError("empty sender-key record")
        if data[0] != RECORD_FORMAT_VERSION:
            raise DecodeError(f"unknown sender-key record format {data[0]}")
        _, distribution, count = _unpack(_RECORD_HEAD, data, 0)
        if count > MAX_SENDER_KEY_STATES:
            raise DecodeError("too many sender-key states")
        pos = _RECORD_HEAD.size
        states: list[SenderKeyState] = []
        for _ in range(count):
            state, pos = SenderKeyState.read_from(data, pos)
            if any(s.chain_id == state.chain_id for s in states):
                raise DecodeError("two sender-key states with one chain id")
            states.append(state)
        if pos != len(data):
            raise DecodeError("trailing bytes after sender-key record")
        return cls(uuid.UUID(bytes=distribution), tuple(states))
