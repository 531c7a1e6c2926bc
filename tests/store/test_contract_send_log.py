"""Shared suite, part 5: the message send log (what we sent each contact lately, for resending)."""

from __future__ import annotations

import pytest

from sotto.crypto.random import Rng
from sotto.errors import MissingRecordError
from sotto.store.interfaces import Store
from sotto.store.model import ContactId, MessageId
from tests.store.factories import NOW_MS
from tests.store.test_contract_people import add_contact


def _id(rng: Rng) -> MessageId:
    return MessageId(rng(16))


def test_entries_come_back_per_contact_oldest_first(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        text_id = _id(rng)
        first = tx.send_log.add(
            contact_id=bob.contact_id,
            envelope_id=text_id,
            message_id=text_id,
            content=b"\x01\x01canary-text",
            sent_ms=NOW_MS,
        )
        control = tx.send_log.add(
            contact_id=bob.contact_id,
            envelope_id=_id(rng),
            message_id=None,
            content=b"\x01\x07",
            sent_ms=NOW_MS + 1,
        )
        other = tx.send_log.add(
            contact_id=carol.contact_id, envelope_id=_id(rng), message_id=None, content=b"c", sent_ms=NOW_MS
        )
        assert tx.send_log.for_contact(bob.contact_id) == [first, control]
    with store.transaction() as tx:
        assert tx.send_log.for_contact(bob.contact_id) == [first, control]
        assert tx.send_log.for_contact(carol.contact_id) == [other]
        assert tx.send_log.count() == 3
        assert first.message_id == text_id and control.message_id is None
        assert "canary" not in repr(first) and "content=<hidden>" in repr(first)


def test_a_delivery_receipt_removes_only_that_contacts_text(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        shared = _id(rng)
        for contact_id in (bob.contact_id, carol.contact_id):
            tx.send_log.add(
                contact_id=contact_id, envelope_id=shared, message_id=shared, content=b"t", sent_ms=NOW_MS
            )
        kept = tx.send_log.add(
            contact_id=bob.contact_id, envelope_id=_id(rng), message_id=None, content=b"c", sent_ms=NOW_MS
        )
    with store.transaction() as tx:
        assert tx.send_log.remove_delivered(bob.contact_id, [shared, _id(rng)]) == 1
        assert tx.send_log.remove_delivered(bob.contact_id, [shared]) == 0
        assert tx.send_log.for_contact(bob.contact_id) == [kept]
        assert [e.message_id for e in tx.send_log.for_contact(carol.contact_id)] == [shared]


def test_entries_expire_by_time_and_go_with_their_contact(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
        carol = add_contact(tx, rng, "Carol")
        for offset in (0, 10, 20):
            tx.send_log.add(
                contact_id=bob.contact_id,
                envelope_id=_id(rng),
                message_id=None,
                content=b"x",
                sent_ms=NOW_MS + offset,
            )
        tx.send_log.add(
            contact_id=carol.contact_id, envelope_id=_id(rng), message_id=None, content=b"y", sent_ms=0
        )
    with store.transaction() as tx:
        assert tx.send_log.expire(NOW_MS + 10) == 2
        assert [e.sent_ms for e in tx.send_log.for_contact(bob.contact_id)] == [NOW_MS + 10, NOW_MS + 20]
        assert tx.contacts.delete(bob.contact_id)
    with store.transaction() as tx:
        assert tx.send_log.count() == 0


def test_an_entry_needs_an_existing_contact_and_a_rollback_keeps_nothing(store: Store, rng: Rng) -> None:
    with store.transaction() as tx, pytest.raises(MissingRecordError):
        tx.send_log.add(
            contact_id=ContactId(999), envelope_id=_id(rng), message_id=None, content=b"", sent_ms=0
        )
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "Bob")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.send_log.add(
            contact_id=bob.contact_id, envelope_id=_id(rng), message_id=None, content=b"", sent_ms=0
        )
        raise RuntimeError("roll back")
    with store.transaction() as tx:
        assert tx.send_log.count() == 0
