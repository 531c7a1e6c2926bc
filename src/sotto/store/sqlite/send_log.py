"""The message send log as sealed rows (schema in :mod:`sotto.store.migrations.v004_send_log`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sotto.store.codec import as_bytes, as_int
from sotto.store.model import ContactId, MessageId, SendLogEntry, SendLogEntryId
from sotto.store.sqlite.db import Repo, id_key, need_contact

_COLUMNS = "id, contact_id, sealed"


def _row_key(entry_id: int, contact_id: int) -> bytes:
    """The seal names the row and its contact: relinking it to another contact breaks it."""
    return id_key(entry_id) + id_key(contact_id)


class SendLogRepo(Repo):
    def _load(self, row: Any) -> SendLogEntry:
        entry_id, contact_id, sealed = row
        v = self.db.open_row("send_log", _row_key(int(entry_id), int(contact_id)), sealed, 4)
        message_id = as_bytes(v[1])
        return SendLogEntry(
            entry_id=SendLogEntryId(int(entry_id)),
            contact_id=ContactId(int(contact_id)),
            envelope_id=MessageId(as_bytes(v[0])),
            message_id=MessageId(message_id) if message_id else None,
            content=as_bytes(v[2]),
            sent_ms=as_int(v[3]),
        )

    def add(
        self,
        *,
        contact_id: ContactId,
        envelope_id: MessageId,
        message_id: MessageId | None,
        content: bytes,
        sent_ms: int,
    ) -> SendLogEntry:
        need_contact(self.db, contact_id)
        entry_id = self.db.next_id("send_log")
        sealed = self.db.seal(
            "send_log",
            _row_key(entry_id, contact_id),
            [bytes(envelope_id), b"" if message_id is None else bytes(message_id), bytes(content), sent_ms],
        )
        message_ix = None if message_id is None else self.db.ix("send_log", bytes(message_id))
        self.db.run(
            "INSERT INTO send_log (id, contact_id, sent_ms, message_ix, sealed) VALUES (?, ?, ?, ?, ?)",
            (entry_id, contact_id, sent_ms, message_ix, sealed),
        )
        return SendLogEntry(
            SendLogEntryId(entry_id),
            contact_id,
            MessageId(bytes(envelope_id)),
            None if message_id is None else MessageId(bytes(message_id)),
            bytes(content),
            sent_ms,
        )

    def for_contact(self, contact_id: ContactId) -> list[SendLogEntry]:
        rows = self.db.rows(
            f"SELECT {_COLUMNS} FROM send_log WHERE contact_id = ? ORDER BY id",  # noqa: S608
            (contact_id,),
        )
        return [self._load(row) for row in rows]

    def remove_delivered(self, contact_id: ContactId, message_ids: Iterable[MessageId]) -> int:
        removed = 0
        for message_id in {bytes(m) for m in message_ids}:
            removed += self.db.run(
                "DELETE FROM send_log WHERE contact_id = ? AND message_ix = ?",
                (contact_id, self.db.ix("send_log", message_id)),
            )
        return removed

    def expire(self, before_ms: int) -> int:
        return self.db.run("DELETE FROM send_log WHERE sent_ms < ?", (before_ms,))

    def count(self) -> int:
        return int(self.db.row("SELECT count(*) FROM send_log")[0])
