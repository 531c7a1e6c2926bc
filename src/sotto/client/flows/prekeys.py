"""Decrypting a PreKey message, with the bookkeeping libsignal leaves to its caller.

In the same transaction as the new session: a used one-time EC prekey is deleted, a used
one-time Kyber prekey too, and a last-resort Kyber prekey's (Kyber id, signed id, base key)
triple is remembered so a replay is refused.
"""

from __future__ import annotations

from sotto.client.flows.context import Context, same_key
from sotto.crypto.keys import PublicKey
from sotto.errors import UntrustedIdentityError
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.messages import PreKeySignalMessage


def decrypt_prekey_message(ctx: Context, address: ProtocolAddress, body: bytes, expected: PublicKey) -> bytes:
    """The plaintext of a PreKey message from ``address``, whose identity key must be ``expected``.

    Raises DecodeError, UntrustedIdentityError or the session's ProtocolErrors.
    """
    tx = ctx.tx
    parsed = PreKeySignalMessage.decode(body)
    if not same_key(parsed.identity_key, expected):
        raise UntrustedIdentityError("PreKey message from another identity key")
    result = session.decrypt_prekey_message(
        tx.sessions.get(address),
        parsed,
        our_identity=ctx.me.identity,
        our_registration_id=ctx.me.account.registration_id,
        our_address=ctx.me.address,
        their_address=address,
        signed_pre_key=tx.prekeys.get_signed(parsed.signed_pre_key_id),
        kyber_pre_key=tx.prekeys.get_kyber(parsed.kyber_pre_key_id),
        one_time_pre_key=None if parsed.pre_key_id is None else tx.prekeys.get_one_time(parsed.pre_key_id),
        used_last_resort=tx.prekeys.last_resort_uses(),
        rng=ctx.rng,
    )
    tx.sessions.put(address, result.record)
    if result.used_one_time_pre_key_id is not None:
        tx.prekeys.remove_one_time(result.used_one_time_pre_key_id)
    if result.one_time_kyber_pre_key_id is not None:
        tx.prekeys.remove_kyber(result.one_time_kyber_pre_key_id)
    if result.last_resort_use is not None:
        tx.prekeys.record_last_resort_use(result.last_resort_use)
    return result.plaintext
