"""Every error Sotto raises, in one tree.

::

    SottoError                          root: ``except SottoError`` catches everything we raise
    ├── DecodeError                     bytes that do not parse (any decoder, any layer)
    ├── CryptoError
    │   ├── InvalidKeyError             wrong type byte, wrong length, non-canonical point
    │   ├── InvalidKeyAgreementError    X25519 produced the all-zero secret
    │   └── InvalidSignatureError       an XEdDSA signature did not verify
    └── ProtocolError
        ├── DecryptionError             "decryption failed": bad MAC, bad padding, wrong key,
        │                               tampered or unknown-origin message; one error on purpose
        ├── DuplicateMessageError       a counter already consumed (or its key evicted)
        ├── MessageTooFarAheadError     the counter jumps past the forward limit
        ├── UnsupportedVersionError     legacy (X3DH / pre-SPQR) or future version
        ├── InvalidPreKeyBundleError    a bundle's signatures or fields are unusable
        ├── MissingPreKeyError          a PreKey message names a prekey we do not hold
        ├── ReusedBaseKeyError          a last-resort key was used twice with one base key
        ├── SessionNotFoundError        no usable session for this peer
        ├── UntrustedIdentityError      the peer's identity key changed
        ├── InvalidSessionStateError    a stored record does not load
        ├── SealedSenderError
        │   ├── InvalidCertificateError bad chain, expired, revoked or key mismatch
        │   └── SelfSendError           a sealed message from ourselves
        ├── NoSenderKeyStateError       no sender key for this (sender, distribution)
        └── FingerprintVersionMismatchError  a scanned safety number of another version
    StoreError                          the client's local store refused or failed
    ├── WrongPassphraseError            the passphrase does not unwrap the store's data key
    ├── StoreCorruptedError             a value fails authentication or a row does not decode
    ├── StoreVersionError               the file's schema is newer than this code
    ├── StoreLockedError                another process has the store open
    ├── StoreConflictError              a unique value (name, id) is already taken
    └── MissingRecordError              an update names a record that does not exist
    RelayError                          the relay refused a request: an HTTP status and a stable code
    ├── RelayStorageError               the relay's database failed (disk full, I/O); retry later
    ├── MailboxFullError                507 mailbox_full: the mailbox holds its quota; retry later
    ├── RelayFullError                  507 relay_full: the relay is short of disk; retry later
    ├── QuotaExceededError              507 quota_exceeded: the account holds its quota of something
    └── WorkRequiredError               428: the relay asks for proof of work we did not give
        └── WorkTooHardError            ...more work than this client is willing to do
    ClientError                         the client SDK refused an operation
    ├── InviteError                     an invite link that cannot be used (ours, known contact)
    ├── LinkError                       linking a device failed (bad link, no answer, no check)
    ├── UnknownContactError             no contact or group by that name
    ├── RelayUnavailableError           the relay could not be reached; the outbox retries
    ├── EnvelopeRejectedError           an incoming envelope that can never be processed
    └── DeviceListError                 an account's device list that we cannot accept
        ├── DeviceListSignatureError    not signed by the account's identity key
        ├── DeviceListForkError         it does not follow the list we hold (another branch)
        └── DeviceListRollbackError     its version does not go forward
    SimulationDeadlockError             a virtual-time simulation where every task waits forever

Failures an attacker could tell apart by probing (which check failed inside a decryption)
all surface as :class:`DecryptionError`. Exceptions carry counters and ids, never key bytes
or plaintext.
"""

from __future__ import annotations


class SottoError(Exception):
    """Root of every error Sotto raises."""


class DecodeError(SottoError):
    """Bytes that do not parse as the expected structure."""


class CryptoError(SottoError):
    """A primitive refused its input."""


class InvalidKeyError(CryptoError):
    """A key with the wrong type byte or length, or a non-canonical curve point."""


class InvalidKeyAgreementError(CryptoError):
    """X25519 produced the all-zero shared secret (a low-order peer key)."""


