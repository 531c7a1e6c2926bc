"""Envelope sizes, measured on the real protocol code rather than assumed.

The relay sees one number per envelope: its length. What that length says depends on the content
(a text's length, a receipt, a typing indicator) and on the padding policy. Instead of modelling
libsignal's framing, :class:`SizeModel` encrypts real content with the real session, sealed-sender
and padding code (one established PQXDH session, self-issued certificates as the client makes
them) and caches the length per AES block count of the plaintext, so a million simulated
envelopes cost a few hundred real encryptions.

Padding policies:

* ``buckets`` (Sotto): the content is padded to a bucket before encryption and the sealed
  envelope padded to a bucket again (``sotto.wire.padding``), as the client does;
* ``signal160``: content padded to a multiple of 160 bytes (Signal's ``getPaddedMessageLength``),
  envelope sent at its sealed length;
* ``none``: neither (the "padding off" variant);
* ``identified``: an unsealed 1:1 message without padding (the WhatsApp-like baseline, where the
  server knows the sender anyway).
"""

from __future__ import annotations

import enum
import uuid

from sotto.client import content as c
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord, build_bundle
from sotto.protocol.messages import PreKeySignalMessage
from sotto.protocol.record import SessionRecord
from sotto.protocol.sealed_sender import (
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    seal_v1,
)
from sotto.wire.padding import pad

_NOW_MS = 1_760_000_000_000
_CIPHER_BLOCK = 16


class Kind(enum.IntEnum):
    """What an envelope carries (ground truth; the relay cannot read it)."""

    TEXT = 0
    RECEIPT = 1
    TYPING = 2
    ROTATION = 3
    COVER = 4


class Padding(enum.Enum):
    BUCKETS = "buckets"
    SIGNAL160 = "signal160"
    NONE = "none"
    IDENTIFIED = "identified"


def text_length(text_bytes: int) -> int:
    """Encoded length of a text content with ``text_bytes`` of UTF-8."""
    return len(c.encode(c.Text(bytes(16), _NOW_MS, "x" * text_bytes)))


def receipt_length(ids: int) -> int:
    return len(c.encode(c.DeliveryReceipt(tuple(bytes([i % 256]) * 16 for i in range(ids)))))


TYPING_LENGTH = len(c.encode(c.Typing(True)))
COVER_LENGTH = TYPING_LENGTH
"""A cadence-mode cover envelope's content: a few bytes, padded like any short content."""
ROTATION_LENGTH = len(
    c.encode(c.MailboxRotated(c.MailboxAddress("https://relay.example.org", bytes(16), bytes(32))))
)


class _Party:
    def __init__(self, rng: Rng) -> None:
        self.address = ProtocolAddress(str(uuid.UUID(bytes=rng(16), version=4)), 1)
        self.identity = KeyPair.generate(rng)
        self.signed = SignedPreKeyRecord.generate(1, self.identity, _NOW_MS, rng)
        self.kyber = KyberPreKeyRecord.generate(1, self.identity, _NOW_MS, rng, last_resort=True)
        self.one_time = PreKeyRecord.generate(1, rng)
        signer = ServerCertificate.issue(1, self.identity.public, self.identity.private, rng)
        self.certificate = SenderCertificate.issue(
            sender_uuid=self.address.name,
            sender_device_id=1,
            identity_key=self.identity.public,
            expiration_ms=_NOW_MS + 10**10,
            signer=signer,
            signer_key=self.identity.private,
            rng=rng,
        )


class SizeModel:
    """Envelope length for (encoded content length, padding policy), from real encryptions."""

    def __init__(self, seed: int = 0x5077) -> None:
        self._rng = seeded_rng(seed)
        self._alice = _Party(self._rng)
        self._bob = _Party(self._rng)
        bob = self._bob
        bundle = build_bundle(
            registration_id=7,
            device_id=1,
            identity_key=bob.identity.public,
            signed_pre_key=bob.signed,
            kyber_pre_key=bob.kyber,
            pre_key=bob.one_time,
        )
        self._record: SessionRecord = session.process_prekey_bundle(
            None,
            our_identity=self._alice.identity,
            our_registration_id=5,
            our_address=self._alice.address,
            their_address=bob.address,
            bundle=bundle,
            now_ms=_NOW_MS,
            rng=self._rng,
        )
        # The first messages of a session are PreKey messages (bigger); the steady state is what
        # a long-running population sends, so measure after the session is acknowledged.
        self._cache: dict[tuple[int, bool], tuple[int, int]] = {}
        self._acknowledge()

    def _acknowledge(self) -> None:
        bob = self._bob
        _, message = session.encrypt(
            self._record,
            b"hello",
            our_address=self._alice.address,
            their_address=bob.address,
            now_ms=_NOW_MS,
            rng=self._rng,
        )
        result = session.decrypt_prekey_message(
            None,
            PreKeySignalMessage.decode(message.body),
            our_identity=bob.identity,
            our_registration_id=7,
            our_address=bob.address,
            their_address=self._alice.address,
            signed_pre_key=bob.signed,
            kyber_pre_key=bob.kyber,
            one_time_pre_key=bob.one_time,
            rng=self._rng,
        )
        bob_record, reply = session.encrypt(
            result.record,
            b"hi",
            our_address=bob.address,
            their_address=self._alice.address,
            now_ms=_NOW_MS,
            rng=self._rng,
        )
        del bob_record
        self._record, _ = session.decrypt_signal_message(
            self._record,
            reply.body,
            our_address=self._alice.address,
            their_address=bob.address,
            rng=self._rng,
        )

    def _measure(self, plaintext_length: int) -> tuple[int, int]:
        """(sealed length, unsealed message length) for a plaintext of this length."""
        blocks = plaintext_length // _CIPHER_BLOCK
        key = (blocks, True)
        held = self._cache.get(key)
        if held is not None:
            return held
        record, message = session.encrypt(
            self._record,
            bytes(plaintext_length),
            our_address=self._alice.address,
            their_address=self._bob.address,
            now_ms=_NOW_MS,
            rng=self._rng,
        )
        del record  # measure every length from the same state
        usmc = UnidentifiedSenderMessageContent.new(message.type, self._alice.certificate, message.body)
        sealed = seal_v1(self._alice.identity, self._bob.identity.public, usmc, self._rng)
        held = (len(sealed), len(message.body))
        self._cache[key] = held
        return held

    def envelope(self, content_length: int, padding: Padding) -> int:
        """Bytes the relay sees for one envelope carrying ``content_length`` bytes of content."""
        if padding is Padding.BUCKETS:
            sealed, _ = self._measure(len(pad(bytes(content_length))))
            return len(pad(bytes(sealed)))
        if padding is Padding.SIGNAL160:
            padded = (content_length // 160 + 1) * 160
            return self._measure(padded)[0]
        if padding is Padding.NONE:
            return self._measure(content_length)[0]
        return self._measure(content_length)[1]
