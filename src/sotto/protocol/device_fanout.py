"""One message for every device of a conversation: encrypted once, one key slot per device, 8 slots.

The content is encrypted once under a fresh random key ``K``; each recipient device gets ``K``
through its own Signal session, in a **slot**. Every envelope carries exactly :data:`SLOTS` slots
of :data:`SLOT_LENGTH` bytes, whether it is meant for one device or eight: unused slots are random
bytes, and a used slot is an AES-256-GCM ciphertext, so the two look alike to anyone who cannot
open them. The byte layout, the slot size and what the relay sees are in ``docs/device-fanout.md``.

Sending (all pure; the caller owns the sessions and caches the pair keys)::

    draft = prepare(plaintext, rng)                  # K, and the key part to hand to each session
    slots = [SlotInput(pair_key(ours, device_identity), session.encrypt(record, draft.key_part, ...)) ...]
    envelope = seal(draft, slots, rng)

Receiving: :func:`open_envelope` with the pair keys of the devices the envelope may come from
and a callable that decrypts the slot's Signal message with that device's session and returns
``(state, key part)``; it hands back ``(which pair key, state, plaintext)`` only when every
check passed, so the caller stores the new session state only then.

How a device finds its slot: every two devices share a **pair key**, :func:`pair_key`, from an
X25519 agreement of their identity keys (each knows the other's from a signed device list), which
both compute once and keep. A slot is sealed with AES-256-GCM under the pair key of the sending
and the receiving device, with the envelope's random nonce; the receiving device tries the 8
slots (all of them, whichever opens) with each pair key it holds for the sender's account. Nobody
without the pair key can tell which slot is whose, or whether a slot is used at all: not the
relay, nor another recipient device, which opens only its own slot. Slot positions are a random
permutation, so a device's position says nothing about the number of devices either.

What binds what: the key part handed to each session is ``K ‖ SHA-256(label ‖ header ‖
plaintext)``, so a co-recipient who learned ``K`` cannot make another device accept other
content (the hash is inside that device's own authenticated Signal message); the content's
AES-GCM covers the header and all 8 slots, so a change to any byte is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from sotto.crypto.aead import aes256_gcm_decrypt, aes256_gcm_encrypt
from sotto.crypto.dh import agree
from sotto.crypto.kdf import bytes_equal, hkdf_sha256, sha256
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType

FORMAT: Final = 0x01
SLOTS: Final = 8
"""Slots in every envelope: the most devices an account has (``docs/device-list.md``)."""
KEY_LENGTH: Final = 32
COMMITMENT_LENGTH: Final = 32
KEY_PART_LENGTH: Final = KEY_LENGTH + COMMITMENT_LENGTH
"""What each device's session encrypts: ``K ‖ commitment``."""
TAG_LENGTH: Final = 16
NONCE_LENGTH: Final = 12
HEADER_LENGTH: Final = 1 + NONCE_LENGTH
PAIR_KEY_LENGTH: Final = 32
MAX_SLOT_MESSAGE_LENGTH: Final = 1885
"""The longest Signal message a slot holds. A PreKey message carrying the 64-byte key part is
1,829 bytes with a Kyber1024 ciphertext and the addresses field; the rest is room for the
varints (counters, prekey ids) at their widest."""
SLOT_PLAINTEXT_LENGTH: Final = 1 + 2 + MAX_SLOT_MESSAGE_LENGTH
SLOT_LENGTH: Final = SLOT_PLAINTEXT_LENGTH + TAG_LENGTH
"""1,904 bytes: every slot, used or not, PreKey or Whisper."""
SLOTS_LENGTH: Final = SLOTS * SLOT_LENGTH
MIN_LENGTH: Final = HEADER_LENGTH + SLOTS_LENGTH + TAG_LENGTH
"""An envelope with empty content: 15,261 bytes (a header of 13, slots of 15,232, a tag of 16)."""
MAX_LENGTH: Final = 65_535
"""The longest envelope a decoder reads: the wire's largest padding bucket less its marker."""

_PAIR_LABEL: Final = b"sotto:device-fanout:v1:pair"
_COMMIT_LABEL: Final = b"sotto:device-fanout:v1:commit"
_ZERO_NONCE: Final = bytes(12)
_ZEROS: Final = bytes(MAX_SLOT_MESSAGE_LENGTH)
_MESSAGE_TYPES: Final = frozenset({CiphertextMessageType.WHISPER, CiphertextMessageType.PREKEY})

