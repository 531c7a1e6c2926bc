"""Message history, receipts, the outbox and seen envelope ids, as sealed rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sotto.errors import (
    MissingRecordError,
    StoreConflictError,
    StoreCorruptedError,
)
from sotto.store import codec, rules, search
from sotto.store.codec import Value, as_bytes, as_int, as_str
from sotto.store.model import (
    ContactId,
    Conversation,
    Direction,
    GroupId,
    MailboxId,
    Message,
    MessageId,
    MessageRowId,
    MessageState,
    OutboxItem,
    OutboxItemId,
    PendingEvent,
    PendingEventId,
    PendingEventKind,
    PendingReceipt,
    Quote,
    Reaction,
    Receipt,
    ReceiptKind,
)
from sotto.store.sqlite.db import Repo, id_key, message_row_key, mismatch, need_contact, word_token
from sotto.store.sqlite.people import GroupRepo

_MESSAGE_COLUMNS = (
    "m.id, m.contact_id, m.group_row, m.sender_id, m.direction, m.state, m.sealed, m.expires_ms, x.sealed "
    "FROM messages m LEFT JOIN message_extras x ON x.message_row = m.id"
)
"""What loads a message: its row and its extras (schema 5), for ``SELECT {_MESSAGE_COLUMNS} WHERE …``."""

_SEARCH_BATCH = 64
"""Candidates read (and decrypted, to be checked) at a time by a search."""
_RAREST_CAP = 4096
"""A search counts each query token's rows up to this many, to drive the lookup by the rarest."""

_EXTRAS = 7
"""Sealed in ``message_extras``: quote id, quote author, edited at, deleted, timer notice,
reaction count, the reactions (each reactor, emoji and time, packed)."""


def _pack_extras(message: Message) -> list[Value] | None:
    plain = message.quote is None and message.edited_ms is None and message.timer_s is None
    if plain and not message.deleted and not message.reactions:
        return None
    flat: list[Value] = []
    for r in message.reactions:
        flat += [r.reactor, r.emoji, r.sent_ms]
    return [
        None if message.quote is None else bytes(message.quote.message_id),
        None if message.quote is None else message.quote.author,
        message.edited_ms,
        message.deleted,
        message.timer_s,
        len(message.reactions),
        codec.pack(flat),
    ]


def _unpack_extras(v: list[Value]) -> dict[str, Any]:
    count = as_int(v[5])
    flat = codec.unpack(as_bytes(v[6]), 3 * count)
    reactions = tuple(
        Reaction(
            None if flat[i] is None else ContactId(as_int(flat[i])),
            as_str(flat[i + 1]),
            as_int(flat[i + 2]),
        )
        for i in range(0, 3 * count, 3)
    )
    return {
        "quote": None if v[0] is None else Quote(MessageId(as_bytes(v[0])), as_bytes(v[1])),
        "edited_ms": None if v[2] is None else as_int(v[2]),
        "deleted": bool(v[3]),
        "timer_s": None if v[4] is None else as_int(v[4]),
        "reactions": reactions,
    }


