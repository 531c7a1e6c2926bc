"""The async SDK: one :class:`Client` per account, over an encrypted local store and a relay.

::

    async with await Client.create(data_dir, "http://127.0.0.1:8787", passphrase, "Alice") as alice:
        invite = await alice.create_invite()            # give invite.link (or its QR) to Bob
        ...
        async for event in alice.listen():              # MessageReceived, ContactAdded, ...
            ...

How it runs. Every step is a flow from :mod:`sotto.client.flows` inside one store transaction,
executed in a worker thread (``asyncio.to_thread``) so cryptography and SQLite do not stall the
event loop. Work on one peer's session is serialized by that peer's ``asyncio.Lock`` (load,
compute, commit), so concurrent sends and receives never interleave on a session. Three
background tasks run between :meth:`Client.start` and :meth:`Client.close`:

* the **drain** loop keeps one WebSocket subscribed to all our mailboxes, processes each envelope
  (unseal, lock the sender, decrypt and apply in one transaction) and acknowledges it only after
  that transaction committed; it reconnects with exponential backoff and jitter;
* the **outbox** worker sends queued envelopes over HTTP in the order they were queued (per
  mailbox), removing each only after the relay confirmed it, retrying with backoff otherwise;
* the **receipt** timer sends the delivery receipts we owe, one message per contact, after a
  randomized delay (``receipt_delay`` × 0.5–1.5), so their timing says little.

The receive policy (what is acknowledged when) is in :mod:`sotto.client.flows.receiving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sotto.client import content as c
from sotto.client.events import (
    ConnectionChanged,
    EnvelopeRejected,
    Event,
    GroupMessageReceived,
    MessageReceived,
    RejectReason,
    SendFailed,
)
from sotto.client.flows import account as account_flow
from sotto.client.flows import groups as group_flow
from sotto.client.flows import invites as invite_flow
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import receiving, safety, sending
from sotto.client.flows.context import (
    DAY_MS,
    Command,
    Context,
    DeleteMailbox,
    Me,
    Outcome,
    RefillPreKeys,
    RegisterMailbox,
    RevokeAccessToken,
    address_for,
)
from sotto.client.flows.safety import SafetyNumber
from sotto.client.invite import derive_invite_keys, parse_link
from sotto.client.transport import DeviceCredentials, DrainConnection, HttpNetwork, Network, Relay
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, system_rng
from sotto.errors import (
    ClientError,
    DecodeError,
    EnvelopeRejectedError,
    InviteError,
    RelayError,
    RelayUnavailableError,
    StoreError,
    UnknownContactError,
)
from sotto.store.interfaces import Store, Transaction
from sotto.store.model import (
    Account,
    Contact,
    Conversation,
    Direction,
    Group,
    GroupId,
    MailboxId,
    Message,
    MessageId,
    MessageState,
    OutboxItem,
    OutboxItemId,
    ReceiptKind,
)
from sotto.store.sqlite import SqliteStore
from sotto.wire import b64, frames

log = logging.getLogger("sotto.client")

STORE_FILE = "sotto.db"
DEFAULT_RECEIPT_DELAY_S = 10.0
KEEPALIVE_S = 60.0
"""An empty ack this often keeps the drain connection from the relay's idle timeout."""
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 30.0
OUTBOX_RETRY_MIN_MS = 500
OUTBOX_RETRY_MAX_MS = 15 * 60_000
NOT_FOUND_ATTEMPTS = 8
"""A mailbox the relay does not know may appear shortly (a contact's registration racing our
send); after this many refusals the envelope is dropped and reported."""
POISON_ATTEMPTS = 3
"""An envelope whose processing fails this often for reasons that are not its fault (a bug, a
store error) is dropped as permanently failing rather than blocking the connection forever."""

T = TypeVar("T")


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, repr=False)
class Invite:
    """An invite to hand to one person: the link, and the text to show as a QR code (the same)."""

    link: str
    qr_text: str
    expires_ms: int

    def __repr__(self) -> str:
        return f"Invite(expires_ms={self.expires_ms}, <secret>)"


ContactRef = Contact | str
"""A contact, or its local name."""
GroupRef = Group | str | bytes
"""A group, its name, or its 16-byte id."""


