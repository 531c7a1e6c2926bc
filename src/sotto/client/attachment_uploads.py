"""Uploads under way, kept in the encrypted store so that one cut short (the process ended, the
relay unreachable for too long) goes on where it stopped when the same file is sent again to the
same conversation.

An :class:`UploadState` names the conversation, the file (its path, size and modification
time), the key and IV it was encrypted under with the blob's digest, and the relay's id and
upload token for the blob. Sending the same file again re-encrypts it under that key and IV,
which gives the same blob; only if its digest is the one kept does the upload go on, from the
offset the relay names (so at most the chunk that was in flight is sent twice). A file that
changed gives another digest: its state is dropped and the file goes as a new upload.

States sit in one sealed setting. One goes in the transaction that stores its file's message,
with its conversation when a contact is removed, and by itself after
:data:`UPLOAD_STATE_MAX_AGE_MS` (the relay drops an unfinished upload after two days).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sotto.client.attachment_files import EncryptedFile
from sotto.errors import StoreCorruptedError
from sotto.store import codec
from sotto.store.codec import as_bytes, as_int, as_str
from sotto.store.interfaces import Transaction
from sotto.store.model import ContactId, Conversation, GroupId

SETTING: Final = "attachment-uploads"
UPLOAD_STATE_MAX_AGE_MS: Final = 2 * 24 * 3600 * 1000
"""As long as the relay keeps an unfinished upload (``INCOMPLETE_TTL_DAYS``)."""
_FIELDS: Final = 12


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file, as far as the file system says: its resolved path, size and mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True, repr=False)
class UploadState:
    """An upload begun: what makes the same blob again, and where it goes on the relay."""

    conversation: Conversation
    file: FileIdentity
    encrypted: EncryptedFile
    attachment_id: bytes
    token: bytes
    recipients: int
    started_ms: int

    def __repr__(self) -> str:
        return f"UploadState(size={self.file.size}, recipients={self.recipients}, key=<hidden>)"

    def _pack(self) -> bytes:
        return codec.pack(
            [
                self.conversation.contact_id,
                None if self.conversation.group_id is None else bytes(self.conversation.group_id),
                self.file.path,
                self.file.size,
                self.file.mtime_ns,
                self.encrypted.key,
                self.encrypted.iv,
                self.encrypted.digest,
                self.attachment_id,
                self.token,
                self.recipients,
                self.started_ms,
            ]
        )

    @classmethod
    def _unpack(cls, data: bytes) -> UploadState:
        v = codec.unpack(data, _FIELDS)
        conversation = (
            Conversation.direct(ContactId(as_int(v[0])))
            if v[0] is not None
            else Conversation.group(GroupId(as_bytes(v[1])))
        )
        size = as_int(v[3])
        return cls(
            conversation,
            FileIdentity(as_str(v[2]), size, as_int(v[4])),
            EncryptedFile(as_bytes(v[5]), as_bytes(v[7]), size, as_bytes(v[6])),
            as_bytes(v[8]),
            as_bytes(v[9]),
            as_int(v[10]),
            as_int(v[11]),
        )


def _read(tx: Transaction) -> list[UploadState]:
    data = tx.settings.get(SETTING)
    if data is None:
        return []
    try:
        (count,) = codec.unpack(data[:9], 1)
        packed = codec.unpack(data, as_int(count) + 1)[1:]
        return [UploadState._unpack(as_bytes(p)) for p in packed]
    except StoreCorruptedError:
        return []  # a state that does not read is an upload that starts again


def _write(tx: Transaction, states: list[UploadState]) -> None:
    if not states:
        tx.settings.delete(SETTING)
        return
    tx.settings.put(SETTING, codec.pack([len(states), *(s._pack() for s in states)]))


def _live(tx: Transaction, now_ms: int) -> list[UploadState]:
    return [s for s in _read(tx) if now_ms - s.started_ms < UPLOAD_STATE_MAX_AGE_MS]


def find(tx: Transaction, conversation: Conversation, file: FileIdentity, now_ms: int) -> UploadState | None:
    """The upload of this file to this conversation begun before, if one is kept."""
    return next((s for s in _live(tx, now_ms) if (s.conversation, s.file) == (conversation, file)), None)


def keep(tx: Transaction, state: UploadState, now_ms: int) -> None:
    """Keep ``state`` (in place of any other of the same file to the same conversation)."""
    others = [s for s in _live(tx, now_ms) if (s.conversation, s.file) != (state.conversation, state.file)]
    _write(tx, [*others, state])


def forget(tx: Transaction, attachment_id: bytes) -> None:
    """Drop the state of the upload of blob ``attachment_id`` (its message is stored, or it is
    to start again)."""
    states = _read(tx)
    kept = [s for s in states if s.attachment_id != attachment_id]
    if len(kept) != len(states):
        _write(tx, kept)


def forget_conversation(tx: Transaction, conversation: Conversation) -> None:
    """Drop every upload state of ``conversation`` (its contact is removed)."""
    states = _read(tx)
    kept = [s for s in states if s.conversation != conversation]
    if len(kept) != len(states):
        _write(tx, kept)


def pending(tx: Transaction, now_ms: int) -> list[UploadState]:
    """Uploads begun and not finished, oldest first."""
    return _live(tx, now_ms)
