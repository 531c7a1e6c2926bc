"""The protocol core alone: three people, one relay's view, no network, no database.

``make demo`` runs the product (relay, SDK, encrypted stores); this module shows the
:mod:`sotto.protocol` API underneath it, as a library user would call it: each person's state
lives in the reference in-memory store (:class:`~sotto.protocol.store.InMemoryProtocolStore`),
and every message is sealed with ``sealed_sender_encrypt`` and opened with
``sealed_sender_decrypt``.

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
from sotto.protocol import session as ps_session
from sotto.protocol import store as ps
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.fingerprint import fingerprint, format_displayable
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import (
    SenderCertificate,
    SentMessage,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
)
from sotto.protocol.store import InMemoryProtocolStore

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
    """One device: a display name over the reference protocol store, which does the bookkeeping."""

    name: str
    rng: Rng
    now_ms: int
    store: InMemoryProtocolStore = field(init=False)
    certificate: SenderCertificate | None = None

    def __post_init__(self) -> None:
        address = ProtocolAddress(str(uuid.UUID(bytes=self.rng(16), version=4)), 1)
        self.store = InMemoryProtocolStore.generate(address, self.rng, self.now_ms)
        for _ in range(3):
            self.store.generate_pre_key(self.rng)

    @property
    def address(self) -> ProtocolAddress:
        return self.store.address

    @property
    def identity(self) -> KeyPair:
        return self.store.identity

    def bundle(self) -> PreKeyBundle:
        """What a relay would hand out: the next one-time prekey, then the last-resort keys alone."""
        pre_keys = self.store.pre_keys
        return self.store.bundle(pre_key=pre_keys[min(pre_keys)] if pre_keys else None)

    def seal_to(self, peer: Person, plaintext: bytes) -> bytes:
        assert self.certificate is not None
        if not session_usable(self.store, peer.address, self.now_ms):
            ps.process_prekey_bundle(
                self.store, peer.address, peer.bundle(), now_ms=self.now_ms, rng=self.rng
            )
        return ps.sealed_sender_encrypt(
            self.store, peer.address, self.certificate, plaintext, now_ms=self.now_ms, rng=self.rng
        )

    def open(self, blob: bytes, relay: Relay, people: dict[str, Person]) -> tuple[Person, bytes]:
        opened = ps.sealed_sender_decrypt(
            self.store, blob, trust_root=relay.root.public, now_ms=self.now_ms, rng=self.rng
        )
        return people[opened.sender.name], opened.plaintext


def session_usable(store: InMemoryProtocolStore, address: ProtocolAddress, now_ms: int) -> bool:
    return ps_session.has_usable_session(store.load_session(address), now_ms)


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
    skdm = ps.create_sender_key_distribution(alice.store, distribution_id, rng)
    for member in (bob, carol):
        relay.deliver(member.address.name, alice.seal_to(member, skdm.encode()))
        for blob in relay.drain(member.address.name):
            sender, received = member.open(blob, relay, people)
            ps.process_sender_key_distribution(member.store, sender.address, received)
        _show(f"  {member.name} holds Alice's sender key (chain {skdm.chain_id})")
    group_message = ps.group_encrypt(
        alice.store, distribution_id, b"Team: the demo works, drinks on me.", rng=rng
    )
    assert alice.certificate is not None
    content = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDER_KEY, alice.certificate, group_message, group_id=distribution_id.bytes
    )
    sent = ps.sealed_sender_multi_recipient_encrypt(
        alice.store, [bob.address, carol.address], content, rng=rng
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
