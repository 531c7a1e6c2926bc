"""Encrypt and decrypt on one :class:`~sotto.protocol.ratchet.state.SessionState` (no session choice).

The triple ratchet: the Double Ratchet's chain key gives a message-key seed, SPQR's chain gives
the salt, HKDF turns both into AES-256-CBC and HMAC keys. Decryption computes a candidate new
state and returns it only once the MAC, the addresses and the padding check out; any failure
an attacker could cause is :class:`~sotto.errors.DecryptionError`.
"""

from __future__ import annotations

from sotto.crypto.cipher import aes256_cbc_decrypt, aes256_cbc_encrypt
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng
from sotto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidKeyAgreementError,
    MessageTooFarAheadError,
)
from sotto.protocol.limits import MAX_FORWARD_JUMPS, MAX_RECEIVER_CHAINS
from sotto.protocol.messages import SignalMessage, encode_signal_message
from sotto.protocol.ratchet.chain import derive_message_keys
from sotto.protocol.ratchet.skipped import EMPTY_SKIPPED_KEYS
from sotto.protocol.ratchet.state import ReceiverChain, SenderChain, SessionState
from sotto.protocol.values import new_tuple


def encrypt_message(
    state: SessionState, plaintext: bytes, addresses: bytes | None = None
) -> tuple[SessionState, bytes]:
    """Encrypt on the sending chain: the new state and the SignalMessage's bytes.

    ``addresses`` is the 36-byte binding for PreKey messages.
    """
    spqr, pq_message, pq_key = state.spqr.send()
    sender = state.sender_chain
    chain_key = sender.chain_key
    seed, next_chain_key = chain_key.step()
    cipher_key, mac_key, iv = derive_message_keys(seed, pq_key)
    serialized = encode_signal_message(
        mac_key,
        state.local_identity,
        state.remote_identity,
        sender.ratchet_key.public,
        chain_key.index,
        state.previous_counter,
        aes256_cbc_encrypt(cipher_key, iv, plaintext),
        pq_message,
        addresses,
    )
    new_state = new_tuple(
        SessionState,
        (
            state.version,
            state.local_identity,
            state.remote_identity,
            state.root_key,
            new_tuple(SenderChain, (sender.ratchet_key, next_chain_key)),
            state.receiver_chains,
            state.previous_counter,
            spqr,
            state.local_registration_id,
            state.remote_registration_id,
            state.alice_base_key,
            state.self_session,
            state.pending_prekey,
        ),
    )
    return new_state, serialized


def decrypt_message(
    state: SessionState, message: SignalMessage, expected_addresses: bytes | None, rng: Rng
) -> tuple[SessionState, bytes]:
    """Decrypt ``message`` with ``state``; return the advanced state and the plaintext.

    ``expected_addresses`` is our view of the (sender, recipient) binding, None when the names
    are not ServiceIds; a message that carries a binding must match it.
    Raises DuplicateMessageError (counter consumed or its key evicted), MessageTooFarAheadError
    or DecryptionError. ``state`` itself is never changed.
    """
    if message.version != state.version:
        raise DecryptionError
    their_ratchet_key = message.ratchet_key
    root_key = state.root_key
    sender = state.sender_chain
    chains = state.receiver_chains
    previous_counter = state.previous_counter

    # Most messages come on the peer's newest ratchet key: that chain is checked first, inline.
    index: int | None = len(chains) - 1
    if not chains or chains[-1].ratchet_key.raw != their_ratchet_key.raw:
        index = state.receiver_chain_index(their_ratchet_key)
    if index is None:
        # A new peer ratchet key: one receiving and one sending DH ratchet step.
        try:
            root_key, receiving = root_key.create_chain(their_ratchet_key, sender.ratchet_key.private)
            our_new_key = KeyPair.generate(rng)
            root_key, sending = root_key.create_chain(their_ratchet_key, our_new_key.private)
        except InvalidKeyAgreementError:
            raise DecryptionError from None
        previous_counter = max(sender.chain_key.index - 1, 0)
        sender = SenderChain(our_new_key, sending)
        chains = (*chains, ReceiverChain(their_ratchet_key, receiving, EMPTY_SKIPPED_KEYS))[
            -MAX_RECEIVER_CHAINS:
        ]
        index = len(chains) - 1

    chain = chains[index]
    chain_key = chain.chain_key
    counter = message.counter
    if chain_key.index > counter:
        seed = chain.skipped.get(counter)
        if seed is None:
            raise DuplicateMessageError(chain_key.index, counter)
        new_chain = ReceiverChain(their_ratchet_key, chain_key, chain.skipped.without(counter))
    else:
        limit = None if state.self_session else MAX_FORWARD_JUMPS
        if limit is not None and counter - chain_key.index > limit:
            raise MessageTooFarAheadError(chain_key.index, counter)
        skipped = chain.skipped
        if counter > chain_key.index:
            passed = []
            while chain_key.index < counter:
                skipped_seed, following = chain_key.step()
                passed.append((chain_key.index, skipped_seed))
                chain_key = following
            skipped = skipped.with_added(passed)
        seed, next_chain_key = chain_key.step()
        new_chain = new_tuple(ReceiverChain, (their_ratchet_key, next_chain_key, skipped))

    spqr, pq_key = state.spqr.recv(message.pq_ratchet)
    cipher_key, mac_key, iv = derive_message_keys(seed, pq_key)
    if not message.verify_mac(state.remote_identity, state.local_identity, mac_key):
        raise DecryptionError
    if message.addresses is not None and (
        expected_addresses is None or not bytes_equal(expected_addresses, message.addresses)
    ):
        raise DecryptionError
    plaintext = aes256_cbc_decrypt(cipher_key, iv, message.ciphertext)

    new_state = new_tuple(
        SessionState,
        (
            state.version,
            state.local_identity,
            state.remote_identity,
            root_key,
            sender,
            (*chains[:index], new_chain, *chains[index + 1 :]),
            previous_counter,
            spqr,
            state.local_registration_id,
            state.remote_registration_id,
            state.alice_base_key,
            state.self_session,
            None,
        ),
    )
    return new_state, plaintext
