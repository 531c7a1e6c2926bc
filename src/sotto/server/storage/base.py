"""What the relay keeps, as records, and the interface every storage backend implements.

Each method is one transaction: the checks and the writes it makes happen together or not at
all (a duplicate check and the insert it guards, a token check and the prekeys it hands out).
Backends: :class:`~sotto.server.storage.memory.MemoryStorage` (the reference) and
:class:`~sotto.server.storage.sqlite.SqliteStorage` (the embedded default); one shared test
suite holds both to the same behaviour.

Secrets never reach storage: device secrets, delivery tokens and access tokens arrive here as
their SHA-256, usernames as their keyed hash. Times are day numbers.

Nothing stored dates the making of a contact. Making one creates a mailbox on each side and
often an access token, so a creation day on those rows would pair a contact's two mailboxes
(and date the invite): mailboxes and devices keep no creation day, a new mailbox's expiry is
the one a drain that day would give (:func:`drained_expiry`), an access token's expiry is
rounded up to a whole week (:func:`token_expiry`) and an account's creation day to the start of
its week (:func:`creation_week`). Every table but ``envelope_keys`` is keyed by random ids
(WITHOUT ROWID in SQLite), so neither row numbers nor the order of rows follow creation.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NewType, Protocol

EXPIRY_STEP_DAYS = 7
"""A drain moves a mailbox's expiry forward in whole weeks, on a weekday fixed per mailbox."""


def drained_expiry(mailbox_id: bytes, today: int, ttl_days: int) -> int:
    """The expiry day a drain on ``today`` gives: the first day at least ``ttl_days`` ahead that
    falls on the mailbox's own weekday (from its random id).

    A mailbox therefore lives between ``ttl_days`` and ``ttl_days + 6`` days after its last drain,
    and its stored expiry changes at most once a week, on a day that depends on the mailbox and
    not on its owner: a dump shows the week of the last drain, not the day, and mailboxes of one
    owner drained together do not change together.
    """
    earliest = today + ttl_days
    return earliest + (expiry_phase(mailbox_id) - earliest) % EXPIRY_STEP_DAYS


def expiry_phase(mailbox_id: bytes) -> int:
    """The mailbox's weekday for expiry moves (``0 ≤ phase < EXPIRY_STEP_DAYS``)."""
    return int.from_bytes(mailbox_id[:4], "big") % EXPIRY_STEP_DAYS


def token_expiry(requested_day: int) -> int:
    """The expiry day stored for an access token the owner asked to expire on ``requested_day``:
    the first day at or after it that is a whole number of weeks since day 0.

    Every token registered in one week with the same lifetime stores the same day, so a dump
    cannot tell on which day of the week an invite was made; the token lives up to 6 days longer
    than asked.
    """
    return requested_day + (-requested_day) % EXPIRY_STEP_DAYS


def creation_week(today: int) -> int:
    """The creation day stored for an account made on ``today``: the first day of its week (a
    whole number of weeks since day 0), what ``GET /v1/accounts/me`` reports as ``created_day``."""
    return today - today % EXPIRY_STEP_DAYS


AccountId = NewType("AccountId", bytes)
MailboxId = NewType("MailboxId", bytes)
MessageId = NewType("MessageId", bytes)

ExportValue = bytes | int | None
ExportRow = dict[str, ExportValue]
Export = dict[str, list[ExportRow]]
"""Table name -> its rows, each row column name -> stored value (the manifest's schema)."""


