"""Shared suite: searching a conversation's messages (word beginnings, newest first, paged)."""

from __future__ import annotations

import uuid

from sotto.crypto.random import Rng
from sotto.store.interfaces import Store
from sotto.store.model import Conversation, GroupId, MessageRowId
from tests.store.factories import NOW_MS
from tests.store.history import add_message
from tests.store.test_contract_people import add_contact


def test_search_finds_word_beginnings_newest_first_within_one_conversation(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob, carol = add_contact(tx, rng, "bob"), add_contact(tx, rng, "carol")
        with_bob, with_carol = Conversation.direct(bob.contact_id), Conversation.direct(carol.contact_id)
        lunch = add_message(tx, rng, with_bob, "Lunch at noon?")
        add_message(tx, rng, with_bob, "the weather is fine")
        reply = add_message(tx, rng, with_bob, "Noon works, LUNCHEON even", sender=bob.contact_id)
        add_message(tx, rng, with_carol, "lunch tomorrow")
    with store.transaction() as tx:
        assert [m.row_id for m in tx.messages.search(with_bob, "lunch")] == [reply.row_id, lunch.row_id]
        assert tx.messages.search(with_bob, "noon lun") == [reply, lunch]  # any order
        assert tx.messages.search(with_bob, "unch") == []  # inside a word
        assert tx.messages.search(with_bob, "lunch weather") == []
        assert tx.messages.search(with_bob, "") == [] and tx.messages.search(with_bob, "?!") == []
        assert [m.text for m in tx.messages.search(with_carol, "LUNCH")] == ["lunch tomorrow"]
        assert tx.messages.search(Conversation.direct(carol.contact_id), "noon") == []


def test_search_pages_both_ways_between_bounds(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        where = Conversation.direct(bob.contact_id)
        rows = [add_message(tx, rng, where, f"line {n}").row_id for n in range(150)]
        add_message(tx, rng, where, "something else")
    with store.transaction() as tx:
        newest = tx.messages.search(where, "line", limit=100)
        assert [m.row_id for m in newest] == rows[::-1][:100]
        older = tx.messages.search(where, "line", limit=100, before=newest[-1].row_id)
        assert [m.row_id for m in older] == rows[::-1][100:]
        assert [m.row_id for m in tx.messages.search(where, "line", limit=3, newest_first=False)] == rows[:3]
        between = tx.messages.search(where, "li", after=rows[10], before=rows[14], newest_first=False)
        assert [m.row_id for m in between] == rows[11:14]
        sevens = [f"line {n}" for n in range(79, 69, -1)] + ["line 7"]
        assert [m.text for m in tx.messages.search(where, "line 7")] == sevens
        assert tx.messages.search(where, "line", limit=0) == []


def test_the_conversation_reads_forward_from_a_message(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        where = Conversation.direct(bob.contact_id)
        rows = [add_message(tx, rng, where, f"m{n}").row_id for n in range(10)]
    with store.transaction() as tx:
        assert [m.row_id for m in tx.messages.conversation(where, after=rows[2], limit=3)] == rows[3:6]
        assert [m.row_id for m in tx.messages.conversation(where, after=rows[7], limit=9)] == rows[8:]
        assert tx.messages.conversation(where, after=MessageRowId(rows[-1]), limit=5) == []


def test_search_follows_edits_deletions_and_expiry(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        where = Conversation.direct(bob.contact_id)
        typo = add_message(tx, rng, where, "see you at the cinema")
        gone = add_message(tx, rng, where, "cinema tickets attached")
        fading = add_message(tx, rng, where, "cinema code 1234", expires_ms=NOW_MS + 1000)
        dropped = add_message(tx, rng, where, "cinema row 5")
    with store.transaction() as tx:
        assert len(tx.messages.search(where, "cinema")) == 4
        tx.messages.edit(typo.row_id, "see you at the theatre", NOW_MS + 1)
        tx.messages.delete_for_everyone(gone.row_id, NOW_MS + 2)
        assert tx.messages.delete(dropped.row_id)
    with store.transaction() as tx:
        assert [m.row_id for m in tx.messages.search(where, "cinema")] == [fading.row_id]
        assert [m.text for m in tx.messages.search(where, "theat")] == ["see you at the theatre"]
        assert tx.messages.search(where, "tickets") == []
        assert tx.messages.expire(NOW_MS + 1000) == 1
    with store.transaction() as tx:
        assert tx.messages.search(where, "cinema") == [] and tx.messages.search(where, "1234") == []


def test_search_in_a_group_and_after_its_contact_is_deleted(store: Store, rng: Rng) -> None:
    with store.transaction() as tx:
        bob = add_contact(tx, rng, "bob")
        group_id = GroupId(rng(32))
        tx.groups.create(group_id=group_id, name="G", distribution_id=uuid.uuid4(), created_ms=NOW_MS)
        in_group = Conversation.group(group_id)
        said = add_message(tx, rng, in_group, "Picnic on Sunday", sender=bob.contact_id)
        add_message(tx, rng, Conversation.direct(bob.contact_id), "picnic?")
    with store.transaction() as tx:
        assert tx.messages.search(in_group, "picnic sun") == [said]
        assert tx.messages.search(Conversation.group(GroupId(rng(32))), "picnic") == []
        assert tx.contacts.delete(bob.contact_id)
    with store.transaction() as tx:
        assert tx.messages.search(in_group, "picnic") == []
        assert tx.messages.search(Conversation.direct(bob.contact_id), "picnic") == []
