"""Envelope sizes on the wire: a contact request, a text, a receipt and a cover, seen by size."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from sotto.client.events import ContactAdded, MessageReceived
from sotto.client.flows import sending
from sotto.client.sdk import Client
from sotto.client.sizes import CONTACT_REQUEST_SIZE, EnvelopeSizes, NotPaddedError, widen
from sotto.crypto.random import seeded_rng
from sotto.store.memory import MemoryStore
from sotto.store.model import ReceiptKind
from sotto.wire.padding import pad, unpad
from tests.client.fake_relay import FakeNetwork, FakeRelay
from tests.client.peers import Person, people
from tests.client.test_runtime import run, until
from tests.client.test_sdk import URL, connect, settle

LONGEST_NAME = "N" * 256


def sent_sized(person: Person, sizes: EnvelopeSizes, kind: str, out: list[tuple[str, int, int]]) -> None:
    """Move the person's outbox into the relay as the engine sends it (sized), noting each
    envelope's kind, its padded size and its size on the wire."""
    before = {m: len(q) for m, q in person.relay.mailboxes.items()}
    person.flush()
    for mailbox_id, queue in person.relay.mailboxes.items():
        for i in range(before.get(mailbox_id, 0), len(queue)):
            envelope_id, payload = queue[i]
            wire = sizes.for_wire(envelope_id, payload)
            queue[i] = (envelope_id, wire)
            out.append((kind, len(payload), len(wire)))


def exchange(sizes_of: dict[str, EnvelopeSizes], texts: int = 1) -> tuple[list[tuple[str, int, int]], Person]:
    """Alice invites Bob (whose name is as long as a name can be); texts, receipts and covers go
    both ways. Every envelope is delivered as sized, so the receivers open what the relay saw."""
    _, (alice, bob) = people("Alice", LONGEST_NAME)
    out: list[tuple[str, int, int]] = []
    link = alice.invite()
    bob.accept(link, "Alice")
    sent_sized(bob, sizes_of[bob.name], "contact request", out)
    alice.drain()
    sent_sized(alice, sizes_of[alice.name], "contact answer", out)
    bob.drain()
    bob_at_alice, alice_at_bob = alice.contact(LONGEST_NAME), bob.contact("Alice")
    for i in range(texts):
        text = f"hello {i}"
        alice.act(lambda ctx: sending.send_text(ctx, bob_at_alice, text))  # noqa: B023 (called at once)
        sent_sized(alice, sizes_of[alice.name], "text", out)
        bob.drain()
        bob.act(lambda ctx: sending.flush_receipts(ctx, ReceiptKind.DELIVERED))
        sent_sized(bob, sizes_of[bob.name], "receipt", out)
        alice.drain()
        bob.act(lambda ctx: sending.send_cover(ctx, alice_at_bob))
        sent_sized(bob, sizes_of[bob.name], "cover", out)
        alice.drain()
    assert not alice.rejections and not bob.rejections
    assert any(isinstance(e, ContactAdded) for e in alice.events)
    assert [e.text for e in bob.events if isinstance(e, MessageReceived)] == [
        f"hello {i}" for i in range(texts)
    ]
    return out, alice


def test_widening_is_padding_the_receiver_strips() -> None:
    data = b"sealed envelope \x80\x00 ending in zeros\x00\x00"
    padded = pad(data)
    assert len(padded) == 256
    wide = widen(padded, CONTACT_REQUEST_SIZE)
    assert len(wide) == CONTACT_REQUEST_SIZE and unpad(wide) == data
    assert widen(wide, 1024) is wide  # never narrowed
    with pytest.raises(NotPaddedError):
        widen(data, CONTACT_REQUEST_SIZE)
    with pytest.raises(NotPaddedError):
        widen(b"\x01" * 256, CONTACT_REQUEST_SIZE)
    with pytest.raises(ValueError, match="bucket"):
        widen(padded, 3000)


def test_cadence_contact_request_text_receipt_and_cover_go_out_at_one_size() -> None:
    rng = seeded_rng(7)
    cadence = {n: EnvelopeSizes(cadence=True, rng=rng) for n in ("Alice", LONGEST_NAME)}
    out, _ = exchange(cadence, texts=2)
    padded = {kind: size for kind, size, _ in out}
    # Padding alone tells them apart: the contact request is the only 4,096-byte envelope.
    assert padded["contact request"] == CONTACT_REQUEST_SIZE
    assert {padded[k] for k in ("contact answer", "text", "receipt", "cover")} == {1024}
    # On the wire, every envelope of every kind is the same size.
    assert {kind for kind, _, _ in out} == {"contact request", "contact answer", "text", "receipt", "cover"}
    assert {wire for _, _, wire in out} == {CONTACT_REQUEST_SIZE}


