"""What every flow is given (who we are, the open transaction, the time, the randomness) and what
it hands back besides its store writes (events for the app, commands for the relay).

Sender certificates are self-issued: our identity key signs both the "server" certificate and the
sender certificate. A recipient checks the chain against the sealed sender's static key (which
:func:`~sotto.protocol.sealed_sender.open_v1` binds to the certificate) and then that this key is
the one it trusts for the contact. The relay signs nothing and learns no sender.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sotto.client import content as c
from sotto.client.events import Event, RejectReason
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, EnvelopeRejectedError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.sealed_sender import SenderCertificate, ServerCertificate
from sotto.store.interfaces import Transaction
from sotto.store.model import Account, MailboxId
from sotto.wire import api
from sotto.wire.padding import unpad

DAY_MS = 86_400_000

DEVICE_ID = 1
"""One device per account for now; the protocol layer and the relay already speak of devices."""

CERTIFICATE_LIFETIME_MS = 120 * DAY_MS
CERTIFICATE_RENEW_MS = 60 * DAY_MS
"""A self-issued certificate must outlive any envelope carrying it (a relay keeps envelopes up to
30 days, mailboxes up to 90), so it is renewed while it still has 60 days left."""

_CERTIFICATE_KEY_ID = 1


def address_for(account_id: bytes) -> ProtocolAddress:
    """An account's protocol address: its id as a UUID string, so MACs bind it as libsignal does."""
    return ProtocolAddress(str(uuid.UUID(bytes=account_id)), DEVICE_ID)


def account_id_of(name: str) -> bytes | None:
    """The 16-byte account id a protocol name stands for, or None if it is not in our form."""
    try:
        parsed = uuid.UUID(name)
    except ValueError:
        return None
    return parsed.bytes if str(parsed) == name else None


def same_key(ours: PublicKey | None, theirs: PublicKey) -> bool:
    """Whether two identity keys are the same (constant-time, as every key comparison here)."""
    return ours is not None and bytes_equal(ours.to_bytes(), theirs.to_bytes())


def issue_certificate(account: Account, now_ms: int, rng: Rng) -> SenderCertificate:
    """Our self-issued sender certificate: the identity key is trust root and signer."""
    identity = account.identity
    signer = ServerCertificate.issue(_CERTIFICATE_KEY_ID, identity.public, identity.private, rng)
    return SenderCertificate.issue(
        sender_uuid=account.address.name,
        sender_device_id=account.address.device_id,
        identity_key=identity.public,
        expiration_ms=now_ms + CERTIFICATE_LIFETIME_MS,
        signer=signer,
        signer_key=identity.private,
        rng=rng,
    )


@dataclass(frozen=True, slots=True, repr=False)
class Me:
    """Our account and a sender certificate that is valid now."""

    account: Account
    certificate: SenderCertificate

    @classmethod
    def current(cls, me: Me | None, account: Account, now_ms: int, rng: Rng) -> Me:
        """``me`` again, or with a fresh certificate once the held one nears its expiry."""
        if me is not None and me.certificate.expiration_ms - now_ms > CERTIFICATE_RENEW_MS:
            return me
        return cls(account, issue_certificate(account, now_ms, rng))

    @property
    def identity(self) -> KeyPair:
        return self.account.identity

    @property
    def address(self) -> ProtocolAddress:
        return self.account.address

    def __repr__(self) -> str:
        return f"Me({self.account!r})"


@dataclass(frozen=True, slots=True)
class Context:
    """One flow step's surroundings: the open transaction, who we are, the time and the randomness."""

    tx: Transaction
    me: Me
    now_ms: int
    rng: Rng

    @property
    def day(self) -> int:
        return self.now_ms // DAY_MS

    def random_id(self) -> bytes:
        return self.rng(16)


# --------------------------------------------------------------------------- commands
@dataclass(frozen=True, slots=True, repr=False)
class RegisterMailbox:
    """Create this mailbox on our relay (idempotent there), then drain it."""

    mailbox_id: MailboxId
    signing_seed: bytes
    delivery_token: bytes

    def request(self) -> api.CreateMailbox:
        return api.CreateMailbox(
            mailbox_id=self.mailbox_id,
            auth_key=SigningKey(self.signing_seed).public.raw,
            delivery_token=self.delivery_token,
        )

    def __repr__(self) -> str:
        return f"RegisterMailbox({self.mailbox_id.hex()[:8]}…)"


@dataclass(frozen=True, slots=True, repr=False)
class DeleteMailbox:
    """Delete this mailbox on our relay (a used invite's, or one rotated out)."""

    mailbox_id: MailboxId
    signing_seed: bytes

    def __repr__(self) -> str:
        return f"DeleteMailbox({self.mailbox_id.hex()[:8]}…)"


@dataclass(frozen=True, slots=True, repr=False)
class RevokeAccessToken:
    """Remove a used or expired invite's prekey access token from our account."""

    token: bytes

    def __repr__(self) -> str:
        return "RevokeAccessToken(<secret>)"


@dataclass(frozen=True, slots=True)
class RefillPreKeys:
    """One-time prekeys were used: compare the relay's counts and top them up."""


Command = RegisterMailbox | DeleteMailbox | RevokeAccessToken | RefillPreKeys


@dataclass(slots=True)
class Outcome:
    """What a flow produced besides its store writes."""

    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    def extend(self, other: Outcome) -> Outcome:
        self.events.extend(other.events)
        self.commands.extend(other.commands)
        return self


# --------------------------------------------------------------------------- rejections
def reject(
    reason: RejectReason, error: BaseException | str, events: list[Event] | None = None
) -> EnvelopeRejectedError:
    """The error that drops an envelope for good; ``detail`` is an error type name or a fixed phrase."""
    detail = error if isinstance(error, str) else type(error).__name__
    return EnvelopeRejectedError(reason.value, detail, list(events or []))


def decode_plaintext(plaintext: bytes) -> c.Content:
    """Unpad and parse a decrypted plaintext; a failure is a MALFORMED rejection."""
    try:
        return c.decode(unpad(plaintext))
    except DecodeError as e:
        raise reject(RejectReason.MALFORMED, e) from None
