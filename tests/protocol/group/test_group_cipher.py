"""Sender-key encrypt/decrypt: order, limits, tampering, and records left untouched on failure."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import pytest

from sotto.crypto.random import seeded_rng
from sotto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidSessionStateError,
    InvalidSignatureError,
    MessageTooFarAheadError,
    NoSenderKeyStateError,
    SottoError,
    UnsupportedVersionError,
)
from sotto.protocol.group import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    create_distribution,
    group_decrypt,
    group_encrypt,
    process_distribution,
)
from sotto.protocol.limits import MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES
from tests.protocol.group.helpers import Group, make_group


def decrypt_all(group: Group, messages: list[bytes]) -> list[bytes]:
    out = []
    for skm in messages:
        group.member, plaintext = group_decrypt(group.member, skm)
        out.append(plaintext)
    return out


def assert_rejected_untouched(record: SenderKeyRecord, skm: bytes, error: type[Exception]) -> None:
    before = record.to_bytes()
    with pytest.raises(error):
        group_decrypt(record, skm)
    assert record.to_bytes() == before


def test_round_trip() -> None:
    group = make_group()
    plaintexts = [b"", b"x", b"hello group", bytes(range(256)) * 5]
    messages = [group.send(p) for p in plaintexts]
    assert decrypt_all(group, messages) == plaintexts
    assert group.member.states[0].iteration == len(plaintexts)
    assert group.member.states[0].skipped == {}


def test_each_message_has_a_fresh_key_and_the_sender_iteration_advances() -> None:
    group = make_group()
    first, second = group.send(b"same"), group.send(b"same")
    one, two = SenderKeyMessage.decode(first), SenderKeyMessage.decode(second)
    assert (one.iteration, two.iteration) == (0, 1)
    assert one.ciphertext != two.ciphertext


def test_out_of_order_delivery() -> None:
    group = make_group()
    messages = group.send_many(200)
    order = list(range(200))
    random.Random(7).shuffle(order)
    for i in order:
        group.member, plaintext = group_decrypt(group.member, messages[i])
        assert plaintext == b"message %d" % i
    assert group.member.states[0].skipped == {}


def test_duplicate_is_rejected_and_record_unchanged() -> None:
    group = make_group()
    messages = group.send_many(3)
    decrypt_all(group, [messages[2], messages[0]])
    assert_rejected_untouched(group.member, messages[0], DuplicateMessageError)
    assert_rejected_untouched(group.member, messages[2], DuplicateMessageError)
    assert decrypt_all(group, [messages[1]]) == [b"message 1"]


def test_skipping_exactly_max_message_keys_keeps_them_all() -> None:
    group = make_group()
    messages = group.send_many(MAX_MESSAGE_KEYS + 1)
    decrypt_all(group, [messages[MAX_MESSAGE_KEYS]])
    assert len(group.member.states[0].skipped) == MAX_MESSAGE_KEYS
    assert decrypt_all(group, [messages[0], messages[MAX_MESSAGE_KEYS - 1]]) == [
        b"message 0",
        b"message %d" % (MAX_MESSAGE_KEYS - 1),
    ]


def test_one_more_skipped_key_evicts_the_oldest() -> None:
    group = make_group()
    messages = group.send_many(MAX_MESSAGE_KEYS + 2)
    decrypt_all(group, [messages[MAX_MESSAGE_KEYS + 1]])
    assert len(group.member.states[0].skipped) == MAX_MESSAGE_KEYS
    assert_rejected_untouched(group.member, messages[0], DuplicateMessageError)
    assert decrypt_all(group, [messages[1]]) == [b"message 1"]


def test_eviction_across_two_jumps_drops_the_oldest_first() -> None:
    group = make_group()
    messages = group.send_many(MAX_MESSAGE_KEYS + 12)
    decrypt_all(group, [messages[10]])  # skips 0..9
    decrypt_all(group, [messages[MAX_MESSAGE_KEYS + 11]])  # skips 11..2010: 2,010 + 10 > 2,000
    skipped = group.member.states[0].skipped
    assert len(skipped) == MAX_MESSAGE_KEYS
    assert min(skipped) == 11  # all of 0..9 went first, oldest inserted first
    assert_rejected_untouched(group.member, messages[9], DuplicateMessageError)
    assert decrypt_all(group, [messages[11]]) == [b"message 11"]


def test_forward_jump_of_exactly_the_limit_is_accepted() -> None:
    group = make_group()
    group.skip_sender_ahead(MAX_FORWARD_JUMPS)
    skm = group.send(b"far")
    assert SenderKeyMessage.decode(skm).iteration == MAX_FORWARD_JUMPS
    assert decrypt_all(group, [skm]) == [b"far"]
    assert len(group.member.states[0].skipped) == MAX_MESSAGE_KEYS


def test_forward_jump_past_the_limit_is_refused_and_record_unchanged() -> None:
    group = make_group()
    group.skip_sender_ahead(MAX_FORWARD_JUMPS + 1)
    skm = group.send(b"too far")
    assert_rejected_untouched(group.member, skm, MessageTooFarAheadError)
    with pytest.raises(MessageTooFarAheadError) as info:
        group_decrypt(group.member, skm)
    assert (info.value.chain_index, info.value.counter) == (0, MAX_FORWARD_JUMPS + 1)


def test_tampered_signature_is_refused_and_record_unchanged() -> None:
    group = make_group()
    skm = bytearray(group.send(b"signed"))
    skm[-1] ^= 0x01
    assert_rejected_untouched(group.member, bytes(skm), InvalidSignatureError)
    skm[-1] ^= 0x01
    skm[-40] ^= 0x80
    assert_rejected_untouched(group.member, bytes(skm), InvalidSignatureError)


def test_tampered_ciphertext_is_refused_by_the_signature_and_record_unchanged() -> None:
    group = make_group()
    skm = group.send(b"a ciphertext that spans two blocks")
    parsed = SenderKeyMessage.decode(skm)
    position = skm.index(parsed.ciphertext) + 3
    tampered = skm[:position] + bytes([skm[position] ^ 0x04]) + skm[position + 1 :]
    assert_rejected_untouched(group.member, tampered, InvalidSignatureError)
    assert decrypt_all(group, [skm]) == [b"a ciphertext that spans two blocks"]


def test_signed_but_undecryptable_ciphertext_is_decryption_error_and_record_unchanged() -> None:
    """Only the sender could do this; the receiver still must not move its chain."""
    group = make_group()
    state = group.sender.states[0]
    assert state.signing_private is not None
    rng = seeded_rng(9)
    for bad in (rng(32), rng(17), b""):
        forged = SenderKeyMessage.create(
            distribution_id=group.distribution_id,
            chain_id=state.chain_id,
            iteration=5,
            ciphertext=bad,
            signing_key=state.signing_private,
            rng=rng,
        )
        assert_rejected_untouched(group.member, forged.encode(), DecryptionError)


def test_other_signing_key_with_the_same_chain_id_is_refused() -> None:
    group = make_group()
    impostor = make_group(seed=2)
    state = impostor.sender.states[0]
    impostor.sender = impostor.sender.with_state_at(
        0, replace(state, chain_id=group.sender.states[0].chain_id)
    )
    impostor.sender = replace(impostor.sender, distribution_id=group.distribution_id)
    forged = impostor.send(b"not from the sender")
    assert_rejected_untouched(group.member, forged, InvalidSignatureError)


def test_unknown_chain_or_distribution_is_no_sender_key_state() -> None:
    group = make_group()
    other = make_group(seed=3)
    assert_rejected_untouched(group.member, other.send(b"other distribution"), NoSenderKeyStateError)
    same_distribution = make_group(seed=4)
    same_distribution.sender = replace(same_distribution.sender, distribution_id=group.distribution_id)
    assert_rejected_untouched(group.member, same_distribution.send(b"other chain"), NoSenderKeyStateError)


def test_version_mismatch_is_unsupported_version() -> None:
    group = make_group()
    skm = group.send(b"v")
    for version_byte in (0x23, 0x43, 0xF3):
        assert_rejected_untouched(group.member, bytes([version_byte]) + skm[1:], UnsupportedVersionError)


def test_create_distribution_reuses_the_chain_from_its_current_iteration() -> None:
    group = make_group()
    early = group.send_many(3)
    record, skdm = create_distribution(group.sender, group.distribution_id, group.rng)
    assert record == group.sender
    assert (skdm.chain_id, skdm.iteration, skdm.signing_key) == (
        group.skdm.chain_id,
        3,
        group.skdm.signing_key,
    )
    late_member = process_distribution(None, skdm)
    assert_rejected_untouched(late_member, early[0], DuplicateMessageError)
    late_member, plaintext = group_decrypt(late_member, group.send(b"after joining"))
    assert plaintext == b"after joining"


def test_processing_a_known_skdm_again_keeps_progress() -> None:
    group = make_group()
    decrypt_all(group, group.send_many(3))
    again = process_distribution(group.member, group.skdm)
    assert again.to_bytes() == group.member.to_bytes()


def test_rekeying_six_times_keeps_the_five_newest_chains() -> None:
    rng = seeded_rng(5)
    distribution_id = uuid.UUID(bytes=rng(16))
    member: SenderKeyRecord | None = None
    senders = []
    for _ in range(MAX_SENDER_KEY_STATES + 1):
        sender, skdm = create_distribution(None, distribution_id, rng)  # a re-key starts from no record
        member = process_distribution(member, skdm)
        senders.append(sender)
    assert member is not None
    assert [s.chain_id for s in member.states] == [s.states[0].chain_id for s in reversed(senders[1:])]
    _, oldest_message = group_encrypt(senders[0], b"oldest", rng)
    assert_rejected_untouched(member, oldest_message, NoSenderKeyStateError)
    for i, sender in enumerate(senders[1:], start=1):
        _, skm = group_encrypt(sender, b"chain %d" % i, rng)
        member, plaintext = group_decrypt(member, skm)
        assert plaintext == b"chain %d" % i
    assert len(member.states) == MAX_SENDER_KEY_STATES


def test_same_chain_id_with_a_new_signing_key_replaces_the_old_state() -> None:
    group = make_group()
    other = make_group(seed=6)
    skdm = replace(other.skdm, distribution_id=group.distribution_id, chain_id=group.skdm.chain_id)
    member = process_distribution(group.member, skdm)
    assert len(member.states) == 1
    assert member.states[0].signing_key == other.skdm.signing_key


def test_only_the_owner_of_a_chain_can_encrypt() -> None:
    group = make_group()
    with pytest.raises(InvalidSessionStateError):
        group_encrypt(group.member, b"members cannot sign", group.rng)
    with pytest.raises(NoSenderKeyStateError):
        group_encrypt(SenderKeyRecord(group.distribution_id, ()), b"no chain", group.rng)


def test_records_of_another_distribution_are_a_caller_error() -> None:
    group = make_group()
    with pytest.raises(ValueError, match="distribution"):
        create_distribution(group.sender, uuid.UUID(int=1), group.rng)
    with pytest.raises(ValueError, match="distribution"):
        process_distribution(group.member, replace(group.skdm, distribution_id=uuid.UUID(int=1)))


def test_failures_are_sotto_errors() -> None:
    group = make_group()
    for junk in (b"", b"\x33", bytes(65), b"\x33" + bytes(70)):
        with pytest.raises(SottoError):
            group_decrypt(group.member, junk)


def test_skdm_decodes_from_the_wire_form_only_with_its_secret_hidden_in_repr() -> None:
    group = make_group()
    decoded = SenderKeyDistributionMessage.decode(group.skdm.encode())
    assert decoded == group.skdm
    assert group.skdm.chain_key.hex() not in repr(group.skdm)
