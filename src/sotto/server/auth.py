"""Who may do what: device credentials, mailbox signatures, delivery and access tokens.

Three kinds of proof, none of them tying a mailbox to an account:

* a **device** proves itself with its 32-byte secret (Basic header); the relay keeps SHA-256;
* a **mailbox** owner signs with the mailbox's Ed25519 key: the connection's challenge nonce to
  drain it, or ``time ‖ nonce ‖ SHA-256(body) ‖ METHOD ‖ path`` for an HTTP call, each
  nonce accepted once (:class:`ReplayGuard`, across every node when the state is shared);
* a **sender** presents the mailbox's delivery token, an **invitee** the account's access token;
  both are compared as SHA-256 hashes. An access token is stored keyed by the account that
  registered it (:func:`access_token_key`), so registering someone else's token elsewhere
  touches nothing of theirs.

Every failure a prober could tell apart collapses into one answer (401 for device and bundle
calls, 404 for mailboxes), and costs the same work: a missing device or mailbox is checked
against a fixed dummy secret or key.
"""

from __future__ import annotations

import enum
import math

from sotto.crypto.ed25519 import SigningKey, SigningPublicKey
from sotto.crypto.kdf import bytes_equal, sha256
from sotto.errors import DecodeError, InvalidKeyError, InvalidSignatureError, RelayError
from sotto.server.shared_state import Claim, LocalSingleUse, SingleUse
from sotto.server.storage.base import AccountId, DeviceRecord, MailboxRecord, Storage
from sotto.wire import auth as wire_auth
from sotto.wire import b64
from sotto.wire.limits import DELIVERY_TOKEN_LENGTH

UNAUTHORIZED = RelayError(401, "unauthorized", "missing or wrong credentials")
MAILBOX_NOT_FOUND = RelayError(404, "not_found", "no such mailbox")
REPLAY_GUARD_FULL = RelayError(503, "unavailable", "too many signed requests at once; try again shortly")

REPLAY_GUARD_CAPACITY = 200_000
"""Signed HTTP requests remembered at once (some 40 MB); beyond that they are refused with 503
until the oldest leave the window, rather than forgetting any and reopening replays."""

_ACCESS_TOKEN_CONTEXT = b"sotto-access-token-v2\x00"
_DUMMY_SECRET_HASH = sha256(b"sotto-no-such-device")
_DUMMY_MAILBOX_KEY = SigningKey(sha256(b"sotto-no-such-mailbox")).public.raw


def token_hash(token: bytes) -> bytes:
    """What the relay stores for a secret it must recognise but never needs to know."""
    return sha256(token)


def access_token_key(account_id: bytes, digest: bytes) -> bytes:
    """How an access token is stored and looked up: bound to the account that registered it.

    ``digest`` is SHA-256 of the token (what the owner names it by when deleting it). Another
    account registering the same token gets another key, so it can neither take the token over
    nor remove it: only the inviter's registration opens the inviter's bundle.
    """
    return sha256(_ACCESS_TOKEN_CONTEXT + account_id + digest)


def parse_token(header: str | None) -> bytes | None:
    """A delivery or access token from its header, or None when absent or malformed."""
    if header is None:
        return None
    try:
        return b64.decode(header, length=DELIVERY_TOKEN_LENGTH)
    except DecodeError:
        return None


async def authenticate_device(storage: Storage, authorization: str | None) -> DeviceRecord:
    """The device named by a Basic header whose secret matches; :data:`UNAUTHORIZED` otherwise."""
    if authorization is None:
        raise UNAUTHORIZED
    try:
        account_id, device_id, secret = wire_auth.decode_device_auth(authorization)
    except DecodeError:
        raise UNAUTHORIZED from None
    device = await storage.get_device(AccountId(account_id), device_id)
    presented = token_hash(secret)
    # Hash and compare even for an unknown device, so both failures cost the same.
    held = device.secret_hash if device is not None else _DUMMY_SECRET_HASH
    if not bytes_equal(held, presented) or device is None:
        raise UNAUTHORIZED
    return device