class Client:
    """One account on one device. Build it with :meth:`create` or :meth:`open` (or, over any
    store, :meth:`register` / :meth:`attach`); close it with :meth:`close` or ``async with``."""

    def __init__(
        self,
        store: Store,
        network: Network,
        account: Account,
        *,
        rng: Rng = system_rng,
        clock: Callable[[], int] = _wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
        owns_network: bool = True,
    ) -> None:
        self._store = store
        self._network = network
        self._account = account
        self._rng = rng
        self._clock = clock
        self._receipt_delay = receipt_delay
        self._owns_network = owns_network
        self._me: Me | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._connection: DrainConnection | None = None
        self._connected = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._receipts_owed = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._failures: dict[tuple[bytes, bytes], int] = {}
        self._last_envelope = 0.0
        self._closed = False
        self._jitter = random.SystemRandom()

    # ------------------------------------------------------------------ construction
    @classmethod
    async def create(
        cls,
        data_dir: str | Path,
        server_url: str,
        passphrase: str,
        display_name: str,
        *,
        network: Network | None = None,
        kdf: Argon2Params = Argon2Params.INTERACTIVE,
        **options: Any,
    ) -> Client:
        """Register a new account on ``server_url`` with a new encrypted store in ``data_dir``."""
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = await asyncio.to_thread(SqliteStore.create, directory / STORE_FILE, passphrase, kdf=kdf)
        try:
            return await cls.register(store, server_url, display_name, network=network, **options)
        except BaseException:
            store.close()
            raise

    @classmethod
    async def open(
        cls, data_dir: str | Path, passphrase: str, *, network: Network | None = None, **options: Any
    ) -> Client:
        """Open the account kept in ``data_dir`` (WrongPassphraseError, StoreLockedError, …)."""
        store = await asyncio.to_thread(SqliteStore.open, Path(data_dir) / STORE_FILE, passphrase)
        try:
            return await cls.attach(store, network=network, **options)
        except BaseException:
            store.close()
            raise

    @classmethod
    async def register(
        cls,
        store: Store,
        server_url: str,
        display_name: str,
        *,
        network: Network | None = None,
        rng: Rng = system_rng,
        clock: Callable[[], int] = _wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
    ) -> Client:
        """Register a new account on ``server_url`` and keep it in ``store`` (which must be empty)."""
        c.encode(c.ContactAccepted(display_name, c.MailboxAddress(server_url, bytes(16), bytes(32))))
        net = network or HttpNetwork()
        new = account_flow.NewIdentity.generate(rng)
        try:
            created = await net.relay(server_url).create_account(new.request())
            now = clock()

            def keep(tx: Transaction) -> Account:
                if tx.account.get() is not None:
                    raise ClientError("this store already holds an account")
                return account_flow.store_account(
                    tx,
                    new,
                    created,
                    server_url=server_url.rstrip("/"),
                    display_name=display_name,
                    now_ms=now,
                    rng=rng,
                )

            account = await asyncio.to_thread(_run, store, keep)
        except BaseException:
            if network is None:
                await net.aclose()
            raise
        client = cls(
            store,
            net,
            account,
            rng=rng,
            clock=clock,
            receipt_delay=receipt_delay,
            owns_network=network is None,
        )
        with contextlib.suppress(RelayUnavailableError, RelayError):
            await client._upload_prekeys()  # if this fails, the next connection retries it
        return client

    @classmethod
    async def attach(
        cls,
        store: Store,
        *,
        network: Network | None = None,
        rng: Rng = system_rng,
        clock: Callable[[], int] = _wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
    ) -> Client:
        """A client for the account already kept in ``store``."""
        account = await asyncio.to_thread(_run, store, lambda tx: tx.account.get())
        if account is None:
            raise ClientError("this store holds no account")
        return cls(
            store,
            network or HttpNetwork(),
            account,
            rng=rng,
            clock=clock,
            receipt_delay=receipt_delay,
            owns_network=network is None,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the background tasks, close the connection, the network and the store."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._connection is not None:
            await self._connection.close()
        self._events.put_nowait(None)
        if self._owns_network:
            await self._network.aclose()
        self._store.close()

    # ------------------------------------------------------------------ who we are
    @property
    def account_id(self) -> bytes:
        return self._account.account_id

    @property
    def display_name(self) -> str:
        return self._account.display_name

    @property
    def server_url(self) -> str:
        return self._account.server_url

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------------ plumbing
    def _now(self) -> int:
        return self._clock()

    def _current_me(self) -> Me:
        self._me = Me.current(self._me, self._account, self._now(), self._rng)
        return self._me

    def _ctx(self, tx: Transaction) -> Context:
        return Context(tx, self._current_me(), self._now(), self._rng)

    async def _tx(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` in one store transaction, in a worker thread."""
        return await asyncio.to_thread(_run, self._store, fn)

    def _read(self, fn: Callable[[Transaction], T]) -> T:
        """A short read in the caller's thread (for the synchronous query methods)."""
        return _run(self._store, fn)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def _peers(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Hold the session locks of several peers, taken in one global order (no deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for name in sorted(set(names)):
                await stack.enter_async_context(self._lock(name))
            yield

    def _relay(self, url: str | None = None) -> Relay:
        return self._network.relay(url or self._account.server_url)

    def _credentials(self) -> DeviceCredentials:
        a = self._account
        return DeviceCredentials(a.account_id, a.device_id, a.device_secret)

    def _emit(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived | GroupMessageReceived):
                self._receipts_owed.set()
            self._events.put_nowait(event)

    def _contact(self, tx: Transaction, ref: ContactRef) -> Contact:
        found = tx.contacts.get(ref.contact_id) if isinstance(ref, Contact) else tx.contacts.by_name(ref)
        if found is None:
            raise UnknownContactError("no such contact")
        return found

    def _group(self, tx: Transaction, ref: GroupRef) -> Group:
        if isinstance(ref, Group):
            found = tx.groups.get(ref.group_id)
        elif isinstance(ref, bytes):
            found = tx.groups.get(GroupId(ref))
        else:
            found = next((g for g in tx.groups.all() if g.name == ref), None)
        if found is None:
            raise UnknownContactError("no such group")
        return found

    # ------------------------------------------------------------------ queries
    def contacts(self) -> list[Contact]:
        """Every contact, in the order they were added."""
        return self._read(lambda tx: tx.contacts.all())

    def contact(self, name: str) -> Contact:
        """The contact with this local name (UnknownContactError otherwise)."""
        return self._read(lambda tx: self._contact(tx, name))

    def is_ready(self, contact: ContactRef) -> bool:
        """Whether ``contact`` has given us a mailbox (messages to them go out at once)."""
        return self._read(
            lambda tx: tx.their_mailboxes.get(self._contact(tx, contact).contact_id) is not None
        )

    def groups(self) -> list[Group]:
        return self._read(lambda tx: tx.groups.all())

    def group_members(self, group: GroupRef) -> list[Contact]:
        def read(tx: Transaction) -> list[Contact]:
            found = self._group(tx, group)
            members = [tx.contacts.get(m.contact_id) for m in tx.groups.members(found.group_id)]
            return [m for m in members if m is not None]

        return self._read(read)

    def history(self, conversation: ContactRef | GroupRef, *, limit: int = 50) -> list[Message]:
        """The latest messages of a 1:1 or group conversation, oldest first."""
        return self._read(
            lambda tx: tx.messages.conversation(self._conversation(tx, conversation), limit=limit)
        )

    def _conversation(self, tx: Transaction, ref: ContactRef | GroupRef) -> Conversation:
        if isinstance(ref, Group | bytes):
            return Conversation.group(self._group(tx, ref).group_id)
        if isinstance(ref, Contact):
            return Conversation.direct(self._contact(tx, ref).contact_id)
        contact = tx.contacts.by_name(ref)
        if contact is not None:
            return Conversation.direct(contact.contact_id)
        return Conversation.group(self._group(tx, ref).group_id)

    def pending_outbox(self) -> int:
        """Envelopes queued and not yet confirmed by a relay."""
        return self._read(lambda tx: tx.outbox.count())

    # ------------------------------------------------------------------ invites
    async def create_invite(self) -> Invite:
        """A one-time invite: its mailbox and prekey access token are created on our relay now."""
        secret = self._rng(32)
        keys = derive_invite_keys(secret)
        relay = self._relay()
        await relay.create_mailbox(
            RegisterMailbox(
                MailboxId(keys.mailbox_id), keys.mailbox_key.seed(), keys.delivery_token
            ).request()
        )
        expires_ms = self._now() + invite_flow.INVITE_LIFETIME_MS
        await relay.add_access_token(self._credentials(), keys.access_token, expires_ms // DAY_MS + 1)
        _, link = await self._tx(lambda tx: invite_flow.create_invite(self._ctx(tx), secret))
        await self._subscribe({keys.mailbox_id: keys.mailbox_key})
        return Invite(link, link, expires_ms)

    async def accept_invite(self, link: str, contact_name: str) -> Contact:
        """Use someone's invite: start a session from their bundle and send a contact request.

        The contact can be written to at once; texts go out when they answer (their client must
        be online once). InviteError for a bad, used or own link, or a name already taken.
        """
        try:
            parsed = parse_link(link)
        except DecodeError:
            raise InviteError("not a Sotto invite link") from None
        keys = derive_invite_keys(parsed.secret)
        try:
            reply = await self._network.relay(parsed.server_url).fetch_bundle(
                parsed.account_id, keys.access_token
            )
        except RelayError as e:
            if e.status == 401:
                raise InviteError("the invite was used, expired or never existed") from None
            raise
        bundle = account_flow.bundle_from_reply(reply)
        async with self._peers([address_for(parsed.account_id).name]):
            contact, outcome = await self._tx(
                lambda tx: invite_flow.accept_invite(self._ctx(tx), parsed, bundle, contact_name)
            )
        await self._finish(outcome)
        return contact

    # ------------------------------------------------------------------ sending
    async def send_text(self, contact: ContactRef, text: str) -> MessageId:
        """Queue a text for ``contact`` and try to send it now; its message id (receipts name it)."""
        target = self._read(lambda tx: self._contact(tx, contact))
        async with self._peers([target.address.name]):
            message_id = await self._tx(lambda tx: sending.send_text(self._ctx(tx), target, text))
        await self._after_send()
        return message_id

    async def create_group(self, name: str, members: Iterable[ContactRef]) -> Group:
        """A new group of us and ``members`` (contacts); they get its metadata and our sender key."""
        contacts = self._read(lambda tx: [self._contact(tx, m) for m in members])
        async with self._peers(m.address.name for m in contacts):
            group = await self._tx(lambda tx: group_flow.create_group(self._ctx(tx), name, contacts))
        await self._after_send()
        return group

    async def add_to_group(self, group: GroupRef, contact: ContactRef) -> bool:
        """Add a contact to a group (False if already a member); they read from now on."""
        found, target = self._read(lambda tx: (self._group(tx, group), self._contact(tx, contact)))
        names = [m.address.name for m in self.group_members(found)] + [target.address.name]
        async with self._peers(names):
            added = await self._tx(lambda tx: group_flow.add_to_group(self._ctx(tx), found, target))
        await self._after_send()
        return added

    async def send_group_text(self, group: GroupRef, text: str) -> MessageId:
        """Encrypt once for the group, queue one sealed envelope per member; the message id."""
        found = self._read(lambda tx: self._group(tx, group))
        async with self._peers(m.address.name for m in self.group_members(found)):
            message_id = await self._tx(lambda tx: group_flow.send_group_text(self._ctx(tx), found, text))
        await self._after_send()
        return message_id

    async def send_typing(self, conversation: ContactRef | GroupRef, started: bool = True) -> None:
        """Tell the contact (or every group member) that we started or stopped typing."""

        def targets(tx: Transaction) -> tuple[list[Contact], GroupId | None]:
            where = self._conversation(tx, conversation)
            if where.group_id is not None:
                members = [tx.contacts.get(m.contact_id) for m in tx.groups.members(where.group_id)]
                return [m for m in members if m is not None], where.group_id
            assert where.contact_id is not None
            contact = tx.contacts.get(where.contact_id)
            return ([] if contact is None else [contact]), None

        contacts, group_id = self._read(targets)
        async with self._peers(m.address.name for m in contacts):
            await self._tx(lambda tx: sending.send_typing(self._ctx(tx), contacts, started, group_id))
        await self._after_send()

    async def mark_read(
        self, conversation: ContactRef | GroupRef, message_ids: Iterable[bytes] | None = None
    ) -> int:
        """Mark incoming messages read (all unread ones, or those ids) and send read receipts now."""
        wanted = None if message_ids is None else {bytes(m) for m in message_ids}

        def mark(tx: Transaction) -> tuple[int, set[str]]:
            where = self._conversation(tx, conversation)
            rows = [
                m.row_id
                for m in tx.messages.conversation(where, limit=10_000)
                if m.direction is Direction.INCOMING
                and m.state is MessageState.RECEIVED
                and (wanted is None or m.message_id in wanted)
            ]
            changed = tx.messages.mark_read(rows)
            names = set()
            for row in changed:
                message = tx.messages.get(row)
                contact = (
                    None if message is None or message.sender is None else tx.contacts.get(message.sender)
                )
                if contact is not None:
                    names.add(contact.address.name)
            return len(changed), names

        count, names = await self._tx(mark)
        if names:
            async with self._peers(names):
                await self._tx(lambda tx: sending.flush_receipts(self._ctx(tx), ReceiptKind.READ))
            await self._after_send()
        return count

    async def flush(self) -> int:
        """Try every queued envelope now, whatever its retry time; how many are still queued."""
        await self._flush_outbox(force=True)
        return self.pending_outbox()

    async def _after_send(self) -> None:
        if self._tasks:
            self._outbox_wake.set()
        else:
            await self._flush_outbox()

    # ------------------------------------------------------------------ safety numbers
    def safety_number(self, contact: ContactRef) -> SafetyNumber:
        """Our safety number with ``contact``: 60 digits, the scannable bytes, the QR text."""

        def compute(tx: Transaction) -> SafetyNumber:
            found = self._contact(tx, contact)
            trusted = tx.identities.get(found.address.name)
            if trusted is None:
                raise UnknownContactError("no identity key for this contact")
            return safety.safety_number(self._account, found, trusted.identity_key)

        return self._read(compute)

    async def verify(self, contact: ContactRef, scanned: str | bytes) -> bool:
        """Compare a code scanned from the contact's screen with ours; on a match, remember that
        the contact is verified. DecodeError for an unreadable code."""
        ours = self.safety_number(contact)
        if not safety.matches(ours, scanned):
            return False

        def mark(tx: Transaction) -> None:
            tx.identities.set_verified(self._contact(tx, contact).address.name, True)

        await self._tx(mark)
        return True

    def is_verified(self, contact: ContactRef) -> bool:
        def read(tx: Transaction) -> bool:
            trusted = tx.identities.get(self._contact(tx, contact).address.name)
            return trusted is not None and trusted.verified

        return self._read(read)

    # ------------------------------------------------------------------ mailboxes and export
    async def rotate_mailboxes(self) -> int:
        """Give every contact a fresh mailbox (the old ones are drained a while, then deleted);
        how many were rotated."""
        rotated = 0
        for contact in self.contacts():
            async with self._peers([contact.address.name]):
                outcome = await self._tx(partial(self._rotate, contact=contact))
            rotated += bool(outcome.commands)
            await self._run_commands(outcome.commands)
        outcome = await self._tx(lambda tx: mailbox_flow.retire(self._ctx(tx)))
        await self._run_commands(outcome.commands)
        await self._after_send()
        return rotated

    def _rotate(self, tx: Transaction, *, contact: Contact) -> Outcome:
        return mailbox_flow.rotate_mailbox(self._ctx(tx), contact)

    async def export(self) -> dict[str, Any]:
        """What our relay holds about us: the account export and each of our mailboxes' exports."""
        relay = self._relay()
        result: dict[str, Any] = {"account": await relay.export_account(self._credentials()), "mailboxes": {}}
        mailboxes = await self._tx(lambda tx: mailbox_flow.to_drain(tx, self._now()))
        for mailbox_id, seed in mailboxes.items():
            try:
                result["mailboxes"][b64.encode(mailbox_id)] = await relay.export_mailbox(
                    mailbox_id, SigningKey(seed)
                )
            except RelayError as e:
                if e.status != 404:
                    raise
        return result

    # ------------------------------------------------------------------ receiving
    async def start(self) -> None:
        """Start the drain, outbox and receipt tasks (idempotent)."""
        if self._closed:
            raise ClientError("the client is closed")
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._drain_loop(), name="sotto-drain"),
            asyncio.create_task(self._outbox_loop(), name="sotto-outbox"),
            asyncio.create_task(self._receipt_loop(), name="sotto-receipts"),
        ]

    async def listen(self) -> AsyncIterator[Event]:
        """Events as they happen, until the client is closed. Starts the background tasks."""
        await self.start()
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                return
            yield event

    async def sync(self, timeout: float = 10.0, *, idle: float = 0.3) -> list[Event]:
        """Connect, drain until nothing arrives for ``idle`` seconds and the outbox is empty (or
        ``timeout`` passes), send the receipts we owe, and return the events so far."""
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), max(0.0, deadline - loop.time()))
        while loop.time() < deadline:
            quiet = loop.time() - self._last_envelope >= idle
            if quiet and self._connected.is_set() and await self._outbox_settled():
                break
            await asyncio.sleep(min(0.05, idle / 4))
        await self._send_receipts(ReceiptKind.DELIVERED)
        await self._flush_outbox()
        events: list[Event] = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if event is None:
                self._events.put_nowait(None)
                break
            events.append(event)
        return events

    async def _outbox_settled(self) -> bool:
        now = self._now()
        due = await self._tx(lambda tx: tx.outbox.due(now, 1))
        return not due

    async def _drain_loop(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closed:
            try:
                connection = await self._relay().connect()
            except (RelayUnavailableError, RelayError) as e:
                log.info("delivery connection failed: %s", type(e).__name__)
            else:
                self._connection = connection
                try:
                    await self._serve(connection)
                except (RelayUnavailableError, RelayError) as e:
                    log.info("delivery connection ended: %s", type(e).__name__)
                except StoreError as e:
                    log.warning("store failure while receiving: %s", type(e).__name__)
                finally:
                    self._connection = None
                    was_connected = self._connected.is_set()
                    self._connected.clear()
                    await connection.close()
                    if was_connected:
                        self._emit([ConnectionChanged(False)])
                        delay = RECONNECT_MIN_S
            await asyncio.sleep(delay * self._jitter.uniform(0.5, 1.5))
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _serve(self, connection: DrainConnection) -> None:
        await self._housekeeping()
        keys = await self._tx(lambda tx: mailbox_flow.to_drain(tx, self._now()))
        await self._subscribe_on(connection, {m: SigningKey(s) for m, s in keys.items()})
        self._connected.set()
        self._emit([ConnectionChanged(True)])
        self._outbox_wake.set()
        while not self._closed:
            envelope = await connection.receive(timeout=KEEPALIVE_S)
            if envelope is None:
                await connection.ack([])  # keep-alive
                continue
            self._last_envelope = asyncio.get_running_loop().time()
            await self._process(connection, envelope)
            self._last_envelope = asyncio.get_running_loop().time()

    async def _subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> None:
        connection = self._connection
        if connection is not None and mailboxes:
            with contextlib.suppress(RelayUnavailableError):
                await self._subscribe_on(connection, mailboxes)

    async def _subscribe_on(self, connection: DrainConnection, mailboxes: Mapping[bytes, SigningKey]) -> None:
        """Subscribe; a mailbox the relay refuses but we hold is registered again and retried once."""
        if not mailboxes:
            return
        answer = await connection.subscribe(mailboxes)
        retry: dict[bytes, SigningKey] = {}
        for mailbox_id in answer.refused:
            command = await self._tx(
                partial(_registration, mailbox_id=MailboxId(mailbox_id), now_ms=self._now())
            )
            if command is None:
                continue
            try:
                await self._relay().create_mailbox(command.request())
            except RelayError:
                continue
            retry[mailbox_id] = mailboxes[mailbox_id]
        if retry:
            await connection.subscribe(retry)

    async def _process(self, connection: DrainConnection, envelope: frames.Envelope) -> None:
        """Unseal, then decrypt and apply under the sender's lock; ack after the commit."""
        key = (envelope.mailbox, envelope.id)
        mailbox_id, envelope_id = MailboxId(envelope.mailbox), MessageId(envelope.id)
        now = self._now()
        me = self._current_me()
        try:
            try:
                unsealed = await asyncio.to_thread(receiving.unseal, me, envelope.payload, now)
                async with self._peers([unsealed.sender_name]):
                    outcome = await self._tx(
                        lambda tx: receiving.receive(
                            self._ctx(tx), mailbox_id, envelope_id, envelope.day, unsealed
                        )
                    )
            except EnvelopeRejectedError as rejection:
                outcome = await self._record_rejection(envelope, rejection)
        except (StoreError, ClientError, ValueError, LookupError) as error:
            # Not the envelope's fault as far as we can tell: leave it unacknowledged so the
            # relay redelivers it, unless it keeps failing.
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            log.warning("processing an envelope failed (%d): %s", failures, type(error).__name__)
            if failures < POISON_ATTEMPTS:
                raise
            failed = EnvelopeRejectedError(RejectReason.UNDECRYPTABLE.value, type(error).__name__)
            outcome = await self._record_rejection(envelope, failed)
        self._failures.pop(key, None)
        # The commit is what counts: report it and carry out its commands even if the ack is
        # lost with the connection (the relay then redelivers, and the copy is dropped as seen).
        self._emit(outcome.events)
        try:
            await connection.ack([key])
        finally:
            await self._finish(outcome)

    async def _record_rejection(self, envelope: frames.Envelope, rejection: EnvelopeRejectedError) -> Outcome:
        mailbox_id, envelope_id = MailboxId(envelope.mailbox), MessageId(envelope.id)
        fresh = await self._tx(lambda tx: tx.seen.add(mailbox_id, envelope_id, self._now() // DAY_MS))
        if not fresh:
            return Outcome()
        log.info("envelope dropped: %s (%s)", rejection.reason, rejection.detail)
        events: list[Event] = [e for e in rejection.events if isinstance(e, Event)]
        events.append(
            EnvelopeRejected(envelope.mailbox, envelope.id, RejectReason(rejection.reason), rejection.detail)
        )
        return Outcome(events=events)

    async def _finish(self, outcome: Outcome) -> None:
        """After a commit: carry out the commands, then let the outbox go."""
        await self._run_commands(outcome.commands)
        await self._after_send()

    async def _run_commands(self, commands: Iterable[Command]) -> None:
        relay = self._relay()
        for command in commands:
            try:
                match command:
                    case RegisterMailbox():
                        await relay.create_mailbox(command.request())
                        await self._subscribe({command.mailbox_id: SigningKey(command.signing_seed)})
                    case DeleteMailbox():
                        await relay.delete_mailbox(command.mailbox_id, SigningKey(command.signing_seed))
                    case RevokeAccessToken():
                        await relay.delete_access_token(self._credentials(), command.token)
                    case RefillPreKeys():
                        await self._refill_prekeys()
            except (RelayUnavailableError, RelayError) as e:
                # Each heals later: registration on the next subscription, deletions by expiry,
                # prekeys on the next connection.
                log.info("relay command %s failed: %s", type(command).__name__, type(e).__name__)

    # ------------------------------------------------------------------ housekeeping and prekeys
    async def _housekeeping(self) -> None:
        outcome = await self._tx(lambda tx: mailbox_flow.retire(self._ctx(tx)))
        await self._run_commands(outcome.commands)
        await self._upload_prekeys()
        await self._refill_prekeys()

    async def _upload_prekeys(self) -> None:
        pending = await self._tx(lambda tx: tx.prekeys.pending_upload())
        while not pending.is_empty():
            body = account_flow.upload_request(pending)
            await self._relay().upload_keys(self._credentials(), body)
            await self._tx(partial(account_flow.mark_uploaded, body=body))
            pending = await self._tx(lambda tx: tx.prekeys.pending_upload())

    async def _refill_prekeys(self) -> None:
        counts = await self._relay().key_counts(self._credentials())
        missing = account_flow.refill_count(counts)
        if missing:
            now = self._now()
            await self._tx(
                lambda tx: account_flow.generate_prekeys(
                    tx, self._account, now_ms=now, rng=self._rng, one_time=missing
                )
            )
            await self._upload_prekeys()

    # ------------------------------------------------------------------ outbox
    async def _outbox_loop(self) -> None:
        while not self._closed:
            try:
                await self._flush_outbox()
            except StoreError as e:
                log.warning("outbox failed: %s", type(e).__name__)
            now = self._now()
            items = await self._tx(lambda tx: tx.outbox.all())
            wait = None
            if items:
                wait = max(0.05, min(i.next_attempt_ms for i in items) - now) / 1000 if items else None
            self._outbox_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wake.wait(), wait)

    async def _flush_outbox(self, *, force: bool = False) -> None:
        """Send what is due (everything, with ``force``), in queue order per mailbox; one attempt each."""
        async with self._flush_lock:
            now = self._now()
            items = await self._tx(lambda tx: tx.outbox.all())
            blocked: set[bytes] = set()
            for item in items:
                if item.mailbox_id in blocked:
                    continue
                if (item.next_attempt_ms > now and not force) or not await self._send_item(item):
                    blocked.add(item.mailbox_id)  # later items wait: order within a mailbox holds

    async def _send_item(self, item: OutboxItem) -> bool:
        """One attempt; True if the item left the outbox (confirmed, or refused for good)."""
        try:
            await self._network.relay(item.server_url).send(
                item.mailbox_id, item.delivery_token, item.message_id, item.payload
            )
        except (RelayUnavailableError, RelayError) as e:
            refused = isinstance(e, RelayError) and (
                e.status in (400, 413, 422) or (e.status == 404 and item.attempts + 1 >= NOT_FOUND_ATTEMPTS)
            )
            if refused:
                dropped = await self._tx(partial(_drop, item_id=item.item_id))
                reason = e.code if isinstance(e, RelayError) else type(e).__name__
                self._emit([SendFailed(m, reason) for m in dropped])
                return True
            delay = min(OUTBOX_RETRY_MIN_MS * 2**item.attempts, OUTBOX_RETRY_MAX_MS)
            retry_at = self._now() + int(delay * self._jitter.uniform(0.75, 1.25))
            await self._tx(lambda tx: tx.outbox.reschedule(item.item_id, retry_at))
            return False
        self._emit(await self._tx(lambda tx: sending.confirm_sent(self._ctx(tx), item.item_id)))
        return True

    # ------------------------------------------------------------------ receipts
    async def _receipt_loop(self) -> None:
        while not self._closed:
            await self._receipts_owed.wait()
            await asyncio.sleep(self._receipt_delay * self._jitter.uniform(0.5, 1.5))
            self._receipts_owed.clear()
            try:
                await self._send_receipts(ReceiptKind.DELIVERED)
            except StoreError as e:
                log.warning("receipts failed: %s", type(e).__name__)

    async def _send_receipts(self, kind: ReceiptKind) -> None:
        def owed(tx: Transaction) -> set[str]:
            names = set()
            for receipt in tx.messages.pending_receipts(10_000):
                contact = tx.contacts.get(receipt.contact_id)
                if receipt.kind is kind and contact is not None:
                    names.add(contact.address.name)
            return names

        names = await self._tx(owed)
        if not names:
            return
        async with self._peers(names):
            await self._tx(lambda tx: sending.flush_receipts(self._ctx(tx), kind))
        self._outbox_wake.set()


def _registration(tx: Transaction, *, mailbox_id: MailboxId, now_ms: int) -> RegisterMailbox | None:
    return mailbox_flow.registration_for(tx, mailbox_id, now_ms)


def _run(store: Store, fn: Callable[[Transaction], T]) -> T:
    with store.transaction() as tx:
        return fn(tx)


def _drop(tx: Transaction, *, item_id: OutboxItemId) -> list[MessageId]:
    """Remove a refused envelope; the messages it carried, if this was their last one."""
    item = tx.outbox.get(item_id)
    if item is None:
        return []
    tx.outbox.remove(item_id)
    if item.message_row is None:
        return []
    message = tx.messages.get(item.message_row)
    return [] if message is None else [message.message_id]


__all__ = ["Client", "ContactRef", "GroupRef", "Invite", "SafetyNumber"]
