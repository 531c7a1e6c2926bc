"""SPQR is required: a message without the pq_ratchet field is refused even when its MAC is valid.

The messages here are built the way a pre-SPQR sender (or an attacker stripping the field) would
build them, straight from the sender's state with ``SignalMessage.create``; a control message
built the same way with the SPQR field shows the construction is otherwise sound.
"""

from __future__ import annotations

import pytest

from sotto.crypto.cipher import aes256_cbc_encrypt
from sotto.errors import DecryptionError
from sotto.protocol import session
from sotto.protocol.address import encode_addresses
from sotto.protocol.messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from sotto.protocol.ratchet.state import SessionState
from sotto.protocol.record import SessionRecord
from tests.protocol.parties import Party, established_pair, make_pair


def _signal_message(
    state: SessionState,
    plaintext: bytes,
    *,
    spqr_field: bool,
    spqr_salt: bool,
    addresses: bytes | None = None,
) -> tuple[SignalMessage, bytes]:
    """The sender's next message and its MAC key, with or without the SPQR field and salt."""
    _spqr, payload, pq_key = state.spqr.send()
    chain_key = state.sender_chain.chain_key
    keys = chain_key.message_keys(pq_key if spqr_salt else None)
    message = SignalMessage.create(
        mac_key=keys.mac_key,
        sender_identity=state.local_identity,
        receiver_identity=state.remote_identity,
        ratchet_key=state.sender_chain.ratchet_key.public,
        counter=chain_key.index,
        previous_counter=state.previous_counter,
        ciphertext=aes256_cbc_encrypt(keys.cipher_key, keys.iv, plaintext),
        pq_ratchet=payload if spqr_field else b"",
        addresses=addresses,
    )
    return message, keys.mac_key


def _current(party: Party, peer: Party) -> SessionState:
    state = party.sessions[peer.address].current
    assert state is not None
    return state


def _decrypt(receiver: Party, sender: Party, data: bytes) -> tuple[SessionRecord, bytes]:
    return session.decrypt_signal_message(
        receiver.sessions[sender.address],
        data,
        our_address=receiver.address,
        their_address=sender.address,
        rng=receiver.rng,
    )


@pytest.mark.parametrize("spqr_salt", [False, True], ids=["pre-spqr-keys", "spqr-keys-field-stripped"])
def test_whisper_without_spqr_is_refused_and_the_record_is_unchanged(spqr_salt: bool) -> None:
    alice, bob = established_pair(31)
    state = _current(alice, bob)
    downgraded, mac_key = _signal_message(state, b"downgrade", spqr_field=False, spqr_salt=spqr_salt)
    assert downgraded.pq_ratchet == b""
    # The MAC is valid: only the missing SPQR field can be the reason for refusing it.
    parsed = SignalMessage.decode(downgraded.serialized)
    assert parsed.verify_mac(state.local_identity, state.remote_identity, mac_key)

    record = bob.sessions[alice.address]
    before = record.to_bytes()
    with pytest.raises(DecryptionError):
        _decrypt(bob, alice, downgraded.serialized)
    assert bob.sessions[alice.address] is record
    assert record.to_bytes() == before

    # The same message with its SPQR field decrypts, on the untouched record.
    control, _ = _signal_message(state, b"with spqr", spqr_field=True, spqr_salt=True)
    new_record, plaintext = _decrypt(bob, alice, control.serialized)
    assert plaintext == b"with spqr"
    assert new_record.to_bytes() != before


def test_prekey_message_without_spqr_sets_up_no_session() -> None:
    alice, bob = make_pair(32)
    alice.start_session(bob)
    state = _current(alice, bob)
    pending = state.pending_prekey
    assert pending is not None
    inner, _ = _signal_message(
        state,
        b"downgrade",
        spqr_field=False,
        spqr_salt=False,
        addresses=encode_addresses(alice.address, bob.address),
    )
    prekey_message = PreKeySignalMessage.create(
        registration_id=state.local_registration_id,
        pre_key_id=pending.pre_key_id,
        signed_pre_key_id=pending.signed_pre_key_id,
        kyber_pre_key_id=pending.kyber_pre_key_id,
        kyber_ciphertext=pending.kyber_ciphertext,
        base_key=pending.base_key,
        identity_key=state.local_identity,
        message=inner,
    )
    one_time_before = dict(bob.one_time)
    with pytest.raises(DecryptionError):
        bob.decrypt(alice, CiphertextMessage(CiphertextMessageType.PREKEY, prekey_message.serialized))
    assert alice.address not in bob.sessions
    assert bob.one_time == one_time_before

    # Alice's genuine first message still sets the session up.
    assert bob.decrypt(alice, alice.encrypt(bob, b"genuine")) == b"genuine"
