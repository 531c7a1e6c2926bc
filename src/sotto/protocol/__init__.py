"""The Signal protocol, pure and synchronous, wire-compatible with libsignal 0.103.

Nothing here awaits, sleeps, opens a socket, logs or reads the clock: the time and the
randomness are arguments, state goes in and new state comes out.

The public face, as libsignal's ``lib.rs`` declares its own:

* values: :class:`ProtocolAddress`, the prekey records and :class:`PreKeyBundle`,
  :class:`SessionRecord`, the messages (:class:`CiphertextMessage` and its types);
* :mod:`.session` — the 1:1 protocol as pure functions (state in, state out; the caller does the
  bookkeeping :class:`PreKeyDecryptResult` names), and :mod:`.group` — sender keys, the same way;
* :mod:`.store` — :class:`InMemoryProtocolStore`, the reference store, and the calls that do that
  bookkeeping through it (:func:`message_encrypt`, :func:`message_decrypt`,
  :func:`process_prekey_bundle`, :func:`sealed_sender_decrypt`, ...), named as libsignal names them;
* :mod:`.sealed_sender` — sealing and opening envelopes; :mod:`.fingerprint` — safety numbers;
  :class:`DecryptionErrorMessage` and :class:`PlaintextContent` — retry receipts.

``docs/protocol.md`` states what a caller of the pure functions must do. Anything not listed in
``__all__`` (the ratchet internals, codecs, labels) may change without notice.
"""

from sotto.protocol import fingerprint, group, limits, sealed_sender, session, store
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import (
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    build_bundle,
)
from sotto.protocol.decryption_error import DecryptionErrorMessage, PlaintextContent
from sotto.protocol.group import SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord
from sotto.protocol.messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from sotto.protocol.record import SessionRecord
from sotto.protocol.sealed_sender import (
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    open_sealed,
)
from sotto.protocol.session import LastResortUse, PreKeyDecryptResult
from sotto.protocol.store import (
    IdentityChange,
    InMemoryProtocolStore,
    SealedSenderDecryptResult,
    create_sender_key_distribution,
    group_decrypt,
    group_encrypt,
    message_decrypt,
    message_encrypt,
    process_prekey_bundle,
    process_sender_key_distribution,
    sealed_sender_decrypt,
    sealed_sender_encrypt,
    sealed_sender_multi_recipient_encrypt,
)

__all__ = [
    "CiphertextMessage",
    "CiphertextMessageType",
    "DecryptionErrorMessage",
    "IdentityChange",
    "InMemoryProtocolStore",
    "KyberPreKeyRecord",
    "LastResortUse",
    "PlaintextContent",
    "PreKeyBundle",
    "PreKeyDecryptResult",
    "PreKeyRecord",
    "PreKeySignalMessage",
    "ProtocolAddress",
    "SealedSenderDecryptResult",
    "SenderCertificate",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SenderKeyRecord",
    "ServerCertificate",
    "SessionRecord",
    "SignalMessage",
    "SignedPreKeyRecord",
    "UnidentifiedSenderMessageContent",
    "build_bundle",
    "create_sender_key_distribution",
    "fingerprint",
    "group",
    "group_decrypt",
    "group_encrypt",
    "limits",
    "message_decrypt",
    "message_encrypt",
    "open_sealed",
    "process_prekey_bundle",
    "process_sender_key_distribution",
    "sealed_sender",
    "sealed_sender_decrypt",
    "sealed_sender_encrypt",
    "sealed_sender_multi_recipient_encrypt",
    "session",
    "store",
]