# ------------------------------------------------------------------------------ accounts
@dataclass(frozen=True, slots=True)
class AccountRecord:
    account_id: AccountId
    identity_key: bytes
    created_day: int
    """The first day of the week of creation (:func:`creation_week`), not the day."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    account_id: AccountId
    device_id: int
    registration_id: int
    secret_hash: bytes

    def __repr__(self) -> str:
        return f"DeviceRecord(account={self.account_id.hex()[:8]}…, device={self.device_id})"


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    key_id: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class SignedKey:
    """A signed EC prekey, or a Kyber prekey (one-time or last resort): id, key, signature."""

    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class KeyUpload:
    signed_pre_key: SignedKey | None = None
    kyber_last_resort: SignedKey | None = None
    one_time_pre_keys: tuple[OneTimePreKey, ...] = ()
    kyber_pre_keys: tuple[SignedKey, ...] = ()


class UploadOutcome(enum.Enum):
    STORED = "stored"
    CONFLICT = "conflict"
    """A key id already held with other bytes: nothing of the upload was written."""
    OVER_QUOTA = "over_quota"
    """The device would hold more one-time keys of a kind than its quota: nothing written."""


@dataclass(frozen=True, slots=True)
class KeyCounts:
    one_time: int
    kyber: int


@dataclass(frozen=True, slots=True)
class DeviceBundleRecord:
    device_id: int
    registration_id: int
    signed_pre_key: SignedKey
    kyber_pre_key: SignedKey
    pre_key: OneTimePreKey | None


@dataclass(frozen=True, slots=True)
class BundleRecord:
    identity_key: bytes
    devices: tuple[DeviceBundleRecord, ...]


class UsernameOutcome(enum.Enum):
    SET = "set"
    TAKEN = "taken"


# ------------------------------------------------------------------------------ mailboxes
@dataclass(frozen=True, slots=True)
class MailboxRecord:
    mailbox_id: MailboxId
    auth_key: bytes
    token_hash: bytes
    ttl_days: int
    expires_day: int
    """From creation on, what a drain gives (:func:`drained_expiry`): no day of creation is kept."""

    def same_keys(self, other: MailboxRecord) -> bool:
        """Whether ``other`` asks for this mailbox again (same key, token and ttl)."""
        return (self.auth_key, self.token_hash, self.ttl_days) == (
            other.auth_key,
            other.token_hash,
            other.ttl_days,
        )


class CreateOutcome(enum.Enum):
    CREATED = "created"
    EXISTS = "exists"
    """The same mailbox again: an idempotent retry."""
    CONFLICT = "conflict"
    """The id is taken with other keys."""


@dataclass(frozen=True, slots=True)
class EnvelopeRecord:
    mailbox_id: MailboxId
    message_id: MessageId
    seq: int
    """Position among the mailbox's pending envelopes (1 + the highest pending), for ordering."""
    received_day: int
    payload: bytes

    @property
    def ref(self) -> tuple[MailboxId, MessageId]:
        return (self.mailbox_id, self.message_id)

    def __repr__(self) -> str:
        return (
            f"EnvelopeRecord(mailbox={self.mailbox_id.hex()[:8]}…, id={self.message_id.hex()[:8]}…, "
            f"seq={self.seq}, {len(self.payload)} B)"
        )


class PutOutcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    """An envelope with this id is already pending in the mailbox: nothing written."""
    NOT_FOUND = "not_found"
    """Unknown mailbox, expired mailbox or wrong delivery token: deliberately one outcome."""
    MAILBOX_FULL = "mailbox_full"
    """The mailbox holds its quota of pending envelopes or bytes: nothing written. Told only to
    a sender with the right delivery token (after the NOT_FOUND checks)."""
    RELAY_FULL = "relay_full"
    """Free disk is below the floor: nothing written."""