class MessageRepo(Repo):
    def _find_ix(self, sender: ContactId | None, message_id: bytes) -> bytes:
        return self.db.ix("message", id_key(0 if sender is None else sender), message_id)

    def _group_id(self, group_row: int) -> GroupId:
        found = self.db.row("SELECT id, sealed FROM groups WHERE id = ?", (group_row,))
        if found is None:
            raise StoreCorruptedError("a message names a missing group")
        return GroupRepo(self.db).load(found).group_id

    def _load(self, row: Any, group_ids: dict[int, GroupId] | None = None) -> Message:
        row_id, contact_id, group_row, sender_id, direction, state, sealed, expires_ms, extras = row
        row_key = message_row_key(row_id, contact_id, group_row, sender_id, direction)
        v = self.db.open_row("messages", row_key, sealed, 4)
        more: dict[str, Any] = {}
        if extras is not None:
            more = _unpack_extras(self.db.open_row("message_extras", row_key, extras, _EXTRAS))
        if contact_id is not None:
            conversation = Conversation.direct(ContactId(int(contact_id)))
        else:
            cache = {} if group_ids is None else group_ids
            if group_row not in cache:
                cache[group_row] = self._group_id(int(group_row))
            conversation = Conversation.group(cache[group_row])
        try:
            return Message(
                row_id=MessageRowId(int(row_id)),
                message_id=MessageId(as_bytes(v[0])),
                conversation=conversation,
                direction=Direction(direction),
                sender=None if sender_id is None else ContactId(int(sender_id)),
                text=as_str(v[1]),
                sent_ms=as_int(v[2]),
                stored_ms=as_int(v[3]),
                state=MessageState(int(state)),
                expires_ms=None if expires_ms is None else int(expires_ms),
                **more,
            )
        except ValueError:
            raise StoreCorruptedError("stored message state does not load") from None

    def _conversation_where(self, conversation: Conversation) -> tuple[str, int]:
        if conversation.contact_id is not None:
            return "contact_id", conversation.contact_id
        assert conversation.group_id is not None
        found = GroupRepo(self.db).locate(conversation.group_id)
        return "group_row", -1 if found is None else found[0]

    def add(
        self,
        *,
        message_id: MessageId,
        conversation: Conversation,
        direction: Direction,
        sender: ContactId | None,
        text: str,
        sent_ms: int,
        stored_ms: int,
        state: MessageState,
        quote: Quote | None = None,
        expires_ms: int | None = None,
        timer_s: int | None = None,
    ) -> Message:
        rules.check_message(direction, sender, state)
        column, key = self._conversation_where(conversation)
        if column == "contact_id":
            need_contact(self.db, ContactId(key))
        elif key < 0:
            raise MissingRecordError("no such group")
        if sender is not None:
            need_contact(self.db, sender)
        find_ix = self._find_ix(sender, message_id)
        if self.db.row("SELECT 1 FROM messages WHERE find_ix = ?", (find_ix,)):
            raise StoreConflictError("message id exists for this sender")
        row_id = self.db.next_id("message")
        contact_id = key if column == "contact_id" else None
        group_row = key if column == "group_row" else None
        row_key = message_row_key(row_id, contact_id, group_row, sender, direction.value)
        sealed = self.db.seal("messages", row_key, [bytes(message_id), text, sent_ms, stored_ms])
        self.db.run(
            "INSERT INTO messages "
            "(id, contact_id, group_row, sender_id, direction, state, find_ix, sealed, unreported, "
            "expires_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row_id,
                contact_id,
                group_row,
                sender,
                direction.value,
                int(state),
                find_ix,
                sealed,
                int(sender is not None),
                expires_ms,
            ),
        )
        if sender is not None:
            self.db.run(
                "INSERT INTO owed_receipts (message_row, kind) VALUES (?, ?)",
                (row_id, ReceiptKind.DELIVERED.value),
            )
        self._index_words(row_id, contact_id, group_row, text)
        message = Message(
            MessageRowId(row_id),
            MessageId(bytes(message_id)),
            conversation,
            direction,
            sender,
            text,
            sent_ms,
            stored_ms,
            state,
            quote=quote,
            expires_ms=expires_ms,
            timer_s=timer_s,
        )
        self._put_extras(message)
        return message

    def _row_key(self, row_id: MessageRowId) -> bytes:
        found = self.db.row(
            "SELECT contact_id, group_row, sender_id, direction FROM messages WHERE id = ?", (row_id,)
        )
        if found is None:
            raise MissingRecordError("no such message")
        return message_row_key(row_id, *found)

    def _put_extras(self, message: Message) -> None:
        values = _pack_extras(message)
        if values is None:
            self.db.run("DELETE FROM message_extras WHERE message_row = ?", (message.row_id,))
            return
        sealed = self.db.seal("message_extras", self._row_key(message.row_id), values)
        self.db.run(
            "INSERT INTO message_extras (message_row, sealed) VALUES (?, ?) "
            "ON CONFLICT (message_row) DO UPDATE SET sealed = excluded.sealed",
            (message.row_id, sealed),
        )

    def _known(self, row_id: MessageRowId) -> Message:
        found = self.get(row_id)
        if found is None:
            raise MissingRecordError("no such message")
        return found

    def _reseal_text(self, message: Message) -> None:
        sealed = self.db.seal(
            "messages",
            self._row_key(message.row_id),
            [bytes(message.message_id), message.text, message.sent_ms, message.stored_ms],
        )
        self.db.run("UPDATE messages SET sealed = ? WHERE id = ?", (sealed, message.row_id))
        found = self.db.row("SELECT contact_id, group_row FROM messages WHERE id = ?", (message.row_id,))
        self.db.run("DELETE FROM message_words WHERE message_row = ?", (message.row_id,))
        self._index_words(message.row_id, found[0], found[1], message.text)

    def _index_words(self, row_id: int, contact_id: int | None, group_row: int | None, text: str) -> None:
        """List the message under the blind tokens of its words (schema 6)."""
        cipher = self.db.cipher
        self.db.run_many(
            "INSERT INTO message_words (token, message_row) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(word_token(cipher, contact_id, group_row, t), row_id) for t in search.index_terms(text)],
        )

    def edit(self, row_id: MessageRowId, text: str, edited_ms: int) -> Message:
        changed = replace(self._known(row_id), text=text, edited_ms=edited_ms)
        self._reseal_text(changed)
        self._put_extras(changed)
        return changed

    def delete_for_everyone(self, row_id: MessageRowId, at_ms: int) -> Message:
        changed = replace(
            self._known(row_id), text="", quote=None, reactions=(), deleted=True, edited_ms=at_ms
        )
        self._reseal_text(changed)
        self._put_extras(changed)
        self.db.run("DELETE FROM message_attachments WHERE message_row = ?", (row_id,))
        if changed.direction is Direction.OUTGOING:
            self._forget_sent(changed.message_id)
        return changed

    def react(self, row_id: MessageRowId, reactor: ContactId | None, emoji: str, sent_ms: int) -> bool:
        known = self._known(row_id)
        reactions, changed = rules.with_reaction(known.reactions, Reaction(reactor, emoji, sent_ms))
        if changed:
            self._put_extras(replace(known, reactions=reactions))
        return changed

    def expire(self, now_ms: int) -> int:
        for row_id, contact_id, group_row, sender_id, direction, sealed in self.db.rows(
            "SELECT id, contact_id, group_row, sender_id, direction, sealed FROM messages "
            "WHERE expires_ms IS NOT NULL AND expires_ms <= ? AND direction = ?",
            (now_ms, Direction.OUTGOING.value),
        ):
            row_key = message_row_key(row_id, contact_id, group_row, sender_id, direction)
            self._forget_sent(as_bytes(self.db.open_row("messages", row_key, sealed, 4)[0]))
        # secure_delete zeroes the rows; receipts, owed receipts, extras and files go by cascade.
        return self.db.run("DELETE FROM messages WHERE expires_ms IS NOT NULL AND expires_ms <= ?", (now_ms,))

    def _forget_sent(self, message_id: bytes) -> None:
        """Our message's copies in the send log go with it (expiry, deletion for everyone)."""
        self.db.run("DELETE FROM send_log WHERE message_ix = ?", (self.db.ix("send_log", message_id),))

    def put_attachment(self, row_id: MessageRowId, data: bytes) -> None:
        sealed = self.db.seal_raw("message_attachments", self._row_key(row_id), bytes(data))
        self.db.run(
            "INSERT INTO message_attachments (message_row, sealed) VALUES (?, ?) "
            "ON CONFLICT (message_row) DO UPDATE SET sealed = excluded.sealed",
            (row_id, sealed),
        )

    def attachment(self, row_id: MessageRowId) -> bytes | None:
        found = self.db.row("SELECT sealed FROM message_attachments WHERE message_row = ?", (row_id,))
        return (
            None
            if found is None
            else self.db.open_raw("message_attachments", self._row_key(row_id), found[0])
        )

    def next_expiry(self) -> int | None:
        found = self.db.row("SELECT min(expires_ms) FROM messages WHERE expires_ms IS NOT NULL")
        return None if found is None or found[0] is None else int(found[0])

    def get(self, row_id: MessageRowId) -> Message | None:
        found = self.db.row(f"SELECT {_MESSAGE_COLUMNS} WHERE m.id = ?", (row_id,))
        return None if found is None else self._load(found)

    def find(self, sender: ContactId | None, message_id: MessageId) -> Message | None:
        found = self.db.row(
            f"SELECT {_MESSAGE_COLUMNS} WHERE m.find_ix = ?",
            (self._find_ix(sender, message_id),),
        )
        if found is None:
            return None
        message = self._load(found)
        if message.sender != sender or message.message_id != message_id:
            raise mismatch("message")
        return message

    def conversation(
        self,
        conversation: Conversation,
        *,
        limit: int = 50,
        before: MessageRowId | None = None,
        after: MessageRowId | None = None,
    ) -> list[Message]:
        if limit <= 0:
            return []
        column, key = self._conversation_where(conversation)
        cache: dict[int, GroupId] = {}
        if conversation.group_id is not None:
            cache[key] = conversation.group_id
        if after is not None:
            rows = self.db.rows(
                f"SELECT {_MESSAGE_COLUMNS} WHERE m.{column} = ? AND m.id > ? AND m.id < ? "
                "ORDER BY m.id LIMIT ?",
                (key, after, (1 << 62) if before is None else before, limit),
            )
            return [self._load(r, cache) for r in rows]
        rows = self.db.rows(
            f"SELECT {_MESSAGE_COLUMNS} WHERE m.{column} = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
            (key, (1 << 62) if before is None else before, limit),
        )
        return [self._load(r, cache) for r in reversed(rows)]

    def search(
        self,
        conversation: Conversation,
        query: str,
        *,
        limit: int = 20,
        before: MessageRowId | None = None,
        after: MessageRowId | None = None,
        newest_first: bool = True,
    ) -> list[Message]:
        terms = search.query_terms(query)
        if limit <= 0 or not terms:
            return []
        column, key = self._conversation_where(conversation)
        if key < 0:
            return []
        contact_id = key if column == "contact_id" else None
        group_row = key if column == "group_row" else None
        tokens = [word_token(self.db.cipher, contact_id, group_row, t) for t in terms]
        # Driven by the token listing the fewest messages; the others are probed per candidate.
        counts = [
            int(
                self.db.row(
                    "SELECT count(*) FROM (SELECT 1 FROM message_words WHERE token = ? LIMIT ?)",
                    (t, _RAREST_CAP),
                )[0]
            )
            for t in tokens
        ]
        if min(counts) == 0:
            return []
        order = sorted(range(len(tokens)), key=lambda i: counts[i])
        first, rest = tokens[order[0]], [tokens[i] for i in order[1:]]
        probes = "".join(
            " AND EXISTS (SELECT 1 FROM message_words v WHERE v.token = ? AND v.message_row = w.message_row)"
            for _ in rest
        )
        sql = (
            "SELECT w.message_row FROM message_words w WHERE w.token = ? "  # noqa: S608
            f"AND w.message_row > ? AND w.message_row < ?{probes} "
            f"ORDER BY w.message_row {'DESC' if newest_first else 'ASC'} LIMIT ?"
        )
        low = -1 if after is None else int(after)
        high = (1 << 62) if before is None else int(before)
        cache: dict[int, GroupId] = {}
        if conversation.group_id is not None:
            cache[key] = conversation.group_id
        found: list[Message] = []
        while len(found) < limit and low + 1 < high:
            rows = [int(r[0]) for r in self.db.rows(sql, (first, low, high, *rest, _SEARCH_BATCH))]
            if not rows:
                break
            marks = ",".join("?" * len(rows))
            loaded = {
                int(r[0]): r for r in self.db.rows(f"SELECT {_MESSAGE_COLUMNS} WHERE m.id IN ({marks})", rows)
            }
            for row_id in rows:
                message = self._load(loaded[row_id], cache)
                if message.conversation == conversation and search.matches(query, message.text):
                    found.append(message)
                    if len(found) == limit:
                        break
            if newest_first:
                high = rows[-1]
            else:
                low = rows[-1]
            if len(rows) < _SEARCH_BATCH:
                break
        return found

    def advance(self, row_id: MessageRowId, state: MessageState) -> MessageState:
        found = self.db.row("SELECT state FROM messages WHERE id = ?", (row_id,))
        if found is None:
            raise MissingRecordError("no such message")
        new_state = max(int(found[0]), int(state))
        if new_state != int(found[0]):
            self.db.run("UPDATE messages SET state = ? WHERE id = ?", (new_state, row_id))
        return MessageState(new_state)

    def add_receipt(self, row_id: MessageRowId, contact_id: ContactId, kind: ReceiptKind, at_ms: int) -> None:
        if self.db.row("SELECT 1 FROM messages WHERE id = ?", (row_id,)) is None:
            raise MissingRecordError("no such message")
        need_contact(self.db, contact_id)
        row_key = id_key(row_id) + id_key(contact_id) + kind.value.encode()
        self.db.run(
            "INSERT INTO receipts (message_row, contact_id, kind, sealed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (row_id, contact_id, kind.value, self.db.seal("receipts", row_key, [at_ms])),
        )
        self.advance(row_id, rules.state_for_receipt(kind))

    def receipts(self, row_id: MessageRowId) -> list[Receipt]:
        found: list[Receipt] = []
        for contact_id, kind_text, sealed in self.db.rows(
            "SELECT contact_id, kind, sealed FROM receipts WHERE message_row = ?", (row_id,)
        ):
            kind = ReceiptKind(kind_text)
            row_key = id_key(row_id) + id_key(int(contact_id)) + kind.value.encode()
            at_ms = as_int(self.db.open_row("receipts", row_key, sealed, 1)[0])
            found.append(Receipt(row_id, ContactId(int(contact_id)), kind, at_ms))
        return sorted(found, key=lambda r: (r.at_ms, r.contact_id, r.kind.value))

    def mark_read(self, row_ids: Iterable[MessageRowId]) -> list[MessageRowId]:
        changed: list[MessageRowId] = []
        for row_id in row_ids:
            found = self.db.row("SELECT sender_id, state FROM messages WHERE id = ?", (row_id,))
            if found is None or found[0] is None or int(found[1]) >= MessageState.READ:
                continue
            self.db.run("UPDATE messages SET state = ? WHERE id = ?", (int(MessageState.READ), row_id))
            self.db.run(
                "INSERT INTO owed_receipts (message_row, kind) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (row_id, ReceiptKind.READ.value),
            )
            changed.append(row_id)
        return changed

    def pending_receipts(self, limit: int = 1000) -> list[PendingReceipt]:
        rows = self.db.rows(
            "SELECT o.message_row, o.kind, m.contact_id, m.group_row, m.sender_id, m.direction, m.sealed "
            "FROM owed_receipts o JOIN messages m ON m.id = o.message_row "
            "ORDER BY o.message_row, o.kind LIMIT ?",
            (limit,),
        )
        owed: list[PendingReceipt] = []
        for row_id, kind, contact_id, group_row, sender_id, direction, sealed in rows:
            row_key = message_row_key(row_id, contact_id, group_row, sender_id, direction)
            message_id = as_bytes(self.db.open_row("messages", row_key, sealed, 4)[0])
            owed.append(
                PendingReceipt(
                    ContactId(int(sender_id)),
                    ReceiptKind(kind),
                    MessageId(message_id),
                    MessageRowId(int(row_id)),
                )
            )
        return owed

    def clear_pending_receipts(self, receipts: Sequence[PendingReceipt]) -> None:
        self.db.run_many(
            "DELETE FROM owed_receipts WHERE message_row = ? AND kind = ?",
            [(r.row_id, r.kind.value) for r in receipts],
        )

    def unreported(self, limit: int = 1000) -> list[Message]:
        rows = self.db.rows(
            f"SELECT {_MESSAGE_COLUMNS} WHERE m.unreported = 1 ORDER BY m.id LIMIT ?",
            (max(limit, 0),),
        )
        cache: dict[int, GroupId] = {}
        return [self._load(r, cache) for r in rows]

    def mark_reported(self, row_ids: Iterable[MessageRowId]) -> int:
        changed = 0
        for row_id in set(row_ids):
            changed += self.db.run(
                "UPDATE messages SET unreported = 0 WHERE id = ? AND unreported = 1", (row_id,)
            )
        return changed

    def delete(self, row_id: MessageRowId) -> bool:
        return self.db.run("DELETE FROM messages WHERE id = ?", (row_id,)) > 0


