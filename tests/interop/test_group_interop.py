"""Sender keys against the real libsignal, both directions, with reordering and tampering."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import pytest

from sotto.crypto.random import seeded_rng
from sotto.errors import DuplicateMessageError, InvalidSignatureError
from sotto.protocol.group import (
    SenderKeyDistributionMessage,
    SenderKeyRecord,
    create_distribution,
    group_decrypt,
    group_encrypt,
    process_distribution,
)
from tests.interop.oracle import Oracle, from_hex

MESSAGES = 300


@dataclass(frozen=True)
class Party:
    handle: str
    name: str
    device: int


def new_party(oracle: Oracle) -> Party:
    reply = oracle.new_party()
    return Party(reply["party"], reply["name"], reply["device"])


def libsignal_receive(oracle: Oracle, member: Party, sender: Party, skm: bytes) -> dict[str, object]:
    """libsignal's verdict on one SKM: the raw reply, ``ok`` false when it refuses."""
    return oracle.try_call(
        "group_recv", party=member.handle, sender_name=sender.name, sender_device=sender.device, skm=skm
    )


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def test_libsignal_sender_to_sotto_member_with_reordering(oracle: Oracle) -> None:
    sender = new_party(oracle)
    distribution = str(uuid.uuid4())
    sent = [
        oracle.call("group_send", party=sender.handle, distribution_id=distribution, pt=b"ls %d" % i)
        for i in range(MESSAGES)
    ]
    skdm = SenderKeyDistributionMessage.decode(from_hex(sent[0]["skdm"]))
    assert str(skdm.distribution_id) == distribution
    member = process_distribution(None, skdm)

    order = list(range(MESSAGES))
    random.Random(1).shuffle(order)
    for i in order:
        member, plaintext = group_decrypt(member, from_hex(sent[i]["skm"]))
        assert plaintext == b"ls %d" % i
    assert member.states[0].iteration == MESSAGES
    assert member.states[0].skipped == {}
    with pytest.raises(DuplicateMessageError):
        group_decrypt(member, from_hex(sent[order[0]]["skm"]))

    # libsignal's SKDM made now starts from its current iteration: a late joiner gets it.
    late = oracle.call("group_create_skdm", party=sender.handle, distribution_id=distribution)["skdm"]
    assert SenderKeyDistributionMessage.decode(from_hex(late)).iteration == MESSAGES


def test_sotto_sender_to_libsignal_member_with_reordering(oracle: Oracle) -> None:
    rng = seeded_rng(2024)
    member = new_party(oracle)
    sotto_sender = Party("-", str(uuid.UUID(bytes=rng(16))), 1)
    record, skdm = create_distribution(None, uuid.UUID(bytes=rng(16)), rng)
    oracle.call(
        "group_recv",
        party=member.handle,
        sender_name=sotto_sender.name,
        sender_device=sotto_sender.device,
        skdm=skdm.encode(),
    )
    messages = []
    for i in range(MESSAGES):
        record, skm = group_encrypt(record, b"py %d" % i, rng)
        messages.append(skm)

    order = list(range(MESSAGES))
    random.Random(2).shuffle(order)
    for i in order:
        reply = libsignal_receive(oracle, member, sotto_sender, messages[i])
        assert reply["ok"], reply
        assert from_hex(str(reply["pt"])) == b"py %d" % i
    replay = libsignal_receive(oracle, member, sotto_sender, messages[order[-1]])
    assert not replay["ok"]

    # A re-key: libsignal keeps the old chain for late messages and reads the new one.
    late_old, _ = create_distribution(record, record.distribution_id, rng)
    record, late_old_message = group_encrypt(late_old, b"late on the old chain", rng)
    new_record, new_skdm = create_distribution(None, record.distribution_id, rng)
    oracle.call(
        "group_recv",
        party=member.handle,
        sender_name=sotto_sender.name,
        sender_device=sotto_sender.device,
        skdm=new_skdm.encode(),
    )
    _, on_new_chain = group_encrypt(new_record, b"new chain", rng)
    for skm, text in ((on_new_chain, b"new chain"), (late_old_message, b"late on the old chain")):
        reply = libsignal_receive(oracle, member, sotto_sender, skm)
        assert reply["ok"], reply
        assert from_hex(str(reply["pt"])) == text


def test_tampered_messages_are_rejected_by_both(oracle: Oracle) -> None:
    rng = seeded_rng(7)
    ls_sender, ls_member = new_party(oracle), new_party(oracle)
    distribution = str(uuid.uuid4())
    first = oracle.call("group_send", party=ls_sender.handle, distribution_id=distribution, pt=b"genuine")
    oracle.call(
        "group_recv",
        party=ls_member.handle,
        sender_name=ls_sender.name,
        sender_device=ls_sender.device,
        skdm=first["skdm"],
    )
    sotto_member = process_distribution(None, SenderKeyDistributionMessage.decode(from_hex(first["skdm"])))

    # Sotto as the sender too, read by the same libsignal member under another sender address.
    sotto_sender = Party("-", str(uuid.UUID(bytes=rng(16))), 1)
    sotto_record, sotto_skdm = create_distribution(None, uuid.UUID(distribution), rng)
    oracle.call(
        "group_recv",
        party=ls_member.handle,
        sender_name=sotto_sender.name,
        sender_device=sotto_sender.device,
        skdm=sotto_skdm.encode(),
    )
    sotto_record, sotto_skm = group_encrypt(sotto_record, b"genuine", rng)
    sotto_reader = process_distribution(None, sotto_skdm)

    cases = [
        (ls_sender, from_hex(first["skm"]), sotto_member),
        (sotto_sender, sotto_skm, sotto_reader),
    ]
    for sender, skm, reader in cases:
        ciphertext_at, signature_at = len(skm) - 64 - 3, len(skm) - 5
        for tampered in (flip(skm, ciphertext_at), flip(skm, signature_at)):
            before = reader.to_bytes()
            with pytest.raises(InvalidSignatureError):
                group_decrypt(reader, tampered)
            assert reader.to_bytes() == before
            assert not libsignal_receive(oracle, ls_member, sender, tampered)["ok"]
        # The untouched message still reads in both: the rejections changed no state.
        _, plaintext = group_decrypt(reader, skm)
        assert plaintext == b"genuine"
        reply = libsignal_receive(oracle, ls_member, sender, skm)
        assert reply["ok"], reply
        assert from_hex(str(reply["pt"])) == b"genuine"


def test_sotto_record_survives_storage_between_libsignal_messages(oracle: Oracle) -> None:
    sender = new_party(oracle)
    distribution = str(uuid.uuid4())
    sent = [
        oracle.call("group_send", party=sender.handle, distribution_id=distribution, pt=b"s %d" % i)
        for i in range(6)
    ]
    stored = process_distribution(
        None, SenderKeyDistributionMessage.decode(from_hex(sent[0]["skdm"]))
    ).to_bytes()
    for i in (5, 0, 3, 1, 4, 2):
        record, plaintext = group_decrypt(SenderKeyRecord.from_bytes(stored), from_hex(sent[i]["skm"]))
        assert plaintext == b"s %d" % i
        stored = record.to_bytes()
