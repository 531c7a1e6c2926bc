"""Sealed sender against the real libsignal: v1 and v2 both ways, certificates both ways.

libsignal parties are created with identity keys Sotto generated, so Sotto can open what
libsignal seals to them and libsignal can open what Sotto seals to them. Every negative
control is refused by both implementations.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import system_rng
from sotto.errors import DecodeError, DecryptionError, InvalidCertificateError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.sealed_sender import (
    REVOKED_SERVER_KEY_IDS,
    SenderCertificate,
    SentMessage,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    open_sealed,
    seal_v1,
    seal_v2,
)
from sotto.protocol.store import (
    InMemoryProtocolStore,
    process_sender_key_distribution,
    sealed_sender_decrypt,
    sealed_sender_encrypt,
)
from tests.interop.oracle import Oracle, OracleError, from_hex

PREKEY, WHISPER, SENDER_KEY, PLAINTEXT = 3, 2, 7, 8
DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Party:
    """A libsignal party whose identity private key Sotto also holds."""

    handle: str
    name: str
    device: int
    reg_id: int
    identity: KeyPair

    @property
    def address(self) -> ProtocolAddress:
        return ProtocolAddress(self.name, self.device)

    def remote(self) -> dict[str, Any]:
        return {"remote_name": self.name, "remote_device": self.device}


def make_party(oracle: Oracle, identity: KeyPair | None = None, **fields: Any) -> Party:
    identity = identity or KeyPair.generate(system_rng)
    r = oracle.new_party(identity_priv=identity.private.to_bytes(), **fields)
    assert from_hex(r["identity_pub"]) == identity.public.to_bytes()
    return Party(r["party"], r["name"], r["device"], r["reg_id"], identity)


def connect(oracle: Oracle, initiator: Party, responder: Party) -> None:
    bundle = oracle.call("make_bundle", party=responder.handle)
    oracle.call("process_bundle", party=initiator.handle, **responder.remote(), **bundle)
    first = oracle.call("encrypt", party=initiator.handle, **responder.remote(), pt=b"hello")
    oracle.call(
        "decrypt", party=responder.handle, **initiator.remote(), type=first["type"], bytes=first["bytes"]
    )


def trust_root(oracle: Oracle) -> PublicKey:
    return PublicKey.from_bytes(from_hex(oracle.call("trust")["trust_root_pub"]))


def libsignal_cert(
    oracle: Oracle, party: Party, identity: KeyPair | None = None, **kw: Any
) -> SenderCertificate:
    key = (identity or party.identity).public.to_bytes()
    reply = oracle.call("sender_cert", uuid=party.name, device=party.device, identity_pub=key, **kw)
    return SenderCertificate.decode(from_hex(reply["cert"]))


@dataclass(frozen=True)
class SottoTrust:
    """A trust chain issued by Sotto, as our own server issues it."""

    root: KeyPair
    server: KeyPair
    server_certificate: ServerCertificate

    @classmethod
    def create(cls, key_id: int = 0x50770) -> SottoTrust:
        root, server = KeyPair.generate(system_rng), KeyPair.generate(system_rng)
        return cls(root, server, ServerCertificate.issue(key_id, server.public, root.private, system_rng))

    def certify(self, party: Party, expiration_ms: int, **kw: Any) -> SenderCertificate:
        return SenderCertificate.issue(
            sender_uuid=party.name,
            sender_device_id=party.device,
            identity_key=party.identity.public,
            expiration_ms=expiration_ms,
            signer=self.server_certificate,
            signer_key=self.server.private,
            rng=system_rng,
            **kw,
        )


def assert_usmc_view(view: dict[str, Any], usmc: UnidentifiedSenderMessageContent) -> None:
    """libsignal's reading of a USMC equals Sotto's."""
    assert view["msg_type"] == usmc.message_type
    assert from_hex(view["content"]) == usmc.content
    assert view["content_hint"] == usmc.content_hint
    assert (from_hex(view["group_id"]) if view["group_id"] else None) == usmc.group_id
    assert from_hex(view["sender_cert"]) == usmc.sender_certificate.serialized
    assert view["sender_uuid"] == usmc.sender_certificate.sender_uuid
    assert view["sender_device"] == usmc.sender_certificate.sender_device_id


# ------------------------------------------------------------------------------- sealed sender v1
def test_v1_libsignal_to_sotto(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, bob, alice)  # so alice's next message is a plain SignalMessage
    sealed = from_hex(
        oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"from libsignal")["bytes"]
    )
    assert sealed[0] == 0x11
    usmc, certificate = open_sealed(bob.identity, sealed, root, now_ms(), bob.address)
    assert usmc.message_type == WHISPER
    assert certificate.sender_uuid == alice.name
    assert certificate.sender_device_id == alice.device
    assert certificate.identity_key == alice.identity.public
    # libsignal's own reading of the same bytes agrees with ours
    assert_usmc_view(oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=sealed), usmc)
    # and the session message inside is one bob's libsignal session accepts
    got = oracle.call(
        "decrypt", party=bob.handle, **alice.remote(), type=usmc.message_type, bytes=usmc.content
    )
    assert from_hex(got["pt"]) == b"from libsignal"


def test_v1_first_message_libsignal_to_sotto_is_a_prekey_message(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice, bob = make_party(oracle), make_party(oracle)
    bundle = oracle.call("make_bundle", party=bob.handle)
    oracle.call("process_bundle", party=alice.handle, **bob.remote(), **bundle)
    sealed = from_hex(oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"first")["bytes"])
    usmc, _ = open_sealed(bob.identity, sealed, root, now_ms(), bob.address)
    assert usmc.message_type == PREKEY
    assert usmc.content[0] == 0x44


@pytest.mark.parametrize("message_type", [PREKEY, WHISPER, SENDER_KEY, PLAINTEXT])
def test_v1_sotto_to_libsignal(oracle: Oracle, message_type: int) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    usmc = UnidentifiedSenderMessageContent.new(
        message_type, libsignal_cert(oracle, alice), b"arbitrary inner bytes", content_hint=1, group_id=b"grp"
    )
    sealed = seal_v1(alice.identity, bob.identity.public, usmc, system_rng)
    view = oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=sealed)
    assert_usmc_view(view, usmc)
    assert view["cert_valid"]


def test_v1_sotto_session_message_to_libsignal_full_decrypt(oracle: Oracle) -> None:
    """libsignal's complete sealed_sender_decrypt path (certificate, self-send rule, session)."""
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    inner = oracle.call("encrypt", party=alice.handle, **bob.remote(), pt=b"via sotto's envelope")
    usmc = UnidentifiedSenderMessageContent.new(
        inner["type"], libsignal_cert(oracle, alice), from_hex(inner["bytes"])
    )
    sealed = seal_v1(alice.identity, bob.identity.public, usmc, system_rng)
    got = oracle.call("sealed_v1_recv", party=bob.handle, bytes=sealed)
    assert from_hex(got["pt"]) == b"via sotto's envelope"
    assert (got["sender_uuid"], got["sender_device"]) == (alice.name, alice.device)