State = TypeVar("State")


def pair_key(ours: KeyPair, theirs: PublicKey) -> bytes:
    """The key two devices share for their slots: both sides compute the same 32 bytes.

    ``HKDF(X25519(ours, theirs), label ‖ the two identity keys in ascending order)``. Compute it
    once per device pair and keep it; a low-order key is
    :class:`~sotto.errors.InvalidKeyAgreementError`.
    """
    low, high = sorted((ours.public.serialized, theirs.serialized))
    return hkdf_sha256(agree(ours.private, theirs), PAIR_KEY_LENGTH, _PAIR_LABEL + low + high)


@dataclass(frozen=True, slots=True, repr=False)
class Draft:
    """A message ready for its slots: the caller encrypts :attr:`key_part` with each session."""

    plaintext: bytes
    key: bytes
    nonce: bytes
    key_part: bytes

    @property
    def header(self) -> bytes:
        return bytes((FORMAT,)) + self.nonce

    def __repr__(self) -> str:
        return f"Draft(plaintext_length={len(self.plaintext)})"


@dataclass(frozen=True, slots=True, repr=False)
class SlotInput:
    """One recipient device: the pair key it shares with the sending device, and the Signal
    message of the draft's key part on their session."""

    pair_key: bytes
    message: CiphertextMessage

    def __repr__(self) -> str:
        return f"SlotInput(type={int(self.message.type)}, length={len(self.message.body)})"


@dataclass(frozen=True, slots=True, repr=False)
class Envelope:
    """A decoded envelope: every structural rule checked, nothing opened."""

    nonce: bytes
    slots: tuple[bytes, ...]
    content: bytes
    """The content's AES-256-GCM ciphertext and tag."""

    @property
    def header(self) -> bytes:
        return bytes((FORMAT,)) + self.nonce

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse an envelope; anything malformed is :class:`DecodeError`."""
        data = bytes(data)
        if len(data) > MAX_LENGTH:
            raise DecodeError(f"device envelope longer than {MAX_LENGTH} bytes")
        if len(data) < MIN_LENGTH:
            raise DecodeError("device envelope too short")
        if data[0] != FORMAT:
            raise DecodeError(f"unknown device envelope format {data[0]:#04x}")
        slots = tuple(
            data[HEADER_LENGTH + i * SLOT_LENGTH : HEADER_LENGTH + (i + 1) * SLOT_LENGTH]
            for i in range(SLOTS)
        )
        return cls(data[1:HEADER_LENGTH], slots, data[HEADER_LENGTH + SLOTS_LENGTH :])

    def encode(self) -> bytes:
        return self.header + b"".join(self.slots) + self.content

    def __repr__(self) -> str:
        return f"Envelope(content_length={len(self.content)})"


def prepare(plaintext: bytes, rng: Rng) -> Draft:
    """Draw ``K`` and the envelope's nonce for one message, and compute the key part to encrypt."""
    key = rng(KEY_LENGTH)
    nonce = rng(NONCE_LENGTH)
    key_part = key + _commitment(bytes((FORMAT,)) + nonce, plaintext)
    return Draft(bytes(plaintext), key, nonce, key_part)


def seal(draft: Draft, recipients: Sequence[SlotInput], rng: Rng) -> bytes:
    """The envelope: one slot per recipient at random positions, random bytes in the others.

    A programming error is ``ValueError``: more than :data:`SLOTS` recipients, one pair key
    twice or of the wrong length, a message type other than Whisper or PreKey, or a message too
    long for a slot.
    """
    if len(recipients) > SLOTS:
        raise ValueError(f"at most {SLOTS} devices per envelope, got {len(recipients)}")
    if any(len(r.pair_key) != PAIR_KEY_LENGTH for r in recipients):
        raise ValueError(f"a pair key is {PAIR_KEY_LENGTH} bytes")
    if len({r.pair_key for r in recipients}) != len(recipients):
        raise ValueError("a device appears twice")
    header = draft.header
    positions = _permutation(rng)
    slots: list[bytes] = [b""] * SLOTS
    for recipient, position in zip(recipients, positions, strict=False):
        slots[position] = _seal_slot(draft.nonce, header, position, recipient)
    unused = positions[len(recipients) :]
    filler = rng(len(unused) * SLOT_LENGTH)  # one call: each is a system call in production
    for i, position in enumerate(unused):
        slots[position] = filler[i * SLOT_LENGTH : (i + 1) * SLOT_LENGTH]
    body = b"".join(slots)
    content = aes256_gcm_encrypt(draft.key, _ZERO_NONCE, draft.plaintext, header + body)
    return header + body + content