class MailboxVerdict(enum.Enum):
    OK = "ok"
    NOT_FOUND = "not_found"
    """No such mailbox, an expired one, a malformed header or a wrong signature: one answer."""
    STALE = "stale"
    """A genuine signature of this request, but used already or outside its window: 401."""


class ReplayGuard:
    """The signed HTTP requests seen in the last window: in this process by default, or in the
    state every relay node shares (``memory``, from :meth:`SharedState.single_use
    <sotto.server.shared_state.SharedState.single_use>`), so a request accepted by one node is
    refused by every other.

    A signature is accepted once, while the relay's clock lies within ``past`` after and
    ``future`` before the time it carries; each accepted ``(mailbox, nonce)`` is remembered until
    that time leaves the window, after which the time check refuses it anyway.

    A restart forgets the set, so the relay also refuses every time earlier than its start plus
    ``future``: the previous process accepted only times before its last moment plus ``future``,
    so nothing it accepted can be accepted again. ``future`` is 0 by default, so an honest client
    meets the start rule only if its clock is ahead; it gets a 401 naming a time to sign with
    (:meth:`sign_time`), and signs again with it. The shared set applies the same rule to its
    own start (its epoch): a restart of the shared store forgets too.
    """

    def __init__(
        self,
        started: float,
        *,
        past_ms: int = wire_auth.HTTP_AUTH_PAST_MS,
        future_ms: int = wire_auth.HTTP_AUTH_FUTURE_MS,
        capacity: int = REPLAY_GUARD_CAPACITY,
        memory: SingleUse | None = None,
    ) -> None:
        self.started_ms = math.ceil(started * 1000) + future_ms
        self.past_ms = past_ms
        self.future_ms = future_ms
        self.capacity = capacity
        self._memory: SingleUse = memory if memory is not None else LocalSingleUse(capacity)
        self._memory.begin(started)

    @property
    def not_before_ms(self) -> float:
        """The earliest time a signature may carry: after this process's start and the shared
        memory's (plus ``future``)."""
        return max(self.started_ms, self._memory.epoch * 1000 + self.future_ms)

    async def abegin(self) -> None:
        """Tell the shared memory, if any, that this guard started (see ``SingleUse.abegin``)."""
        await self._memory.abegin()

    def __len__(self) -> int:
        """Requests remembered in this process (0 when the memory is shared)."""
        return len(self._memory) if isinstance(self._memory, LocalSingleUse) else 0

    def fresh(self, unix_ms: int, now: float) -> bool:
        now_ms = now * 1000
        return unix_ms >= self.not_before_ms and now_ms - self.past_ms <= unix_ms <= now_ms + self.future_ms

    def sign_time(self, now: float) -> int:
        """A time a signature made now would be accepted with."""
        return max(math.ceil(self.not_before_ms), int(now * 1000))

    async def aaccept(self, mailbox_id: bytes, nonce: bytes, unix_ms: int, now: float) -> bool:
        """Remember a fresh, verified request; False if it was seen already (a replay), or is
        dated before the shared memory began. Raises 503 when the memory is full, or when the
        shared one cannot be reached (``SharedStateUnavailableError``): never accepts blind."""
        key, expires, dated = self._claim_of(mailbox_id, nonce, unix_ms)
        return self._verdict(await self._memory.aclaim(key, expires, now, dated=dated))

    def accept(self, mailbox_id: bytes, nonce: bytes, unix_ms: int, now: float) -> bool:
        """:meth:`aaccept` for a guard that remembers in this process (no round trip to await)."""
        if not isinstance(self._memory, LocalSingleUse):
            raise TypeError("a guard on shared state is checked with aaccept")
        key, expires, dated = self._claim_of(mailbox_id, nonce, unix_ms)
        return self._verdict(self._memory.claim(key, expires, now, dated=dated))

    def _claim_of(self, mailbox_id: bytes, nonce: bytes, unix_ms: int) -> tuple[bytes, float, float]:
        # fresh() passes up to unix_ms + past_ms; the item is dated as early as future allows.
        return mailbox_id + nonce, (unix_ms + self.past_ms + 1) / 1000, (unix_ms - self.future_ms) / 1000

    @staticmethod
    def _verdict(claim: Claim) -> bool:
        if claim is Claim.FULL:
            raise REPLAY_GUARD_FULL
        return claim is Claim.FIRST


