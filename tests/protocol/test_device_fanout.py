"""One message for every device: one key slot per device, always 8 slots of one size."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, DecryptionError
from sotto.protocol import device_fanout as fanout
from sotto.protocol import session
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType
from tests.protocol.parties import ALICE_NAME, BOB_NAME, Party

REFUSED = (DecodeError, DecryptionError)


class Conversation:
    """Alice's phone sends to ``bob_devices`` of Bob's and ``own_devices`` other devices of hers."""

    def __init__(self, bob_devices: int, own_devices: int = 0, seed: int = 1) -> None:
        self.rng = seeded_rng(seed)
        self.sender = Party(ALICE_NAME, 1, self.rng)
        self.recipients = [Party(BOB_NAME, d + 1, self.rng) for d in range(bob_devices)]
        self.recipients += [Party(ALICE_NAME, d + 2, self.rng) for d in range(own_devices)]
        for device in self.recipients:
            self.sender.start_session(device)

    def send(self, plaintext: bytes, recipients: list[Party] | None = None) -> bytes:
        draft = fanout.prepare(plaintext, self.rng)
        slots = [
            fanout.SlotInput(
                fanout.pair_key(self.sender.identity, device.identity.public),
                self.sender.encrypt(device, draft.key_part),
            )
            for device in (self.recipients if recipients is None else recipients)
        ]
        return fanout.seal(draft, slots, self.rng)

    def receive(self, device: Party, envelope: bytes) -> bytes:
        def decrypt(index: int, message: CiphertextMessage) -> tuple[None, bytes]:
            assert index == 0
            return None, device.decrypt(self.sender, message)

        _, _, plaintext = fanout.open_envelope(envelope, [self.key_of(device)], decrypt)
        return plaintext

    def key_of(self, device: Party) -> bytes:
        """The pair key as the receiving device computes it."""
        return fanout.pair_key(device.identity, self.sender.identity.public)


def _slot_position(envelope: bytes, key: bytes) -> int:
    """Which slot is the device's: the one whose corruption stops it finding any."""
    parsed = fanout.Envelope.decode(envelope)
    fanout.find_slot(parsed, [key])
    for position in range(fanout.SLOTS):
        slots = list(parsed.slots)
        slots[position] = bytes(fanout.SLOT_LENGTH)
        try:
            fanout.find_slot(fanout.Envelope(parsed.nonce, tuple(slots), parsed.content), [key])
        except DecryptionError:
            return position
    raise AssertionError("no slot is the device's")


@pytest.mark.parametrize("devices", range(1, 9))
def test_every_device_recovers_the_content(devices: int) -> None:
    chat = Conversation(devices)
    envelope = chat.send(b"hello, every device")
    for device in chat.recipients:
        assert chat.receive(device, envelope) == b"hello, every device"


def test_the_senders_other_devices_and_the_contacts_share_one_envelope() -> None:
    chat = Conversation(bob_devices=3, own_devices=2)
    first = chat.send(b"first")
    assert [chat.receive(d, first) for d in chat.recipients] == [b"first"] * 5
    # Replies turn the sessions to Whisper messages; the envelope keeps its size.
    for device in chat.recipients:
        chat.sender.decrypt(device, device.encrypt(chat.sender, b"ack"))
    second = chat.send(b"again")
    assert len(second) == len(first)
    assert [chat.receive(d, second) for d in chat.recipients] == [b"again"] * 5


def test_one_to_eight_devices_give_envelopes_of_one_length() -> None:
    lengths = {len(Conversation(n, seed=n).send(b"same text")) for n in range(1, 9)}
    assert lengths == {fanout.MIN_LENGTH + len(b"same text")}


def _features(slot: bytes) -> tuple[float, int, int]:
    """What a relay could look at in a slot: compressibility, the commonest byte's count, zeros."""
    return len(zlib.compress(slot, 9)) / len(slot), Counter(slot).most_common(1)[0][1], slot.count(0)


@pytest.mark.parametrize("devices", [1, 4, 8])
def test_used_and_unused_slots_look_alike(devices: int) -> None:
    chat = Conversation(devices, seed=40 + devices)
    plaintext = b"the same words"
    envelope = chat.send(plaintext)
    parsed = fanout.Envelope.decode(envelope)
    used = {_slot_position(envelope, chat.key_of(d)) for d in chat.recipients}
    assert len(used) == devices
    for slot in parsed.slots:
        ratio, commonest, zeros = _features(slot)
        assert ratio > 1.0  # random bytes do not compress
        assert commonest < 30  # about 7.4 of each byte value in 1,904 random bytes
        assert zeros < 30
    # No slot shows a Signal message in the clear: no version byte run, no identity key.
    for device in chat.recipients:
        assert chat.sender.identity.public.serialized not in envelope
        assert device.identity.public.serialized not in envelope
    assert plaintext not in envelope