def find_slot(envelope: Envelope, pair_keys: Sequence[bytes]) -> tuple[int, CiphertextMessage]:
    """``(index in pair_keys, Signal message)`` of our slot: every slot is tried with every key.

    :class:`DecryptionError` if no slot opens; ``ValueError`` for a pair key of the wrong length.
    """
    header = envelope.header
    found: tuple[int, bytes] | None = None
    for index, key in enumerate(pair_keys):
        for position, slot in enumerate(envelope.slots):  # every slot, whichever opens
            try:
                opened = aes256_gcm_decrypt(key, envelope.nonce, slot, header + bytes((position,)))
            except DecryptionError:
                continue
            if found is None:
                found = (index, opened)
    if found is None:
        raise DecryptionError
    return found[0], _unpad(found[1])


def open_envelope(
    data: bytes,
    pair_keys: Sequence[bytes],
    decrypt: Callable[[int, CiphertextMessage], tuple[State, bytes]],
) -> tuple[int, State, bytes]:
    """Open an envelope: find our slot, let ``decrypt`` run the Signal session on it, open the content.

    ``pair_keys`` are ours with each device the envelope may come from; ``decrypt`` gets the
    index of the one that opened a slot and the slot's Signal message, and returns the new
    session state (not yet stored) and the key part. Returns ``(index, state, plaintext)`` only
    if every check passed: :class:`DecodeError` for malformed bytes, :class:`DecryptionError`
    when no slot is ours, the key part is malformed, or the content fails its tag or its
    commitment. ``decrypt``'s own errors pass through.
    """
    envelope = Envelope.decode(data)
    index, message = find_slot(envelope, pair_keys)
    state, key_part = decrypt(index, message)
    if len(key_part) != KEY_PART_LENGTH:
        raise DecryptionError
    key, commitment = key_part[:KEY_LENGTH], key_part[KEY_LENGTH:]
    header = envelope.header
    plaintext = aes256_gcm_decrypt(key, _ZERO_NONCE, envelope.content, header + b"".join(envelope.slots))
    if not bytes_equal(commitment, _commitment(header, plaintext)):
        raise DecryptionError
    return index, state, plaintext


def _commitment(header: bytes, plaintext: bytes) -> bytes:
    return sha256(_COMMIT_LABEL + header + plaintext)


def _seal_slot(nonce: bytes, header: bytes, position: int, recipient: SlotInput) -> bytes:
    message = recipient.message
    if message.type not in _MESSAGE_TYPES:
        raise ValueError(f"a slot holds a Whisper or PreKey message, not type {int(message.type)}")
    if len(message.body) > MAX_SLOT_MESSAGE_LENGTH:
        raise ValueError(f"a {len(message.body)}-byte message does not fit a slot")
    prefix = bytes((int(message.type), len(message.body) >> 8, len(message.body) & 0xFF))
    padded = b"".join((prefix, message.body, _ZEROS[len(message.body) :]))
    return aes256_gcm_encrypt(recipient.pair_key, nonce, padded, header + bytes((position,)))


def _unpad(opened: bytes) -> CiphertextMessage:
    # The slot authenticated under our key, so only the sender could have written it; it is
    # still held to every rule, so one slot content has one meaning.
    kind = opened[0]
    length = int.from_bytes(opened[1:3], "big")
    if kind not in _MESSAGE_TYPES or length > MAX_SLOT_MESSAGE_LENGTH:
        raise DecryptionError
    body = opened[3 : 3 + length]
    if any(opened[3 + length :]):
        raise DecryptionError
    return CiphertextMessage(CiphertextMessageType(kind), body)


def _permutation(rng: Rng) -> list[int]:
    """A uniform permutation of the slot positions (Fisher-Yates, unbiased by rejection)."""
    order = list(range(SLOTS))
    pool = b""
    for i in range(SLOTS - 1, 0, -1):
        while True:
            if not pool:
                pool = rng(16)
            j, pool = pool[0] & 7, pool[1:]  # SLOTS is 8: three bits, then reject values above i
            if j <= i:
                break
        order[i], order[j] = order[j], order[i]
    return order