class UnreportedEventRepo(Repo):
    """Pending events: links in clear (local numbers), the kind and its flag sealed to them."""

    @staticmethod
    def _row_key(event_id: int, contact_id: int, group_row: int | None) -> bytes:
        return id_key(event_id) + id_key(contact_id) + id_key(group_row or 0)

    def add(
        self,
        kind: PendingEventKind,
        contact_id: ContactId,
        *,
        group_id: GroupId | None = None,
        flag: bool = False,
    ) -> PendingEvent:
        need_contact(self.db, contact_id)
        group_row: int | None = None
        if group_id is not None:
            found = GroupRepo(self.db).locate(group_id)
            if found is None:
                raise MissingRecordError("no such group")
            group_row = found[0]
        kind = PendingEventKind(kind)
        event_id = self.db.next_id("unreported_event")
        sealed = self.db.seal(
            "unreported_events", self._row_key(event_id, contact_id, group_row), [kind.value, int(flag)]
        )
        self.db.run(
            "INSERT INTO unreported_events (id, contact_id, group_row, sealed) VALUES (?, ?, ?, ?)",
            (event_id, contact_id, group_row, sealed),
        )
        return PendingEvent(PendingEventId(event_id), kind, contact_id, group_id, flag)

    def all(self) -> list[PendingEvent]:
        events: list[PendingEvent] = []
        groups = GroupRepo(self.db)
        for event_id, contact_id, group_row, sealed in self.db.rows(
            "SELECT id, contact_id, group_row, sealed FROM unreported_events ORDER BY id"
        ):
            v = self.db.open_row(
                "unreported_events", self._row_key(int(event_id), int(contact_id), group_row), sealed, 2
            )
            group_id = None
            if group_row is not None:
                found = self.db.row("SELECT id, sealed FROM groups WHERE id = ?", (group_row,))
                if found is None:
                    raise StoreCorruptedError("an event names a missing group")
                group_id = groups.load(found).group_id
            try:
                kind = PendingEventKind(as_str(v[0]))
            except ValueError:
                raise StoreCorruptedError("stored event kind does not load") from None
            events.append(
                PendingEvent(
                    PendingEventId(int(event_id)),
                    kind,
                    ContactId(int(contact_id)),
                    group_id,
                    bool(as_int(v[1])),
                )
            )
        return events

    def remove(self, event_ids: Iterable[PendingEventId]) -> int:
        return sum(self.db.run("DELETE FROM unreported_events WHERE id = ?", (e,)) for e in set(event_ids))


