"""An in-memory relay with the client transport's interface, for fast SDK tests.

It keeps the contract's semantics that matter to the client (``docs/relay-protocol.md``): tokens
compared as hashes, one 404 for unknown mailboxes and wrong tokens, envelopes deduped by
``(mailbox, message id)`` and deleted only on ack, unacknowledged envelopes delivered again on the
next connection, drain subscriptions proven with the mailbox key over the connection's nonce,
bundles handed out only with an access token and one-time keys consumed. Faults can be switched
on: the relay offline, connections dropped, every envelope pushed twice. Cadence-mode calls
(``poll``, ``send_alone``) are recorded in :attr:`FakeRelay.requests`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sotto.crypto.ed25519 import SigningKey, SigningPublicKey
from sotto.errors import InvalidSignatureError, RelayError, RelayUnavailableError
from sotto.server.config import RateLimit
from sotto.server.delivery_core import DeliveryConnection
from sotto.server.relay import Fetch, Ref
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId
from sotto.wire import api, auth, b64, frames
from sotto.wire.padding import is_bucket

NOT_FOUND = RelayError(404, "not_found", "no such mailbox")
UNAUTHORIZED = RelayError(401, "unauthorized", "missing or wrong credentials")
DAY = 20_000


def _hash(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass
class _Account:
    identity_key: bytes
    registration_id: int
    secret_hash: bytes
    signed: api.SignedPreKey | None = None
    last_resort: api.KyberPreKey | None = None
    one_time: dict[int, api.PreKey] = field(default_factory=dict)
    kyber: dict[int, api.KyberPreKey] = field(default_factory=dict)
    access: set[bytes] = field(default_factory=set)


@dataclass
class _Mailbox:
    auth_key: bytes
    token_hash: bytes
    envelopes: dict[bytes, bytes] = field(default_factory=dict)


class FakeRelay:
    """One relay; ``url`` names it in the network."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.online = True
        self.push_twice = False
        self.accounts: dict[bytes, _Account] = {}
        self.mailboxes: dict[bytes, _Mailbox] = {}
        self.connections: list[FakeDrain] = []
        self.sent = 0
        self.send_attempts = 0
        self.tick_seconds = 300
        self.requests: list[tuple[str, bytes]] = []
        """Cadence-mode requests in order: ("send" | "poll", mailbox id)."""

    def _check(self) -> None:
        if not self.online:
            raise RelayUnavailableError("relay offline")

    def _device(self, device: Any) -> _Account:
        account = self.accounts.get(device.account_id)
        if account is None or account.secret_hash != _hash(device.secret):
            raise UNAUTHORIZED
        return account

    async def create_account(self, body: api.CreateAccount) -> api.AccountCreated:
        self._check()
        account_id = os.urandom(16)
        self.accounts[account_id] = _Account(
            body.identity_key, body.registration_id, _hash(body.device_secret)
        )
        return api.AccountCreated(account_id=account_id, device_id=1)

    async def upload_keys(self, device: Any, body: api.UploadKeys) -> None:
        self._check()
        account = self._device(device)
        account.signed = body.signed_pre_key or account.signed
        account.last_resort = body.kyber_last_resort or account.last_resort
        account.one_time.update({k.id: k for k in body.one_time_pre_keys})
        account.kyber.update({k.id: k for k in body.kyber_pre_keys})

    async def key_counts(self, device: Any) -> api.KeyCounts:
        self._check()
        account = self._device(device)
        return api.KeyCounts(one_time=len(account.one_time), kyber=len(account.kyber))

    async def add_access_token(self, device: Any, token: bytes, expires_day: int) -> None:
        self._check()
        self._device(device).access.add(_hash(token))

    async def delete_access_token(self, device: Any, token: bytes) -> None:
        self._check()
        self._device(device).access.discard(_hash(token))

    async def fetch_bundle(self, account_id: bytes, access_token: bytes) -> api.Bundle:
        self._check()
        account = self.accounts.get(account_id)
        if account is None or _hash(access_token) not in account.access:
            raise UNAUTHORIZED
        assert account.signed is not None and account.last_resort is not None
        pre_key = account.one_time.pop(min(account.one_time)) if account.one_time else None
        kyber = account.kyber.pop(min(account.kyber)) if account.kyber else account.last_resort
        return api.Bundle(
            identity_key=account.identity_key,
            devices=[
                api.DeviceBundle(
                    device_id=1,
                    registration_id=account.registration_id,
                    signed_pre_key=account.signed,
                    kyber_pre_key=kyber,
                    pre_key=pre_key,
                )
            ],
        )

    async def create_mailbox(self, body: api.CreateMailbox) -> None:
        self._check()
        known = self.mailboxes.get(body.mailbox_id)
        if known is not None:
            if known.auth_key != body.auth_key or known.token_hash != _hash(body.delivery_token):
                raise RelayError(409, "mailbox_conflict", "that mailbox id is taken")
            return
        self.mailboxes[body.mailbox_id] = _Mailbox(body.auth_key, _hash(body.delivery_token))

    def _owned(self, mailbox_id: bytes, key: SigningKey) -> _Mailbox:
        mailbox = self.mailboxes.get(mailbox_id)
        if mailbox is None or mailbox.auth_key != key.public.raw:
            raise NOT_FOUND
        return mailbox

    async def delete_mailbox(self, mailbox_id: bytes, key: SigningKey) -> None:
        self._check()
        self._owned(mailbox_id, key)
        del self.mailboxes[mailbox_id]

    async def export_account(self, device: Any) -> dict[str, Any]:
        self._check()
        account = self._device(device)
        return {"account": {"identity_key": b64.encode(account.identity_key)}}

    async def delete_account(self, device: Any) -> None:
        self._check()
        self._device(device)
        del self.accounts[device.account_id]

    async def export_mailbox(self, mailbox_id: bytes, key: SigningKey) -> dict[str, Any]:
        self._check()
        mailbox = self._owned(mailbox_id, key)
        return {"mailbox": {"pending": len(mailbox.envelopes)}}

    async def send(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        self.send_attempts += 1
        self._check()
        if not is_bucket(len(payload)):
            raise RelayError(422, "payload_not_bucket", "payload length must be a padding bucket")
        mailbox = self.mailboxes.get(mailbox_id)
        if mailbox is None or mailbox.token_hash != _hash(token):
            raise NOT_FOUND
        if message_id in mailbox.envelopes:
            return True
        mailbox.envelopes[message_id] = payload
        self.sent += 1
        for connection in self.connections:
            connection.offer(mailbox_id, message_id, payload)
        return False

    async def send_alone(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        self.requests.append(("send", mailbox_id))
        return await self.send(mailbox_id, token, message_id, payload)

    async def cadence(self) -> api.Cadence:
        self._check()
        return api.Cadence(tick_seconds=self.tick_seconds)

    async def poll(
        self, mailbox_id: bytes, key: SigningKey, ack_ids: Sequence[bytes], limit: int
    ) -> api.PollResult:
        self.requests.append(("poll", mailbox_id))
        self._check()
        mailbox = self._owned(mailbox_id, key)
        for message_id in ack_ids:
            mailbox.envelopes.pop(message_id, None)
        pending = list(mailbox.envelopes.items())
        return api.PollResult(
            envelopes=[api.PolledEnvelope(id=i, day=DAY, payload=p) for i, p in pending[:limit]],
            more=len(pending) > limit,
        )

    def inject(self, mailbox_id: bytes, message_id: bytes, payload: bytes) -> None:
        """An envelope from someone who holds the delivery token (an attacker, in tests)."""
        self.mailboxes[mailbox_id].envelopes[message_id] = payload
        for connection in self.connections:
            connection.offer(mailbox_id, message_id, payload)

    async def connect(self) -> FakeDrain:
        self._check()
        drain = FakeDrain(self)
        self.connections.append(drain)
        return drain

    def drop_connections(self) -> None:
        for connection in list(self.connections):
            connection.drop()

    def pending(self) -> int:
        return sum(len(m.envelopes) for m in self.mailboxes.values())


class FakeDrain:
    """A drain connection driven by the relay's own delivery rules
    (:class:`~sotto.server.delivery_core.DeliveryConnection`): pushes stored envelopes of
    subscribed mailboxes in order, at most 256 unacknowledged, deletes on ack. Storage calls are
    answered at once, from this fake relay's mailboxes."""

    def __init__(self, relay: FakeRelay) -> None:
        self._relay = relay
        self._nonce = os.urandom(32)
        self._queue: asyncio.Queue[frames.Envelope | None] = asyncio.Queue()
        self._open = True
        self._answers: list[frames.ServerFrame] = []  # frames other than envelopes
        self._work: list[Callable[[], None]] = []  # storage calls asked for, answered in order
        self._core = DeliveryConnection(
            _Actions(self), idle_seconds=math.inf, frame_limit=_UNLIMITED, max_inflight_sends=_UNLIMITED_SENDS
        )
        self._core.connected(self._nonce, 0.0)

    def _run(self) -> None:
        work = self._work
        while work:
            work.pop(0)()

    # ------------------------------------------------------------------ the transport's interface
    def offer(self, mailbox_id: bytes, message_id: bytes, payload: bytes) -> None:
        if not self._open:
            return
        mailbox = self._relay.mailboxes.get(mailbox_id)
        seq = len(mailbox.envelopes) if mailbox is not None else 0
        self._core.live(_record(mailbox_id, message_id, seq, payload))
        self._run()

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> frames.Subscribed:
        if not self._open:
            raise RelayUnavailableError("closed")
        proofs = tuple(
            frames.MailboxProof(mailbox_id, key.sign(auth.drain_message(self._nonce, mailbox_id)))
            for mailbox_id, key in mailboxes.items()
        )
        self._answers.clear()
        self._core.received_frame(frames.Subscribe(proofs))
        self._run()
        answer = next(frame for frame in self._answers if isinstance(frame, frames.Subscribed))
        return answer

    async def receive(self, timeout: float | None = None) -> frames.Envelope | None:
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if item is None:
            self._queue.put_nowait(None)
            raise RelayUnavailableError("connection dropped")
        return item

    async def ack(self, refs: Sequence[tuple[bytes, bytes]]) -> None:
        if not self._open:
            raise RelayUnavailableError("closed")
        self._core.received_frame(frames.Ack(tuple(frames.EnvelopeRef(m, i) for m, i in refs)))
        self._run()

    def drop(self) -> None:
        if self._open:
            self._open = False
            self._core.closed_by_peer()
            self._queue.put_nowait(None)
            if self in self._relay.connections:
                self._relay.connections.remove(self)

    async def close(self) -> None:
        self.drop()


class _Actions:
    """What the delivery rules ask of a :class:`FakeDrain`, done on the fake relay's mailboxes."""

    def __init__(self, drain: FakeDrain) -> None:
        self._drain = drain

    def send_frame(self, text: str) -> None:
        frame = frames.decode_server_frame(text)
        if isinstance(frame, frames.Envelope):
            self._drain._queue.put_nowait(frame)
            if self._drain._relay.push_twice:
                self._drain._queue.put_nowait(frame)
        else:
            self._drain._answers.append(frame)

    def close(self, code: int, reason: str, error: str | None) -> None:
        self._drain.drop()

    def check_mailboxes(self, proofs: Sequence[frames.MailboxProof], nonce: bytes) -> None:
        def check() -> None:
            valid = set()
            for proof in proofs:
                mailbox = self._drain._relay.mailboxes.get(proof.id)
                if mailbox is None:
                    continue
                try:
                    SigningPublicKey(mailbox.auth_key).verify(
                        auth.drain_message(nonce, proof.id), proof.signature
                    )
                except InvalidSignatureError:
                    continue
                valid.add(MailboxId(proof.id))
            self._drain._core.checked(valid)

        self._drain._work.append(check)

    def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> None:
        self._drain._work.append(self._drain._core.touched)

    def listen(self, mailbox_ids: Sequence[MailboxId]) -> None:
        return None  # the relay offers every envelope to every connection

    def unlisten(self, mailbox_ids: Collection[MailboxId]) -> None:
        return None

    def fetch(self, fetch: Fetch) -> None:
        def read() -> None:
            mailbox = self._drain._relay.mailboxes.get(fetch.mailbox_id)
            pending = list(mailbox.envelopes.items()) if mailbox is not None else []
            records = [
                _record(fetch.mailbox_id, message_id, seq, payload)
                for seq, (message_id, payload) in enumerate(pending)
                if message_id not in fetch.skip
            ]
            self._drain._core.fetched(fetch, records[: fetch.limit])

        self._drain._work.append(read)

    def store(self, frame: frames.Send, flush_deletes: bool) -> None:
        raise AssertionError("the fake transport sends over HTTP only")

    def delete(self, refs: list[Ref]) -> None:
        for mailbox_id, message_id in refs:
            mailbox = self._drain._relay.mailboxes.get(mailbox_id)
            if mailbox is not None:
                mailbox.envelopes.pop(message_id, None)
        self._drain._work.append(lambda: self._drain._core.deleted(refs))

    def pushed(self, count: int) -> None:
        return None

    def schedule(self, at: float) -> None:
        return None  # no idle limit here


_UNLIMITED = RateLimit(burst=1_000_000_000, per_second=1_000_000_000)
_UNLIMITED_SENDS = 1_000_000_000


def _record(mailbox_id: bytes, message_id: bytes, seq: int, payload: bytes) -> EnvelopeRecord:
    return EnvelopeRecord(MailboxId(mailbox_id), MessageId(message_id), seq, DAY, payload)


class FakeNetwork:
    """Relays by URL (created on first use)."""

    def __init__(self) -> None:
        self.relays: dict[str, FakeRelay] = {}

    def relay(self, url: str) -> FakeRelay:
        key = url.rstrip("/")
        if key not in self.relays:
            self.relays[key] = FakeRelay(key)
        return self.relays[key]

    async def aclose(self) -> None:
        return None