# ------------------------------------------------------------------------------- sealed sender v2
def _v2_world(oracle: Oracle, count: int) -> tuple[Party, list[list[Party]]]:
    """A libsignal sender with sessions to ``count`` accounts; the last one has two devices."""
    alice = make_party(oracle)
    accounts: list[list[Party]] = []
    for i in range(count):
        first = make_party(oracle)
        devices = [first]
        if i == count - 1:
            devices.append(make_party(oracle, identity=first.identity, name=first.name, device=2))
        for device in devices:
            connect(oracle, alice, device)
        accounts.append(devices)
    return alice, accounts


@pytest.mark.parametrize("count", [1, 2, 5])
def test_v2_libsignal_to_sotto(oracle: Oracle, count: int) -> None:
    root = trust_root(oracle)
    alice, accounts = _v2_world(oracle, count)
    left_out = str(uuid.uuid4())
    out = oracle.call(
        "sealed_v2_send",
        party=alice.handle,
        recipients=[[d.name, d.device] for devices in accounts for d in devices],
        pt=b"to everyone",
        group_id=b"\x01\x02\x03",
        excluded=[left_out],
    )
    sent = from_hex(out["sent"])
    assert sent[0] == 0x23
    parsed = SentMessage.parse(sent)
    assert len(parsed.recipients) == count + 1
    assert parsed.recipients[-1].excluded
    for devices in accounts:
        recipient = parsed.recipient(devices[0].name)
        assert recipient.devices == tuple((d.device, d.reg_id) for d in devices)
        received = parsed.received_message_for(devices[0].name)
        assert received == from_hex(out["received"][devices[0].name])  # our split == libsignal's
        for device in devices:
            usmc, certificate = open_sealed(device.identity, received, root, now_ms(), device.address)
            assert (usmc.message_type, usmc.content, usmc.group_id) == (
                SENDER_KEY,
                b"to everyone",
                b"\x01\x02\x03",
            )
            assert usmc.content_hint == 2
            assert certificate.identity_key == alice.identity.public