class OutboxRepo(Repo):
    _COLUMNS = "id, message_row, next_attempt_ms, attempts, sealed"

    def _load(self, row: Any) -> OutboxItem:
        item_id, message_row, next_attempt_ms, attempts, sealed = row
        v = self.db.open_row("outbox", id_key(int(item_id)), sealed, 6)
        return OutboxItem(
            item_id=OutboxItemId(int(item_id)),
            server_url=as_str(v[0]),
            mailbox_id=MailboxId(as_bytes(v[1])),
            delivery_token=as_bytes(v[2]),
            message_id=MessageId(as_bytes(v[3])),
            payload=as_bytes(v[4]),
            created_ms=as_int(v[5]),
            attempts=int(attempts),
            next_attempt_ms=int(next_attempt_ms),
            message_row=None if message_row is None else MessageRowId(int(message_row)),
        )

    def enqueue(
        self,
        *,
        server_url: str,
        mailbox_id: MailboxId,
        delivery_token: bytes,
        message_id: MessageId,
        payload: bytes,
        created_ms: int,
        message_row: MessageRowId | None = None,
    ) -> OutboxItem:
        dedupe_ix = self.db.ix("outbox", mailbox_id, message_id)
        if self.db.row("SELECT 1 FROM outbox WHERE dedupe_ix = ?", (dedupe_ix,)):
            raise StoreConflictError("this envelope is queued already")
        if (
            message_row is not None
            and self.db.row("SELECT 1 FROM messages WHERE id = ?", (message_row,)) is None
        ):
            raise MissingRecordError("no such message")
        item_id = self.db.next_id("outbox")
        sealed = self.db.seal(
            "outbox",
            id_key(item_id),
            [
                server_url,
                bytes(mailbox_id),
                bytes(delivery_token),
                bytes(message_id),
                bytes(payload),
                created_ms,
            ],
        )
        self.db.run(
            "INSERT INTO outbox (id, message_row, next_attempt_ms, attempts, dedupe_ix, sealed) "
            "VALUES (?, ?, ?, 0, ?, ?)",
            (item_id, message_row, created_ms, dedupe_ix, sealed),
        )
        return OutboxItem(
            OutboxItemId(item_id),
            server_url,
            MailboxId(bytes(mailbox_id)),
            bytes(delivery_token),
            MessageId(bytes(message_id)),
            bytes(payload),
            created_ms,
            attempts=0,
            next_attempt_ms=created_ms,
            message_row=message_row,
        )

    def get(self, item_id: OutboxItemId) -> OutboxItem | None:
        found = self.db.row(f"SELECT {self._COLUMNS} FROM outbox WHERE id = ?", (item_id,))  # noqa: S608
        return None if found is None else self._load(found)

    def due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        rows = self.db.rows(
            f"SELECT {self._COLUMNS} FROM outbox WHERE next_attempt_ms <= ? "  # noqa: S608
            "ORDER BY next_attempt_ms, id LIMIT ?",
            (now_ms, limit),
        )
        return [self._load(r) for r in rows]

    def all(self) -> list[OutboxItem]:
        return [self._load(r) for r in self.db.rows(f"SELECT {self._COLUMNS} FROM outbox ORDER BY id")]  # noqa: S608

    def count(self) -> int:
        return int(self.db.row("SELECT count(*) FROM outbox")[0])

    def reschedule(self, item_id: OutboxItemId, next_attempt_ms: int) -> OutboxItem:
        if not self.db.run(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?",
            (next_attempt_ms, item_id),
        ):
            raise MissingRecordError("no such outbox item")
        item = self.get(item_id)
        assert item is not None
        return item

    def remove(self, item_id: OutboxItemId) -> bool:
        return self.db.run("DELETE FROM outbox WHERE id = ?", (item_id,)) > 0

    def remaining_for(self, message_row: MessageRowId) -> int:
        return int(self.db.row("SELECT count(*) FROM outbox WHERE message_row = ?", (message_row,))[0])


class SeenRepo(Repo):
    def add(self, mailbox_id: MailboxId, envelope_id: MessageId, day: int) -> bool:
        ix = self.db.ix("seen", mailbox_id, envelope_id)
        return self.db.run("INSERT INTO seen (ix, day) VALUES (?, ?) ON CONFLICT DO NOTHING", (ix, day)) > 0

    def contains(self, mailbox_id: MailboxId, envelope_id: MessageId) -> bool:
        return (
            self.db.row("SELECT 1 FROM seen WHERE ix = ?", (self.db.ix("seen", mailbox_id, envelope_id),))
            is not None
        )

    def prune(self, before_day: int) -> int:
        return self.db.run("DELETE FROM seen WHERE day < ?", (before_day,))
