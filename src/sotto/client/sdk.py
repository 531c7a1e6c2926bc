"""The async SDK: one :class:`Client` per account, over an encrypted local store and a relay.

::

    async with await Client.create(data_dir, "http://127.0.0.1:8787", passphrase, "Alice") as alice:
        invite = await alice.create_invite()            # give invite.link (or its QR) to Bob
        ...
        async for event in alice.listen():              # MessageReceived, ContactAdded, ...
            ...

A client holds an engine (:class:`sotto.client.runtime.Engine`: transactions, locks,
background work, the receive policy), handed the store, network, clock and randomness given
here; the client is the API on top of it and the app's stream of the events it reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sotto.client import (
    attachment_pointer,
    attachment_uploads,
    device_list,
    group_membership,
    history_export,
    linking,
)
from sotto.client import attachments as attachment_io
from sotto.client import content as c
from sotto.client.attachment_files import EncryptedFile
from sotto.client.clock import Clock, as_clock, wall_clock_ms
from sotto.client.device_linking import DEFAULT_TIMEOUT_S, LinkListener, post_provisioning
from sotto.client.events import Event
from sotto.client.flows import account as account_flow
from sotto.client.flows import attachments as attachment_flow
from sotto.client.flows import changes, reporting, safety, sending, trust
from sotto.client.flows import contacts as contact_flow
from sotto.client.flows import devices as device_flow
from sotto.client.flows import groups as group_flow
from sotto.client.flows import invites as invite_flow
from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows import requests as request_flow
from sotto.client.flows.context import (
    DAY_MS,
    Context,
    Outcome,
    RegisterMailbox,
    address_for,
)
from sotto.client.flows.safety import SafetyNumber
from sotto.client.invite import derive_invite_keys, parse_link
from sotto.client.runtime import DEFAULT_RECEIPT_DELAY_S, Engine, run_transaction
from sotto.client.transport import DeviceCredentials, HttpNetwork, Network
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, system_rng
from sotto.errors import (
    AccountDeletedError,
    ClientError,
    DecodeError,
    InviteError,
    LinkError,
    MissingRecordError,
    RelayError,
    RelayUnavailableError,
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
    MessageRowId,
    MessageState,
    ReceiptKind,
)
from sotto.store.sqlite import SqliteStore
from sotto.wire import b64

T = TypeVar("T")

MARK_BATCH = 64
"""Events ``listen()`` hands out before it marks them taken, while more are waiting."""
Trust = trust.Trust
"""Whether a contact is verified and whether their safety number changed (:meth:`Client.trust`)."""
STORE_FILE = "sotto.db"
"""The store's file name inside a client's data directory."""


@dataclass(frozen=True, slots=True, repr=False)
class Invite:
    """An invite to hand to one person: the link, and the text to show as a QR code (the same)."""

    link: str
    qr_text: str
    expires_ms: int

    def __repr__(self) -> str:
        return f"Invite(expires_ms={self.expires_ms}, <secret>)"


def _remove_store(path: Path) -> None:
    """Leave no half-made store behind, so making it can be retried."""
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", ".lock"))):
        leftover.unlink(missing_ok=True)


class PendingLink:
    """A new device waiting to be linked (:meth:`Client.begin_link`): show :attr:`link` (or its
    QR code, the same text) on this device, give it to an existing device's
    :meth:`Client.add_device`, and await :meth:`complete`."""

    def __init__(
        self,
        listener: LinkListener,
        *,
        network: Network,
        owns_network: bool,
        data_dir: Path,
        passphrase: str,
        kdf: Argon2Params,
        rng: Rng,
        options: dict[str, Any],
    ) -> None:
        self._listener = listener
        self._network = network
        self._owns_network = owns_network
        self._data_dir = data_dir
        self._passphrase = passphrase
        self._kdf = kdf
        self._rng = rng
        self._options = options

    def __repr__(self) -> str:
        return "PendingLink(<secret>)"

    @property
    def link(self) -> str:
        return self._listener.link

    @property
    def qr_text(self) -> str:
        return self._listener.link

    async def complete(self, *, timeout: float = DEFAULT_TIMEOUT_S) -> Client:
        """Wait for an existing device's provisioning message, check it, register this device's
        own relay login, keep everything in a new store in the data directory and return the
        client (LinkError if nothing checkable came in ``timeout`` seconds)."""
        try:
            linked = await self._listener.receive(timeout=timeout)
            with contextlib.suppress(RelayUnavailableError, RelayError):
                await self._listener.close()
            base = account_flow.NewIdentity.generate(self._rng)
            login = account_flow.NewIdentity(
                self._listener.device_key, base.registration_id, base.device_secret
            )
            server_url = self._listener.request.server_url
            created = await self._network.relay(server_url).create_account(login.request())
            path = self._data_dir / STORE_FILE
            self._data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            store = await asyncio.to_thread(SqliteStore.create, path, self._passphrase, kdf=self._kdf)
        except BaseException as exc:
            if self._owns_network and not isinstance(exc, GeneratorExit):
                await self._network.aclose()
            raise
        timing = as_clock(self._options.get("clock", wall_clock_ms))
        try:
            account = await asyncio.to_thread(
                run_transaction,
                store,
                partial(
                    device_flow.store_linked,
                    provisioning=linked.provisioning,
                    device=linked.device,
                    device_key=self._listener.device_key,
                    login=login,
                    relay_account_id=created.account_id,
                    relay_device_id=created.device_id,
                    server_url=server_url,
                    now_ms=timing.now_ms(),
                    rng=self._rng,
                ),
            )
        except BaseException:
            store.close()
            _remove_store(path)
            if self._owns_network:
                await self._network.aclose()
            raise
        client = Client(
            store, self._network, account, rng=self._rng, owns_network=self._owns_network, **self._options
        )
        with contextlib.suppress(RelayUnavailableError, RelayError):
            await client._engine.upload_prekeys()  # if this fails, the next connection retries it
        return client

    async def cancel(self) -> None:
        """Give up: delete the provisioning mailbox; the link is spent."""
        try:
            with contextlib.suppress(RelayUnavailableError, RelayError):
                await self._listener.close()
        finally:
            if self._owns_network:
                await self._network.aclose()


def check_profile(server_url: str, display_name: str) -> None:
    """ValueError unless the relay URL is http(s) and the display name fits its limit."""
    c.MailboxAddress(server_url, bytes(16), bytes(32))  # validates the URL as contacts will
    if not display_name.strip() or len(display_name.encode()) > c.MAX_NAME_BYTES:
        raise ValueError(f"a display name is 1 to {c.MAX_NAME_BYTES} UTF-8 bytes")


ContactRef = Contact | str
"""A contact, or its local name."""
GroupRef = Group | str | bytes
"""A group, its name, or its 16-byte id."""


class Client:
    """One account on one device. Build it with :meth:`create` or :meth:`open` (or, over any
    store, :meth:`register` / :meth:`attach`); close it with :meth:`close` or ``async with``.

    ``clock`` is the wall clock in milliseconds (or a :class:`~sotto.client.clock.Clock`, whose
    waits the engine uses too); ``rng`` all the randomness, jitter and cadence offsets included;
    ``network`` the transport (the client closes only one it made itself)."""

    def __init__(
        self,
        store: Store,
        network: Network,
        account: Account,
        *,
        rng: Rng = system_rng,
        clock: Clock | Callable[[], int] = wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
        owns_network: bool = True,
        cadence: bool = False,
    ) -> None:
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._handed: list[Event] = []
        """Events ``listen()`` handed to the app and not yet marked taken."""
        self._engine = Engine(
            store,
            network,
            account,
            report=self._emit,
            rng=rng,
            clock=as_clock(clock),
            receipt_delay=receipt_delay,
            owns_network=owns_network,
            cadence=cadence,
        )

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
        check_profile(server_url, display_name)
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / STORE_FILE
        store = await asyncio.to_thread(SqliteStore.create, path, passphrase, kdf=kdf)
        try:
            return await cls.register(store, server_url, display_name, network=network, **options)
        except BaseException:
            store.close()
            _remove_store(path)  # registration failed: ``create`` can be retried
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
        clock: Clock | Callable[[], int] = wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
        cadence: bool = False,
    ) -> Client:
        """Register a new account on ``server_url`` and keep it in ``store`` (which must be empty)."""
        check_profile(server_url, display_name)
        timing = as_clock(clock)
        net = network or HttpNetwork(keep_alive=not cadence, clock_ms=timing.now_ms)
        new = account_flow.NewIdentity.generate(rng)
        try:
            created = await net.relay(server_url).create_account(new.request())
            now = timing.now_ms()

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

            account = await asyncio.to_thread(run_transaction, store, keep)
        except BaseException as exc:
            # Not on GeneratorExit (the coroutine closed unfinished, as at an interrupted exit):
            # a coroutine may not wait for anything then.
            if network is None and not isinstance(exc, GeneratorExit):
                await net.aclose()
            raise
        client = cls(
            store,
            net,
            account,
            rng=rng,
            clock=timing,
            receipt_delay=receipt_delay,
            owns_network=network is None,
            cadence=cadence,
        )
        with contextlib.suppress(RelayUnavailableError, RelayError):
            await client._engine.upload_prekeys()  # if this fails, the next connection retries it
        return client

    @classmethod
    async def attach(
        cls,
        store: Store,
        *,
        network: Network | None = None,
        rng: Rng = system_rng,
        clock: Clock | Callable[[], int] = wall_clock_ms,
        receipt_delay: float = DEFAULT_RECEIPT_DELAY_S,
        cadence: bool = False,
    ) -> Client:
        """A client for the account already kept in ``store``."""
        account = await asyncio.to_thread(run_transaction, store, lambda tx: tx.account.get())
        if account is None:
            raise ClientError("this store holds no account")
        timing = as_clock(clock)
        return cls(
            store,
            network or HttpNetwork(keep_alive=not cadence, clock_ms=timing.now_ms),
            account,
            rng=rng,
            clock=timing,
            receipt_delay=receipt_delay,
            owns_network=network is None,
            cadence=cadence,
        )

    @classmethod
    async def begin_link(
        cls,
        data_dir: str | Path,
        server_url: str,
        passphrase: str,
        device_name: str,
        *,
        network: Network | None = None,
        kdf: Argon2Params = Argon2Params.INTERACTIVE,
        rng: Rng = system_rng,
        **options: Any,
    ) -> PendingLink:
        """Start linking this new device to an existing account: the relay gets a one-use
        provisioning mailbox, and the link to show is :attr:`PendingLink.link`. The store is
        made in ``data_dir`` once an existing device answered (:meth:`PendingLink.complete`)."""
        check_profile(server_url, device_name)
        if (problem := device_list._name_problem(device_name)) is not None:
            raise ValueError(problem)
        if (Path(data_dir) / STORE_FILE).exists():
            raise ClientError("this data directory already holds a store")
        timing = as_clock(options.get("clock", wall_clock_ms))
        net = network or HttpNetwork(keep_alive=False, clock_ms=timing.now_ms)
        listener = LinkListener(net, server_url.rstrip("/"), device_name, rng)
        try:
            await listener.open()
        except BaseException:
            if network is None:
                await net.aclose()
            raise
        return PendingLink(
            listener,
            network=net,
            owns_network=network is None,
            data_dir=Path(data_dir),
            passphrase=passphrase,
            kdf=kdf,
            rng=rng,
            options=options,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the background work, close the connection, the network (if the client made it)
        and the store. ``listen()`` ends; what it handed out counts as taken."""
        if self._engine.closed:
            return
        with contextlib.suppress(Exception):  # the store may be failing: then they come again
            self._mark_handed()
        await self._engine.close()
        self._events.put_nowait(None)

    async def start(self) -> None:
        """Start the background work (idempotent; ``listen()`` and ``sync()`` call it)."""
        await self._engine.start()

    @property
    def engine(self) -> Engine:
        """The engine under this client (for tools and tests that look inside)."""
        return self._engine

    @property
    def connected(self) -> bool:
        return self._engine.connected

    @property
    def offload_transactions(self) -> bool:
        """Run store transactions in worker threads rather than on the event loop (see
        :meth:`Engine.transaction`)."""
        return self._engine.offload_transactions

    @offload_transactions.setter
    def offload_transactions(self, value: bool) -> None:
        self._engine.offload_transactions = value

    @property
    def cadence(self) -> bool:
        """Whether this client runs in cadence mode (see :mod:`sotto.client.scheduler`)."""
        return self._engine.cadence

    @property
    def tick_seconds(self) -> int | None:
        """In cadence mode, the relay's tick once it was read (None before, and otherwise)."""
        return self._engine.tick_seconds

    # ------------------------------------------------------------------ who we are
    @property
    def account_id(self) -> bytes:
        return self._engine.account.account_id

    @property
    def display_name(self) -> str:
        return self._engine.account.display_name

    @property
    def server_url(self) -> str:
        return self._engine.account.server_url

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
    def contacts(self, *, include_removed: bool = False) -> list[Contact]:
        """Every contact (blocked ones too; removed ones only if asked), in the order they were added."""
        return self._engine.read(
            lambda tx: [c for c in tx.contacts.all() if include_removed or not c.removed]
        )

    def _writable(self, tx: Transaction, ref: ContactRef) -> Contact:
        """A contact we may send to: UnknownContactError if removed, ClientError if blocked,
        AccountDeletedError once our account is deleted (they could not answer)."""
        if account_flow.deleted_at(tx) is not None:
            raise AccountDeletedError("this account was deleted from its relay: it can no longer write")
        found = self._contact(tx, ref)
        if found.removed:
            raise UnknownContactError("no such contact (removed)")
        if found.blocked:
            raise ClientError("this contact is blocked: unblock them to write to them")
        return found

    # ------------------------------------------------------------------ removing and blocking
    async def remove_contact(self, contact: ContactRef, *, forget_history: bool = False) -> None:
        """Remove a contact: no session, no mailboxes (ours are deleted on the relay), out of our
        groups; the history stays unless ``forget_history`` (see :mod:`sotto.client.flows.contacts`).
        A new invite from or to them afterwards makes them a contact again."""
        target = self._engine.read(lambda tx: self._contact(tx, contact))
        async with self._engine.peers([target.address.name]):
            outcome = await self._engine.transaction(
                lambda tx: contact_flow.remove_contact(
                    self._engine.context(tx), self._contact(tx, target), forget_history=forget_history
                )
            )
        await self._engine.run_commands(outcome.commands)

    async def block_contact(self, contact: ContactRef) -> Contact:
        """Drop everything the contact sends (no events, no receipts) until unblocked."""
        return await self._set_blocked(contact, True)

    async def unblock_contact(self, contact: ContactRef) -> Contact:
        return await self._set_blocked(contact, False)

    async def _set_blocked(self, contact: ContactRef, blocked: bool) -> Contact:
        target = self._engine.read(lambda tx: self._contact(tx, contact))
        async with self._engine.peers([target.address.name]):
            return await self._engine.transaction(
                lambda tx: contact_flow.set_blocked(tx, self._contact(tx, target), blocked)
            )

    def contact(self, name: str) -> Contact:
        """The contact with this local name (UnknownContactError otherwise)."""
        return self._engine.read(lambda tx: self._contact(tx, name))

    def is_ready(self, contact: ContactRef) -> bool:
        """Whether ``contact`` has given us a mailbox (messages to them go out at once)."""
        return self._engine.read(
            lambda tx: tx.their_mailboxes.get(self._contact(tx, contact).contact_id) is not None
        )

    def waits_for_session(self, contact: ContactRef) -> bool:
        """Whether what we write to ``contact`` now waits instead of going out: they gave us a
        mailbox, but we hold no session with them (a profile restored from a backup holds
        none). Sending then asks them for one; our texts stay QUEUED in the history and go out
        when their client answers, which :class:`~sotto.client.events.SessionRepaired` (with
        ``requested``) reports, after which this is False. Their client must be online for
        that. False too before they answered our invite (see :meth:`is_ready`)."""

        def read(tx: Transaction) -> bool:
            target = self._contact(tx, contact)
            if tx.their_mailboxes.get(target.contact_id) is None:
                return False
            return not sending.has_session(self._engine.context(tx), target)

        return self._engine.read(read)

    def groups(self) -> list[Group]:
        return self._engine.read(lambda tx: tx.groups.all())

    def group_members(self, group: GroupRef) -> list[Contact]:
        def read(tx: Transaction) -> list[Contact]:
            found = self._group(tx, group)
            members = [tx.contacts.get(m.contact_id) for m in tx.groups.members(found.group_id)]
            return [m for m in members if m is not None]

        return self._engine.read(read)

    def history(
        self,
        conversation: ContactRef | GroupRef,
        *,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Message]:
        """The latest messages of a 1:1 or group conversation, oldest first; with ``before`` (a
        message's ``row_id``), the latest ones older than that message, to page back; with
        ``after``, the first ones newer than that message, to page forward."""

        def read(tx: Transaction) -> list[Message]:
            tx.messages.expire(self._engine.now_ms())  # disappearing messages whose time came
            return tx.messages.conversation(
                self._conversation(tx, conversation),
                limit=limit,
                before=None if before is None else MessageRowId(before),
                after=None if after is None else MessageRowId(after),
            )

        return self._engine.read(read)

    def search(
        self,
        conversation: ContactRef | GroupRef,
        query: str,
        *,
        limit: int = 20,
        before: int | None = None,
        after: int | None = None,
        newest_first: bool = True,
    ) -> list[Message]:
        """Messages of a conversation that ``query`` matches (each of its words begins a word of
        the message, case and accents as NFKC casefolding has them), newest first (or oldest
        first), older than ``before`` and newer than ``after`` (``row_id``s). The store looks
        them up in its encrypted word index and decrypts only what it finds."""

        def read(tx: Transaction) -> list[Message]:
            tx.messages.expire(self._engine.now_ms())
            return tx.messages.search(
                self._conversation(tx, conversation),
                query,
                limit=limit,
                before=None if before is None else MessageRowId(before),
                after=None if after is None else MessageRowId(after),
                newest_first=newest_first,
            )

        return self._engine.read(read)

    def search_everywhere(
        self, query: str, *, conversations: Iterable[Contact | Group] | None = None, limit: int = 50
    ) -> list[Message]:
        """Up to ``limit`` messages that ``query`` matches (as :meth:`search` matches) across
        ``conversations`` (default: every contact not removed and every group): the last
        ``limit`` stored, newest first; a message's ``conversation`` says where it is.

        Each conversation's part of the encrypted word index is looked up in turn (its tokens
        are keyed per conversation), in one read. Once ``limit`` are found, a conversation is
        asked only for matches newer than the oldest of them, so a common word costs about
        ``limit`` decryptions, not ``limit`` per conversation; passing the conversations most
        recently active first finds the newest sooner."""
        wanted: list[Contact | Group] = (
            [*self.contacts(), *self.groups()] if conversations is None else list(conversations)
        )
        if limit <= 0:
            return []

        def read(tx: Transaction) -> list[Message]:
            tx.messages.expire(self._engine.now_ms())
            found: list[Message] = []  # the newest so far, newest first
            for where in wanted:
                floor = found[-1].row_id if len(found) == limit else None
                more = tx.messages.search(_where(where), query, limit=limit, after=floor)
                if more:
                    found = sorted([*found, *more], key=lambda m: m.row_id, reverse=True)[:limit]
            return sorted(found, key=lambda m: (m.stored_ms, m.row_id), reverse=True)

        return self._engine.read(read)

    def _conversation(self, tx: Transaction, ref: ContactRef | GroupRef) -> Conversation:
        if isinstance(ref, Group | bytes):
            return Conversation.group(self._group(tx, ref).group_id)
        if isinstance(ref, Contact):
            return Conversation.direct(self._contact(tx, ref).contact_id)
        contact = tx.contacts.by_name(ref)
        if contact is not None:
            return Conversation.direct(contact.contact_id)
        return Conversation.group(self._group(tx, ref).group_id)

    def latest_messages(
        self, conversations: Iterable[Contact | Group], *, limit: int = 1
    ) -> list[list[Message]]:
        """The latest ``limit`` messages of each conversation (oldest first within each), read in
        one store transaction: what an app's list of conversations shows."""
        wanted = list(conversations)

        def read(tx: Transaction) -> list[list[Message]]:
            return [tx.messages.conversation(_where(c), limit=limit) for c in wanted]

        return self._engine.read(read)

    def ready_contacts(self, contacts: Iterable[Contact]) -> list[bool]:
        """:meth:`is_ready` for each contact, read in one store transaction."""
        wanted = list(contacts)
        return self._engine.read(
            lambda tx: [tx.their_mailboxes.get(c.contact_id) is not None for c in wanted]
        )

    def pending_outbox(self) -> int:
        """Envelopes queued and not yet confirmed by a relay."""
        return self._engine.read(lambda tx: tx.outbox.count())

    @property
    def last_refusal(self) -> RelayError | None:
        """Why the relay held envelopes in the last outbox pass (:meth:`flush`): a
        :class:`~sotto.errors.MailboxFullError`, :class:`~sotto.errors.RelayFullError` or
        :class:`~sotto.errors.QuotaExceededError`, or the 404 of a mailbox the relay does not
        know (retried a few times, then dropped: see :class:`~sotto.client.events.SendFailed`);
        None if none was held."""
        return self._engine.last_refusal

    # ------------------------------------------------------------------ message requests
    def message_requests(self) -> list[Contact]:
        """Contacts who came through one of our invites and whom we have not accepted yet (nor
        written to), blocked and removed ones left out (see :mod:`sotto.client.flows.requests`)."""

        def read(tx: Transaction) -> list[Contact]:
            ids = request_flow.pending(tx)
            return [c for c in tx.contacts.all() if c.contact_id in ids and not c.blocked and not c.removed]

        return self._engine.read(read)

    async def accept_request(self, contact: ContactRef) -> bool:
        """Accept a message request (see :meth:`message_requests`); False if it was none."""
        return await self._engine.transaction(
            lambda tx: request_flow.settle(tx, self._contact(tx, contact).contact_id)
        )

    # ------------------------------------------------------------------ drafts
    def draft(self, conversation: ContactRef | GroupRef) -> str:
        """What was written in a conversation and not sent yet ("" if nothing): kept encrypted
        in the store, so an app can show it again after a restart."""
        found = self._engine.read(
            lambda tx: tx.settings.get(_draft_key(self._conversation(tx, conversation)))
        )
        return "" if found is None else found.decode()

    async def save_draft(self, conversation: ContactRef | GroupRef, text: str) -> None:
        """Keep ``text`` as the conversation's draft (an empty text forgets it)."""

        def save(tx: Transaction) -> None:
            key = _draft_key(self._conversation(tx, conversation))
            if text:
                tx.settings.put(key, text.encode())
            else:
                tx.settings.delete(key)

        await self._engine.transaction(save)

    # ------------------------------------------------------------------ devices
    @property
    def device_id(self) -> int:
        """This device's id on the account's device list."""
        return self._engine.account.device_id

    def devices(self) -> list[device_list.Device]:
        """The account's devices, as this device's copy of the device list says."""
        return list(self._engine.read(lambda tx: device_flow.current_devices(tx, self._engine.account)))

    async def add_device(self, link: str) -> device_list.Device:
        """Link the new device that shows ``link`` (:meth:`begin_link` there): add it to the
        device list and send it, sealed to it, the account's identity key, the list, the
        contacts and the profile name. Returns its entry on the list."""
        try:
            request = linking.parse_link(link)
        except DecodeError:
            raise LinkError("not a device link") from None
        engine = self._engine
        if engine.read(account_flow.deleted_at) is not None:
            raise AccountDeletedError("this account was deleted from its relay")
        offer = engine.read(lambda tx: device_flow.provisioning_for(engine.context(tx), request))
        await post_provisioning(engine.network, request, offer.provisioning, engine.rng)
        await engine.transaction(partial(device_flow.keep_offered, offer=offer))
        return offer.device

    def _refuse_on_linked_device(self) -> None:
        """Invites stay with the account's first device until every device receives messages:
        a linked device's invite would name the account but hand out this device's prekeys."""
        if self._engine.read(device_flow.relay_login) is not None:
            raise InviteError("a linked device cannot make or accept invites yet: use your first device")

    # ------------------------------------------------------------------ invites
    async def create_invite(self) -> Invite:
        """A one-time invite: its mailbox and prekey access token are created on our relay now,
        a random few seconds apart (:meth:`Engine.spread <sotto.client.runtime.Engine.spread>`),
        each on a connection of its own, so the relay does not see them as one action."""
        self._refuse_on_linked_device()
        secret = self._engine.rng(32)
        keys = derive_invite_keys(secret)
        relay = self._engine.relay()
        await relay.create_mailbox(
            RegisterMailbox(
                MailboxId(keys.mailbox_id), keys.mailbox_key.seed(), keys.delivery_token
            ).request()
        )
        await self._engine.spread()
        expires_ms = self._engine.now_ms() + invite_flow.INVITE_LIFETIME_MS
        await relay.add_access_token(self._engine.credentials(), keys.access_token, expires_ms // DAY_MS + 1)
        _, link = await self._engine.transaction(
            lambda tx: invite_flow.create_invite(self._engine.context(tx), secret)
        )
        await self._engine.subscribe({keys.mailbox_id: keys.mailbox_key})
        return Invite(link, link, expires_ms)

    async def accept_invite(self, link: str, contact_name: str) -> Contact:
        """Use someone's invite: start a session from their bundle and send a contact request.

        The bundle is fetched anonymously (the invite's access token only) on a connection of
        its own; our mailbox for them is created a random few seconds later.

        The contact can be written to at once; texts go out when they answer (their client must
        be online once). InviteError for a bad, used or own link, or a name already taken. An
        invite from a removed contact brings them back; one from a contact (who may have
        removed us) runs the handshake again on a new session.
        """
        self._refuse_on_linked_device()
        try:
            parsed = parse_link(link)
        except DecodeError:
            raise InviteError("not a Sotto invite link") from None

        def check(tx: Transaction) -> None:
            # Before the bundle fetch, which uses up one of the inviter's one-time prekeys.
            if parsed.account_id == self._engine.account.account_id:
                raise InviteError("this invite is our own")
            existing = tx.contacts.by_account(parsed.account_id)
            if not invite_flow.name_is_free(tx.contacts.by_name(contact_name), existing, contact_name):
                raise InviteError(f"choose another name than {contact_name!r}")

        self._engine.read(check)
        keys = derive_invite_keys(parsed.secret)
        try:
            reply = await self._engine.network.relay(parsed.server_url).fetch_bundle(
                parsed.account_id, keys.access_token
            )
        except RelayError as e:
            if e.status == 401:
                raise InviteError("the invite was used, expired or never existed") from None
            raise
        bundle = account_flow.bundle_from_reply(reply)
        async with self._engine.peers([address_for(parsed.account_id).name]):

            def accept(tx: Transaction) -> tuple[Contact, Outcome]:
                contact, outcome = invite_flow.accept_invite(
                    self._engine.context(tx), parsed, bundle, contact_name
                )
                request_flow.settle(tx, contact.contact_id)  # we asked them: no request
                return contact, outcome

            contact, outcome = await self._engine.transaction(accept)
        # The bundle came on a connection of its own; our mailbox for them, a few seconds later.
        await self._engine.spread()
        await self._engine.finish(outcome)
        return contact

    # ------------------------------------------------------------------ sending
    async def send_text(self, contact: ContactRef, text: str) -> MessageId:
        """Queue a text for ``contact`` and try to send it now; its message id (receipts name it)."""
        target = self._engine.read(lambda tx: self._writable(tx, contact))
        async with self._engine.peers([target.address.name]):

            def send(tx: Transaction) -> MessageId:
                request_flow.settle(tx, target.contact_id)  # writing to a request accepts it
                return sending.send_text(self._engine.context(tx), target, text)

            message_id = await self._engine.transaction(send)
        await self._engine.after_send()
        return message_id

    # ------------------------------------------------------------------ files
    async def send_file(
        self,
        conversation: ContactRef | GroupRef,
        path: str | Path,
        *,
        caption: str = "",
        content_type: str | None = None,
        progress: attachment_io.Progress | None = None,
    ) -> MessageId:
        """Send a file to a contact or a group: encrypted under a fresh key (streamed, so memory
        stays bounded), uploaded once to our relay in resumable chunks (``progress(done, total)``
        as they go), then its message with the key and ``caption`` (to a group: one message
        under our sender key, sealed to each member, every member fetching the same blob). The
        message id.

        AttachmentFileError (missing or unreadable), AttachmentTooLargeError (over 100 MiB),
        ClientError before the contact answered our invite (or before any member of the group
        has), the relay's refusals as RelayError (a 507 typed: QuotaExceededError,
        RelayFullError). Nothing is sent if the upload fails."""
        source = Path(path)
        where = self._engine.read(lambda tx: self._conversation(tx, conversation))
        if where.group_id is not None:
            group_id = bytes(where.group_id)
            group = self._engine.read(lambda tx: self._group(tx, group_id))
            recipients = self._engine.read(lambda tx: group_flow.reachable(tx, group.group_id))
            if recipients == 0:
                raise ClientError("no member of this group has answered your contact request yet")
            pointer = await self._upload_file(
                where, source, caption, content_type=content_type, recipients=recipients, progress=progress
            )
            async with self._engine.peers(m.address.name for m in self.group_members(group)):

                def send_to_group(tx: Transaction) -> MessageId:
                    attachment_uploads.forget(tx, pointer.attachment_id)
                    return group_flow.send_group_attachment(
                        self._engine.context(tx), group, pointer, caption, self.server_url
                    )

                message_id = await self._engine.transaction(send_to_group)
            await self._engine.after_send()
            return message_id
        assert isinstance(conversation, Contact | str)  # a group's id or Group gives a group above
        contact = conversation
        target = self._engine.read(lambda tx: self._writable(tx, contact))
        if not self.is_ready(target):
            raise ClientError(
                "this contact has not answered your contact request yet: files go once they have"
            )
        pointer = await self._upload_file(
            where, source, caption, content_type=content_type, recipients=1, progress=progress
        )
        async with self._engine.peers([target.address.name]):

            def send(tx: Transaction) -> MessageId:
                request_flow.settle(tx, target.contact_id)
                attachment_uploads.forget(tx, pointer.attachment_id)
                return attachment_flow.send_attachment(
                    self._engine.context(tx), target, pointer, caption, self.server_url
                )

            message_id = await self._engine.transaction(send)
        await self._engine.after_send()
        return message_id

    async def _upload_file(
        self,
        where: Conversation,
        source: Path,
        caption: str,
        *,
        content_type: str | None,
        recipients: int,
        progress: attachment_io.Progress | None,
    ) -> attachment_pointer.AttachmentPointer:
        """Encrypt ``source`` and upload its blob for ``recipients`` fetches; its pointer. An
        upload of the same file to ``where`` begun before goes on where it stopped
        (:mod:`sotto.client.attachment_uploads`)."""
        attachment_io.check_source(source)
        if len(caption.encode()) > c.MAX_CAPTION_BYTES:
            raise ValueError(f"a caption is at most {c.MAX_CAPTION_BYTES} UTF-8 bytes")
        name = source.name if attachment_pointer.file_name_problem(source.name) is None else None
        kind = content_type if content_type is not None else (mimetypes.guess_type(source.name)[0] or "")
        info = source.stat()
        file = attachment_uploads.FileIdentity(str(source.resolve()), info.st_size, info.st_mtime_ns)
        begun = self._engine.read(lambda tx: attachment_uploads.find(tx, where, file, self._engine.now_ms()))
        relay = attachment_io.attachment_relay(self._engine.relay())
        rng, device = self._engine.rng, self._engine.credentials()
        with tempfile.TemporaryDirectory(prefix="sotto-attachment-") as folder:
            blob = Path(folder) / "blob"
            if begun is not None:
                encrypted = await attachment_io.encrypt(source, blob, rng, again=begun.encrypted)
                if bytes_equal(encrypted.digest, begun.encrypted.digest):
                    with contextlib.suppress(attachment_io.UploadGoneError):
                        attachment_id = await attachment_io.upload(
                            relay,
                            device,
                            blob,
                            progress=progress,
                            reserved=(begun.attachment_id, begun.token),
                        )
                        return self._pointer(attachment_id, encrypted, kind, name)
                gone = begun.attachment_id  # the file changed, or the relay no longer has the blob
                await self._engine.transaction(lambda tx: attachment_uploads.forget(tx, gone))
                blob.unlink()
            fresh = await attachment_io.encrypt(source, blob, rng)

            async def keep(attachment_id: bytes, token: bytes) -> None:
                now = self._engine.now_ms()
                state = attachment_uploads.UploadState(
                    where, file, fresh, attachment_id, token, recipients, now
                )
                await self._engine.transaction(lambda tx: attachment_uploads.keep(tx, state, now))

            attachment_id = await attachment_io.upload(
                relay, device, blob, recipients=recipients, progress=progress, on_reserved=keep
            )
            return self._pointer(attachment_id, fresh, kind, name)

    @staticmethod
    def _pointer(
        attachment_id: bytes, encrypted: EncryptedFile, kind: str, name: str | None
    ) -> attachment_pointer.AttachmentPointer:
        return attachment_pointer.AttachmentPointer(
            attachment_id, encrypted.key, encrypted.digest, encrypted.size, kind, name
        )

    def attachment(self, message: Message) -> attachment_flow.StoredAttachment | None:
        """The file a history message holds (its name, size, type), or None for a text."""
        return self._engine.read(lambda tx: attachment_flow.stored(tx, message))

    def attachments(
        self, messages: Iterable[Message]
    ) -> dict[MessageRowId, attachment_flow.StoredAttachment]:
        """:meth:`attachment` for several messages in one read: the rows that hold files."""
        wanted = list(messages)

        def read(tx: Transaction) -> dict[MessageRowId, attachment_flow.StoredAttachment]:
            found = ((m.row_id, attachment_flow.stored(tx, m)) for m in wanted)
            return {row: held for row, held in found if held is not None}

        return self._engine.read(read)

    async def save_attachment(
        self, message: Message, destination: str | Path, *, progress: attachment_io.Progress | None = None
    ) -> Path:
        """Fetch a received file and write it to ``destination`` (in it, under the sender's file
        name, if it is a folder); the path written, readable by us only (0600).

        The blob is checked whole (MAC and digest) before any of it is decrypted; a tampered or
        truncated one is AttachmentIntegrityError or AttachmentSizeError and leaves no file.
        FileExistsError if the path is taken; ClientError for a message without a file or one
        of ours (its one fetch is the recipient's)."""
        found = self.attachment(message)
        if found is None:
            raise ClientError("this message holds no file")
        if message.direction is Direction.OUTGOING:
            raise ClientError("a file you sent is fetched by its recipient, not by you")
        target = Path(destination)
        if target.is_dir():
            target = target / (found.file_name or f"attachment-{message.message_id.hex()[:8]}")
        if target.exists():
            raise FileExistsError(f"{target} exists")
        relay = attachment_io.attachment_relay(self._engine.network.relay(found.server_url))
        await attachment_io.download(relay, found.pointer, target, progress=progress)
        await self._engine.transaction(
            lambda tx: attachment_flow.mark_saved(tx, message, self._engine.now_ms())
        )
        return target

    async def create_group(self, name: str, members: Iterable[ContactRef]) -> Group:
        """A new group of us and ``members`` (contacts); they get its metadata and our sender key."""
        contacts = self._engine.read(lambda tx: [self._writable(tx, m) for m in members])
        async with self._engine.peers(m.address.name for m in contacts):
            group = await self._engine.transaction(
                lambda tx: group_flow.create_group(self._engine.context(tx), name, contacts)
            )
        await self._engine.after_send()
        return group

    async def add_to_group(self, group: GroupRef, contact: ContactRef) -> bool:
        """Add a contact to a group (False if already a member; admins only:
        GroupChangeRefusedError otherwise); they read from now on."""
        found, target = self._engine.read(lambda tx: (self._group(tx, group), self._writable(tx, contact)))
        names = [m.address.name for m in self.group_members(found)] + [target.address.name]
        async with self._engine.peers(names):
            added = await self._engine.transaction(
                lambda tx: group_flow.add_to_group(self._engine.context(tx), found, target)
            )
        await self._engine.after_send()
        return added

    def group_roster(self, group: GroupRef) -> group_membership.Roster:
        """The group's members and admins (account ids), name and description, as resolved now."""
        return self._engine.read(
            lambda tx: group_flow.roster(self._engine.context(tx), self._group(tx, group))
        )

    async def _change_group(
        self,
        group: GroupRef,
        action: group_membership.Action,
        *,
        target: ContactRef | None = None,
        name: str = "",
        description: str = "",
    ) -> Group:
        def read(tx: Transaction) -> tuple[Group, bytes]:
            found = self._group(tx, group)
            return found, b"" if target is None else self._contact(tx, target).account_id

        found, account_id = self._engine.read(read)
        async with self._engine.peers(m.address.name for m in self.group_members(found)):
            changed = await self._engine.transaction(
                lambda tx: group_flow.change_group(
                    self._engine.context(tx),
                    found,
                    action,
                    target=account_id,
                    name=name,
                    description=description,
                )
            )
        await self._engine.after_send()
        return changed

    async def remove_from_group(self, group: GroupRef, contact: ContactRef) -> Group:
        """Remove a member (admins only: GroupChangeRefusedError otherwise). Every remaining
        member makes a new sender key and hands it to the remaining members only."""
        return await self._change_group(group, group_membership.Action.REMOVE, target=contact)

    async def make_group_admin(self, group: GroupRef, contact: ContactRef) -> Group:
        """Make a member an admin (admins only)."""
        return await self._change_group(group, group_membership.Action.ADMIN, target=contact)

    async def leave_group(self, group: GroupRef) -> Group:
        """Leave the group: the others stop sending to us and make new sender keys; we keep the
        history and can no longer write to it."""
        return await self._change_group(group, group_membership.Action.LEAVE)

    async def rename_group(self, group: GroupRef, name: str, description: str | None = None) -> Group:
        """A new name (and description; None keeps the current one), for every member."""
        if description is None:
            description = self.group_roster(group).description
        return await self._change_group(
            group, group_membership.Action.RENAME, name=name, description=description
        )

    async def send_group_text(self, group: GroupRef, text: str) -> MessageId:
        """Encrypt once for the group, queue one sealed envelope per member; the message id."""
        found = self._engine.read(lambda tx: self._group(tx, group))
        async with self._engine.peers(m.address.name for m in self.group_members(found)):
            message_id = await self._engine.transaction(
                lambda tx: group_flow.send_group_text(self._engine.context(tx), found, text)
            )
        await self._engine.after_send()
        return message_id

    async def send_typing(self, conversation: ContactRef | GroupRef, started: bool = True) -> None:
        """Tell the contact (or every group member) that we started or stopped typing (not in
        cadence mode, where it would arrive ticks late)."""
        if self._engine.cadence:
            return

        def targets(tx: Transaction) -> tuple[list[Contact], GroupId | None]:
            where = self._conversation(tx, conversation)
            if where.group_id is not None:
                members = [tx.contacts.get(m.contact_id) for m in tx.groups.members(where.group_id)]
                return [m for m in members if m is not None], where.group_id
            assert where.contact_id is not None
            contact = tx.contacts.get(where.contact_id)
            return ([] if contact is None else [contact]), None

        contacts, group_id = self._engine.read(targets)
        async with self._engine.peers(m.address.name for m in contacts):
            await self._engine.transaction(
                lambda tx: sending.send_typing(self._engine.context(tx), contacts, started, group_id)
            )
        await self._engine.after_send()

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

        count, names = await self._engine.transaction(mark)
        if names:
            async with self._engine.peers(names):
                await self._engine.transaction(
                    lambda tx: sending.flush_receipts(self._engine.context(tx), ReceiptKind.READ)
                )
            await self._engine.after_send()
        return count

    # ------------------------------------------------------------------ replies and changes to messages
    async def send_reply(self, conversation: ContactRef | GroupRef, reply_to: bytes, text: str) -> MessageId:
        """Send ``text`` quoting the conversation's message ``reply_to`` (ours or theirs); its id.
        ClientError if the conversation holds no such message."""

        def send(
            ctx: Context, where: Conversation, contact: Contact | None, group: Group | None
        ) -> MessageId:
            if contact is not None:
                return sending.send_text(ctx, contact, text, reply_to)
            assert group is not None
            return group_flow.send_group_text(ctx, group, text, reply_to)

        message_id: MessageId = await self._change(conversation, send, send=False)
        return message_id

    async def edit_message(self, conversation: ContactRef | GroupRef, message_id: bytes, text: str) -> None:
        """Replace the text of one of our messages, here and at every recipient. ClientError for
        someone else's message, a deleted one, or one sent more than 24 hours ago."""
        await self._change(conversation, lambda ctx, where, *_: changes.edit(ctx, where, message_id, text))

    async def delete_for_everyone(self, conversation: ContactRef | GroupRef, message_id: bytes) -> None:
        """Take back one of our messages: its text goes here and at every recipient, a placeholder
        stays. ClientError for someone else's message or one sent more than 24 hours ago."""
        await self._change(
            conversation, lambda ctx, where, *_: changes.delete_for_everyone(ctx, where, message_id)
        )

    async def react(self, conversation: ContactRef | GroupRef, message_id: bytes, emoji: str) -> None:
        """Our one reaction to a message of the conversation (a new one replaces it, "" removes
        it). ValueError for anything but one short emoji."""
        await self._change(conversation, lambda ctx, where, *_: changes.react(ctx, where, message_id, emoji))

    async def set_disappearing_timer(self, conversation: ContactRef | GroupRef, seconds: int) -> None:
        """Messages of the conversation written from now on, by anyone, are deleted ``seconds``
        after each store received them (0: kept). Every member is told; both histories show it."""
        await self._change(conversation, lambda ctx, where, *_: changes.set_timer(ctx, where, seconds)[1])

    def export_history(
        self, conversation: ContactRef | GroupRef | None = None
    ) -> history_export.HistoryExport:
        """Our whole history (or one conversation's), to write out with :func:`~sotto.client.
        history_export.to_json` or :func:`~sotto.client.history_export.to_html`."""

        def read(tx: Transaction) -> history_export.HistoryExport:
            now = self._engine.now_ms()
            tx.messages.expire(now)
            only: Contact | Group | None = None
            if conversation is not None:
                where = self._conversation(tx, conversation)
                if where.group_id is not None:
                    only = self._group(tx, bytes(where.group_id))
                elif where.contact_id is not None:
                    only = tx.contacts.get(where.contact_id)
            return history_export.collect(tx, self._engine.account, now, only)

        return self._engine.read(read)

    def disappearing_timer(self, conversation: ContactRef | GroupRef) -> int:
        """The conversation's disappearing timer in seconds (0: off)."""
        return self._engine.read(lambda tx: changes.timer_of(tx, self._conversation(tx, conversation)))

    async def _change(
        self,
        conversation: ContactRef | GroupRef,
        build: Callable[[Context, Conversation, Contact | None, Group | None], Any],
        *,
        send: bool = True,
    ) -> Any:
        """Run ``build`` in one transaction with the conversation's peers locked; unless ``send``
        is False (it sends by itself), queue the content it returns to the conversation."""

        def targets(tx: Transaction) -> tuple[Conversation, Contact | None, Group | None, list[str]]:
            where = self._conversation(tx, conversation)
            if where.contact_id is not None:
                contact = self._writable(tx, tx.contacts.get(where.contact_id) or "")
                return where, contact, None, [contact.address.name]
            group = self._group(tx, bytes(where.group_id or b""))
            members = [tx.contacts.get(m.contact_id) for m in tx.groups.members(group.group_id)]
            return where, None, group, [m.address.name for m in members if m is not None]

        where, contact, group, names = self._engine.read(targets)

        def run(tx: Transaction) -> Any:
            ctx = self._engine.context(tx)
            result = build(ctx, where, contact, group)
            if send and contact is not None:
                sending.send_control(ctx, contact, result)
            elif send and group is not None:
                group_flow.send_group_content(ctx, group, result)
            return result

        async with self._engine.peers(names):
            result = await self._engine.transaction(run)
        await self._engine.after_send()
        return result

    async def flush(self) -> int:
        """Try every queued envelope now, whatever its retry time; how many are still queued.
        In cadence mode envelopes leave only in their ticks: this only counts them."""
        if not self._engine.cadence:
            await self._engine.flush_outbox(force=True)
        return self.pending_outbox()

    # ------------------------------------------------------------------ safety numbers
    def safety_number(self, contact: ContactRef) -> SafetyNumber:
        """Our safety number with ``contact``: 60 digits, the scannable bytes, the QR text."""

        def compute(tx: Transaction) -> SafetyNumber:
            found = self._contact(tx, contact)
            trusted = tx.identities.get(found.address.name)
            if trusted is None:
                raise UnknownContactError("no identity key for this contact")
            return safety.safety_number(self._engine.account, found, trusted.identity_key)

        return self._engine.read(compute)

    async def verify(self, contact: ContactRef, scanned: str | bytes) -> bool:
        """Compare a code scanned from the contact's screen with ours; on a match, remember that
        the contact is verified (which clears their "safety number changed" flag). DecodeError
        for an unreadable code."""
        ours = self.safety_number(contact)
        if not safety.matches(ours, scanned):
            return False
        await self._set_verified(contact, True)
        return True

    async def unverify(self, contact: ContactRef) -> Trust:
        """Mark ``contact`` not verified again (their "safety number changed" flag, if set,
        stays). UnknownContactError if we trust no key for them."""
        return await self._set_verified(contact, False)

    async def _set_verified(self, contact: ContactRef, verified: bool) -> Trust:
        def mark(tx: Transaction) -> Trust:
            try:
                return trust.set_verified(tx, self._contact(tx, contact), verified)
            except MissingRecordError:
                raise UnknownContactError("no identity key for this contact") from None

        return await self._engine.transaction(mark)

    async def acknowledge_safety_number_change(self, contact: ContactRef) -> bool:
        """Clear ``contact``'s "safety number changed" flag without verifying them (the user saw
        it); whether it was set. The key we trust is unchanged: the refused messages stay refused."""

        def clear(tx: Transaction) -> bool:
            return trust.acknowledge(tx, self._contact(tx, contact))

        return await self._engine.transaction(clear)

    def trust(self, contact: ContactRef) -> Trust:
        """Whether ``contact`` is verified, and whether (since when) their safety number changed:
        a message came under another identity key and was refused
        (:class:`~sotto.client.events.IdentityChanged`). The flag is kept in the store until
        :meth:`verify` matches or :meth:`acknowledge_safety_number_change`; sending is not held
        by it (see :mod:`sotto.client.flows.trust`)."""
        return self._engine.read(lambda tx: trust.trust_of(tx, self._contact(tx, contact)))

    def trusts(self, contacts: Iterable[Contact]) -> list[Trust]:
        """:meth:`trust` for each of ``contacts``, in one read."""
        return self._engine.read(lambda tx: [trust.trust_of(tx, c) for c in contacts])

    def is_verified(self, contact: ContactRef) -> bool:
        return self.trust(contact).verified

    # ------------------------------------------------------------------ mailboxes and export
    async def rotate_mailboxes(self) -> int:
        """Give every contact a fresh mailbox now (the old ones are drained a while, then
        deleted); how many were rotated. The creations go a random few seconds apart, in a
        random order (:meth:`Engine.spread <sotto.client.runtime.Engine.spread>`). Mailboxes
        are also rotated by themselves, each at a random age averaging a week
        (:data:`~sotto.client.flows.mailboxes.ROTATION_MEAN_MS`)."""
        rotated = 0
        contacts = self.contacts()
        order = sorted(range(len(contacts)), key=lambda _: self._engine.rng(8))
        for index in order:
            contact = contacts[index]
            async with self._engine.peers([contact.address.name]):
                outcome = await self._engine.transaction(partial(self._rotate, contact=contact))
            if outcome.commands:
                if rotated:
                    await self._engine.spread()
                rotated += 1
            await self._engine.run_commands(outcome.commands)
        outcome = await self._engine.transaction(lambda tx: mailbox_flow.retire(self._engine.context(tx)))
        await self._engine.run_commands(outcome.commands)
        await self._engine.after_send()
        return rotated

    def _rotate(self, tx: Transaction, *, contact: Contact) -> Outcome:
        return mailbox_flow.rotate_mailbox(self._engine.context(tx), contact)

    async def export(self) -> dict[str, Any]:
        """What our relay holds about us: the account export and each of our mailboxes' exports.
        AccountDeletedError once the account was deleted (:meth:`delete_account`)."""
        self._refuse_deleted()
        relay = self._engine.relay()
        result: dict[str, Any] = {
            "account": await relay.export_account(self._engine.credentials()),
            "mailboxes": {},
        }
        mailboxes = await self._engine.transaction(lambda tx: mailbox_flow.held(tx, self._engine.now_ms()))
        for mailbox_id, seed in mailboxes.items():
            try:
                result["mailboxes"][b64.encode(mailbox_id)] = await relay.export_mailbox(
                    mailbox_id, SigningKey(seed)
                )
            except RelayError as e:
                if e.status != 404:
                    raise
        return result

    async def delete_account(self) -> account_flow.AccountDeletion:
        """Delete our account from the relay: first each of our mailboxes with its own key (with
        their pending envelopes; the relay ties no mailbox to an account, and this keeps it so),
        then the account with its devices, prekeys, access tokens and username, in one
        transaction. Locally, the mailboxes, invites and outbox are dropped and the profile is
        marked deleted (history and contacts stay readable here); the client is closed.

        Returns what the relay held just before (from its exports). Contacts who write to us
        afterwards get the relay's one answer for an unknown mailbox. Safe to retry after a
        failure part way; AccountDeletedError if it was done already."""
        self._refuse_deleted()
        relay, credentials = self._engine.relay(), self._engine.credentials()
        try:
            held = await self.export()
        except RelayError as e:
            if e.status != 401:
                raise
            held = {"account": {}, "mailboxes": {}}  # an earlier try deleted the account already
        now = self._engine.now_ms()
        mailboxes = await self._engine.transaction(lambda tx: account_flow.take_mailboxes(tx, now))
        for mailbox_id, seed in mailboxes.items():
            try:
                await relay.delete_mailbox(mailbox_id, SigningKey(seed))
            except RelayError as e:
                if e.status != 404:  # gone already (expired, or deleted by an earlier try)
                    raise
        try:
            await relay.delete_account(credentials)
        except RelayError as e:
            # Our own credentials stop working only when the account is gone: an earlier try
            # that was cut off before it could note it here.
            if e.status != 401:
                raise
        now = self._engine.now_ms()
        await self._engine.transaction(lambda tx: account_flow.forget_relay(tx, now))
        await self.close()
        return account_flow.deletion_summary(held["account"], list(held["mailboxes"].values()))

    @property
    def account_deleted(self) -> bool:
        """Whether this profile's account was deleted from its relay (:meth:`delete_account`);
        read from the store, so only while the client is open."""
        return self._read(account_flow.deleted_at) is not None

    def _refuse_deleted(self) -> None:
        if self.account_deleted:
            raise AccountDeletedError(
                f"this account was deleted from {self.server_url}: the relay holds nothing for it"
            )

    async def listen(self) -> AsyncIterator[Event]:
        """Events as they happen, until the client is closed. Starts the background tasks.

        First come the events a previous run committed but the app never took (same message
        ids: an app that had seen one before a crash drops it), then new ones; within one run
        no event comes twice. An event counts as taken once the app asks for the next one, or
        closes the client (see :mod:`sotto.client.flows.reporting`).
        """
        await self.start()
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                return
            self._handed.append(event)
            yield event
            # Marked in batches while more are waiting (one commit, not one per event); a
            # crash before the commit reports them again, which "at least once" allows.
            if self._events.empty() or len(self._handed) >= MARK_BATCH:
                self._mark_handed()

    async def sync(self, timeout: float = 10.0, *, idle: float = 0.3) -> list[Event]:
        """Connect, drain until nothing arrives for ``idle`` seconds and the outbox is empty (or
        ``timeout`` passes), send the receipts we owe, and return the events so far.

        In cadence mode: wait until a whole tick that began after this call is done (every
        mailbox polled, every contact sent one envelope), or ``timeout``; receipts owed are
        queued for later ticks.

        Events a previous run committed but the app never took come first (see :meth:`listen`);
        what this returns counts as taken."""
        await self.start()
        if self._engine.cadence:
            await self._engine.wait_for_tick(self._engine.now_ms() / 1000, timeout)
            await self._engine.send_receipts(ReceiptKind.DELIVERED)
            return self._drain_events()
        await self._engine.settle(timeout, idle)
        await self._engine.send_receipts(ReceiptKind.DELIVERED)
        await self._engine.flush_outbox()
        return self._drain_events()

    def _drain_events(self) -> list[Event]:
        events: list[Event] = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if event is None:
                self._events.put_nowait(None)
                break
            events.append(event)
        self._mark_taken(events)  # returned to the app: taken
        return events

    # ------------------------------------------------------------------ events taken by the app
    def _emit(self, events: list[Event]) -> None:
        """The engine's report: queue its events for ``listen()`` and ``sync()``."""
        for event in events:
            self._events.put_nowait(event)

    def _mark_taken(self, events: list[Event]) -> None:
        """The app has these events: they are not reported again after a restart."""
        kept = [e for e in events if reporting.is_kept(e)]
        if kept and not self._engine.closed:
            self._engine.read(partial(reporting.mark_taken, events=kept))

    def _mark_handed(self) -> None:
        """The app is done with what ``listen()`` handed it (it asked for more, or closes us)."""
        handed, self._handed = self._handed, []
        self._mark_taken(handed)

    # ------------------------------------------------------------------ kept for callers that look inside
    def _read(self, fn: Callable[[Transaction], T]) -> T:
        """A short read of the store (as :meth:`Engine.read`)."""
        return self._engine.read(fn)

    def _credentials(self) -> DeviceCredentials:
        """The device's credentials (as :meth:`Engine.credentials`)."""
        return self._engine.credentials()


def _draft_key(where: Conversation) -> str:
    if where.group_id is not None:
        return f"draft:g:{where.group_id.hex()}"
    return f"draft:c:{where.contact_id}"


def _where(conversation: Contact | Group) -> Conversation:
    if isinstance(conversation, Group):
        return Conversation.group(conversation.group_id)
    return Conversation.direct(conversation.contact_id)


__all__ = ["Client", "ContactRef", "GroupRef", "Invite", "SafetyNumber", "check_profile"]