@dataclass(frozen=True, slots=True)
class PutResult:
    outcome: PutOutcome
    envelope: EnvelopeRecord | None = None
    """The stored envelope when ``outcome`` is STORED, for live delivery."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    envelopes: int = 0
    mailboxes: int = 0
    access_tokens: int = 0


class Storage(Protocol):
    """The relay's storage: every method is one atomic transaction."""

    async def close(self) -> None: ...

    def low_on_disk(self) -> bool:
        """Free space on the data's filesystem is below the floor: refuse what makes storage grow."""
        ...

    # accounts and devices
    async def create_account(self, account: AccountRecord, device: DeviceRecord) -> bool:
        """Store a new account with its first device; False if the id is taken."""
        ...

    async def get_account(self, account_id: AccountId) -> AccountRecord | None: ...

    async def get_device(self, account_id: AccountId, device_id: int) -> DeviceRecord | None: ...

    async def set_username(self, account_id: AccountId, username_hash: bytes) -> UsernameOutcome: ...

    async def clear_username(self, account_id: AccountId) -> None: ...

    async def find_username(self, username_hash: bytes) -> AccountId | None: ...

    async def delete_account(self, account_id: AccountId) -> bool:
        """Delete the account and every row held about it, in one transaction: its devices and
        their prekeys, its access tokens and its username. False if there was no such account.
        Mailboxes are not the account's on the relay (nothing links them): their owner deletes
        each with its own key."""
        ...

    # prekeys
    async def upload_keys(self, account_id: AccountId, device_id: int, upload: KeyUpload) -> UploadOutcome:
        """Add keys, idempotent per key id; CONFLICT (and nothing written) if an id has other bytes.

        A one-time key whose id is at or below the highest id already handed out for that device
        is ignored, so a retried upload cannot put back a consumed key.
        """
        ...

    async def key_counts(self, account_id: AccountId, device_id: int) -> KeyCounts: ...

    async def add_access_token(self, account_id: AccountId, token_hash: bytes, expires_day: int) -> bool:
        """Store (or renew) the token; False, and nothing written, if the account would hold more
        than its quota of tokens."""
        ...

    async def delete_access_token(self, account_id: AccountId, token_hash: bytes) -> None: ...

    async def has_access(self, account_id: AccountId, token_hash: bytes, today: int) -> bool:
        """Whether ``token_hash`` is a live access token of the account (read only)."""
        ...

    async def take_bundle(self, account_id: AccountId, token_hash: bytes, today: int) -> BundleRecord | None:
        """Check the access token and hand out one prekey set per device, consuming one-time keys.

        None when the account is unknown or the token is wrong or expired (one answer on
        purpose). Per device: the lowest one-time EC key if any, the lowest one-time Kyber key or
        else the last-resort one. Devices without a signed prekey and a Kyber key are left out.
        """
        ...

    async def export_account(self, account_id: AccountId) -> Export: ...

    # mailboxes and envelopes
    async def create_mailbox(self, mailbox: MailboxRecord) -> CreateOutcome: ...

    async def get_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> Mapping[MailboxId, MailboxRecord]:
        """The mailboxes among ``mailbox_ids`` that exist (expired or not)."""
        ...

    async def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId], today: int) -> None:
        """The owner drained: move each mailbox's expiry forward to :func:`drained_expiry` (never back)."""
        ...

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        """Delete the mailbox and every envelope in it."""
        ...

    async def put_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> PutResult:
        """Check the delivery token (constant time), then the mailbox's quota and the disk floor,
        and store the envelope unless already pending."""
        ...

    def submit_envelope(
        self, mailbox_id: MailboxId, token_hash: bytes, message_id: MessageId, payload: bytes, today: int
    ) -> asyncio.Future[PutResult]:
        """:meth:`put_envelope` as a future of the running loop, resolved after the commit: the
        delivery socket answers each send from a callback on it rather than a task of its own."""
        ...

    async def pending(
        self,
        mailbox_id: MailboxId,
        limit: int,
        skip: frozenset[MessageId] = frozenset(),
        max_bytes: int | None = None,
    ) -> list[EnvelopeRecord]:
        """Up to ``limit`` pending envelopes in order, leaving out the ids in ``skip``.

        With ``max_bytes``, stop after the envelope whose payload takes the total past it: what
        one call reads and decrypts stays within ``max_bytes`` plus one envelope, and a caller
        that trims to ``max_bytes`` still sees that more is waiting."""
        ...

    async def delete_envelopes(self, refs: Sequence[tuple[MailboxId, MessageId]]) -> int:
        """Delete acknowledged envelopes; unknown refs are ignored. Returns how many were deleted."""
        ...

    async def export_mailbox(self, mailbox_id: MailboxId) -> Export: ...

    async def sweep(self, today: int, envelope_ttl_days: int) -> SweepResult:
        """Delete what has expired by ``today``.

        An envelope expires on ``received_day + envelope_ttl_days``, a mailbox (with its
        envelopes) and an access token on their ``expires_day``: an expiry day is the first day
        the thing is gone, everywhere (a send to a mailbox on its expiry day is refused too).
        """
        ...
