"""The client's PreKey bookkeeping (sotto.client.flows.prekeys) does what the decrypt result names.

A sender on the reference protocol store starts a session from a bundle of Bob's stored prekeys;
Bob's flow deletes the one-time EC and Kyber prekeys the result names, or remembers the triple of
a last-resort Kyber prekey (kept), in the transaction that stores the session.
"""

from __future__ import annotations

import pytest

from sotto.client.flows import prekeys
from sotto.crypto.random import seeded_rng
from sotto.errors import DecryptionError, ReusedBaseKeyError
from sotto.protocol import store as ps
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import PreKeyBundle, build_bundle
from sotto.protocol.messages import PreKeySignalMessage, SignalMessage
from sotto.protocol.store import InMemoryProtocolStore
from sotto.store.interfaces import Transaction
from sotto.store.model import PreKeyKind
from tests.client.peers import NOW, Person, Relay

ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)


def _bob_and_alice(seed: int) -> tuple[Person, InMemoryProtocolStore]:
    bob = Person("Bob", Relay(), seeded_rng(seed))
    return bob, InMemoryProtocolStore.generate(ALICE, bob.rng, NOW)


def _bundle(tx: Transaction, bob: Person, *, one_time: bool) -> PreKeyBundle:
    assert bob.me is not None
    signed = tx.prekeys.latest_signed()
    last_resort = tx.prekeys.latest_last_resort()
    assert signed is not None and last_resort is not None
    one_time_kyber = tx.prekeys.get_kyber(min(tx.prekeys.ids(PreKeyKind.KYBER, last_resort=False)))
    assert one_time_kyber is not None
    return build_bundle(
        registration_id=bob.me.account.registration_id,
        device_id=bob.me.address.device_id,
        identity_key=bob.me.identity.public,
        signed_pre_key=signed,
        kyber_pre_key=one_time_kyber if one_time else last_resort,
        pre_key=tx.prekeys.get_one_time(min(tx.prekeys.ids(PreKeyKind.ONE_TIME))) if one_time else None,
    )


def _first_message(bob: Person, alice: InMemoryProtocolStore, *, one_time: bool) -> bytes:
    assert bob.me is not None
    bundle = bob.read(lambda tx: _bundle(tx, bob, one_time=one_time))
    ps.process_prekey_bundle(alice, bob.me.address, bundle, now_ms=NOW, rng=bob.rng)
    return ps.message_encrypt(alice, bob.me.address, b"first", now_ms=NOW, rng=bob.rng).body


def _with_tampered_mac(body: bytes) -> bytes:
    """The same PreKey message (same base key and prekeys) whose inner MAC no longer verifies."""
    parsed = PreKeySignalMessage.decode(body)
    inner = parsed.message.serialized
    return PreKeySignalMessage.create(
        registration_id=parsed.registration_id,
        pre_key_id=parsed.pre_key_id,
        signed_pre_key_id=parsed.signed_pre_key_id,
        kyber_pre_key_id=parsed.kyber_pre_key_id,
        kyber_ciphertext=parsed.kyber_ciphertext,
        base_key=parsed.base_key,
        identity_key=parsed.identity_key,
        message=SignalMessage.decode(inner[:-1] + bytes((inner[-1] ^ 1,))),
    ).serialized


def _decrypt(bob: Person, alice: InMemoryProtocolStore, body: bytes) -> bytes:
    return bob.act(lambda ctx: prekeys.decrypt_prekey_message(ctx, ALICE, body, alice.identity.public))


def test_one_time_ec_and_kyber_prekeys_are_deleted() -> None:
    bob, alice = _bob_and_alice(1)
    body = _first_message(bob, alice, one_time=True)
    parsed = PreKeySignalMessage.decode(body)
    assert _decrypt(bob, alice, body) == b"first"
    left = bob.read(
        lambda tx: (
            tx.prekeys.get_one_time(parsed.pre_key_id or 0),
            tx.prekeys.get_kyber(parsed.kyber_pre_key_id),
        )
    )
    assert left == (None, None)
    assert bob.read(lambda tx: tx.sessions.get(ALICE)) is not None


def test_last_resort_kyber_prekey_is_kept_and_its_use_remembered() -> None:
    bob, alice = _bob_and_alice(2)
    body = _first_message(bob, alice, one_time=False)
    parsed = PreKeySignalMessage.decode(body)
    triple = (parsed.kyber_pre_key_id, parsed.signed_pre_key_id, parsed.base_key.to_bytes())
    with pytest.raises(DecryptionError):  # a tampered copy first: nothing is remembered
        _decrypt(bob, alice, _with_tampered_mac(body))
    assert not bob.read(lambda tx: triple in tx.prekeys.last_resort_uses())
    assert _decrypt(bob, alice, body) == b"first"
    assert bob.read(lambda tx: triple in tx.prekeys.last_resort_uses())
    assert bob.read(lambda tx: tx.prekeys.get_kyber(parsed.kyber_pre_key_id)) is not None
    # Without the session (gone, or a restored copy of the store) the replay is refused.
    bob.act(lambda ctx: ctx.tx.sessions.delete(ALICE))
    with pytest.raises(ReusedBaseKeyError):
        _decrypt(bob, alice, body)
