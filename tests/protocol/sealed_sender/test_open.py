"""open_sealed: version dispatch, certificate validation and the self-send rule, for v1 and v2."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import sotto.protocol.sealed_sender as sealed_sender_package
from sotto.crypto import xeddsa
from sotto.errors import DecryptionError, InvalidCertificateError, SelfSendError, UnsupportedVersionError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.protobuf import bytes_field
from sotto.protocol.sealed_sender import (
    REVOKED_SERVER_KEY_IDS,
    SentMessage,
    UnidentifiedSenderMessageContent,
    open_sealed,
    seal_v1,
    seal_v2,
)
from sotto.protocol.sealed_sender.certificate import SenderCertificate
from tests.protocol.sealed_sender.helpers import DAY_MS, NOW_MS, Party, World

Sealer = Callable[[World, Party, Party, UnidentifiedSenderMessageContent], bytes]


def via_v1(w: World, sender: Party, recipient: Party, usmc: UnidentifiedSenderMessageContent) -> bytes:
    return seal_v1(sender.identity, recipient.identity.public, usmc, w.rng)


def via_v2(w: World, sender: Party, recipient: Party, usmc: UnidentifiedSenderMessageContent) -> bytes:
    sent = seal_v2(
        sender.identity,
        [(recipient.uuid, [(recipient.device_id, 1)], recipient.identity.public)],
        usmc,
        w.rng,
    )
    return SentMessage.parse(sent).received_message_for(0)


SEALERS = pytest.mark.parametrize("seal", [via_v1, via_v2], ids=["v1", "v2"])


@SEALERS
def test_opens_and_returns_the_validated_certificate(seal: Sealer) -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    usmc = w.content(alice, b"hi")
    content, certificate = open_sealed(
        bob.identity, seal(w, alice, bob, usmc), w.root.public, NOW_MS, bob.address
    )
    assert content == usmc
    assert certificate == alice.certificate
    assert certificate.sender_uuid == alice.uuid


@SEALERS
def test_certificate_from_another_root_is_refused(seal: Sealer) -> None:
    w, elsewhere = World.create(), World.create(seed=11)
    alice, bob = w.party(), w.party()
    alice.certificate = elsewhere.certify(alice.identity, alice.uuid)
    sealed = seal(w, alice, bob, w.content(alice))
    with pytest.raises(InvalidCertificateError, match="trust root"):
        open_sealed(bob.identity, sealed, w.root.public, NOW_MS, bob.address)
    open_sealed(bob.identity, sealed, [w.root.public, elsewhere.root.public], NOW_MS, bob.address)


@SEALERS
def test_expired_certificate_is_refused(seal: Sealer) -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    sealed = seal(w, alice, bob, w.content(alice))
    open_sealed(bob.identity, sealed, w.root.public, NOW_MS + DAY_MS, bob.address)
    with pytest.raises(InvalidCertificateError, match="expired"):
        open_sealed(bob.identity, sealed, w.root.public, NOW_MS + DAY_MS + 1, bob.address)


@SEALERS
def test_revoked_server_key_is_refused(seal: Sealer) -> None:
    (revoked,) = REVOKED_SERVER_KEY_IDS
    w = World.create(key_id=revoked)
    alice, bob = w.party(), w.party()
    with pytest.raises(InvalidCertificateError, match="revoked"):
        open_sealed(bob.identity, seal(w, alice, bob, w.content(alice)), w.root.public, NOW_MS, bob.address)


@SEALERS
def test_known_server_certificate_by_id(seal: Sealer) -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    # A certificate that names its server certificate by id (field 8) instead of embedding it.
    embedded = alice.certificate
    by_id = embedded.certificate.replace(
        b"\x2a" + bytes((len(w.server_certificate.serialized),)) + w.server_certificate.serialized,
        b"\x40\x01",
    )
    cert = SenderCertificate.decode(
        bytes_field(1, by_id) + bytes_field(2, xeddsa.sign(w.server.private, by_id, w.rng))
    )
    assert cert.signer == 1
    alice.certificate = cert
    sealed = seal(w, alice, bob, w.content(alice))
    with pytest.raises(InvalidCertificateError, match="unknown server certificate"):
        open_sealed(bob.identity, sealed, w.root.public, NOW_MS, bob.address)
    _, got = open_sealed(
        bob.identity,
        sealed,
        w.root.public,
        NOW_MS,
        bob.address,
        known_server_certificates={1: w.server_certificate},
    )
    assert got.signer == 1


@SEALERS
def test_self_send_is_refused(seal: Sealer) -> None:
    w = World.create()
    alice = w.party(device_id=2)
    sealed = seal(w, alice, alice, w.content(alice))
    with pytest.raises(SelfSendError):
        open_sealed(alice.identity, sealed, w.root.public, NOW_MS, alice.address)
    with pytest.raises(SelfSendError):  # letter case must not dodge the check
        open_sealed(alice.identity, sealed, w.root.public, NOW_MS, ProtocolAddress(alice.uuid.upper(), 2))
    # the same account's other device is a legitimate sender (sync messages)
    content, _ = open_sealed(alice.identity, sealed, w.root.public, NOW_MS, ProtocolAddress(alice.uuid, 1))
    assert content.content == b"inner message"


def test_self_send_by_phone_number() -> None:
    w = World.create()
    alice = w.party()
    alice.certificate = SenderCertificate.issue(
        sender_uuid=alice.uuid,
        sender_e164="+15550100",
        sender_device_id=1,
        identity_key=alice.identity.public,
        expiration_ms=NOW_MS,
        signer=w.server_certificate,
        signer_key=w.server.private,
        rng=w.rng,
    )
    sealed = via_v1(w, alice, alice, w.content(alice))
    elsewhere = ProtocolAddress("00000000-0000-4000-8000-000000000000", 1)
    open_sealed(alice.identity, sealed, w.root.public, NOW_MS, elsewhere)
    with pytest.raises(SelfSendError):
        open_sealed(alice.identity, sealed, w.root.public, NOW_MS, elsewhere, our_e164="+15550100")


def test_version_dispatch() -> None:
    w = World.create()
    alice, bob = w.party(), w.party()
    v1 = via_v1(w, alice, bob, w.content(alice))
    v2 = via_v2(w, alice, bob, w.content(alice))
    with pytest.raises(DecryptionError):
        open_sealed(bob.identity, b"", w.root.public, NOW_MS, bob.address)
    for version in (0x31, 0x44, 0xFF):
        with pytest.raises(UnsupportedVersionError):
            open_sealed(bob.identity, bytes((version,)) + v1[1:], w.root.public, NOW_MS, bob.address)
    # each format read as the other
    with pytest.raises(DecryptionError):
        open_sealed(bob.identity, b"\x22" + v1[1:], w.root.public, NOW_MS, bob.address)
    with pytest.raises(DecryptionError):
        open_sealed(bob.identity, b"\x11" + v2[1:], w.root.public, NOW_MS, bob.address)


def test_sealed_sender_does_not_depend_on_sessions_or_the_ratchet() -> None:
    allowed = (
        "sotto.crypto",
        "sotto.errors",
        "sotto.protocol.protobuf",
        "sotto.protocol.labels",
        "sotto.protocol.limits",
        "sotto.protocol.address",
        "sotto.protocol.messages",
        "sotto.protocol.sealed_sender",
    )
    package_dir = Path(sealed_sender_package.__file__).parent
    for source in package_dir.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sotto"):
                names = (
                    [node.module]
                    if node.module != "sotto.protocol"
                    else [f"sotto.protocol.{a.name}" for a in node.names]
                )
                for name in names:
                    assert name.startswith(allowed), f"{source.name} imports {name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name in {"uuid"}, f"{source.name} imports {alias.name}"
