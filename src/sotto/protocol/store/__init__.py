"""A reference in-memory protocol store and the calls that go through it (like libsignal's).

:class:`InMemoryProtocolStore` holds one device's identity, trusted identities (TOFU), prekeys
with the last-resort use set, sessions and sender keys. The calls (:func:`message_encrypt`,
:func:`message_decrypt`, :func:`process_prekey_bundle`, the group calls and
:func:`sealed_sender_decrypt`) do the bookkeeping that the pure functions of
:mod:`sotto.protocol.session` and :mod:`sotto.protocol.group` leave to their caller. Pure and
synchronous like the rest of the protocol package: a product store (SQLite, encrypted) does the
same duties in its own transactions (``sotto.client.flows``).
"""

from sotto.protocol.store.calls import (
    create_sender_key_distribution,
    group_decrypt,
    group_encrypt,
    message_decrypt,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
    process_sender_key_distribution,
)
from sotto.protocol.store.memory import IdentityChange, InMemoryProtocolStore
from sotto.protocol.store.sealed import (
    SealedSenderDecryptResult,
    sealed_sender_decrypt,
    sealed_sender_encrypt,
    sealed_sender_multi_recipient_encrypt,
)

__all__ = [
    "IdentityChange",
    "InMemoryProtocolStore",
    "SealedSenderDecryptResult",
    "create_sender_key_distribution",
    "group_decrypt",
    "group_encrypt",
    "message_decrypt",
    "message_decrypt_prekey",
    "message_decrypt_signal",
    "message_encrypt",
    "process_prekey_bundle",
    "process_sender_key_distribution",
    "sealed_sender_decrypt",
    "sealed_sender_encrypt",
    "sealed_sender_multi_recipient_encrypt",
]