def test_slot_positions_are_random() -> None:
    positions = set()
    for seed in range(40):
        chat = Conversation(1, seed=100 + seed)
        positions.add(_slot_position(chat.send(b"x"), chat.key_of(chat.recipients[0])))
    assert positions == set(range(fanout.SLOTS))


def test_a_device_not_among_the_slots_recovers_nothing() -> None:
    chat = Conversation(3)
    outsider = Party(BOB_NAME, 9, chat.rng)
    chat.sender.start_session(outsider)
    envelope = chat.send(b"not for the outsider")
    calls: list[CiphertextMessage] = []

    def decrypt(index: int, message: CiphertextMessage) -> tuple[None, bytes]:
        calls.append(message)
        return None, outsider.decrypt(chat.sender, message)

    with pytest.raises(DecryptionError):
        fanout.open_envelope(envelope, [chat.key_of(outsider)], decrypt)
    # Nor does a recipient device holding the pair key of another sender device.
    with pytest.raises(DecryptionError):
        fanout.open_envelope(
            envelope, [fanout.pair_key(outsider.identity, chat.recipients[0].identity.public)], decrypt
        )
    assert calls == []


def test_a_removed_device_recovers_nothing_from_later_envelopes() -> None:
    chat = Conversation(3)
    removed = chat.recipients[2]
    envelope = chat.send(b"after the removal", chat.recipients[:2])
    assert chat.receive(chat.recipients[0], envelope) == b"after the removal"
    with pytest.raises(DecryptionError):
        chat.receive(removed, envelope)


def test_tampering_with_any_byte_is_refused() -> None:
    chat = Conversation(2)
    envelope = chat.send(b"do not touch")
    device = chat.recipients[0]
    own = _slot_position(envelope, chat.key_of(device))
    other = _slot_position(envelope, chat.key_of(chat.recipients[1]))
    empty = next(p for p in range(fanout.SLOTS) if p not in (own, other))
    start = fanout.HEADER_LENGTH
    offsets = [0, 1, 32, len(envelope) - 1, len(envelope) - 20]
    for position in (own, other, empty):
        base = start + position * fanout.SLOT_LENGTH
        offsets += [base, base + 700, base + fanout.SLOT_LENGTH - 1]
    for offset in offsets:
        tampered = bytearray(envelope)
        tampered[offset] ^= 0x01
        # A fresh copy of the device each time: a refusal must not depend on earlier ones.
        with pytest.raises(REFUSED):
            _receive_without_storing(chat, device, bytes(tampered))
    for cut in (envelope[:-1], envelope + b"\x00", envelope[: fanout.MIN_LENGTH - 1]):
        with pytest.raises(REFUSED):
            _receive_without_storing(chat, device, cut)
    assert _receive_without_storing(chat, device, envelope) == b"do not touch"


def _receive_without_storing(chat: Conversation, device: Party, envelope: bytes) -> bytes:
    """Open with the pure session API: the new record comes back and is not stored."""
    record = device.sessions.get(chat.sender.address)

    def decrypt(index: int, message: CiphertextMessage) -> tuple[object, bytes]:
        assert message.type is CiphertextMessageType.PREKEY
        result = session.decrypt_prekey_message(
            record,
            message.body,
            our_identity=device.identity,
            our_registration_id=device.registration_id,
            our_address=device.address,
            their_address=chat.sender.address,
            signed_pre_key=device.signed,
            kyber_pre_key=device.kyber,
            one_time_pre_key=next(iter(device.one_time.values()), None),
            rng=chat.rng,
        )
        return result.record, result.plaintext

    _, _, plaintext = fanout.open_envelope(envelope, [chat.key_of(device)], decrypt)
    return plaintext


def test_swapped_content_under_a_known_key_is_refused() -> None:
    """A co-recipient knows K; content it re-encrypts under K fails the other device's commitment."""
    chat = Conversation(2)
    envelope = chat.send(b"the real words")
    parsed = fanout.Envelope.decode(envelope)
    _, message = fanout.find_slot(parsed, [chat.key_of(chat.recipients[0])])
    key_part = chat.recipients[0].decrypt(chat.sender, message)
    from sotto.crypto.aead import aes256_gcm_encrypt

    aad = parsed.header + b"".join(parsed.slots)
    forged = fanout.Envelope(
        parsed.nonce, parsed.slots, aes256_gcm_encrypt(key_part[:32], bytes(12), b"other words", aad)
    ).encode()
    with pytest.raises(DecryptionError):
        chat.receive(chat.recipients[1], forged)


def test_a_wrong_size_key_part_is_refused() -> None:
    chat = Conversation(1)
    envelope = chat.send(b"text")
    with pytest.raises(DecryptionError):
        fanout.open_envelope(envelope, [chat.key_of(chat.recipients[0])], lambda i, m: (None, b"short"))