class InvalidSignatureError(CryptoError):
    """An XEdDSA signature did not verify."""


class ProtocolError(SottoError):
    """The Signal protocol layer refused a message or a state change."""


class DecryptionError(ProtocolError):
    """A message could not be decrypted; deliberately says nothing about why."""

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class DuplicateMessageError(ProtocolError):
    """The message's counter was already consumed (or its cached key was evicted)."""

    def __init__(self, chain_index: int, counter: int) -> None:
        super().__init__(f"duplicate message: chain at {chain_index}, counter {counter}")
        self.chain_index = chain_index
        self.counter = counter


class MessageTooFarAheadError(ProtocolError):
    """The counter jumps further ahead than the forward limit allows."""

    def __init__(self, chain_index: int, counter: int) -> None:
        super().__init__(f"message from too far into the future: chain at {chain_index}, counter {counter}")
        self.chain_index = chain_index
        self.counter = counter


class UnsupportedVersionError(ProtocolError):
    """A message version we refuse: legacy X3DH, pre-SPQR, or newer than we know."""


class InvalidPreKeyBundleError(ProtocolError):
    """A prekey bundle whose signatures or fields are unusable."""


class MissingPreKeyError(ProtocolError):
    """A PreKey message refers to a prekey id we do not hold."""

    def __init__(self, kind: str, prekey_id: int) -> None:
        super().__init__(f"no {kind} prekey with id {prekey_id}")
        self.kind = kind
        self.prekey_id = prekey_id


class ReusedBaseKeyError(ProtocolError):
    """A last-resort Kyber prekey was used again with the same signed prekey and base key."""


class SessionNotFoundError(ProtocolError):
    """No usable session exists for the peer."""


class UntrustedIdentityError(ProtocolError):
    """The peer's identity key differs from the one we trust."""


class InvalidSessionStateError(ProtocolError):
    """A stored session record does not load."""


class SealedSenderError(ProtocolError):
    """A sealed-sender envelope was refused."""


class InvalidCertificateError(SealedSenderError):
    """A sender certificate is badly signed, expired, revoked, or names another key."""


class SelfSendError(SealedSenderError):
    """A sealed-sender message that claims to come from ourselves."""


class NoSenderKeyStateError(ProtocolError):
    """No sender-key state for this (sender, distribution id)."""


class FingerprintVersionMismatchError(ProtocolError):
    """A scanned safety number uses another fingerprint version, so it cannot be compared."""

    def __init__(self, theirs: int, ours: int) -> None:
        super().__init__(f"fingerprint version mismatch: theirs {theirs}, ours {ours}")
        self.theirs = theirs
        self.ours = ours


class StoreError(SottoError):
    """The client's local store refused an operation or could not complete it."""


class WrongPassphraseError(StoreError):
    """The passphrase does not unwrap the store's data key."""


class StoreCorruptedError(StoreError):
    """A stored value fails authentication (tampered, or moved to another row) or does not decode."""


class StoreVersionError(StoreError):
    """The store's schema version is newer than this code understands."""


class StoreLockedError(StoreError):
    """Another process has the store open; one process per store keeps per-peer locking sound."""


class StoreConflictError(StoreError):
    """A value that must be unique (a contact name, an id) is already taken."""


class MissingRecordError(StoreError):
    """An update or delete names a record that does not exist."""


class RelayError(SottoError):
    """The relay refused a request; ``status`` is the HTTP status, ``code`` a stable machine code.

    The server answers with ``{"code", "message"}``; a client that reads such an answer may raise
    this error with the same fields.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class RelayStorageError(RelayError):
    """The relay's database failed (disk full, I/O error); nothing was acknowledged, so retry."""

    def __init__(self, message: str = "storage unavailable") -> None:
        super().__init__(503, "unavailable", message)


