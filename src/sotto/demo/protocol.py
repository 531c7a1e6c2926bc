"""The protocol core alone: three people, one relay's view, no network, no store.

``make demo`` runs the product (relay, SDK, stores); this module shows the pure
:mod:`sotto.protocol` API underneath it, as a library user would call it.

Alice, Bob and Carol each publish a prekey bundle. Alice starts a session with Bob from his
bundle (PQXDH: X25519 + Kyber1024), they exchange messages, some delivered out of order, every
one wrapped in sealed sender so the relay sees only a recipient and an opaque blob. Alice then
creates a group with sender keys, distributes her key over the 1:1 sessions, and sends one
message to Bob and Carol with sealed sender v2, which the relay splits without reading it.
Finally Alice and Bob compare safety numbers.

Run it with ``python -m sotto.demo.protocol``.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from dataclasses import dataclass, field

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, system_rng
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import (
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    build_bundle,
)
from sotto.protocol.fingerprint import fingerprint, format_displayable
from sotto.protocol.group import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    create_distribution,
    group_decrypt,
    group_encrypt,
    process_distribution,
)
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType, PreKeySignalMessage
from sotto.protocol.record import SessionRecord
from sotto.protocol.sealed_sender import (
    SealedRecipient,
    SenderCertificate,
    SentMessage,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    open_sealed,
    seal_v1,
    seal_v2,
)

DAY_MS = 86_400_000


@dataclass
class Relay:
    """What a relay would hold: a trust root for sender certificates and queues of opaque blobs."""

    rng: Rng
    root: KeyPair = field(init=False)
    server_key: KeyPair = field(init=False)
    server_certificate: ServerCertificate = field(init=False)
    queues: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = KeyPair.generate(self.rng)
        self.server_key = KeyPair.generate(self.rng)
        self.server_certificate = ServerCertificate.issue(
            1, self.server_key.public, self.root.private, self.rng
        )

    def certify(self, person: Person, now_ms: int) -> SenderCertificate:
        return SenderCertificate.issue(
            sender_uuid=person.address.name,
            sender_device_id=person.address.device_id,
            identity_key=person.identity.public,
            expiration_ms=now_ms + DAY_MS,
            signer=self.server_certificate,
            signer_key=self.server_key.private,
            rng=self.rng,
        )

    def deliver(self, recipient: str, blob: bytes) -> None:
        self.queues.setdefault(recipient, []).append(blob)

    def drain(self, recipient: str) -> list[bytes]:
        return self.queues.pop(recipient, [])


@dataclass
class Person:
    name: str
    rng: Rng
    now_ms: int
    address: ProtocolAddress = field(init=False)
    identity: KeyPair = field(init=False)
    registration_id: int = field(init=False)
    signed: SignedPreKeyRecord = field(init=False)
    kyber: KyberPreKeyRecord = field(init=False)
    one_time: dict[int, PreKeyRecord] = field(default_factory=dict)
    sessions: dict[ProtocolAddress, SessionRecord] = field(default_factory=dict)
    sender_keys: dict[tuple[ProtocolAddress, uuid.UUID], SenderKeyRecord] = field(default_factory=dict)
    certificate: SenderCertificate | None = None

    def __post_init__(self) -> None:
        self.address = ProtocolAddress(str(uuid.UUID(bytes=self.rng(16), version=4)), 1)
        self.identity = KeyPair.generate(self.rng)
        self.registration_id = 1 + int.from_bytes(self.rng(2), "big") % 0x3FFE
        self.signed = SignedPreKeyRecord.generate(1, self.identity, self.now_ms, self.rng)
        self.kyber = KyberPreKeyRecord.generate(1, self.identity, self.now_ms, self.rng, last_resort=True)
        self.one_time = {i: PreKeyRecord.generate(i, self.rng) for i in range(1, 4)}

    def bundle(self) -> PreKeyBundle:
        pre_key = self.one_time[min(self.one_time)]
        return build_bundle(
            registration_id=self.registration_id,
            device_id=self.address.device_id,
            identity_key=self.identity.public,
            signed_pre_key=self.signed,
            kyber_pre_key=self.kyber,
            pre_key=pre_key,
        )

    def encrypt(self, peer: Person, plaintext: bytes) -> CiphertextMessage:
        record = self.sessions.get(peer.address)
        if not session.has_usable_session(record, self.now_ms):
            record = session.process_prekey_bundle(
                record,
                our_identity=self.identity,
                our_registration_id=self.registration_id,
                our_address=self.address,
                their_address=peer.address,
                bundle=peer.bundle(),
                now_ms=self.now_ms,
                rng=self.rng,
            )
        self.sessions[peer.address], message = session.encrypt(
            record,
            plaintext,
            our_address=self.address,
            their_address=peer.address,
            now_ms=self.now_ms,
            rng=self.rng,
        )
        return message

    def seal_to(self, peer: Person, plaintext: bytes) -> bytes:
        assert self.certificate is not None
        message = self.encrypt(peer, plaintext)
        content = UnidentifiedSenderMessageContent.new(message.type, self.certificate, message.body)
        return seal_v1(self.identity, peer.identity.public, content, self.rng)

    def open(self, blob: bytes, relay: Relay, people: dict[str, Person]) -> tuple[Person, bytes]:
        content, certificate = open_sealed(self.identity, blob, relay.root.public, self.now_ms, self.address)
        sender = people[certificate.sender_uuid]
        if content.message_type is CiphertextMessageType.SENDER_KEY:
            key = (sender.address, group_distribution_id(content.content))
            self.sender_keys[key], plaintext = group_decrypt(self.sender_keys[key], content.content)
            return sender, plaintext
        return sender, self.decrypt(sender, content.message_type, content.content)

    def decrypt(self, sender: Person, message_type: CiphertextMessageType, body: bytes) -> bytes:
        record = self.sessions.get(sender.address)
        if message_type is CiphertextMessageType.PREKEY:
            parsed = PreKeySignalMessage.decode(body)
            result = session.decrypt_prekey_message(
                record,
                parsed,
                our_identity=self.identity,
                our_registration_id=self.registration_id,
                our_address=self.address,
                their_address=sender.address,
                signed_pre_key=self.signed,
                kyber_pre_key=self.kyber,
                one_time_pre_key=None if parsed.pre_key_id is None else self.one_time.get(parsed.pre_key_id),
                rng=self.rng,
            )
            if result.used_one_time_pre_key_id is not None:
                del self.one_time[result.used_one_time_pre_key_id]
            self.sessions[sender.address] = result.record
            return result.plaintext
        self.sessions[sender.address], plaintext = session.decrypt_signal_message(
            record, body, our_address=self.address, their_address=sender.address, rng=self.rng
        )
        return plaintext


def group_distribution_id(sender_key_message: bytes) -> uuid.UUID:
    return SenderKeyMessage.decode(sender_key_message).distribution_id


def _show(line: str = "") -> None:
    print(line)


def run(out_of_order_seed: int = 7) -> None:
    rng = system_rng
    now_ms = int(time.time() * 1000)
    relay = Relay(rng)
    alice, bob, carol = (Person(n, rng, now_ms) for n in ("Alice", "Bob", "Carol"))
    people = {p.address.name: p for p in (alice, bob, carol)}
    for p in people.values():
        p.certificate = relay.certify(p, now_ms)

    _show("== 1:1: Alice starts a session from Bob's prekey bundle (PQXDH, Kyber1024)")
    conversation = [
        (alice, bob, b"Hi Bob, it's Alice. Lunch tomorrow?"),
        (bob, alice, b"Hi Alice! Yes, 12:30 at the usual place."),
        (alice, bob, b"Great. Bringing the printouts."),
        (alice, bob, b"And the keys to the bike."),
        (alice, bob, b"See you!"),
    ]
    for sender, recipient, text in conversation:
        relay.deliver(recipient.address.name, sender.seal_to(recipient, text))
        if sender is bob or text.startswith(b"See"):
            _drain(relay, recipient, people, shuffle=random.Random(out_of_order_seed))
        if sender is alice and text.startswith(b"Hi"):
            _drain(relay, recipient, people)

    _show("\n== Group: Alice hands her sender key to Bob and Carol over 1:1 sessions, then sends once")
    distribution_id = uuid.UUID(bytes=rng(16), version=4)
    record, skdm = create_distribution(None, distribution_id, rng)
    alice.sender_keys[(alice.address, distribution_id)] = record
    for member in (bob, carol):
        message = alice.encrypt(member, skdm.encode())
        skdm_received = SenderKeyDistributionMessage.decode(member.decrypt(alice, message.type, message.body))
        member.sender_keys[(alice.address, distribution_id)] = process_distribution(None, skdm_received)
        _show(f"  {member.name} holds Alice's sender key (chain {skdm_received.chain_id})")
    record, group_message = group_encrypt(record, b"Team: the demo works, drinks on me.", rng)
    alice.sender_keys[(alice.address, distribution_id)] = record
    assert alice.certificate is not None
    content = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDER_KEY, alice.certificate, group_message, group_id=distribution_id.bytes
    )
    sent = seal_v2(
        alice.identity,
        [
            SealedRecipient(m.address.name, [(m.address.device_id, m.registration_id)], m.identity.public)
            for m in (bob, carol)
        ],
        content,
        rng,
    )
    parsed = SentMessage.parse(sent)
    _show(
        f"  relay receives one {len(sent)}-byte upload for {len(parsed.recipients)} recipients and splits it"
    )
    for member in (bob, carol):
        relay.deliver(member.address.name, parsed.received_message_for(member.address.name))
        _drain(relay, member, people)

    _show("\n== Safety numbers: Alice and Bob compare what their screens show")
    for viewer, other in ((alice, bob), (bob, alice)):
        number = fingerprint(
            local_id=viewer.address.name.encode(),
            local_key=viewer.identity.public,
            remote_id=other.address.name.encode(),
            remote_key=other.identity.public,
        )
        _show(f"  {viewer.name:5s} sees {format_displayable(number.displayable)}")

    _show("\nEvery blob the relay carried named only its recipient: the sender, the text and the group")
    _show("travelled inside the encryption. Blob sizes follow text lengths here; the client pads every")
    _show("message to a size bucket (sotto.wire.padding) and sends a group message as one sealed v1")
    _show("envelope per member. `make demo` runs all of that through the real relay.")


def _drain(
    relay: Relay, recipient: Person, people: dict[str, Person], shuffle: random.Random | None = None
) -> None:
    blobs = relay.drain(recipient.address.name)
    if shuffle is not None:
        shuffle.shuffle(blobs)
    for blob in blobs:
        sender, plaintext = recipient.open(blob, relay, people)
        _show(
            f"  relay → {recipient.name:5s}: {len(blob):5d}-byte opaque blob; {recipient.name} reads "
            f"from {sender.name}: {plaintext.decode()!r}"
        )


def main() -> int:
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