def mailbox_request_auth(
    mailbox: MailboxRecord | None,
    header: str | None,
    method: str,
    path: str,
    body: bytes,
    *,
    guard: ReplayGuard,
    now: float,
    today: int,
) -> MailboxVerdict:
    """Whether ``header`` is a fresh, first-seen signature of this request by the mailbox's key,
    for a guard that remembers in this process (:func:`amailbox_request_auth` for any guard).

    The signature is verified whether or not the mailbox exists (against a fixed dummy key when
    it does not), so a missing mailbox and a wrong signature take the same time.
    """
    signed = _signed(mailbox, header, method, path, body, today=today)
    if signed is None or mailbox is None:
        return MailboxVerdict.NOT_FOUND
    unix_ms, nonce = signed
    # Only the key's holder gets this far, so telling a replay apart reveals nothing.
    if not guard.fresh(unix_ms, now) or not guard.accept(mailbox.mailbox_id, nonce, unix_ms, now):
        return MailboxVerdict.STALE
    return MailboxVerdict.OK


async def amailbox_request_auth(
    mailbox: MailboxRecord | None,
    header: str | None,
    method: str,
    path: str,
    body: bytes,
    *,
    guard: ReplayGuard,
    now: float,
    today: int,
) -> MailboxVerdict:
    """:func:`mailbox_request_auth`, awaiting the guard's memory (one round trip when it is
    shared, made only for a genuine signature)."""
    signed = _signed(mailbox, header, method, path, body, today=today)
    if signed is None or mailbox is None:
        return MailboxVerdict.NOT_FOUND
    unix_ms, nonce = signed
    if not guard.fresh(unix_ms, now) or not await guard.aaccept(mailbox.mailbox_id, nonce, unix_ms, now):
        return MailboxVerdict.STALE
    return MailboxVerdict.OK


def _signed(
    mailbox: MailboxRecord | None, header: str | None, method: str, path: str, body: bytes, *, today: int
) -> tuple[int, bytes] | None:
    """The time and nonce of a genuine signature of this request by a live mailbox's key."""
    if header is None:
        return None
    try:
        unix_ms, nonce, signature = wire_auth.decode_mailbox_auth(header)
    except DecodeError:
        return None
    key = mailbox.auth_key if mailbox is not None else _DUMMY_MAILBOX_KEY
    message = wire_auth.http_message(method, path, unix_ms, nonce, body)
    genuine = signature_ok(key, message, signature)
    if mailbox is None or not genuine or mailbox.expires_day <= today:
        return None
    return unix_ms, nonce


def drain_ok(mailbox: MailboxRecord | None, nonce: bytes, signature: bytes, today: int) -> bool:
    """Whether ``signature`` proves the right to drain ``mailbox`` on the connection with ``nonce``."""
    if mailbox is None:
        # The same verification against a dummy key, so a missing mailbox costs what a wrong
        # signature does.
        signature_ok(_DUMMY_MAILBOX_KEY, wire_auth.drain_message(nonce, bytes(16)), signature)
        return False
    genuine = signature_ok(mailbox.auth_key, wire_auth.drain_message(nonce, mailbox.mailbox_id), signature)
    return genuine and mailbox.expires_day > today


def signature_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        SigningPublicKey(public_key).verify(message, signature)
    except (InvalidKeyError, InvalidSignatureError):
        return False
    return True
