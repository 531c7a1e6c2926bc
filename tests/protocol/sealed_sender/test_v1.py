"""Sealed sender v1: round trips, layout, tampering, wrong keys and the certificate-key binding."""

from __future__ import annotations

import pytest

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, DecryptionError, InvalidCertificateError
from sotto.protocol.protobuf import decode_fields
from sotto.protocol.sealed_sender import SealedSenderV1Message, open_v1, seal_v1
from tests.protocol.sealed_sender.helpers import PLAINTEXT, PREKEY, World, flip


def test_round_trip_returns_content_and_sender_key() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice, b"hello bob", PREKEY, content_hint=1, group_id=b"gid")
    sealed = seal_v1(alice.identity, bob.identity.public, usmc, w.rng)
    content, sender_key = open_v1(bob.identity, sealed)
    assert content == usmc
    assert content.content == b"hello bob"
    assert sender_key == alice.identity.public


def test_layout_and_sizes() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice, bytes(21))
    sealed = seal_v1(alice.identity, bob.identity.public, usmc, w.rng)
    assert sealed[0] == 0x11
    fields = decode_fields(sealed[1:])
    assert sorted(fields) == [1, 2, 3]
    ephemeral, encrypted_static, encrypted_message = fields[1], fields[2], fields[3]
    assert isinstance(ephemeral, bytes) and ephemeral[0] == 0x05 and len(ephemeral) == 33
    assert isinstance(encrypted_static, bytes) and len(encrypted_static) == 33 + 10
    assert isinstance(encrypted_message, bytes) and len(encrypted_message) == len(usmc.serialized) + 10
    assert len(alice.certificate.serialized) == 260
    # envelope overhead: version byte + 3 tags/lengths + 33 + 43 + 10-byte MAC
    assert len(sealed) - len(usmc.serialized) == 1 + 2 + 33 + 2 + 43 + 3 + 10
    parsed = SealedSenderV1Message.decode(sealed)
    assert parsed.encode() == sealed


def test_seal_is_a_function_of_its_rng() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice)
    one = seal_v1(alice.identity, bob.identity.public, usmc, seeded_rng(5))
    two = seal_v1(alice.identity, bob.identity.public, usmc, seeded_rng(5))
    three = seal_v1(alice.identity, bob.identity.public, usmc, seeded_rng(6))
    assert one == two != three


def test_version_nibble_zero_is_accepted_and_the_low_nibble_ignored() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    sealed = seal_v1(alice.identity, bob.identity.public, w.content(alice), w.rng)
    for version in (0x01, 0x10, 0x1F, 0x00):
        content, _ = open_v1(bob.identity, bytes((version,)) + sealed[1:])
        assert content.content == b"inner message"
    for version in (0x21, 0x31, 0xF1):
        with pytest.raises(DecryptionError):
            open_v1(bob.identity, bytes((version,)) + sealed[1:])


def test_wrong_recipient_cannot_open() -> None:
    w = World.create()
    alice, bob, carol = w.party(), w.party(), w.party()
    sealed = seal_v1(alice.identity, bob.identity.public, w.content(alice), w.rng)
    with pytest.raises(DecryptionError):
        open_v1(carol.identity, sealed)


def test_every_tampered_byte_is_refused() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    sealed = seal_v1(alice.identity, bob.identity.public, w.content(alice, b"x" * 40), w.rng)
    for position in range(1, len(sealed)):
        for mask in (0x01, 0x80):
            with pytest.raises((DecryptionError, InvalidCertificateError)):
                open_v1(bob.identity, flip(sealed, position, mask))


def test_every_truncation_and_extension_is_refused() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    sealed = seal_v1(alice.identity, bob.identity.public, w.content(alice), w.rng)
    for length in range(len(sealed)):
        with pytest.raises(DecryptionError):
            open_v1(bob.identity, sealed[:length])
    with pytest.raises(DecryptionError):
        open_v1(bob.identity, sealed + b"\x00")


def test_certificate_must_name_the_key_that_sealed() -> None:
    """Mallory holds a valid certificate for Alice (they travel in every message) but not her key."""
    w = World.create()
    alice, bob = w.party(), w.party()
    mallory = KeyPair.generate(w.rng)
    usmc = w.content(alice)
    sealed = seal_v1(mallory, bob.identity.public, usmc, w.rng)
    with pytest.raises(InvalidCertificateError, match="another identity key"):
        open_v1(bob.identity, sealed)


def test_envelope_decoder_contract() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    sealed = seal_v1(alice.identity, bob.identity.public, w.content(alice), w.rng)
    message = SealedSenderV1Message.decode(sealed)
    assert message.version == 0x11
    for bad in (b"", b"\x11", b"\x21" + sealed[1:], sealed[:-1], sealed[:1] + b"\x0a\x01\x05"):
        with pytest.raises(DecodeError):
            SealedSenderV1Message.decode(bad)


def test_plaintext_content_type_round_trips() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice, b"\xc0retry\x80", PLAINTEXT)
    content, _ = open_v1(bob.identity, seal_v1(alice.identity, bob.identity.public, usmc, w.rng))
    assert content.message_type == PLAINTEXT
