"""Sealed sender v2: sent-form layout and strict parsing, the split, received-form opening."""

from __future__ import annotations

import uuid

import pytest

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, DecryptionError, InvalidCertificateError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.sealed_sender import (
    ReceivedMessage,
    SentMessage,
    open_v2,
    seal_v2,
)
from tests.protocol.sealed_sender.helpers import SENDER_KEY, SHARE, World, fixed, flip, recipients_for


@pytest.mark.parametrize("count", [1, 2, 5])
@pytest.mark.parametrize("devices", [1, 3])
def test_round_trip_to_every_recipient(count: int, devices: int) -> None:
    w = World.create(seed=count * 10 + devices)
    alice = w.party()
    parties = [w.party() for _ in range(count)]
    usmc = w.content(alice, b"group message", SENDER_KEY, content_hint=2, group_id=b"\x01\x02\x03")
    sent = seal_v2(alice.identity, recipients_for(parties, devices), usmc, w.rng)
    parsed = SentMessage.parse(sent)
    assert parsed.version == 0x23
    assert [r.service_id for r in parsed.recipients] == [fixed(p) for p in parties]
    for index, party in enumerate(parties):
        recipient = parsed.recipient(index)
        assert recipient.devices == tuple(
            (d, (party.registration_id + d) & 0x3FFF) for d in range(1, devices + 1)
        )
        received = parsed.received_message_for(index)
        assert received == parsed.received_message_for(party.uuid)
        assert received[0] == 0x22
        assert len(received) == 1 + SHARE + 32 + len(usmc.serialized) + 16
        content, sender_key = open_v2(party.identity, received)
        assert content == usmc
        assert sender_key == alice.identity.public


def test_sent_form_layout_byte_by_byte() -> None:
    w = World.create()
    alice, bob, carol = w.party(), w.party(), w.party()
    dropped = uuid.UUID(bytes=w.rng(16))
    usmc = w.content(alice)
    recipients = [
        (bob.uuid, [(1, 0x1234)], bob.identity.public),
        (carol.uuid, [(1, 5), (7, 0x3FFF)], carol.identity.public),
    ]
    sent = seal_v2(alice.identity, recipients, usmc, w.rng, excluded=[f"PNI:{dropped}"])
    pos = 0
    assert sent[pos] == 0x23
    assert sent[1] == 3  # varint: 2 recipients + 1 excluded
    pos = 2
    assert sent[pos : pos + 17] == fixed(bob)
    pos += 17
    assert sent[pos : pos + 3] == b"\x01\x12\x34"  # device 1, no more, registration id 0x1234
    pos += 3 + SHARE
    assert sent[pos : pos + 17] == fixed(carol)
    pos += 17
    assert sent[pos : pos + 6] == b"\x01\x80\x05\x07\x3f\xff"  # device 1 has more; device 7 last
    pos += 6 + SHARE
    assert sent[pos : pos + 18] == b"\x01" + dropped.bytes + b"\x00"  # excluded PNI
    pos += 18
    assert len(sent) - pos == 32 + len(usmc.serialized) + 16
    parsed = SentMessage.parse(sent)
    assert parsed.recipients[2].excluded
    assert parsed.shared_bytes == sent[pos:]


def test_service_id_forms_are_interchangeable() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice)
    by_string = seal_v2(alice.identity, recipients_for([bob]), usmc, seeded_rng(1))
    by_bytes = seal_v2(
        alice.identity,
        [(fixed(bob), [(1, bob.registration_id + 1)], bob.identity.public)],
        usmc,
        seeded_rng(1),
    )
    by_address = seal_v2(
        alice.identity,
        [(ProtocolAddress(bob.uuid, 1), [(1, bob.registration_id + 1)], bob.identity.public)],
        usmc,
        seeded_rng(1),
    )
    assert by_string == by_bytes == by_address
    parsed = SentMessage.parse(by_string)
    assert parsed.received_message_for(fixed(bob)) == parsed.received_message_for(bob.address)
    assert parsed.received_message_for(bob.uuid.upper()) == parsed.received_message_for(0)


def test_received_message_for_unknown_or_excluded() -> None:
    w = World.create()
    alice, bob, carol = w.party(), w.party(), w.party()
    sent = seal_v2(alice.identity, recipients_for([bob]), w.content(alice), w.rng, excluded=[carol.uuid])
    parsed = SentMessage.parse(sent)
    with pytest.raises(ValueError, match="excluded"):
        parsed.received_message_for(carol.uuid)
    with pytest.raises(KeyError):
        parsed.received_message_for(str(uuid.UUID(int=1)))
    with pytest.raises(IndexError):
        parsed.received_message_for(5)
    with pytest.raises(ValueError):
        parsed.received_message_for("not-a-service-id")


