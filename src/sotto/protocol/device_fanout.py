"""One message for every device of a conversation: encrypted once, one key slot per device, 8 slots.

The content is encrypted once under a fresh random key ``K``; each recipient device gets ``K``
through its own Signal session, in a **slot**. Every envelope carries exactly :data:`SLOTS` slots
of :data:`SLOT_LENGTH` bytes, whether it is meant for one device or eight: unused slots are random
bytes, and a used slot is an AES-256-GCM ciphertext, so the two look alike to anyone who cannot
open them. The byte layout, the slot size and what the relay sees are in ``docs/device-fanout.md``.

Sending (all pure; the caller owns the sessions)::

    draft = prepare(plaintext, rng)                  # K, and the key part to hand to each session
    slots = [SlotInput(device_identity, session.encrypt(record, draft.key_part, ...)) ...]
    envelope = seal(draft, slots, rng)

Receiving: :func:`open_envelope` with the device's identity key pair and a callable that decrypts
the slot's Signal message with the session of the sender's device and returns ``(state, key
part)``; it hands back ``(state, plaintext)`` only when every check passed, so the caller stores
the new session state only then.

How a device finds its slot: the envelope carries an ephemeral X25519 key ``E``; the slot for a
device with identity key ``IK`` is sealed under ``HKDF(DH(e, IK))``, so the device computes one
agreement and tries the 8 slots (all of them, whichever opens) with AES-GCM. Nobody without
``IK``'s private key can tell which slot is its, or whether a slot is used at all: not the relay,
nor another recipient device, which opens only its own slot. Slot positions are a random
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
from sotto.crypto.dh import agree, is_canonical
from sotto.crypto.kdf import bytes_equal, hkdf_sha256, sha256
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import CryptoError, DecodeError, DecryptionError
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType

FORMAT: Final = 0x01
SLOTS: Final = 8
"""Slots in every envelope: the most devices an account has (``docs/device-list.md``)."""
KEY_LENGTH: Final = 32
COMMITMENT_LENGTH: Final = 32
KEY_PART_LENGTH: Final = KEY_LENGTH + COMMITMENT_LENGTH
"""What each device's session encrypts: ``K ‖ commitment``."""
TAG_LENGTH: Final = 16
EPHEMERAL_LENGTH: Final = 32
HEADER_LENGTH: Final = 1 + EPHEMERAL_LENGTH
MAX_SLOT_MESSAGE_LENGTH: Final = 1885
"""The longest Signal message a slot holds. A PreKey message carrying the 64-byte key part is
1,829 bytes with a Kyber1024 ciphertext and the addresses field; the rest is room for the
varints (counters, prekey ids) at their widest."""
SLOT_PLAINTEXT_LENGTH: Final = 1 + 2 + MAX_SLOT_MESSAGE_LENGTH
SLOT_LENGTH: Final = SLOT_PLAINTEXT_LENGTH + TAG_LENGTH
"""1,904 bytes: every slot, used or not, PreKey or Whisper."""
SLOTS_LENGTH: Final = SLOTS * SLOT_LENGTH
MIN_LENGTH: Final = HEADER_LENGTH + SLOTS_LENGTH + TAG_LENGTH
"""An envelope with empty content: 15,281 bytes (a header of 33, slots of 15,232, a tag of 16)."""
MAX_LENGTH: Final = 65_535
"""The longest envelope a decoder reads: the wire's largest padding bucket less its marker."""

_SLOT_LABEL: Final = b"sotto:device-fanout:v1:slot"
_COMMIT_LABEL: Final = b"sotto:device-fanout:v1:commit"
_ZERO_NONCE: Final = bytes(12)
_MESSAGE_TYPES: Final = frozenset({CiphertextMessageType.WHISPER, CiphertextMessageType.PREKEY})

State = TypeVar("State")


@dataclass(frozen=True, slots=True, repr=False)
class Draft:
    """A message ready for its slots: the caller encrypts :attr:`key_part` with each session."""

    plaintext: bytes
    key: bytes
    ephemeral: KeyPair
    key_part: bytes

    @property
    def header(self) -> bytes:
        return bytes((FORMAT,)) + self.ephemeral.public.raw

    def __repr__(self) -> str:
        return f"Draft(plaintext_length={len(self.plaintext)})"


@dataclass(frozen=True, slots=True)
class SlotInput:
    """One recipient device: its identity key (from the device list) and its Signal message of
    the draft's key part."""

    identity: PublicKey
    message: CiphertextMessage


@dataclass(frozen=True, slots=True, repr=False)
class Envelope:
    """A decoded envelope: every structural rule checked, nothing opened."""

    ephemeral: PublicKey
    slots: tuple[bytes, ...]
    content: bytes
    """The content's AES-256-GCM ciphertext and tag."""

    @property
    def header(self) -> bytes:
        return bytes((FORMAT,)) + self.ephemeral.raw

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
        ephemeral = PublicKey(data[1:HEADER_LENGTH])
        if not is_canonical(ephemeral):
            raise DecodeError("device envelope's ephemeral key is not canonical")
        slots = tuple(
            data[HEADER_LENGTH + i * SLOT_LENGTH : HEADER_LENGTH + (i + 1) * SLOT_LENGTH]
            for i in range(SLOTS)
        )
        return cls(ephemeral, slots, data[HEADER_LENGTH + SLOTS_LENGTH :])

    def encode(self) -> bytes:
        return self.header + b"".join(self.slots) + self.content

    def __repr__(self) -> str:
        return f"Envelope(content_length={len(self.content)})"