def test_default_contact_requests_share_their_size_with_every_kind() -> None:
    rng = seeded_rng(8)
    default = {n: EnvelopeSizes(cadence=False, rng=rng) for n in ("Alice", LONGEST_NAME)}
    out, _ = exchange(default, texts=60)
    at: dict[int, Counter[str]] = {}
    for kind, _, wire in out:
        at.setdefault(wire, Counter())[kind] += 1
    assert set(at) == {1024, CONTACT_REQUEST_SIZE}
    big = at[CONTACT_REQUEST_SIZE]
    assert big["contact request"] == 1
    # Each other kind goes out at both sizes, about half at each: a contact request's size is
    # shared with texts, receipts and covers, and they outnumber it there.
    for kind in ("text", "receipt", "cover"):
        assert 15 <= big[kind] <= 45 and at[1024][kind] == 60 - big[kind], (kind, big[kind])
    assert big.most_common(1)[0][0] != "contact request"


def test_default_size_is_kept_for_a_retry_and_drawn_with_the_chosen_probability() -> None:
    payload = pad(b"x" * 700)
    sizes = EnvelopeSizes(cadence=False, rng=seeded_rng(9))
    ids = [i.to_bytes(16) for i in range(2000)]
    first = [len(sizes.for_wire(i, payload)) for i in ids]
    assert [len(sizes.for_wire(i, payload)) for i in ids] == first
    assert 900 <= first.count(CONTACT_REQUEST_SIZE) <= 1100
    # Another client (another key) draws differently for the same ids: the relay cannot compute it.
    other = [len(EnvelopeSizes(cadence=False, rng=seeded_rng(10)).for_wire(i, payload)) for i in ids[:200]]
    assert other != first[:200]
    never = EnvelopeSizes(cadence=False, rng=seeded_rng(9), widen_probability=0.0)
    always = EnvelopeSizes(cadence=False, rng=seeded_rng(9), widen_probability=1.0)
    assert {len(never.for_wire(i, payload)) for i in ids[:100]} == {1024}
    assert {len(always.for_wire(i, payload)) for i in ids[:100]} == {CONTACT_REQUEST_SIZE}
    large = pad(b"y" * 5000)
    assert len(sizes.for_wire(ids[0], large)) == len(large) == 8192
    with pytest.raises(ValueError, match="probability"):
        EnvelopeSizes(cadence=False, rng=seeded_rng(9), widen_probability=1.5)


def sizes_sent(relay: FakeRelay, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Note the length of every envelope the relay is handed, in order."""
    lengths: list[int] = []
    send = relay.send

    async def noted(mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        lengths.append(len(payload))
        return await send(mailbox_id, token, message_id, payload)

    monkeypatch.setattr(relay, "send", noted)
    return lengths


def test_a_cadence_client_sends_every_envelope_at_one_size(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[list[int], list[str]]:
        net = FakeNetwork()
        relay = net.relay(URL)
        relay.tick_seconds = 1
        lengths = sizes_sent(relay, monkeypatch)
        alice = await Client.register(
            MemoryStore(), URL, "Alice", network=net, cadence=True, rng=seeded_rng(11)
        )
        bob = await Client.register(MemoryStore(), URL, "Bob", network=net, cadence=True, rng=seeded_rng(12))
        heard: list[str] = []

        async def listen(client: Client) -> None:
            async for event in client.listen():
                if isinstance(event, MessageReceived):
                    heard.append(event.text)

        listeners = [asyncio.create_task(listen(c)) for c in (alice, bob)]
        try:
            invite = await alice.create_invite()
            await bob.accept_invite(invite.link, "Alice")
            await until(lambda: bob.is_ready("Alice") and bool(alice.contacts()))
            await alice.send_text(alice.contacts()[-1], "hello")
            await bob.send_text("Alice", "hi")
            await until(lambda: len(heard) == 2)
            await asyncio.sleep(2.5)  # receipts and covers go out in the next ticks
        finally:
            for listener in listeners:
                listener.cancel()
            await alice.close()
            await bob.close()
        return lengths, heard

    lengths, heard = run(main)
    assert sorted(heard) == ["hello", "hi"]
    # A contact request, its answer, texts, receipts and covers: all at the one size.
    assert len(lengths) >= 8 and set(lengths) == {CONTACT_REQUEST_SIZE}


def test_a_default_client_sends_smaller_envelopes_at_both_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[list[int], list[str]]:
        net = FakeNetwork()
        lengths = sizes_sent(net.relay(URL), monkeypatch)
        alice = await Client.register(
            MemoryStore(), URL, "Alice", network=net, receipt_delay=0.05, rng=seeded_rng(13)
        )
        bob = await Client.register(
            MemoryStore(), URL, "Bob", network=net, receipt_delay=0.05, rng=seeded_rng(14)
        )
        async with alice, bob:
            await connect(alice, bob)
            for n in range(12):
                await alice.send_text("Bob", f"text {n}")
            events = await settle(alice, bob)
        return lengths, [e.text for e in events[bob] if isinstance(e, MessageReceived)]

    lengths, heard = run(main)
    assert heard == [f"text {n}" for n in range(12)]
    assert lengths[0] == CONTACT_REQUEST_SIZE  # the contact request
    rest = Counter(lengths[1:])
    assert set(rest) == {1024, CONTACT_REQUEST_SIZE} and min(rest.values()) >= 3, rest
