"""The demo's story: three people on one real relay, driven through the public SDK only.

Each person is a :class:`~sotto.client.sdk.Client` with its own encrypted store, listening all
the time; their events are printed as they arrive. Every step waits for what it caused (a
message arriving, a receipt coming back), with a deadline, so the story never races ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sotto.client import events as ev
from sotto.client.sdk import STORE_FILE, Client
from sotto.crypto.passphrase import Argon2Params
from sotto.demo import show
from sotto.store.model import MessageId

PASSPHRASE = "correct horse battery staple"  # noqa: S105 (the demo's throw-away stores)
KDF = Argon2Params(iterations=2, memory_kib=19 * 1024, lanes=1)
"""Argon2id at OWASP's minimum (19 MiB, 2 passes): real, and quick enough for a demo.
``sotto init`` uses :attr:`Argon2Params.INTERACTIVE`."""
RECEIPT_DELAY_S = 0.2
"""Delivery receipts are batched after a random delay (default 10 s); short here."""
STEP_TIMEOUT_S = 20.0


class StepTimeout(RuntimeError):
    """Something the story waits for did not happen in time."""


@dataclass
class Person:
    name: str
    directory: Path
    client: Client | None = None
    events: list[ev.Event] = field(default_factory=list)
    listener: asyncio.Task[None] | None = None

    @property
    def online(self) -> Client:
        if self.client is None:
            raise RuntimeError(f"{self.name} is offline")
        return self.client

    def received(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, ev.MessageReceived | ev.GroupMessageReceived)]

    def saw(self, kind: type[Any], message_id: MessageId | None = None) -> bool:
        return any(
            isinstance(e, kind) and (message_id is None or message_id in getattr(e, "message_ids", ()))
            for e in self.events
        )


@dataclass
class Story:
    url: str
    profiles: Path
    people: dict[str, Person] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    """Every text sent, for the search of the relay's data."""
    account_ids: dict[str, bytes] = field(default_factory=dict)

    # ------------------------------------------------------------------ people
    async def join(self, *names: str) -> None:
        """Create each person's account and store, concurrently, and start listening."""

        async def create(name: str) -> None:
            person = self.people[name] = Person(name, self.profiles / name.lower())
            person.client = await Client.create(
                person.directory, self.url, PASSPHRASE, name, kdf=KDF, receipt_delay=RECEIPT_DELAY_S
            )
            self.account_ids[name] = person.client.account_id

        await asyncio.gather(*(create(n) for n in names))
        for name in names:
            await self.go_online(name)

    async def go_online(self, name: str) -> None:
        person = self.people[name]
        if person.client is None:
            person.client = await Client.open(person.directory, PASSPHRASE, receipt_delay=RECEIPT_DELAY_S)
        person.listener = asyncio.create_task(self._listen(person), name=f"demo-{name}")
        client = person.client
        await self.until(f"{name} is connected", lambda: client.connected)

    async def _listen(self, person: Person) -> None:
        async for happened in person.online.listen():
            person.events.append(happened)
            show.event(person.name, happened)

    async def go_offline(self, name: str) -> None:
        person = self.people[name]
        if person.client is not None:
            await person.client.close()
            person.client = None
        if person.listener is not None:
            person.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await person.listener
            person.listener = None

    async def close(self) -> None:
        for name in list(self.people):
            await self.go_offline(name)

    async def settle(self) -> None:
        """Let the batched delivery receipts go out, so the next section starts quiet."""
        await asyncio.sleep(3 * RECEIPT_DELAY_S)
        clients = [p.client for p in self.people.values() if p.client is not None]
        await self.until("every outbox is empty", lambda: all(c.pending_outbox() == 0 for c in clients))
        await asyncio.sleep(0.2)

    async def until(self, what: str, done: Callable[[], bool], timeout: float = STEP_TIMEOUT_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if loop.time() > deadline:
                raise StepTimeout(f"timed out waiting until {what}")
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ actions
    async def befriend(self, inviter: str, acceptor: str) -> None:
        a, b = self.people[inviter].online, self.people[acceptor].online
        invite = await a.create_invite()
        visible = invite.link.split("&k=", 1)[0] + "&k=<one-time secret>"
        show.say(f"  {show.who(inviter)} makes a one-time invite: [dim]{visible}[/]")
        await b.accept_invite(invite.link, inviter)
        show.say(
            f"  {show.who(acceptor)} accepts it"
            f" (PQXDH from {inviter}'s bundle, then a sealed contact request)"
        )
        await self.until(
            f"{inviter} and {acceptor} are connected",
            lambda: b.is_ready(inviter) and any(c.name == acceptor and a.is_ready(c) for c in a.contacts()),
        )

    async def send(self, sender: str, recipient: str, text: str) -> MessageId:
        self.texts.append(text)
        show.say(f"  {show.who(sender)} → {show.who(recipient)}: {show.quoted(text)}")
        return await self.people[sender].online.send_text(recipient, text)

    async def send_group(self, sender: str, group: str, text: str) -> MessageId:
        self.texts.append(text)
        show.say(f"  {show.who(sender)} → #{group}: {show.quoted(text)}")
        return await self.people[sender].online.send_group_text(group, text)

    def delivered(self, text: str, *names: str) -> Callable[[], bool]:
        return lambda: all(text in self.people[n].received() for n in names)


async def tell(story: Story) -> dict[str, dict[str, Any]]:
    """Steps 2 to 8 of the demo: accounts, invites, 1:1, group, safety numbers, exports, and a
    message left waiting for an offline recipient; each person's export."""
    show.section(2, "Three people, three accounts")
    await story.join("Alice", "Bob", "Carol")
    for name in ("Alice", "Bob", "Carol"):
        store = story.people[name].directory.relative_to(story.profiles.parent) / STORE_FILE
        show.say(f"  {show.who(name)}: account {story.account_ids[name].hex()}, encrypted store {store}")
    show.note("  Account ids are random; no phone number, no e-mail. The relay knows these three exist.")
    show.note(
        f"  Each store's key comes from the passphrase through Argon2id ({KDF.memory_kib // 1024} MiB,"
        f" {KDF.iterations} passes here; `sotto init` uses"
        f" {Argon2Params.INTERACTIVE.memory_kib // 1024} MiB, {Argon2Params.INTERACTIVE.iterations} passes)."
    )

    show.section(3, "They connect by invite links")
    await story.befriend("Alice", "Bob")
    await story.befriend("Alice", "Carol")
    await story.befriend("Bob", "Carol")
    show.note("  Each side gave the other a fresh mailbox inside the encrypted channel.")

    show.section(4, "1:1 messages, typing, receipts")
    alice, bob = story.people["Alice"], story.people["Bob"]
    lunch = await story.send("Alice", "Bob", "Lunch at 12:30?")
    await story.until("Bob reads Alice", story.delivered("Lunch at 12:30?", "Bob"))
    await bob.online.send_typing("Alice")
    await story.until("Alice sees Bob typing", lambda: alice.saw(ev.TypingChanged))
    await story.send("Bob", "Alice", "Yes! The usual place? I found a new dumpling bar.")
    await story.until("Alice gets a delivery receipt", lambda: alice.saw(ev.DeliveryReceiptReceived, lunch))
    await story.until(
        "Alice reads Bob", story.delivered("Yes! The usual place? I found a new dumpling bar.", "Alice")
    )
    await bob.online.mark_read("Alice")
    await story.until("Alice gets a read receipt", lambda: alice.saw(ev.ReadReceiptReceived, lunch))
    show.note("  Receipts and typing are end-to-end messages too: to the relay they look like any other.")

    show.section(5, "A group (sender keys, one sealed envelope per member)")
    await alice.online.create_group("Lunch club", ["Bob", "Carol"])
    await story.until(
        "Bob and Carol join",
        lambda: bool(bob.online.groups()) and bool(story.people["Carol"].online.groups()),
    )
    for sender, text in (
        ("Alice", "Team lunch on Friday, I booked a table for three."),
        ("Bob", "I will bring the birthday cake for Carol."),
        ("Carol", "Wait, how do you know it is my birthday?"),
    ):
        await story.send_group(sender, "Lunch club", text)
        others = [n for n in story.people if n != sender]
        await story.until(f"{', '.join(others)} read {sender}", story.delivered(text, *others))

    await story.settle()

    show.section(6, "Safety numbers")
    ours, theirs = alice.online.safety_number("Bob"), bob.online.safety_number("Alice")
    show.say(f"  {show.who('Alice')} sees {ours.displayable}")
    show.say(f"  {show.who('Bob')}   sees {theirs.displayable}")
    verified = await alice.online.verify("Bob", theirs.qr_text)
    show.say(f"  Alice scans Bob's code: {'[green]match, Bob verified' if verified else '[red]MISMATCH'}[/]")

    show.section(7, "What the relay holds, as each person can ask it (GET /v1/export)")
    exports = {}
    for name, person in story.people.items():
        exports[name] = await person.online.export()
        show.export(name, exports[name])
    show.note("  Bytes are base64url (cut here); envelope payloads are exported as their size.")

    show.section(8, "Carol goes offline; Alice writes to her anyway")
    await story.go_offline("Carol")
    await story.send("Alice", "Carol", "Happy birthday, Carol! Cake is on Bob.")
    await alice.online.flush()
    show.note("  The envelope waits in Carol's mailbox on the relay until her client acknowledges it.")
    return exports


async def epilogue(story: Story) -> None:
    """Carol comes back: the message that waited for her arrives (nothing lost)."""
    await story.go_online("Carol")
    await story.until(
        "Carol reads what arrived while she was away",
        story.delivered("Happy birthday, Carol! Cake is on Bob.", "Carol"),
    )
