"""Stores filled by hand for the chat app's tests and benchmark: an account, contacts who have
answered, groups and messages, with no relay (the app is run with ``live=False``).

Everything comes from a seeded ``rng`` and fixed times, so two runs build the same screen.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from sotto.client.flows import account as account_flow
from sotto.client.flows import requests as request_flow
from sotto.client.flows.context import address_for
from sotto.client.sdk import Client
from sotto.client.transport import HttpNetwork
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol.address import ProtocolAddress
from sotto.store.interfaces import Store, Transaction
from sotto.store.memory import MemoryStore
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    GroupId,
    MailboxId,
    MessageId,
    MessageState,
    TheirMailbox,
)
from sotto.store.sqlite import SqliteStore
from sotto.wire import api

SERVER = "http://127.0.0.1:9"
"""Nothing listens there; a seeded client never connects (the app runs with ``live=False``)."""
NOW_MS = int(dt.datetime(2026, 12, 7, 12, 30, tzinfo=dt.UTC).timestamp() * 1000)
PASSPHRASE = "a tui test passphrase"


@dataclass
class Seeder:
    store: Store
    rng: Rng
    now_ms: int = NOW_MS

    def account(self, name: str = "Alice") -> None:
        new = account_flow.NewIdentity.generate(self.rng)
        with self.store.transaction() as tx:
            account_flow.store_account(
                tx,
                new,
                api.AccountCreated(account_id=self.rng(16), device_id=1),
                server_url=SERVER,
                display_name=name,
                now_ms=self.now_ms,
                rng=self.rng,
            )

    def contact(self, tx: Transaction, name: str) -> Contact:
        account_id = self.rng(16)
        contact = tx.contacts.add(
            name=name,
            account_id=account_id,
            address=ProtocolAddress(address_for(account_id).name, 1),
            now_ms=self.now_ms,
            display_name=name,
        )
        tx.their_mailboxes.put(
            TheirMailbox(contact.contact_id, SERVER, MailboxId(self.rng(16)), self.rng(32), self.now_ms)
        )
        return contact

    def message(
        self,
        tx: Transaction,
        conversation: Conversation,
        sender: Contact | None,
        text: str,
        at_ms: int,
        *,
        state: MessageState | None = None,
    ) -> None:
        incoming = sender is not None
        wanted = state if state is not None else (MessageState.READ if incoming else MessageState.DELIVERED)
        added = tx.messages.add(
            message_id=MessageId(self.rng(16)),
            conversation=conversation,
            direction=Direction.INCOMING if incoming else Direction.OUTGOING,
            sender=None if sender is None else sender.contact_id,
            text=text,
            sent_ms=at_ms,
            stored_ms=at_ms,
            state=MessageState.RECEIVED if incoming else MessageState.QUEUED,
        )
        if wanted is not added.state:
            tx.messages.advance(added.row_id, wanted)
        if incoming:
            tx.messages.mark_reported([added.row_id])  # as if an earlier run had shown it


def small_world(seed: int = 1) -> MemoryStore:
    """Alice with Bob (a short conversation, two unread), Carol (one queued message of ours),
    Dan (nothing yet) and a group #Lunch."""
    store = MemoryStore()
    s = Seeder(store, seeded_rng(seed))
    s.account("Alice")
    minute = 60_000
    with store.transaction() as tx:
        bob = s.contact(tx, "Bob")
        carol = s.contact(tx, "Carol")
        s.contact(tx, "Dan")
        bob_chat = Conversation.direct(bob.contact_id)
        s.message(tx, bob_chat, bob, "Lunch at 12:30?", NOW_MS - 40 * minute)
        s.message(tx, bob_chat, None, "Yes! The usual place?", NOW_MS - 38 * minute, state=MessageState.READ)
        s.message(tx, bob_chat, bob, "Sure. I'll book a table.", NOW_MS - 35 * minute)
        s.message(tx, bob_chat, bob, "See you there", NOW_MS - 5 * minute, state=MessageState.RECEIVED)
        s.message(
            tx,
            bob_chat,
            bob,
            "And bring the notes from Thursday, the long ones, we should go through them once more "
            "before the meeting",
            NOW_MS - 4 * minute,
            state=MessageState.RECEIVED,
        )
        carol_chat = Conversation.direct(carol.contact_id)
        s.message(tx, carol_chat, carol, "Are you around tomorrow?", NOW_MS - 26 * 60 * minute)
        queued = MessageState.QUEUED
        s.message(tx, carol_chat, None, "In the afternoon, yes", NOW_MS - 20 * minute, state=queued)
        group = tx.groups.create(
            group_id=GroupId(s.rng(16)), name="Lunch", distribution_id=uuid.UUID(int=1), created_ms=NOW_MS
        )
        lunch = Conversation.group(group.group_id)
        s.message(tx, lunch, carol, "Who is in?", NOW_MS - 90 * minute)
        s.message(tx, lunch, None, "Me", NOW_MS - 89 * minute, state=MessageState.READ)
    return store


def world_with_a_request(seed: int = 1) -> MemoryStore:
    """:func:`small_world`, and Eve, who used one of Alice's invites and wrote twice: a request."""
    store = small_world(seed)
    s = Seeder(store, seeded_rng(seed + 100))
    with store.transaction() as tx:
        eve = s.contact(tx, "Eve")
        tx.contacts.update(replace(eve, display_name="Eve from the book club"))
        request_flow.mark(tx, eve.contact_id)
        where = Conversation.direct(eve.contact_id)
        s.message(
            tx,
            where,
            eve,
            "Hi Alice, we met at the book club",
            NOW_MS - 3 * 60_000,
            state=MessageState.RECEIVED,
        )
        s.message(
            tx, where, eve, "Is this still your number?", NOW_MS - 2 * 60_000, state=MessageState.RECEIVED
        )
    return store


def big_world(
    path: Path, *, conversations: int, messages: int, seed: int = 7, kdf: Argon2Params = Argon2Params.TESTING
) -> None:
    """An encrypted store at ``path`` with ``conversations`` contacts and ``messages`` messages in
    all: the first conversation holds half of them, the rest share the other half."""
    store = SqliteStore.create(path, PASSPHRASE, kdf=kdf)
    try:
        s = Seeder(store, seeded_rng(seed))
        s.account("Alice")
        big = messages // 2
        rest = messages - big
        per = max(1, rest // max(1, conversations - 1))
        with store.transaction() as tx:
            contacts = [s.contact(tx, f"Person {n:04d}") for n in range(conversations)]
        at = NOW_MS - messages * 1000
        for index, contact in enumerate(contacts):
            if index == 0:
                count = big
            elif index < conversations - 1:
                count = per
            else:
                count = rest - per * (conversations - 2)
            where = Conversation.direct(contact.contact_id)
            written = 0
            while written < count:
                with store.transaction() as tx:
                    for _ in range(min(5_000, count - written)):
                        sender = contact if written % 3 else None
                        s.message(tx, where, sender, f"message {written} of {count}", at)
                        written += 1
                        at += 1000
    finally:
        store.close()


async def offline_client(store: Store) -> Client:
    """A client over ``store`` that never connects (the app must run with ``live=False``)."""
    return await Client.attach(store, network=HttpNetwork(), clock=lambda: NOW_MS)
