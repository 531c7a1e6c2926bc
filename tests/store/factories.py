"""Small builders for realistic records (real keys, a real PQXDH session) used across the store tests."""

from __future__ import annotations

import uuid

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord, build_bundle
from sotto.protocol.group import SenderKeyRecord, create_distribution
from sotto.protocol.record import SessionRecord
from sotto.store.model import Account

NOW_MS = 1_800_000_000_000


def address(rng: Rng, device_id: int = 1) -> ProtocolAddress:
    return ProtocolAddress(str(uuid.UUID(bytes=rng(16), version=4)), device_id)


def account(rng: Rng, *, display_name: str = "Alice", server_url: str = "http://127.0.0.1:8787") -> Account:
    account_id = rng(16)
    return Account(
        account_id=account_id,
        device_id=1,
        device_secret=rng(32),
        identity=KeyPair.generate(rng),
        registration_id=4242,
        server_url=server_url,
        display_name=display_name,
        created_ms=NOW_MS,
        address=ProtocolAddress(str(uuid.UUID(bytes=account_id)), 1),
    )


def session_record(rng: Rng, ours: ProtocolAddress, theirs: ProtocolAddress) -> SessionRecord:
    """An initiator's session with a freshly generated peer (a PQXDH handshake, then one message)."""
    our_identity = KeyPair.generate(rng)
    their_identity = KeyPair.generate(rng)
    bundle = build_bundle(
        registration_id=7,
        device_id=theirs.device_id,
        identity_key=their_identity.public,
        signed_pre_key=SignedPreKeyRecord.generate(1, their_identity, NOW_MS, rng),
        kyber_pre_key=KyberPreKeyRecord.generate(1, their_identity, NOW_MS, rng, last_resort=True),
        pre_key=PreKeyRecord.generate(1, rng),
    )
    record = session.process_prekey_bundle(
        None,
        our_identity=our_identity,
        our_registration_id=9,
        our_address=ours,
        their_address=theirs,
        bundle=bundle,
        now_ms=NOW_MS,
        rng=rng,
    )
    record, _ = session.encrypt(
        record, b"hello", our_address=ours, their_address=theirs, now_ms=NOW_MS, rng=rng
    )
    return record


def sender_key_record(rng: Rng, distribution_id: uuid.UUID | None = None) -> SenderKeyRecord:
    record, _ = create_distribution(None, distribution_id or uuid.UUID(bytes=rng(16), version=4), rng)
    return record