def test_seal_refuses_what_cannot_go_in_a_slot() -> None:
    rng = seeded_rng(5)
    draft = fanout.prepare(b"x", rng)
    key = rng(32)
    whisper = CiphertextMessage(CiphertextMessageType.WHISPER, b"\x44" * 10)
    with pytest.raises(ValueError, match="at most 8"):
        fanout.seal(draft, [fanout.SlotInput(rng(32), whisper) for _ in range(9)], rng)
    with pytest.raises(ValueError, match="32 bytes"):
        fanout.seal(draft, [fanout.SlotInput(rng(16), whisper)], rng)
    with pytest.raises(ValueError, match="twice"):
        fanout.seal(draft, [fanout.SlotInput(key, whisper)] * 2, rng)
    with pytest.raises(ValueError, match="does not fit"):
        long = CiphertextMessage(CiphertextMessageType.PREKEY, bytes(fanout.MAX_SLOT_MESSAGE_LENGTH + 1))
        fanout.seal(draft, [fanout.SlotInput(key, long)], rng)
    with pytest.raises(ValueError, match="type"):
        fanout.seal(
            draft, [fanout.SlotInput(key, CiphertextMessage(CiphertextMessageType.SENDER_KEY, b""))], rng
        )


def test_a_prekey_message_fits_a_slot_with_room_to_spare() -> None:
    chat = Conversation(1)
    message = chat.sender.encrypt(chat.recipients[0], bytes(fanout.KEY_PART_LENGTH))
    assert message.type is CiphertextMessageType.PREKEY
    # Varints at their widest add at most 4 bytes to each of two counters and three prekey ids.
    assert len(message.body) + 5 * 4 <= fanout.MAX_SLOT_MESSAGE_LENGTH


def test_pair_keys_agree_and_the_receiver_learns_which_sender_device_wrote() -> None:
    rng = seeded_rng(9)
    a, b, c = (KeyPair.generate(rng) for _ in range(3))
    assert fanout.pair_key(a, b.public) == fanout.pair_key(b, a.public)
    assert fanout.pair_key(a, b.public) != fanout.pair_key(a, c.public)
    # Bob's laptop does not know which of Alice's three devices wrote: it tries all three keys.
    chat = Conversation(2, seed=12)
    laptop = chat.recipients[1]
    others = [fanout.pair_key(laptop.identity, k.public) for k in (a, c)]
    calls: list[int] = []

    def decrypt(index: int, message: CiphertextMessage) -> tuple[None, bytes]:
        calls.append(index)
        return None, laptop.decrypt(chat.sender, message)

    envelope = chat.send(b"from the phone")
    index, _, plaintext = fanout.open_envelope(envelope, [others[0], chat.key_of(laptop), others[1]], decrypt)
    assert (index, plaintext, calls) == (1, b"from the phone", [1])


def test_repr_shows_no_secrets() -> None:
    draft = fanout.prepare(b"secret words", seeded_rng(2))
    assert "secret" not in repr(draft) and draft.key.hex() not in repr(draft)
    slot = fanout.SlotInput(bytes(range(32)), CiphertextMessage(CiphertextMessageType.WHISPER, b"body"))
    assert bytes(range(32)).hex() not in repr(slot) and "body" not in repr(slot)


def test_decode_refuses_each_rule() -> None:
    chat = Conversation(1)
    envelope = chat.send(b"rules")
    with pytest.raises(DecodeError, match="format"):
        fanout.Envelope.decode(b"\x02" + envelope[1:])
    with pytest.raises(DecodeError, match="short"):
        fanout.Envelope.decode(envelope[: fanout.MIN_LENGTH - 1])
    with pytest.raises(DecodeError, match="longer"):
        fanout.Envelope.decode(envelope + bytes(fanout.MAX_LENGTH))
    assert fanout.Envelope.decode(envelope).encode() == envelope


_KEYS = [seeded_rng(77)(32), seeded_rng(78)(32)]


def _open_arbitrary(data: bytes) -> None:
    def decrypt(index: int, message: CiphertextMessage) -> tuple[None, bytes]:
        raise AssertionError("no slot of arbitrary bytes opens")

    with pytest.raises(REFUSED):
        fanout.open_envelope(data, _KEYS, decrypt)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_short_bytes_are_refused_with_typed_errors(data: bytes) -> None:
    _open_arbitrary(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1), st.binary(min_size=12, max_size=12), st.binary(max_size=300), st.randoms())
def test_arbitrary_envelope_sized_bytes_are_refused_with_typed_errors(
    format_flip: int, nonce: bytes, tail: bytes, random: object
) -> None:
    body = random.randbytes(fanout.SLOTS_LENGTH)  # type: ignore[attr-defined]
    _open_arbitrary(bytes((fanout.FORMAT ^ format_flip,)) + nonce + body + tail)
