"""SPQR (the sparse post-quantum ratchet) in chain-only mode: its symmetric chain and framing.

libsignal 0.103 requires an SPQR V1 payload in every SignalMessage and salts every message key
with the SPQR key. This module implements the part of SPQR that interoperates without the
ML-KEM braid (see libsignal-wire.md §1.3, §1.4):

* chain start: ``HKDF(salt = 0³², ikm = PQXDH's third secret, "Signal PQ Ratchet V1 Chain  Start")``
  → next root ‖ A→B seed ‖ B→A seed (the initiator "A" sends on A→B);
* chain next: ``HKDF(salt = 0³², ikm = seed, BE32(k) ‖ "Signal PQ Ratchet V1 Chain Next")``
  → next seed ‖ key for index k (k = 1, 2, …);
* framing: ``0x01`` ‖ varint epoch ‖ varint index ‖ type byte [‖ varint chunk index ‖ 32 bytes];
  trailing bytes are ignored.

We never start a KEM epoch: we send type None at epoch 1 and ignore the chunks a libsignal peer
sends, so both sides stay at epoch 1 (whose keys come from epoch 0 of the chain) forever. There
is no post-quantum post-compromise healing in this mode.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from sotto.crypto.kdf import hkdf_sha256
from sotto.errors import DecodeError, DecryptionError
from sotto.protocol.labels import SPQR_CHAIN_NEXT, SPQR_CHAIN_START
from sotto.protocol.limits import SPQR_MAX_JUMP, SPQR_MAX_OOO_KEYS
from sotto.protocol.protobuf import encode_varint, read_varint
from sotto.protocol.values import new_tuple

SPQR_V1: Final = 0x01
CHAIN_ONLY_EPOCH: Final = 1
"""The epoch every chain-only message carries; its keys come from chain epoch 0."""

_CHUNK_LENGTH: Final = 32
_MAX_CHUNK_INDEX: Final = 0xFFFF
_MAX_INDEX: Final = 0xFFFF_FFFF
UNLIMITED_JUMP: Final = _MAX_INDEX
_TRIM_SIZE: Final = SPQR_MAX_OOO_KEYS * 11 // 10 + 1
"""SPQR garbage-collects its key history once it holds this many keys."""


class SpqrMessageType(enum.IntEnum):
    NONE = 0
    HDR = 1
    EK = 2
    EK_CT1_ACK = 3
    CT1_ACK = 4
    CT1 = 5
    CT2 = 6


_NONE_PREFIX: Final = bytes((SPQR_V1, CHAIN_ONLY_EPOCH))
_NONE_TYPE: Final = bytes((SpqrMessageType.NONE,))
"""A chain-only payload is ``0x01 0x01`` ‖ varint index ‖ ``0x00``."""

_CHUNKED_TYPES: Final = frozenset(
    {
        SpqrMessageType.HDR,
        SpqrMessageType.EK,
        SpqrMessageType.EK_CT1_ACK,
        SpqrMessageType.CT1,
        SpqrMessageType.CT2,
    }
)


@dataclass(frozen=True, slots=True)
class SpqrMessage:
    """A decoded V1 SPQR message; ``chunk`` is (chunk index, 32 bytes) for the chunk-carrying types."""

    epoch: int
    index: int
    type: SpqrMessageType
    chunk: tuple[int, bytes] | None = None

    def encode(self) -> bytes:
        out = bytes((SPQR_V1,)) + encode_varint(self.epoch) + encode_varint(self.index) + bytes((self.type,))
        if self.chunk is not None:
            out += encode_varint(self.chunk[0]) + self.chunk[1]
        return out

    @classmethod
    def decode(cls, data: bytes) -> SpqrMessage:
        """Parse a V1 message (raises DecodeError and nothing else); trailing bytes are allowed."""
        if not data or data[0] != SPQR_V1:
            raise DecodeError("not an SPQR V1 message")
        epoch, pos = read_varint(data, 1)
        if epoch == 0:
            raise DecodeError("SPQR epoch 0")
        index, pos = read_varint(data, pos)
        if index > _MAX_INDEX:
            raise DecodeError("SPQR index exceeds 32 bits")
        if pos >= len(data):
            raise DecodeError("SPQR message has no type")
        try:
            message_type = SpqrMessageType(data[pos])
        except ValueError:
            raise DecodeError(f"unknown SPQR message type {data[pos]}") from None
        pos += 1
        chunk = None
        if message_type in _CHUNKED_TYPES:
            chunk_index, pos = read_varint(data, pos)
            if chunk_index > _MAX_CHUNK_INDEX or pos + _CHUNK_LENGTH > len(data):
                raise DecodeError("bad SPQR chunk")
            chunk = (chunk_index, data[pos : pos + _CHUNK_LENGTH])
        return cls(epoch, index, message_type, chunk)


def _next_key(seed: bytes, index: int) -> tuple[bytes, bytes]:
    """``(next seed, key)`` for chain index ``index``."""
    # No salt is HKDF's 32 zero bytes (RFC 5869), which SPQR specifies; cryptography is quicker
    # with None than with the explicit bytes.
    okm = hkdf_sha256(seed, 64, index.to_bytes(4, "big") + SPQR_CHAIN_NEXT)
    return okm[:32], okm[32:]


def _chain_only_index(payload: bytes) -> int | None:
    """The index of a well-formed chain-only payload (type None at epoch 1), else None.

    What every Sotto message and most libsignal ones carry, read without building a
    :class:`SpqrMessage`; anything else (or anything malformed) is left to :func:`_index_of_any`.
    """
    if not payload.startswith(_NONE_PREFIX):
        return None
    try:
        index, pos = read_varint(payload, len(_NONE_PREFIX))
    except DecodeError:
        return None
    if index > _MAX_INDEX or payload[pos : pos + 1] != _NONE_TYPE:
        return None
    return index


def _index_of_any(payload: bytes) -> int | None:
    """The chain index a V1 payload of any type names; None for a newer version (to be ignored)."""
    if not payload:
        raise DecryptionError  # V0 (no SPQR): libsignal refuses the downgrade as well
    if payload[0] != SPQR_V1:
        if payload[0] == 0:
            raise DecryptionError
        return None
    try:
        message = SpqrMessage.decode(payload)
    except DecodeError:
        raise DecryptionError from None
    if message.epoch != CHAIN_ONLY_EPOCH:
        raise DecryptionError
    # Chunks of an ML-KEM epoch (Hdr, Ek, ...) are ignored: chain-only mode never answers them.
    return message.index


class SpqrChain(NamedTuple):
    """Both directions of SPQR's epoch-0 chain, as one side of a session sees them.

    ``recv_keys`` holds the keys for indices skipped over (at most 2,000 behind ``recv_index``
    are usable, as in SPQR); it is never mutated, only replaced. A ``NamedTuple``, like
    :class:`~sotto.protocol.ratchet.state.SessionState`: immutable and cheap to build per message.
    """

    send_seed: bytes
    send_index: int
    recv_seed: bytes
    recv_index: int
    recv_keys: Mapping[int, bytes]
    max_jump: int

    @classmethod
    def start(cls, pqr_key: bytes, *, initiator: bool, self_session: bool = False) -> SpqrChain:
        okm = hkdf_sha256(pqr_key, 96, SPQR_CHAIN_START)
        a2b, b2a = okm[32:64], okm[64:96]
        send, recv = (a2b, b2a) if initiator else (b2a, a2b)
        return cls(send, 0, recv, 0, {}, UNLIMITED_JUMP if self_session else SPQR_MAX_JUMP)

    def send(self) -> tuple[SpqrChain, bytes, bytes]:
        """``(new chain, SPQR payload for the message, key salting the message keys)``."""
        index = self.send_index + 1
        seed, key = _next_key(self.send_seed, index)
        message = _NONE_PREFIX + encode_varint(index) + _NONE_TYPE
        chain = (seed, index, self.recv_seed, self.recv_index, self.recv_keys, self.max_jump)
        return new_tuple(SpqrChain, chain), message, key

    def recv(self, payload: bytes) -> tuple[SpqrChain, bytes | None]:
        """``(new chain, message-key salt)`` for a peer's payload; refusals are DecryptionError."""
        at = _chain_only_index(payload)
        if at is None:
            at = _index_of_any(payload)
            if at is None:
                # A version newer than ours: SPQR ignores it and keeps its state, and so do we.
                return self, None
        if at == self.recv_index + 1:  # the next message in order: most of them
            seed, key = _next_key(self.recv_seed, at)
            chain = (self.send_seed, self.send_index, seed, at, self.recv_keys, self.max_jump)
            return new_tuple(SpqrChain, chain), key
        if at == 0:
            return self, None
        return self._recv_key_out_of_order(at)

    def _recv_key_out_of_order(self, at: int) -> tuple[SpqrChain, bytes]:
        """A late message's held key, or a jump ahead that holds the keys it passes."""
        ctr = self.recv_index
        if at <= ctr:
            if at == ctr or at + SPQR_MAX_OOO_KEYS < ctr or at not in self.recv_keys:
                raise DecryptionError
            keys = dict(self.recv_keys)
            key = keys.pop(at)
            return SpqrChain(self.send_seed, self.send_index, self.recv_seed, ctr, keys, self.max_jump), key
        if at - ctr > self.max_jump:
            raise DecryptionError
        # Jumping further than the history keeps makes every held key obsolete.
        keys = {} if at > ctr + SPQR_MAX_OOO_KEYS else dict(self.recv_keys)
        seed = self.recv_seed
        while ctr + 1 < at:
            ctr += 1
            seed, skipped = _next_key(seed, ctr)
            if ctr + SPQR_MAX_OOO_KEYS >= at:
                keys[ctr] = skipped
        if len(keys) >= _TRIM_SIZE:
            horizon = ctr - SPQR_MAX_OOO_KEYS
            keys = {i: k for i, k in keys.items() if i >= horizon}
        seed, key = _next_key(seed, at)
        return SpqrChain(self.send_seed, self.send_index, seed, at, keys, self.max_jump), key

    def __repr__(self) -> str:
        return f"SpqrChain(send_index={self.send_index}, recv_index={self.recv_index}, <secret>)"