def test_v2_libsignal_sender_key_message_to_sotto(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    distribution = str(uuid.uuid4())
    out = oracle.call(
        "sealed_v2_send",
        party=alice.handle,
        recipients=[[bob.name, bob.device]],
        pt=b"g",
        distribution_id=distribution,
    )
    usmc, _ = open_sealed(bob.identity, from_hex(out["received"][bob.name]), root, now_ms(), bob.address)
    assert usmc.message_type == SENDER_KEY
    assert usmc.content == from_hex(out["skm"])


@pytest.mark.parametrize("count", [1, 2, 5])
def test_v2_sotto_to_libsignal(oracle: Oracle, count: int) -> None:
    alice = make_party(oracle)
    accounts: list[list[Party]] = []
    for i in range(count):
        first = make_party(oracle)
        devices = [first]
        if i % 2 == 1:
            devices.append(make_party(oracle, identity=first.identity, name=first.name, device=3))
        accounts.append(devices)
    left_out = f"PNI:{uuid.uuid4()}"
    usmc = UnidentifiedSenderMessageContent.new(
        SENDER_KEY, libsignal_cert(oracle, alice), b"sealed by sotto", content_hint=2, group_id=b"group-id"
    )
    recipients = [
        (devices[0].name, [(d.device, d.reg_id) for d in devices], devices[0].identity.public)
        for devices in accounts
    ]
    sent = seal_v2(alice.identity, recipients, usmc, system_rng, excluded=[left_out])
    split = oracle.call("sealed_v2_split", sent=sent)
    assert split["excluded"] == [left_out]
    ours = SentMessage.parse(sent)
    for devices in accounts:
        view = split["recipients"][devices[0].name]
        assert view["device_ids"] == [d.device for d in devices]
        assert view["registration_ids"] == [d.reg_id for d in devices]
        received = from_hex(split["received"][devices[0].name])
        assert received == ours.received_message_for(devices[0].name)  # byte-equal splits
        for device in devices:
            usmc_view = oracle.call("sealed_decrypt_to_usmc", party=device.handle, bytes=received)
            assert_usmc_view(usmc_view, usmc)
            assert usmc_view["cert_valid"]


# ---------------------------------------------------------------------------------- certificates
def test_libsignal_issued_certificates_validate_in_sotto(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice = make_party(oracle)
    expires = now_ms() + 60_000
    cert = libsignal_cert(oracle, alice, expires_ms=expires)
    assert (cert.sender_uuid, cert.sender_device_id, cert.expiration_ms) == (
        alice.name,
        alice.device,
        expires,
    )
    assert cert.identity_key == alice.identity.public
    assert SenderCertificate.decode(cert.encode()).serialized == cert.serialized
    cert.validate(root, expires)
    with pytest.raises(InvalidCertificateError, match="expired"):
        cert.validate(root, expires + 1)
    with pytest.raises(InvalidCertificateError, match="trust root"):
        cert.validate(KeyPair.generate(system_rng).public, expires)
    # libsignal agrees on both sides of the expiry
    assert oracle.call("sender_cert_validate", cert=cert.encode(), now_ms=expires)["valid"]
    assert not oracle.call("sender_cert_validate", cert=cert.encode(), now_ms=expires + 1)["valid"]


@pytest.mark.parametrize("variant", ["uuid-string", "uuid-bytes", "with-e164"])
def test_sotto_issued_certificates_validate_in_libsignal(oracle: Oracle, variant: str) -> None:
    trust = SottoTrust.create()
    alice = make_party(oracle)
    expires = now_ms() + DAY_MS
    kw: dict[str, Any] = {"uuid_as_bytes": variant == "uuid-bytes"}
    if variant == "with-e164":
        kw["sender_e164"] = "+15550100"
    cert = trust.certify(alice, expires, **kw)
    ours = trust.root.public.to_bytes()
    view = oracle.call("sender_cert_validate", cert=cert.encode(), now_ms=expires, trust_root_pub=ours)
    assert view["valid"]
    assert (view["sender_uuid"], view["sender_device"], view["expiration_ms"]) == (
        alice.name,
        alice.device,
        expires,
    )
    assert from_hex(view["sender_identity_pub"]) == alice.identity.public.to_bytes()
    assert view["server_key_id"] == trust.server_certificate.key_id
    # negative controls, refused by both
    assert not oracle.call(
        "sender_cert_validate", cert=cert.encode(), now_ms=expires + 1, trust_root_pub=ours
    )["valid"]
    assert not oracle.call("sender_cert_validate", cert=cert.encode(), now_ms=expires)[
        "valid"
    ]  # libsignal's root
    with pytest.raises(InvalidCertificateError):
        cert.validate(trust_root(oracle), expires)


def test_sotto_trust_chain_end_to_end_in_libsignal(oracle: Oracle) -> None:
    """libsignal, told to trust our root, opens a Sotto-sealed message carrying a Sotto-issued certificate."""
    before = oracle.call("trust")
    trust = SottoTrust.create(key_id=1)
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    try:
        oracle.call(
            "trust_set", root_priv=trust.root.private.to_bytes(), server_priv=trust.server.private.to_bytes()
        )
        inner = oracle.call("encrypt", party=alice.handle, **bob.remote(), pt=b"own trust root")
        cert = trust.certify(alice, now_ms() + DAY_MS)
        usmc = UnidentifiedSenderMessageContent.new(inner["type"], cert, from_hex(inner["bytes"]))
        got = oracle.call(
            "sealed_v1_recv",
            party=bob.handle,
            bytes=seal_v1(alice.identity, bob.identity.public, usmc, system_rng),
        )
        assert from_hex(got["pt"]) == b"own trust root"
        # and the reverse: libsignal now issues under our root; Sotto validates that chain
        issued = libsignal_cert(oracle, alice)
        issued.validate(trust.root.public, now_ms())
    finally:
        oracle.call(
            "trust_set",
            root_priv=before["trust_root_priv"],
            server_priv=before["server_priv"],
            key_id=before["server_key_id"],
        )
    assert oracle.call("trust")["trust_root_pub"] == before["trust_root_pub"]


def test_revoked_server_key_id_is_refused_by_both(oracle: Oracle) -> None:
    (revoked,) = REVOKED_SERVER_KEY_IDS
    trust = SottoTrust.create(key_id=revoked)
    alice = make_party(oracle)
    expires = now_ms() + DAY_MS
    cert = trust.certify(alice, expires)
    with pytest.raises(InvalidCertificateError, match="revoked"):
        cert.validate(trust.root.public, expires)
    view = oracle.call(
        "sender_cert_validate",
        cert=cert.encode(),
        now_ms=expires,
        trust_root_pub=trust.root.public.to_bytes(),
    )
    assert not view["valid"]


# ------------------------------------------------------------------------------ negative controls
def test_tampered_messages_are_refused_by_both(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice, bob = make_party(oracle), make_party(oracle)
    usmc = UnidentifiedSenderMessageContent.new(PLAINTEXT, libsignal_cert(oracle, alice), b"payload")
    v1 = seal_v1(alice.identity, bob.identity.public, usmc, system_rng)
    received = SentMessage.parse(
        seal_v2(alice.identity, [(bob.name, [(1, bob.reg_id)], bob.identity.public)], usmc, system_rng)
    ).received_message_for(0)
    for message in (v1, received):
        for position in (1, 40, len(message) // 2, len(message) - 1):
            bad = bytearray(message)
            bad[position] ^= 0x04
            with pytest.raises(OracleError):
                oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=bytes(bad))
            with pytest.raises((DecryptionError, InvalidCertificateError)):
                open_sealed(bob.identity, bytes(bad), root, now_ms(), bob.address)


def test_wrong_recipient_is_refused_by_both(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice, bob, carol = make_party(oracle), make_party(oracle), make_party(oracle)
    usmc = UnidentifiedSenderMessageContent.new(PLAINTEXT, libsignal_cert(oracle, alice), b"for bob")
    v1 = seal_v1(alice.identity, bob.identity.public, usmc, system_rng)
    with pytest.raises(OracleError):
        oracle.call("sealed_decrypt_to_usmc", party=carol.handle, bytes=v1)
    connect(oracle, alice, bob)
    from_libsignal = from_hex(
        oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"x")["bytes"]
    )
    with pytest.raises(DecryptionError):
        open_sealed(carol.identity, from_libsignal, root, now_ms(), carol.address)


def test_certificate_for_another_key_is_refused_by_both(oracle: Oracle) -> None:
    """Mallory seals with her own key but Alice's (public, valid) certificate."""
    root = trust_root(oracle)
    alice, bob = make_party(oracle), make_party(oracle)
    mallory = KeyPair.generate(system_rng)
    usmc = UnidentifiedSenderMessageContent.new(PLAINTEXT, libsignal_cert(oracle, alice), b"forged")
    v1 = seal_v1(mallory, bob.identity.public, usmc, system_rng)
    received = SentMessage.parse(
        seal_v2(mallory, [(bob.name, [(1, bob.reg_id)], bob.identity.public)], usmc, system_rng)
    ).received_message_for(0)
    refusals = []
    for message in (v1, received):
        with pytest.raises(OracleError) as refused:
            oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=message)
        refusals.append(refused.value.error)
    # libsignal names the key mismatch (not a decryption failure) in both versions; so do we.
    assert "does not match message key" in refusals[0], refusals
    assert "does not match authentication tag" in refusals[1], refusals
    for message in (v1, received):
        with pytest.raises(InvalidCertificateError):
            open_sealed(bob.identity, message, root, now_ms(), bob.address)


def test_expired_certificate_is_refused_by_both(oracle: Oracle) -> None:
    root = trust_root(oracle)
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    expired = now_ms() - 1
    sealed = from_hex(
        oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"late", expires_ms=expired)[
            "bytes"
        ]
    )
    with pytest.raises(OracleError):
        oracle.call("sealed_v1_recv", party=bob.handle, bytes=sealed)
    with pytest.raises(InvalidCertificateError, match="expired"):
        open_sealed(bob.identity, sealed, root, now_ms(), bob.address)


def test_sent_form_registration_id_bit_14_libsignal_masks_sotto_refuses(oracle: Oracle) -> None:
    """A documented strictness difference: no encoder (libsignal's or ours) sets bit 14."""
    alice, bob = make_party(oracle), make_party(oracle)
    usmc = UnidentifiedSenderMessageContent.new(PLAINTEXT, libsignal_cert(oracle, alice), b"x")
    sent = bytearray(seal_v2(alice.identity, [(bob.name, [(1, 5)], bob.identity.public)], usmc, system_rng))
    sent[2 + 17 + 1] |= 0x40  # high byte of device 1's registration word
    split = oracle.call("sealed_v2_split", sent=bytes(sent))
    assert split["recipients"][bob.name]["registration_ids"] == [5]
    with pytest.raises(DecodeError):
        SentMessage.parse(bytes(sent))


# ------------------------------------------------------------------------------ through the store
def test_sealed_sender_decrypt_opens_libsignal_messages_through_the_reference_store(oracle: Oracle) -> None:
    """libsignal seals a first (PreKey) message and a v2 group message to a Sotto device held in
    the reference store; one call opens each, consuming the prekeys; the reply goes back sealed
    and libsignal's full sealed_sender_decrypt accepts it."""
    root = trust_root(oracle)
    now = now_ms()
    alice = make_party(oracle)
    bob_address = ProtocolAddress(str(uuid.uuid4()), 1)
    bob = InMemoryProtocolStore.generate(bob_address, system_rng, now)
    pre_key, kyber = bob.generate_pre_key(system_rng), bob.generate_kyber_pre_key(system_rng, now)
    bundle = bob.bundle(pre_key=pre_key, kyber_pre_key=kyber)
    remote = {"remote_name": bob_address.name, "remote_device": bob_address.device_id}
    oracle.call(
        "process_bundle",
        party=alice.handle,
        **remote,
        registration_id=bundle.registration_id,
        device_id=bundle.device_id,
        pre_key_id=bundle.pre_key_id,
        pre_key_pub=pre_key.key_pair.public.to_bytes(),
        signed_pre_key_id=bundle.signed_pre_key_id,
        signed_pre_key_pub=bundle.signed_pre_key_public.to_bytes(),
        signed_pre_key_sig=bundle.signed_pre_key_signature,
        identity_pub=bundle.identity_key.to_bytes(),
        kyber_pre_key_id=bundle.kyber_pre_key_id,
        kyber_pre_key_pub=bundle.kyber_pre_key_public.to_bytes(),
        kyber_pre_key_sig=bundle.kyber_pre_key_signature,
        now_ms=now,
    )
    first = from_hex(oracle.call("sealed_v1_send", party=alice.handle, **remote, pt=b"first")["bytes"])
    opened = sealed_sender_decrypt(bob, first, trust_root=root, now_ms=now, rng=system_rng)
    assert (opened.sender, opened.message_type, opened.plaintext) == (alice.address, PREKEY, b"first")
    assert pre_key.id not in bob.pre_keys and kyber.id not in bob.kyber_pre_keys
    assert bob.identity_of(alice.address) == alice.identity.public

    distribution = str(uuid.uuid4())
    group = oracle.call(
        "group_send",
        party=alice.handle,
        distribution_id=distribution,
        pt=b"team",
        sealed_v2_to=[[bob_address.name, bob_address.device_id]],
    )
    process_sender_key_distribution(bob, alice.address, from_hex(group["skdm"]))
    sealed_v2 = from_hex(group["sealed_v2"][bob_address.name])
    opened = sealed_sender_decrypt(bob, sealed_v2, trust_root=root, now_ms=now, rng=system_rng)
    assert (opened.sender, opened.message_type, opened.plaintext) == (alice.address, SENDER_KEY, b"team")

    bob_as_seen = Party("", bob_address.name, bob_address.device_id, bob.registration_id, bob.identity)
    reply = sealed_sender_encrypt(
        bob, alice.address, libsignal_cert(oracle, bob_as_seen), b"reply", now_ms=now, rng=system_rng
    )
    got = oracle.call("sealed_v1_recv", party=alice.handle, bytes=reply)
    assert from_hex(got["pt"]) == b"reply" and got["msg_type"] == WHISPER
    assert (got["sender_uuid"], got["sender_device"]) == (bob_address.name, bob_address.device_id)
