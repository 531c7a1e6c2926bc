"""sealed_sender_decrypt: one call opens v1 and v2, 1:1 and group content, through the store."""

from __future__ import annotations

import uuid

import pytest

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, seeded_rng
from sotto.errors import DecodeError, InvalidCertificateError, SelfSendError
from sotto.protocol import store as ps
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import (
    SenderCertificate,
    SentMessage,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    seal_v1,
)
from sotto.protocol.store import InMemoryProtocolStore

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
CAROL = ProtocolAddress("0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0", 3)


class Trust:
    def __init__(self, rng: Rng) -> None:
        self.rng = rng
        self.root = KeyPair.generate(rng)
        self.server = KeyPair.generate(rng)
        self.server_certificate = ServerCertificate.issue(1, self.server.public, self.root.private, rng)

    def certify(self, store: InMemoryProtocolStore, identity: KeyPair | None = None) -> SenderCertificate:
        return SenderCertificate.issue(
            sender_uuid=store.address.name,
            sender_device_id=store.address.device_id,
            identity_key=(identity or store.identity).public,
            expiration_ms=NOW_MS + DAY_MS,
            signer=self.server_certificate,
            signer_key=self.server.private,
            rng=self.rng,
        )


def _world(
    seed: int,
) -> tuple[Rng, Trust, InMemoryProtocolStore, InMemoryProtocolStore, InMemoryProtocolStore]:
    rng = seeded_rng(seed)
    stores = (InMemoryProtocolStore.generate(a, rng, NOW_MS) for a in (ALICE, BOB, CAROL))
    alice, bob, carol = stores
    return rng, Trust(rng), alice, bob, carol


def _open(store: InMemoryProtocolStore, trust: Trust, data: bytes, rng: Rng) -> ps.SealedSenderDecryptResult:
    return ps.sealed_sender_decrypt(store, data, trust_root=trust.root.public, now_ms=NOW_MS, rng=rng)


def test_v1_prekey_then_whisper_both_ways() -> None:
    rng, trust, alice, bob, _ = _world(1)
    ps.process_prekey_bundle(
        alice, BOB, bob.bundle(pre_key=bob.generate_pre_key(rng)), now_ms=NOW_MS, rng=rng
    )
    sealed = ps.sealed_sender_encrypt(alice, BOB, trust.certify(alice), b"hello", now_ms=NOW_MS, rng=rng)
    opened = _open(bob, trust, sealed, rng)
    assert (opened.sender, opened.message_type, opened.plaintext) == (
        ALICE,
        CiphertextMessageType.PREKEY,
        b"hello",
    )
    assert bob.pre_keys == {} and bob.identity_of(ALICE) == alice.identity.public
    reply = ps.sealed_sender_encrypt(bob, ALICE, trust.certify(bob), b"hi", now_ms=NOW_MS, rng=rng)
    back = _open(alice, trust, reply, rng)
    assert (back.sender, back.message_type, back.plaintext) == (BOB, CiphertextMessageType.WHISPER, b"hi")
    assert "hi" not in repr(back) and "<2 bytes>" in repr(back)


def test_v2_group_and_one_to_one_content() -> None:
    rng, trust, alice, bob, carol = _world(2)
    group = uuid.UUID(int=9)
    skdm = ps.create_sender_key_distribution(alice, group, rng)
    for store, address in ((bob, BOB), (carol, CAROL)):
        ps.process_prekey_bundle(alice, address, store.bundle(), now_ms=NOW_MS, rng=rng)
        over_session = ps.sealed_sender_encrypt(
            alice, address, trust.certify(alice), skdm.encode(), now_ms=NOW_MS, rng=rng
        )
        ps.process_sender_key_distribution(store, ALICE, _open(store, trust, over_session, rng).plaintext)
    content = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDER_KEY,
        trust.certify(alice),
        ps.group_encrypt(alice, group, b"team", rng=rng),
        group_id=b"g" * 16,
    )
    sent = SentMessage.parse(ps.sealed_sender_multi_recipient_encrypt(alice, [BOB, CAROL], content, rng=rng))
    for store, address in ((bob, BOB), (carol, CAROL)):
        opened = _open(store, trust, sent.received_message_for(address.name), rng)
        assert (opened.sender, opened.message_type, opened.plaintext) == (
            ALICE,
            CiphertextMessageType.SENDER_KEY,
            b"team",
        )
        assert opened.group_id == b"g" * 16
    # 1:1 content in a v2 envelope opens the same way.
    one_to_one = ps.message_encrypt(alice, BOB, b"just you", now_ms=NOW_MS, rng=rng)
    content = UnidentifiedSenderMessageContent.new(one_to_one.type, trust.certify(alice), one_to_one.body)
    sent = SentMessage.parse(ps.sealed_sender_multi_recipient_encrypt(alice, [BOB], content, rng=rng))
    assert _open(bob, trust, sent.received_message_for(0), rng).plaintext == b"just you"


def test_refusals_leave_the_store_unchanged() -> None:
    rng, trust, alice, bob, _ = _world(3)
    ps.process_prekey_bundle(
        alice, BOB, bob.bundle(pre_key=bob.generate_pre_key(rng)), now_ms=NOW_MS, rng=rng
    )
    mallory = KeyPair.generate(rng)
    # A certificate naming another key than the one that sealed (v2): invalid certificate.
    message = ps.message_encrypt(alice, BOB, b"x", now_ms=NOW_MS, rng=rng)
    content = UnidentifiedSenderMessageContent.new(message.type, trust.certify(alice, mallory), message.body)
    sent = SentMessage.parse(ps.sealed_sender_multi_recipient_encrypt(alice, [BOB], content, rng=rng))
    before = bob.snapshot()
    with pytest.raises(InvalidCertificateError):
        _open(bob, trust, sent.received_message_for(0), rng)
    # Plaintext content has nothing for the store to decrypt.
    plain = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.PLAINTEXT, trust.certify(alice), b"\xc0x"
    )
    sent = SentMessage.parse(ps.sealed_sender_multi_recipient_encrypt(alice, [BOB], plain, rng=rng))
    with pytest.raises(DecodeError):
        _open(bob, trust, sent.received_message_for(0), rng)
    assert (bob.sessions, bob.pre_keys, bob.identities) == (
        before.sessions,
        before.pre_keys,
        before.identities,
    )
    # Our own message echoed back is refused.
    echo = UnidentifiedSenderMessageContent.new(CiphertextMessageType.WHISPER, trust.certify(bob), b"echo")
    own = seal_v1(bob.identity, bob.identity.public, echo, rng)
    with pytest.raises(SelfSendError):
        _open(bob, trust, own, rng)