class MailboxFullError(RelayError):
    """507 ``mailbox_full``: the recipient's mailbox holds its quota of pending envelopes until
    its owner drains it. Nothing was stored; the outbox keeps the envelope and retries later."""

    def __init__(self, message: str = "the mailbox holds its quota of pending envelopes") -> None:
        super().__init__(507, "mailbox_full", message)


class RelayFullError(RelayError):
    """507 ``relay_full``: the relay is short of disk space and refuses writes that grow its
    data. Nothing was stored; retry later."""

    def __init__(self, message: str = "the relay is short of disk space") -> None:
        super().__init__(507, "relay_full", message)


class QuotaExceededError(RelayError):
    """507 ``quota_exceeded``: our account holds its quota (access tokens, prekeys); retrying
    changes nothing until some are used or retired."""

    def __init__(self, message: str = "the account holds its quota") -> None:
        super().__init__(507, "quota_exceeded", message)


class WorkRequiredError(RelayError):
    """428: the relay is busy with anonymous creations and asks for proof of work that we did not
    give or it did not accept (``code``: ``work_required``, ``work_invalid``, ``work_expired``,
    ``work_replayed``); ``difficulty`` is in bits."""

    def __init__(self, code: str, message: str, difficulty: int) -> None:
        super().__init__(428, code, message)
        self.difficulty = difficulty


class WorkTooHardError(WorkRequiredError):
    """The relay asks for more proof of work (``difficulty`` bits) than this client does
    (``cap`` bits): it is under heavy load; try again later."""

    def __init__(self, difficulty: int, cap: int) -> None:
        message = f"the relay asks for {difficulty} bits of work; this client does at most {cap}"
        super().__init__("work_too_hard", message, difficulty)
        self.cap = cap


class ClientError(SottoError):
    """The client SDK refused an operation."""


class AccountDeletedError(ClientError):
    """This profile's account was deleted from its relay: the relay holds nothing for it."""


class InviteError(ClientError):
    """An invite link that cannot be used: our own, someone already a contact, or refused by the relay."""


class LinkError(ClientError):
    """Linking a device failed: a malformed link, no answer in time, or a provisioning message
    that does not open or check (:mod:`sotto.client.device_linking`)."""


class UnknownContactError(ClientError):
    """No contact or group by that name or id."""


class RelayUnavailableError(ClientError):
    """The relay could not be reached (connection refused, timeout); queued sends are retried."""


class EnvelopeRejectedError(ClientError):
    """An incoming envelope that can never be processed; it is acknowledged and dropped.

    ``reason`` is a stable code (:class:`sotto.client.events.RejectReason`), ``detail`` the name of
    the underlying error; ``events`` are what the rejection should still report (an identity change).
    """

    def __init__(self, reason: str, detail: str, events: list[object] | None = None) -> None:
        super().__init__(f"envelope rejected: {reason} ({detail})")
        self.reason = reason
        self.detail = detail
        self.events = list(events or [])


class DeviceListError(ClientError):
    """An account's device list that we cannot accept (:mod:`sotto.client.device_list`).

    A list whose bytes do not parse is :class:`DecodeError` instead.
    """


class DeviceListSignatureError(DeviceListError):
    """A device list not signed by the account's identity key."""

    def __init__(self, version: int) -> None:
        super().__init__(f"device list version {version} is not signed by the account key")
        self.version = version


class DeviceListForkError(DeviceListError):
    """A device list that does not follow the one we hold: it descends from another list, or
    lists between the two are missing."""

    def __init__(self, ours: int, theirs: int) -> None:
        super().__init__(f"device list version {theirs} does not follow version {ours}")
        self.ours = ours
        self.theirs = theirs


class DeviceListRollbackError(DeviceListError):
    """A device list whose version is not above the version of the list we hold."""

    def __init__(self, ours: int, theirs: int) -> None:
        super().__init__(f"device list version {theirs} does not go forward from version {ours}")
        self.ours = ours
        self.theirs = theirs


class SimulationDeadlockError(SottoError):
    """A simulation on virtual time (:mod:`sotto.audit.sim`) where every task waits and no timer is set."""
