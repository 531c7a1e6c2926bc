"""A peer device's sessions: the current state and up to 40 archived ones, most recent first.

Why keep old states: after a reset, or when both sides start a session at once, messages keep
arriving on a session we already replaced. Decryption tries the current state, then each
archived one (SignalMessages only), and promotes the one that works (libsignal's "Sesame").

Persisted form: ``b"SottoSR"`` ‖ format version ‖ protobuf. It is our own format (libsignal's
cannot be shared anyway: its Kyber keys are expanded); old versions stay loadable and are
frozen as test fixtures. ``from_bytes`` raises :class:`~sotto.errors.InvalidSessionStateError`
and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from sotto.crypto.keys import KeyPair, PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import (
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    InvalidKeyError,
    InvalidSessionStateError,
    MessageTooFarAheadError,
    ProtocolError,
)
from sotto.protocol.limits import ARCHIVED_STATES_MAX_LENGTH, MAX_RECEIVER_CHAINS
from sotto.protocol.messages import BytesLike, SignalMessage
from sotto.protocol.protobuf import (
    Fields,
    bytes_field,
    decode_fields,
    encode_varint,
    get_bytes,
    get_uint,
    read_varint,
    uint_field,
)
from sotto.protocol.ratchet.chain import ChainKey
from sotto.protocol.ratchet.root import RootKey
from sotto.protocol.ratchet.session import decrypt_message
from sotto.protocol.ratchet.skipped import SkippedKeys
from sotto.protocol.ratchet.spqr import SpqrChain
from sotto.protocol.ratchet.state import PendingPreKey, ReceiverChain, SenderChain, SessionState
from sotto.protocol.values import new_tuple

RECORD_MAGIC = b"SottoSR"
RECORD_FORMAT_VERSION = 1
_KEY_LENGTH = 32


class SessionRecord(NamedTuple):
    """Immutable: every operation returns a new record and leaves this one as it was.

    A ``NamedTuple``, like the states it holds: every message sent or received builds one.
    """

    current: SessionState | None = None
    previous: tuple[SessionState, ...] = ()

    def promote_state(self, state: SessionState) -> SessionRecord:
        """Make ``state`` current, archiving the current one (its pending PreKey data dropped)."""
        return SessionRecord(state, self._archived())

    def archive_current_state(self) -> SessionRecord:
        if self.current is None:
            return self
        return SessionRecord(None, self._archived())

    def _archived(self) -> tuple[SessionState, ...]:
        if self.current is None:
            return self.previous
        archived = self.current
        if archived.pending_prekey is not None:
            archived = _without_pending(archived)
        return (archived, *self.previous)[:ARCHIVED_STATES_MAX_LENGTH]

    def states(self) -> Iterator[SessionState]:
        if self.current is not None:
            yield self.current
        yield from self.previous

    def find_base_key(self, version: int, base_key: PublicKey) -> int | None:
        """Position of the state set up by this PreKey base key: 0 = current, i+1 = previous[i]."""
        for position, state in enumerate(self.states(), start=0 if self.current is not None else 1):
            if state.version == version and state.alice_base_key == base_key:
                return position
        return None

    def promote_position(self, position: int) -> SessionRecord:
        """Make archived state ``position`` (as :meth:`find_base_key` counts) the current one."""
        if position == 0:
            return self
        state = self.previous[position - 1]
        rest = SessionRecord(self.current, self.previous[: position - 1] + self.previous[position:])
        return rest.promote_state(state)

    def decrypt(
        self,
        message: SignalMessage,
        expected_addresses: bytes | None,
        rng: Rng,
        *,
        current_only: bool = False,
    ) -> tuple[SessionRecord, bytes]:
        """Try the current state, then the archived ones; promote the one that decrypts.

        A duplicate counter stops the search at once (as in libsignal). Otherwise failure is
        DecryptionError, or MessageTooFarAheadError when that is why the current state refused.
        """
        errors: list[ProtocolError] = []
        if self.current is not None:
            try:
                state, plaintext = decrypt_message(self.current, message, expected_addresses, rng)
            except DuplicateMessageError:
                raise
            except (DecryptionError, MessageTooFarAheadError) as exc:
                errors.append(exc)
            else:
                return new_tuple(SessionRecord, (state, self.previous)), plaintext
        if not current_only:
            for i, previous in enumerate(self.previous):
                try:
                    state, plaintext = decrypt_message(previous, message, expected_addresses, rng)
                except DuplicateMessageError:
                    raise
                except (DecryptionError, MessageTooFarAheadError) as exc:
                    errors.append(exc)
                    continue
                rest = SessionRecord(self.current, self.previous[:i] + self.previous[i + 1 :])
                return rest.promote_state(state), plaintext
        if errors and isinstance(errors[0], MessageTooFarAheadError) and self.current is not None:
            raise errors[0]
        raise DecryptionError

    # -- persistence ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        out = RECORD_MAGIC + bytes((RECORD_FORMAT_VERSION,))
        if self.current is not None:
            out += bytes_field(1, _encode_state(self.current))
        out += bytes_field(2, _encode_list([_encode_state(s) for s in self.previous]))
        return out

    @classmethod
    def from_bytes(cls, data: BytesLike) -> SessionRecord:
        data = bytes(data)
        header = len(RECORD_MAGIC) + 1
        if len(data) < header or data[: len(RECORD_MAGIC)] != RECORD_MAGIC:
            raise InvalidSessionStateError("not a session record")
        if data[len(RECORD_MAGIC)] != RECORD_FORMAT_VERSION:
            raise InvalidSessionStateError(f"unknown session record format {data[len(RECORD_MAGIC)]}")
        try:
            fields = decode_fields(data[header:])
            current_bytes = get_bytes(fields, 1, required=False)
            current = None if current_bytes is None else _decode_state(current_bytes)
            previous = tuple(_decode_state(s) for s in _decode_list(_bytes(fields, 2)))
        except (DecodeError, InvalidKeyError, ValueError) as exc:
            raise InvalidSessionStateError(f"corrupt session record: {exc}") from None
        if len(previous) > ARCHIVED_STATES_MAX_LENGTH:
            raise InvalidSessionStateError("too many archived states")
        return cls(current, previous)

    def __repr__(self) -> str:
        return f"SessionRecord(current={self.current!r}, previous={len(self.previous)})"


def _without_pending(state: SessionState) -> SessionState:
    return state._replace(pending_prekey=None)


# -- state encoding (format version 1) ---------------------------------------------------------


def _encode_list(items: list[bytes]) -> bytes:
    return b"".join(encode_varint(len(item)) + item for item in items)


def _decode_list(data: bytes) -> list[bytes]:
    items = []
    pos = 0
    while pos < len(data):
        length, pos = read_varint(data, pos)
        if length > len(data) - pos:
            raise DecodeError("list item runs past the end")
        items.append(data[pos : pos + length])
        pos += length
    return items


def _encode_keys(keys: dict[int, bytes] | SkippedKeys) -> bytes:
    return b"".join(encode_varint(index) + keys[index] for index in keys)


def _decode_keys(data: bytes) -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        index, pos = read_varint(data, pos)
        if pos + _KEY_LENGTH > len(data):
            raise DecodeError("truncated key")
        keys[index] = data[pos : pos + _KEY_LENGTH]
        pos += _KEY_LENGTH
    return keys


def _bytes(fields: Fields, number: int, length: int | None = None) -> bytes:
    value = get_bytes(fields, number)
    assert value is not None
    if length is not None and len(value) != length:
        raise DecodeError(f"field {number} must be {length} bytes")
    return value


def _uint(fields: Fields, number: int, bits: int = 32) -> int:
    value = get_uint(fields, number, bits=bits)
    assert value is not None
    return value


def _encode_state(state: SessionState) -> bytes:
    sender = state.sender_chain
    spqr = state.spqr
    out = (
        uint_field(1, state.version)
        + bytes_field(2, state.local_identity.to_bytes())
        + bytes_field(3, state.remote_identity.to_bytes())
        + bytes_field(4, state.root_key.key)
        + bytes_field(
            5,
            bytes_field(1, sender.ratchet_key.public.to_bytes())
            + bytes_field(2, sender.ratchet_key.private.to_bytes())
            + bytes_field(3, sender.chain_key.key)
            + uint_field(4, sender.chain_key.index),
        )
        + bytes_field(
            6,
            _encode_list(
                [
                    bytes_field(1, chain.ratchet_key.to_bytes())
                    + bytes_field(2, chain.chain_key.key)
                    + uint_field(3, chain.chain_key.index)
                    + bytes_field(4, _encode_keys(chain.skipped))
                    for chain in state.receiver_chains
                ]
            ),
        )
        + uint_field(7, state.previous_counter)
        + bytes_field(
            8,
            bytes_field(1, spqr.send_seed)
            + uint_field(2, spqr.send_index)
            + bytes_field(3, spqr.recv_seed)
            + uint_field(4, spqr.recv_index)
            + bytes_field(5, _encode_keys(dict(spqr.recv_keys)))
            + uint_field(6, spqr.max_jump),
        )
        + uint_field(9, state.local_registration_id)
        + uint_field(10, state.remote_registration_id)
        + bytes_field(11, state.alice_base_key.to_bytes())
        + uint_field(12, int(state.self_session))
    )
    pending = state.pending_prekey
    if pending is not None:
        body = b"" if pending.pre_key_id is None else uint_field(1, pending.pre_key_id)
        body += (
            uint_field(2, pending.signed_pre_key_id)
            + uint_field(3, pending.kyber_pre_key_id)
            + bytes_field(4, pending.kyber_ciphertext)
            + bytes_field(5, pending.base_key.to_bytes())
            + uint_field(6, pending.timestamp_ms)
        )
        out += bytes_field(13, body)
    return out


def _decode_state(data: bytes) -> SessionState:
    fields = decode_fields(data)
    sender_fields = decode_fields(_bytes(fields, 5))
    ratchet_key = KeyPair(PrivateKey.from_bytes(_bytes(sender_fields, 2, _KEY_LENGTH)))
    if ratchet_key.public.to_bytes() != _bytes(sender_fields, 1):
        raise DecodeError("sender ratchet key pair does not match")
    sender = SenderChain(
        ratchet_key, ChainKey(_bytes(sender_fields, 3, _KEY_LENGTH), _uint(sender_fields, 4))
    )
    chains = []
    for item in _decode_list(_bytes(fields, 6)):
        chain_fields = decode_fields(item)
        chains.append(
            ReceiverChain(
                PublicKey.from_bytes(_bytes(chain_fields, 1)),
                ChainKey(_bytes(chain_fields, 2, _KEY_LENGTH), _uint(chain_fields, 3)),
                SkippedKeys(_decode_keys(_bytes(chain_fields, 4))),
            )
        )
    if len(chains) > MAX_RECEIVER_CHAINS:
        raise DecodeError("too many receiver chains")
    spqr_fields = decode_fields(_bytes(fields, 8))
    spqr = SpqrChain(
        _bytes(spqr_fields, 1, _KEY_LENGTH),
        _uint(spqr_fields, 2),
        _bytes(spqr_fields, 3, _KEY_LENGTH),
        _uint(spqr_fields, 4),
        _decode_keys(_bytes(spqr_fields, 5)),
        _uint(spqr_fields, 6),
    )
    pending = None
    pending_bytes = get_bytes(fields, 13, required=False)
    if pending_bytes is not None:
        pending_fields = decode_fields(pending_bytes)
        pending = PendingPreKey(
            get_uint(pending_fields, 1, required=False),
            _uint(pending_fields, 2),
            _uint(pending_fields, 3),
            _bytes(pending_fields, 4),
            PublicKey.from_bytes(_bytes(pending_fields, 5)),
            _uint(pending_fields, 6, 64),
        )
    self_session = _uint(fields, 12)
    if self_session > 1:
        raise DecodeError("self-session flag must be 0 or 1")
    return SessionState(
        version=_uint(fields, 1),
        local_identity=PublicKey.from_bytes(_bytes(fields, 2)),
        remote_identity=PublicKey.from_bytes(_bytes(fields, 3)),
        root_key=RootKey(_bytes(fields, 4, _KEY_LENGTH)),
        sender_chain=sender,
        receiver_chains=tuple(chains),
        previous_counter=_uint(fields, 7),
        spqr=spqr,
        local_registration_id=_uint(fields, 9),
        remote_registration_id=_uint(fields, 10),
        alice_base_key=PublicKey.from_bytes(_bytes(fields, 11)),
        self_session=bool(self_session),
        pending_prekey=pending,
    )
