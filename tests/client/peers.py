"""Two or three people on in-memory stores, wired by hand through a dict "relay": the flows alone.

No SDK, no asyncio: each step is one store transaction, as the SDK runs it, with commands
applied by a few lines of dict manipulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sotto.client.flows import account, invites, mailboxes, receiving, sending
from sotto.client.flows.context import Context, DeleteMailbox, Me, Outcome, RegisterMailbox
from sotto.client.invite import derive_invite_keys, parse_link
from sotto.crypto.random import Rng, seeded_rng
from sotto.errors import EnvelopeRejectedError
from sotto.protocol.bundle import build_bundle
from sotto.store.interfaces import Transaction
from sotto.store.memory import MemoryStore
from sotto.store.model import Contact, MailboxId, MessageId, PreKeyKind
from sotto.wire import api

T = TypeVar("T")
SERVER = "http://relay.test"
NOW = 1_800_000_000_000


@dataclass
class Relay:
    """Mailbox id → queued (envelope id, payload); plus bundles by account id."""

    mailboxes: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    tokens: dict[bytes, bytes] = field(default_factory=dict)
    accounts: dict[bytes, Person] = field(default_factory=dict)

    def register(self, command: RegisterMailbox) -> None:
        self.mailboxes.setdefault(command.mailbox_id, [])
        self.tokens[command.mailbox_id] = command.delivery_token


@dataclass
class Person:
    name: str
    relay: Relay
    rng: Rng
    store: MemoryStore = field(default_factory=MemoryStore)
    now_ms: int = NOW
    me: Me | None = None
    events: list[object] = field(default_factory=list)
    rejections: list[EnvelopeRejectedError] = field(default_factory=list)

    def __post_init__(self) -> None:
        new = account.NewIdentity.generate(self.rng)
        account_id = self.rng(16)
        with self.store.transaction() as tx:
            acct = account.store_account(
                tx,
                new,
                api.AccountCreated(account_id=account_id, device_id=1),
                server_url=SERVER,
                display_name=self.name,
                now_ms=self.now_ms,
                rng=self.rng,
            )
        self.me = Me.current(None, acct, self.now_ms, self.rng)
        self.relay.accounts[account_id] = self

    def ctx(self, tx: Transaction) -> Context:
        assert self.me is not None
        return Context(tx, self.me, self.now_ms, self.rng)

    def act(self, flow: Callable[[Context], T]) -> T:
        """Run one flow in one transaction."""
        with self.store.transaction() as tx:
            return flow(self.ctx(tx))

    def read(self, query: Callable[[Transaction], T]) -> T:
        with self.store.transaction() as tx:
            return query(tx)

    def apply(self, outcome: Outcome) -> None:
        self.events.extend(outcome.events)
        for command in outcome.commands:
            if isinstance(command, RegisterMailbox):
                self.relay.register(command)
            elif isinstance(command, DeleteMailbox):
                self.relay.mailboxes.pop(command.mailbox_id, None)
                with self.store.transaction() as tx:  # the relay confirmed: as the engine does
                    mailboxes.deleted(tx, command.mailbox_id)

    def flush(self) -> int:
        """Move every outbox item into the relay (or drop it if its mailbox is unknown)."""
        with self.store.transaction() as tx:
            items = tx.outbox.all()
            for item in items:
                queue = self.relay.mailboxes.get(item.mailbox_id)
                fresh = queue is not None and all(eid != item.message_id for eid, _ in queue)
                if queue is not None and fresh and self.relay.tokens[item.mailbox_id] == item.delivery_token:
                    queue.append((item.message_id, item.payload))
                self.events.extend(sending.confirm_sent(self.ctx(tx), item.item_id))
        return len(items)

    def mailbox_ids(self) -> list[bytes]:
        with self.store.transaction() as tx:
            return list(mailboxes.to_drain(tx, self.now_ms))

    def drain(self) -> int:
        count = 0
        for mailbox_id in self.mailbox_ids():
            queue = self.relay.mailboxes.get(mailbox_id, [])
            while queue:
                envelope_id, payload = queue.pop(0)
                self.deliver(mailbox_id, envelope_id, payload)
                count += 1
        return count

    def deliver(self, mailbox_id: bytes, envelope_id: bytes, payload: bytes) -> None:
        assert self.me is not None
        try:
            unsealed = receiving.unseal(self.me, payload, self.now_ms)
            with self.store.transaction() as tx:
                outcome = receiving.receive(
                    self.ctx(tx),
                    MailboxId(mailbox_id),
                    MessageId(envelope_id),
                    unsealed,
                )
        except EnvelopeRejectedError as e:
            with self.store.transaction() as tx:
                tx.seen.add(MailboxId(mailbox_id), MessageId(envelope_id), self.now_ms // 86_400_000)
            self.rejections.append(e)
            self.events.extend(e.events)
            return
        self.apply(outcome)

    def invite(self) -> str:
        secret = self.rng(32)
        keys = derive_invite_keys(secret)
        self.relay.mailboxes[keys.mailbox_id] = []
        self.relay.tokens[keys.mailbox_id] = keys.delivery_token
        with self.store.transaction() as tx:
            _, link = invites.create_invite(self.ctx(tx), secret)
        return link

    def bundle(self) -> api.Bundle:
        assert self.me is not None
        with self.store.transaction() as tx:
            pre_key = tx.prekeys.get_one_time(tx.prekeys.ids(PreKeyKind.ONE_TIME)[0])
            kyber_ids = tx.prekeys.ids(PreKeyKind.KYBER, last_resort=False)
            kyber = tx.prekeys.get_kyber(kyber_ids[0])
            signed = tx.prekeys.latest_signed()
        assert pre_key is not None and kyber is not None and signed is not None
        b = build_bundle(
            registration_id=self.me.account.registration_id,
            device_id=1,
            identity_key=self.me.identity.public,
            signed_pre_key=signed,
            kyber_pre_key=kyber,
            pre_key=pre_key,
        )
        return api.Bundle(
            identity_key=b.identity_key.to_bytes(),
            devices=[
                api.DeviceBundle(
                    device_id=1,
                    registration_id=b.registration_id,
                    signed_pre_key=api.SignedPreKey(
                        id=b.signed_pre_key_id,
                        public_key=b.signed_pre_key_public.to_bytes(),
                        signature=b.signed_pre_key_signature,
                    ),
                    kyber_pre_key=api.KyberPreKey(
                        id=b.kyber_pre_key_id,
                        public_key=b.kyber_pre_key_public.to_bytes(),
                        signature=b.kyber_pre_key_signature,
                    ),
                    pre_key=api.PreKey(id=pre_key.id, public_key=pre_key.key_pair.public.to_bytes()),
                )
            ],
        )

    def accept(self, link: str, name: str) -> Contact:
        parsed = parse_link(link)
        inviter = self.relay.accounts[parsed.account_id]
        bundle = account.bundle_from_reply(inviter.bundle())
        with self.store.transaction() as tx:
            contact, outcome = invites.accept_invite(self.ctx(tx), parsed, bundle, name)
        self.apply(outcome)
        return contact

    def contact(self, name: str) -> Contact:
        with self.store.transaction() as tx:
            found = tx.contacts.by_name(name)
        assert found is not None, name
        return found


def connect(a: Person, b: Person) -> tuple[Contact, Contact]:
    """Full invite handshake: a invites, b accepts; returns (b as a's contact, a as b's contact)."""
    link = a.invite()
    b.accept(link, a.name)
    b.flush()
    a.drain()
    a.flush()
    b.drain()
    return a.contact(b.name), b.contact(a.name)


def people(*names: str, seed: int = 1) -> tuple[Relay, list[Person]]:
    relay = Relay()
    rng = seeded_rng(seed)
    return relay, [Person(n, relay, rng) for n in names]
