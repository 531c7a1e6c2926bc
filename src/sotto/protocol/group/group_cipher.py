"""Group messaging with sender keys: create and process SKDMs, encrypt and decrypt SKMs.

A sender makes one chain per distribution id and hands its SKDM to every member over 1:1
sessions; after that each group message is encrypted once (AES-256-CBC under the chain's
message key) and signed with the chain's signing key. Members check the signature before
touching their chain state.

Every function takes a record and returns a new one; the record passed in is never changed,
so on any exception the caller's stored record is still the right one. Records are per
(sender, distribution id): the caller looks them up by the SKM's ``distribution_id``.
"""

from __future__ import annotations

import uuid

from sotto.crypto.cipher import aes256_cbc_decrypt, aes256_cbc_encrypt
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng
from sotto.errors import InvalidSessionStateError, NoSenderKeyStateError, UnsupportedVersionError
from sotto.protocol.group.chain import SenderChainKey
from sotto.protocol.group.messages import (
    CHAIN_KEY_LENGTH,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
)
from sotto.protocol.group.sender_key import SenderKeyRecord, SenderKeyState

_CHAIN_ID_BITS = 31  # libsignal-protocol-java reads chain ids as signed 32-bit integers


def _check_distribution(record: SenderKeyRecord, distribution_id: uuid.UUID) -> None:
    if record.distribution_id != distribution_id:
        raise ValueError("the record belongs to another distribution id")


def create_distribution(
    record: SenderKeyRecord | None, distribution_id: uuid.UUID, rng: Rng
) -> tuple[SenderKeyRecord, SenderKeyDistributionMessage]:
    """Our SKDM for ``distribution_id``, starting a chain if ``record`` is None.

    An existing record's newest chain is reused, as libsignal does: members who join later get
    the chain from where it is now and cannot read earlier messages. To re-key, pass None and
    send the new SKDM to every remaining member.
    """
    if record is None or record.newest() is None:
        chain_id = int.from_bytes(rng(4), "big") >> (32 - _CHAIN_ID_BITS)
        signing = KeyPair.generate(rng)
        state = SenderKeyState(
            chain_id=chain_id,
            chain_key=SenderChainKey(0, rng(CHAIN_KEY_LENGTH)),
            signing_key=signing.public,
            signing_private=signing.private,
        )
        record = SenderKeyRecord(distribution_id, (state,))
    _check_distribution(record, distribution_id)
    state = record.states[0]
    skdm = SenderKeyDistributionMessage(
        distribution_id=distribution_id,
        chain_id=state.chain_id,
        iteration=state.chain_key.iteration,
        chain_key=state.chain_key.chain_key,
        signing_key=state.signing_key,
    )
    return record, skdm


def process_distribution(
    record: SenderKeyRecord | None, skdm: SenderKeyDistributionMessage
) -> SenderKeyRecord:
    """The record after learning a sender's chain from their SKDM (a chain we hold keeps its progress)."""
    if record is None:
        record = SenderKeyRecord(skdm.distribution_id, ())
    _check_distribution(record, skdm.distribution_id)
    state = SenderKeyState(
        chain_id=skdm.chain_id,
        chain_key=SenderChainKey(skdm.iteration, skdm.chain_key),
        signing_key=skdm.signing_key,
    )
    return record.with_new_state(state)


def group_encrypt(record: SenderKeyRecord, plaintext: bytes, rng: Rng) -> tuple[SenderKeyRecord, bytes]:
    """Encrypt and sign ``plaintext`` on our newest chain; return the new record and the SKM bytes."""
    state = record.newest()
    if state is None:
        raise NoSenderKeyStateError(f"no sender key for distribution {record.distribution_id}")
    if state.signing_private is None:
        raise InvalidSessionStateError("this sender-key chain is someone else's: it cannot sign")
    message_key = state.chain_key.message_key()
    iv, cipher_key = message_key.iv_and_cipher_key()
    skm = SenderKeyMessage.create(
        distribution_id=record.distribution_id,
        chain_id=state.chain_id,
        iteration=message_key.iteration,
        ciphertext=aes256_cbc_encrypt(cipher_key, iv, plaintext),
        signing_key=state.signing_private,
        rng=rng,
    )
    return record.with_state_at(0, state.advance()), skm.encode()


def group_decrypt(record: SenderKeyRecord, data: bytes) -> tuple[SenderKeyRecord, bytes]:
    """Check and decrypt an SKM; return the new record and the plaintext.

    Raises DecodeError / UnsupportedVersionError (bytes), NoSenderKeyStateError (unknown
    distribution or chain), InvalidSignatureError (not signed by that chain's key),
    DuplicateMessageError / MessageTooFarAheadError (iteration), DecryptionError (cipher).
    """
    skm = SenderKeyMessage.decode(data)
    if skm.distribution_id != record.distribution_id:
        raise NoSenderKeyStateError(f"no sender key for distribution {skm.distribution_id}")
    found = record.state_for_chain(skm.chain_id)
    if found is None:
        raise NoSenderKeyStateError(
            f"no sender key for chain {skm.chain_id} in distribution {skm.distribution_id}"
        )
    index, state = found
    if state.message_version != data[0] >> 4:
        raise UnsupportedVersionError(
            f"sender-key message version {data[0] >> 4} on a version {state.message_version} chain"
        )
    skm.verify_signature(state.signing_key)
    new_state, message_key = state.message_key(skm.iteration)
    iv, cipher_key = message_key.iv_and_cipher_key()
    plaintext = aes256_cbc_decrypt(cipher_key, iv, skm.ciphertext)
    return record.with_state_at(index, new_state), plaintext