def test_seal_refuses_bad_arguments() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice)
    key = bob.identity.public
    bad_lists: list[list[tuple[object, list[tuple[int, int]], object]]] = [
        [(bob.uuid, [], key)],
        [(bob.uuid, [(0, 1)], key)],
        [(bob.uuid, [(128, 1)], key)],
        [(bob.uuid, [(1, 0x4000)], key)],
        [(bob.uuid, [(1, -1)], key)],
        [(bob.uuid, [(1, 1)], key), (bob.uuid, [(2, 1)], key)],
        [("bob", [(1, 1)], key)],
        [(b"\x02" + bytes(16), [(1, 1)], key)],
        [(bytes(16), [(1, 1)], key)],
    ]
    for recipients in bad_lists:
        with pytest.raises(ValueError):
            seal_v2(alice.identity, recipients, usmc, w.rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        seal_v2(alice.identity, recipients_for([bob]), usmc, w.rng, excluded=[bob.uuid])


def test_seal_is_a_function_of_its_rng() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice)
    one = seal_v2(alice.identity, recipients_for([bob]), usmc, seeded_rng(3))
    assert one == seal_v2(alice.identity, recipients_for([bob]), usmc, seeded_rng(3))
    assert one != seal_v2(alice.identity, recipients_for([bob]), usmc, seeded_rng(4))


# ------------------------------------------------------------------------------ received form
def test_received_form_decode_encode() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    received = SentMessage.parse(
        seal_v2(alice.identity, recipients_for([bob]), w.content(alice), w.rng)
    ).received_message_for(0)
    message = ReceivedMessage.decode(received)
    assert message.encode() == received
    assert (len(message.encrypted_message_key), len(message.authentication_tag)) == (32, 16)
    for bad in (
        b"",
        b"\x22",
        received[: 1 + 32 + 16 + 32 + 15],
        b"\x12" + received[1:],
        b"\x32" + received[1:],
    ):
        with pytest.raises(DecodeError):
            ReceivedMessage.decode(bad)


def test_wrong_recipient_and_swapped_shares_are_refused() -> None:
    w = World.create()
    alice, bob, carol, dave = w.party(), w.party(), w.party(), w.party()
    parsed = SentMessage.parse(seal_v2(alice.identity, recipients_for([bob, carol]), w.content(alice), w.rng))
    for_bob = parsed.received_message_for(bob.uuid)
    for_carol = parsed.received_message_for(carol.uuid)
    with pytest.raises(DecryptionError):
        open_v2(dave.identity, for_bob)
    with pytest.raises(DecryptionError):
        open_v2(carol.identity, for_bob)
    # Carol's share handed to Bob
    with pytest.raises(DecryptionError):
        open_v2(bob.identity, for_bob[:1] + for_carol[1:49] + for_bob[49:])
    # Bob's share from this message spliced onto another message's E.pub and ciphertext
    other = SentMessage.parse(seal_v2(alice.identity, recipients_for([bob]), w.content(alice), w.rng))
    spliced = for_bob[:49] + other.shared_bytes
    with pytest.raises(DecryptionError):
        open_v2(bob.identity, spliced)
    assert open_v2(bob.identity, other.received_message_for(0))[0].content == b"inner message"


def test_every_tampered_byte_of_the_received_form_is_refused() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    received = SentMessage.parse(
        seal_v2(alice.identity, recipients_for([bob]), w.content(alice, b"y" * 30), w.rng)
    ).received_message_for(0)
    # the low nibble of the version byte is not authenticated: 0x23 reads as 0x22 does
    assert open_v2(bob.identity, flip(received, 0))[0].content == b"y" * 30
    tag = range(1 + 32, 1 + SHARE)
    for position in range(1, len(received)):
        # A changed AT still decrypts, but no longer proves the certificate's key sealed it.
        expected = InvalidCertificateError if position in tag else DecryptionError
        with pytest.raises(expected):
            open_v2(bob.identity, flip(received, position))
    for length in range(len(received)):
        with pytest.raises(DecryptionError):
            open_v2(bob.identity, received[:length])


def test_certificate_must_match_the_sender_tag() -> None:
    """A sender cannot put someone else's certificate inside: AT binds the sealing identity.

    The content decrypts, so the refusal is an invalid certificate, as in v1 and in libsignal
    ("sender certificate key does not match authentication tag"), not a decryption failure.
    """
    w = World.create()
    alice, bob = w.party(), w.party()
    mallory = KeyPair.generate(w.rng)
    sent = seal_v2(mallory, recipients_for([bob]), w.content(alice), w.rng)
    with pytest.raises(InvalidCertificateError, match="authentication tag"):
        open_v2(bob.identity, SentMessage.parse(sent).received_message_for(0))


def test_repr_hides_shared_bytes() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    parsed = SentMessage.parse(seal_v2(alice.identity, recipients_for([bob]), w.content(alice), w.rng))
    assert parsed.shared_bytes.hex()[:16] not in repr(parsed)
    assert "recipients=1" in repr(parsed)


def test_open_does_not_raise_other_errors_on_a_bad_certificate_chain() -> None:
    """open_v2 checks only the cryptography; the chain is open_sealed's job."""
    w = World.create()
    alice, bob = w.party(), w.party()
    other = World.create(seed=99)
    alice.certificate = other.certify(alice.identity, alice.uuid)
    received = SentMessage.parse(
        seal_v2(alice.identity, recipients_for([bob]), w.content(alice), w.rng)
    ).received_message_for(0)
    content, _ = open_v2(bob.identity, received)
    with pytest.raises(InvalidCertificateError):
        content.sender_certificate.validate(w.root.public, 0)
