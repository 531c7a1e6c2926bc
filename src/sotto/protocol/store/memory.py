"""The reference protocol store: everything one device holds, in memory.

Like libsignal's ``InMemSignalProtocolStore``: our identity and registration id, the identity
keys we trust for other addresses, our one-time EC, signed and Kyber prekeys with the set of
(Kyber id, signed id, base key) triples a last-resort Kyber prekey was used with, the session
records, and the sender-key records. It only holds and answers; the calls that use it are in
:mod:`.calls` and :mod:`.sealed`. Values are the protocol's immutable records, so a
:meth:`~InMemoryProtocolStore.snapshot` is a cheap, independent copy.

Trust is trust on first use (TOFU): an address with no identity yet trusts the first key it
shows; a different key afterwards is refused (:meth:`~InMemoryProtocolStore.is_trusted_identity`
is False) until the caller accepts it with :meth:`~InMemoryProtocolStore.save_identity`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import (
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    build_bundle,
)
from sotto.protocol.group.sender_key import SenderKeyRecord
from sotto.protocol.record import SessionRecord
from sotto.protocol.session import LastResortUse, PreKeyDecryptResult

MAX_REGISTRATION_ID = 0x3FFF
"""Registration ids are 14 bits, as libsignal generates them (0 is never used)."""


class IdentityChange(enum.Enum):
    """What :meth:`InMemoryProtocolStore.save_identity` did (libsignal's ``IdentityChange``)."""

    NEW_OR_UNCHANGED = "new or unchanged"
    REPLACED_EXISTING = "replaced existing"


@dataclass(repr=False)
class InMemoryProtocolStore:
    """One device's protocol state; every mapping is a plain dict or set you may read directly."""

    identity: KeyPair
    registration_id: int
    address: ProtocolAddress
    """Our own address: the calls need it for the addresses binding and the self-send rule."""
    identities: dict[ProtocolAddress, PublicKey] = field(default_factory=dict)
    pre_keys: dict[int, PreKeyRecord] = field(default_factory=dict)
    signed_pre_keys: dict[int, SignedPreKeyRecord] = field(default_factory=dict)
    kyber_pre_keys: dict[int, KyberPreKeyRecord] = field(default_factory=dict)
    last_resort_uses: set[LastResortUse] = field(default_factory=set)
    sessions: dict[ProtocolAddress, SessionRecord] = field(default_factory=dict)
    sender_keys: dict[tuple[ProtocolAddress, uuid.UUID], SenderKeyRecord] = field(default_factory=dict)
    next_pre_key_id: int = 1
    """The id :meth:`generate_pre_key` gives next; saving a record moves it past that record's id."""
    next_kyber_pre_key_id: int = 1
    """The same for :meth:`generate_kyber_pre_key` (one-time and last-resort Kyber ids are one sequence)."""

    @classmethod
    def generate(
        cls,
        address: ProtocolAddress,
        rng: Rng,
        now_ms: int,
        *,
        identity: KeyPair | None = None,
        registration_id: int | None = None,
    ) -> InMemoryProtocolStore:
        """A fresh device: an identity, a signed prekey and a last-resort Kyber prekey (no one-time keys)."""
        identity = identity or KeyPair.generate(rng)
        if registration_id is None:
            registration_id = 1 + int.from_bytes(rng(2), "big") % MAX_REGISTRATION_ID
        store = cls(identity, registration_id, address)
        store.save_signed_pre_key(SignedPreKeyRecord.generate(1, identity, now_ms, rng))
        store.generate_kyber_pre_key(rng, now_ms, last_resort=True)
        return store

    # ------------------------------------------------------------------ identities
    def identity_of(self, address: ProtocolAddress) -> PublicKey | None:
        """The identity key we hold for ``address`` (None before first use)."""
        return self.identities.get(address)

    def is_trusted_identity(self, address: ProtocolAddress, identity: PublicKey) -> bool:
        """TOFU: true for the first key an address shows and for that same key afterwards."""
        known = self.identities.get(address)
        return known is None or known == identity

    def save_identity(self, address: ProtocolAddress, identity: PublicKey) -> IdentityChange:
        """Trust ``identity`` for ``address``; this is also how a changed identity is accepted."""
        known = self.identities.get(address)
        self.identities[address] = identity
        if known is None or known == identity:
            return IdentityChange.NEW_OR_UNCHANGED
        return IdentityChange.REPLACED_EXISTING

    # ------------------------------------------------------------------ prekeys
    def save_pre_key(self, record: PreKeyRecord) -> None:
        self.pre_keys[record.id] = record
        self.next_pre_key_id = max(self.next_pre_key_id, record.id + 1)

    def generate_pre_key(self, rng: Rng) -> PreKeyRecord:
        """A new one-time EC prekey with the next free id, saved."""
        record = PreKeyRecord.generate(self.next_pre_key_id, rng)
        self.save_pre_key(record)
        return record

    def save_signed_pre_key(self, record: SignedPreKeyRecord) -> None:
        self.signed_pre_keys[record.id] = record

    def save_kyber_pre_key(self, record: KyberPreKeyRecord) -> None:
        self.kyber_pre_keys[record.id] = record
        self.next_kyber_pre_key_id = max(self.next_kyber_pre_key_id, record.id + 1)

    def generate_kyber_pre_key(
        self, rng: Rng, now_ms: int, *, last_resort: bool = False
    ) -> KyberPreKeyRecord:
        """A new Kyber prekey with the next free id, signed by our identity, saved."""
        record = KyberPreKeyRecord.generate(
            self.next_kyber_pre_key_id, self.identity, now_ms, rng, last_resort=last_resort
        )
        self.save_kyber_pre_key(record)
        return record

    @property
    def signed_pre_key(self) -> SignedPreKeyRecord:
        """The newest signed prekey (the one a bundle publishes); KeyError if none."""
        if not self.signed_pre_keys:
            raise KeyError("no signed prekey")
        return self.signed_pre_keys[max(self.signed_pre_keys)]

    @property
    def last_resort_kyber_pre_key(self) -> KyberPreKeyRecord:
        """The newest last-resort Kyber prekey (what a bundle falls back to); KeyError if none."""
        ids = [k for k, v in self.kyber_pre_keys.items() if v.last_resort]
        if not ids:
            raise KeyError("no last-resort Kyber prekey")
        return self.kyber_pre_keys[max(ids)]

    def bundle(
        self,
        *,
        pre_key: PreKeyRecord | None = None,
        kyber_pre_key: KyberPreKeyRecord | None = None,
        signed_pre_key: SignedPreKeyRecord | None = None,
    ) -> PreKeyBundle:
        """Our bundle: the newest signed prekey, the given keys, else the last-resort Kyber prekey.

        Pass ``pre_key=store.generate_pre_key(rng)`` for a bundle with a one-time EC prekey, as a
        server hands out one per fetch.
        """
        return build_bundle(
            registration_id=self.registration_id,
            device_id=self.address.device_id,
            identity_key=self.identity.public,
            signed_pre_key=signed_pre_key or self.signed_pre_key,
            kyber_pre_key=kyber_pre_key or self.last_resort_kyber_pre_key,
            pre_key=pre_key,
        )

    def consume_pre_keys(self, result: PreKeyDecryptResult) -> None:
        """Do what a successful PreKey decryption asks: delete the one-time EC and Kyber prekeys
        it used, remember the triple of a last-resort Kyber prekey (libsignal's
        ``remove_pre_key`` and ``mark_kyber_pre_key_used``)."""
        if result.used_one_time_pre_key_id is not None:
            self.pre_keys.pop(result.used_one_time_pre_key_id, None)
        if result.one_time_kyber_pre_key_id is not None:
            self.kyber_pre_keys.pop(result.one_time_kyber_pre_key_id, None)
        if result.last_resort_use is not None:
            self.last_resort_uses.add(result.last_resort_use)

    # ------------------------------------------------------------------ sessions and sender keys
    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        return self.sessions.get(address)

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        self.sessions[address] = record

    def load_sender_key(self, sender: ProtocolAddress, distribution_id: uuid.UUID) -> SenderKeyRecord | None:
        return self.sender_keys.get((sender, distribution_id))

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        self.sender_keys[(sender, distribution_id)] = record

    # ------------------------------------------------------------------ whole store
    def snapshot(self) -> InMemoryProtocolStore:
        """An independent copy (the records are immutable values, so the mappings are copied)."""
        return InMemoryProtocolStore(
            self.identity,
            self.registration_id,
            self.address,
            dict(self.identities),
            dict(self.pre_keys),
            dict(self.signed_pre_keys),
            dict(self.kyber_pre_keys),
            set(self.last_resort_uses),
            dict(self.sessions),
            dict(self.sender_keys),
            self.next_pre_key_id,
            self.next_kyber_pre_key_id,
        )

    def __repr__(self) -> str:
        return (
            f"InMemoryProtocolStore(address={self.address}, identities={len(self.identities)}, "
            f"pre_keys={len(self.pre_keys)}, kyber_pre_keys={len(self.kyber_pre_keys)}, "
            f"last_resort_uses={len(self.last_resort_uses)}, sessions={len(self.sessions)}, "
            f"sender_keys={len(self.sender_keys)})"
        )