def prepare(plaintext: bytes, rng: Rng) -> Draft:
    """Draw ``K`` and the ephemeral key for one message, and compute the key part to encrypt."""
    key = rng(KEY_LENGTH)
    ephemeral = KeyPair.generate(rng)
    header = bytes((FORMAT,)) + ephemeral.public.raw
    key_part = key + _commitment(header, plaintext)
    return Draft(bytes(plaintext), key, ephemeral, key_part)


def seal(draft: Draft, recipients: Sequence[SlotInput], rng: Rng) -> bytes:
    """The envelope: one slot per recipient at random positions, random bytes in the others.

    A programming error is ``ValueError``: more than :data:`SLOTS` recipients, one identity key
    twice, a message type other than Whisper or PreKey, or a message too long for a slot. An
    identity key that is a low-order point is :class:`~sotto.errors.InvalidKeyAgreementError`.
    """
    if len(recipients) > SLOTS:
        raise ValueError(f"at most {SLOTS} devices per envelope, got {len(recipients)}")
    if len({r.identity for r in recipients}) != len(recipients):
        raise ValueError("a device appears twice")
    header = draft.header
    positions = _permutation(rng)
    slots: list[bytes] = [b""] * SLOTS
    for recipient, position in zip(recipients, positions, strict=False):
        slots[position] = _seal_slot(draft.ephemeral, header, position, recipient)
    for position in positions[len(recipients) :]:
        slots[position] = rng(SLOT_LENGTH)
    body = b"".join(slots)
    content = aes256_gcm_encrypt(draft.key, _ZERO_NONCE, draft.plaintext, header + body)
    return header + body + content


def find_slot(envelope: Envelope, our_identity: KeyPair) -> CiphertextMessage:
    """The Signal message in our slot; :class:`DecryptionError` if no slot opens with our key."""
    header = envelope.header
    try:
        shared = agree(our_identity.private, envelope.ephemeral)
    except CryptoError:
        raise DecryptionError from None
    key = _slot_key(shared, header, our_identity.public)
    found: bytes | None = None
    for position, slot in enumerate(envelope.slots):  # every slot, whichever opens
        try:
            opened = aes256_gcm_decrypt(key, _nonce(position), slot, header + bytes((position,)))
        except DecryptionError:
            continue
        if found is None:
            found = opened
    if found is None:
        raise DecryptionError
    return _unpad(found)


def open_envelope(
    data: bytes,
    our_identity: KeyPair,
    decrypt: Callable[[CiphertextMessage], tuple[State, bytes]],
) -> tuple[State, bytes]:
    """Open an envelope: find our slot, let ``decrypt`` run the Signal session on it, open the content.

    ``decrypt`` returns the new session state (not yet stored) and the key part. Returns that
    state and the plaintext only if every check passed: :class:`DecodeError` for malformed
    bytes, :class:`DecryptionError` when no slot is ours, the key part is malformed, the content
    fails its tag or its commitment. ``decrypt``'s own errors pass through.
    """
    envelope = Envelope.decode(data)
    message = find_slot(envelope, our_identity)
    state, key_part = decrypt(message)
    if len(key_part) != KEY_PART_LENGTH:
        raise DecryptionError
    key, commitment = key_part[:KEY_LENGTH], key_part[KEY_LENGTH:]
    header = envelope.header
    plaintext = aes256_gcm_decrypt(key, _ZERO_NONCE, envelope.content, header + b"".join(envelope.slots))
    if not bytes_equal(commitment, _commitment(header, plaintext)):
        raise DecryptionError
    return state, plaintext


def _commitment(header: bytes, plaintext: bytes) -> bytes:
    return sha256(_COMMIT_LABEL + header + plaintext)


def _slot_key(shared: bytes, header: bytes, identity: PublicKey) -> bytes:
    return hkdf_sha256(shared, KEY_LENGTH, _SLOT_LABEL + header + identity.serialized)


def _nonce(position: int) -> bytes:
    return bytes(11) + bytes((position,))


def _seal_slot(ephemeral: KeyPair, header: bytes, position: int, recipient: SlotInput) -> bytes:
    message = recipient.message
    if message.type not in _MESSAGE_TYPES:
        raise ValueError(f"a slot holds a Whisper or PreKey message, not type {int(message.type)}")
    if len(message.body) > MAX_SLOT_MESSAGE_LENGTH:
        raise ValueError(f"a {len(message.body)}-byte message does not fit a slot")
    padded = (
        bytes((int(message.type),))
        + len(message.body).to_bytes(2, "big")
        + message.body
        + bytes(MAX_SLOT_MESSAGE_LENGTH - len(message.body))
    )
    key = _slot_key(agree(ephemeral.private, recipient.identity), header, recipient.identity)
    return aes256_gcm_encrypt(key, _nonce(position), padded, header + bytes((position,)))


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
    for i in range(SLOTS - 1, 0, -1):
        while True:
            j = rng(1)[0] & 7  # SLOTS is 8: three bits, then reject values above i
            if j <= i:
                break
        order[i], order[j] = order[j], order[i]
    return order
