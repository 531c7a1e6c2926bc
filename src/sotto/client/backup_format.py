"""The backup file format, sans I/O: a versioned header, then AEAD chunks bound to it.

::

    header  magic "SottoBak" (8) ‖ version (1) ‖ key kind (1) ‖ chunk size (4)
            ‖ Argon2id iterations, memory KiB, lanes (3 × 4; zero for a recovery key)
            ‖ salt (16) ‖ key commitment (32)                               = 74 bytes
    chunks  AES-256-GCM(file key, nonce_i, chunk_i, AAD = header ‖ i ‖ final_i)

``i`` is the chunk's index (8 bytes, big-endian) and ``final_i`` one byte, 1 on the last chunk
only; the nonce is the same 9 bytes padded to 12. Every chunk but the last holds exactly
``chunk size`` bytes of plaintext, the last one between none and that many, so a reader knows
a chunk is the last only when the file ends after it: a truncated file (its final flag missing),
chunks swapped, dropped or repeated, or a chunk moved to another file all fail to open.

Keys. The *master* key is a 32-byte random **recovery key** (shown once, as 13 groups of four
base32 digits) or the Argon2id key of a long **passphrase** (five or more words). From it and the
header's first 42 bytes (so the kind, the cost and the salt are bound), HKDF-SHA256 derives the
file key and a 32-byte commitment stored in the header. A wrong key is told apart from a damaged
file by the commitment (compared in constant time), and no other key opens the chunks: AES-GCM
alone does not commit to its key. The salt is random per file, so a file key is used for one file
only and the chunk index is a safe nonce.

Errors: :class:`WrongBackupKeyError` (the key does not open this file), :class:`BackupCorruptedError`
(not a backup, another version, or a chunk that does not authenticate: tampering, truncation),
:class:`WeakBackupPassphraseError` (fewer than five words); all are :class:`BackupError`, a
:class:`~sotto.errors.ClientError`. Messages name counts and indexes, never key bytes.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Final

from sotto.crypto.aead import aes256_gcm_decrypt, aes256_gcm_encrypt
from sotto.crypto.kdf import bytes_equal, hkdf_sha256
from sotto.crypto.passphrase import SALT_LENGTH, Argon2Params, derive_key, normalize
from sotto.crypto.random import Rng
from sotto.errors import ClientError, DecryptionError

MAGIC: Final = b"SottoBak"
VERSION: Final = 1
KEY_LENGTH: Final = 32
TAG_LENGTH: Final = 16
COMMITMENT_LENGTH: Final = 32
DEFAULT_CHUNK_SIZE: Final = 1 << 20
MIN_CHUNK_SIZE: Final = 16
MAX_CHUNK_SIZE: Final = 16 << 20
"""A header may not make a reader buffer more than this (plus its tag) at once."""
MIN_PASSPHRASE_WORDS: Final = 5
"""Five diceware words are about 64 bits: with Argon2id, out of reach of an offline guesser."""
MAX_PROLOGUE_META: Final = 64 * 1024

_PREFIX: Final = struct.Struct(">8sBBIIII16s")
HEADER_LENGTH: Final = _PREFIX.size + COMMITMENT_LENGTH
_KEYS_INFO: Final = b"Sotto backup v1 file key and commitment"
_WORDS: Final = re.compile(r"[\s\-_.,;:/]+")
_RECOVERY_GROUP: Final = 4


class BackupError(ClientError):
    """A backup that cannot be made or opened as asked."""


class WrongBackupKeyError(BackupError):
    """The recovery key or passphrase given is not the one this backup was made with."""


class BackupCorruptedError(BackupError):
    """Not a Sotto backup, a version we cannot read, or a file altered or cut short."""


class WeakBackupPassphraseError(BackupError):
    """A backup passphrase of fewer than :data:`MIN_PASSPHRASE_WORDS` words."""


class KeyKind(IntEnum):
    RECOVERY_KEY = 1
    PASSPHRASE = 2


class RecoveryKey:
    """32 random bytes, written as 13 groups of 4 base32 digits; its repr hides it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LENGTH:
            raise ValueError(f"a recovery key is {KEY_LENGTH} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls, rng: Rng) -> RecoveryKey:
        return cls(rng(KEY_LENGTH))

    @classmethod
    def from_text(cls, text: str) -> RecoveryKey:
        """Parse what :meth:`to_text` wrote, ignoring case, spaces and dashes; also reads
        0 as O, 1 as I and 8 as B (digits base32 does not use).

        WrongBackupKeyError for anything that is not 52 base32 digits.
        """
        digits = re.sub(r"[\s\-]", "", text).upper().translate(str.maketrans("018", "OIB"))
        if len(digits) != 52 or not re.fullmatch(r"[A-Z2-7]+", digits):
            raise WrongBackupKeyError("a recovery key is 52 letters and digits (13 groups of 4)")
        try:
            raw = base64.b32decode(digits + "====")
        except ValueError:
            raise WrongBackupKeyError("that is not a recovery key") from None
        return cls(raw[:KEY_LENGTH])

    def to_text(self) -> str:
        digits = base64.b32encode(self._key).decode().rstrip("=")
        return "-".join(digits[i : i + _RECOVERY_GROUP] for i in range(0, len(digits), _RECOVERY_GROUP))

    def master(self, salt: bytes, params: Argon2Params | None) -> bytes:
        del salt, params
        return self._key

    kind: ClassVar[KeyKind] = KeyKind.RECOVERY_KEY

    def __repr__(self) -> str:
        return "RecoveryKey(<hidden>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a recovery key is not picklable")


class BackupPassphrase:
    """A passphrase of five or more words (spaces, dashes or dots between them); repr hides it."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        words = [w for w in _WORDS.split(text.strip()) if w]
        if len(words) < MIN_PASSPHRASE_WORDS:
            raise WeakBackupPassphraseError(
                f"a backup passphrase needs at least {MIN_PASSPHRASE_WORDS} words (it has {len(words)}); "
                "or leave it out and keep the recovery key"
            )
        self._text = text

    def master(self, salt: bytes, params: Argon2Params | None) -> bytes:
        if params is None:
            raise WrongBackupKeyError("this backup is protected by a passphrase")
        return derive_key(self._text, salt, params)

    kind: ClassVar[KeyKind] = KeyKind.PASSPHRASE

    def __repr__(self) -> str:
        return f"BackupPassphrase(<hidden>, {len(normalize(self._text))} bytes)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a passphrase is not picklable")


BackupKey = RecoveryKey | BackupPassphrase


@dataclass(frozen=True, slots=True)
class BackupHeader:
    """The parsed header; ``raw`` is the exact bytes, the associated data of every chunk."""

    kind: KeyKind
    chunk_size: int
    params: Argon2Params | None
    salt: bytes
    commitment: bytes
    raw: bytes

    def __repr__(self) -> str:
        return f"BackupHeader(kind={self.kind.name}, chunk_size={self.chunk_size}, params={self.params})"


def _derive(master: bytes, prefix: bytes) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(master, KEY_LENGTH + COMMITMENT_LENGTH, _KEYS_INFO + prefix)
    return okm[:KEY_LENGTH], okm[KEY_LENGTH:]


def decode_header(data: bytes) -> BackupHeader:
    """The header at the start of ``data`` (at least :data:`HEADER_LENGTH` bytes of it).

    Raises BackupCorruptedError and nothing else.
    """
    if len(data) < HEADER_LENGTH:
        raise BackupCorruptedError("not a Sotto backup (too short)")
    raw = bytes(data[:HEADER_LENGTH])
    magic, version, kind, chunk_size, iterations, memory_kib, lanes, salt = _PREFIX.unpack_from(raw)
    if magic != MAGIC:
        raise BackupCorruptedError("not a Sotto backup")
    if version != VERSION:
        raise BackupCorruptedError(f"a backup of format version {version}; this Sotto reads {VERSION}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise BackupCorruptedError("the backup's chunk size is out of range")
    if kind not in KeyKind.__members__.values():
        raise BackupCorruptedError("the backup's key kind is unknown")
    params: Argon2Params | None = None
    match KeyKind(kind):
        case KeyKind.RECOVERY_KEY:
            if iterations or memory_kib or lanes:
                raise BackupCorruptedError("the backup's header is inconsistent")
        case KeyKind.PASSPHRASE:
            params = Argon2Params(iterations, memory_kib, lanes)
            try:
                params.check()
            except ValueError:
                raise BackupCorruptedError("the backup's passphrase cost is out of range") from None
    return BackupHeader(KeyKind(kind), chunk_size, params, salt, raw[_PREFIX.size :], raw)


def _nonce_and_aad(header: bytes, index: int, final: bool) -> tuple[bytes, bytes]:
    position = struct.pack(">QB", index, final)
    return position + b"\x00\x00\x00", header + position


class BackupSealer:
    """Encrypts a backup's plaintext as it comes: :attr:`header` first, then what
    :meth:`seal` and :meth:`finish` return, in order."""

    __slots__ = ("_buffer", "_chunk_size", "_file_key", "_finished", "_index", "header")

    def __init__(
        self,
        key: BackupKey,
        rng: Rng,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        kdf: Argon2Params = Argon2Params.INTERACTIVE,
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError("chunk size out of range")
        salt = rng(SALT_LENGTH)
        params = kdf if key.kind is KeyKind.PASSPHRASE else None
        cost = (params.iterations, params.memory_kib, params.lanes) if params else (0, 0, 0)
        prefix = _PREFIX.pack(MAGIC, VERSION, key.kind, chunk_size, *cost, salt)
        self._file_key, commitment = _derive(key.master(salt, params), prefix)
        self.header: bytes = prefix + commitment
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._finished = False

    def _chunk(self, plaintext: bytes, final: bool) -> bytes:
        nonce, aad = _nonce_and_aad(self.header, self._index, final)
        self._index += 1
        return aes256_gcm_encrypt(self._file_key, nonce, plaintext, aad)

    def seal(self, data: bytes) -> bytes:
        """The whole chunks ``data`` completes (maybe none); the rest waits for more."""
        if self._finished:
            raise ValueError("the backup is finished")
        self._buffer += data
        size = self._chunk_size
        # A chunk goes out only once more follows, so the last one can carry the final flag.
        whole = (len(self._buffer) - 1) // size if self._buffer else 0
        out = [self._chunk(bytes(self._buffer[i * size : (i + 1) * size]), False) for i in range(whole)]
        del self._buffer[: whole * size]
        return b"".join(out)

    def finish(self) -> bytes:
        """The last chunk (never empty: at least its tag)."""
        if self._finished:
            raise ValueError("the backup is finished")
        self._finished = True
        last = self._chunk(bytes(self._buffer), True)
        self._buffer.clear()
        return last

    def __repr__(self) -> str:
        return f"BackupSealer(chunks={self._index}, <key hidden>)"


class BackupOpener:
    """Decrypts a backup's chunks as they come; plaintext is released a chunk at a time, each only
    after its tag is checked. A caller must treat what it got as unconfirmed until
    :meth:`finish` returns (a file cut short shows only there)."""

    __slots__ = ("_buffer", "_file_key", "_finished", "_header", "_index")

    def __init__(self, header: BackupHeader, key: BackupKey) -> None:
        """WrongBackupKeyError if ``key`` is not the key this backup was made with."""
        if key.kind is not header.kind:
            raise WrongBackupKeyError(
                "this backup is protected by a passphrase"
                if header.kind is KeyKind.PASSPHRASE
                else "this backup is protected by a recovery key, not a passphrase"
            )
        prefix = header.raw[: _PREFIX.size]
        file_key, commitment = _derive(key.master(header.salt, header.params), prefix)
        if not bytes_equal(commitment, header.commitment):
            raise WrongBackupKeyError(
                "wrong recovery key for this backup"
                if header.kind is KeyKind.RECOVERY_KEY
                else "wrong passphrase for this backup"
            )
        self._header = header
        self._file_key = file_key
        self._buffer = bytearray()
        self._index = 0
        self._finished = False

    def _open(self, ciphertext: bytes, final: bool) -> bytes:
        nonce, aad = _nonce_and_aad(self._header.raw, self._index, final)
        try:
            plaintext = aes256_gcm_decrypt(self._file_key, nonce, ciphertext, aad)
        except DecryptionError:
            raise BackupCorruptedError(
                f"the backup is damaged (chunk {self._index} does not authenticate)"
            ) from None
        self._index += 1
        return plaintext

    def open(self, data: bytes) -> bytes:
        """The plaintext of the chunks ``data`` completes, keeping back the one that may be last."""
        if self._finished:
            raise ValueError("the backup is finished")
        self._buffer += data
        size = self._header.chunk_size + TAG_LENGTH
        whole = (len(self._buffer) - 1) // size if self._buffer else 0
        out = [self._open(bytes(self._buffer[i * size : (i + 1) * size]), False) for i in range(whole)]
        del self._buffer[: whole * size]
        return b"".join(out)

    def finish(self) -> bytes:
        """The last chunk's plaintext; BackupCorruptedError if the file was cut short."""
        if self._finished:
            raise ValueError("the backup is finished")
        self._finished = True
        if len(self._buffer) < TAG_LENGTH:
            raise BackupCorruptedError(f"the backup is cut short (after chunk {self._index})")
        last = self._open(bytes(self._buffer), True)
        self._buffer.clear()
        return last

    def __repr__(self) -> str:
        return f"BackupOpener(chunks={self._index}, <key hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class Prologue:
    """What comes first in a backup's plaintext: a description, and the store's data key (the
    rows of the store snapshot that follows are sealed under it)."""

    meta: dict[str, Any]
    data_key: bytes

    def __repr__(self) -> str:
        return f"Prologue(meta={self.meta!r}, <data key hidden>)"


def encode_prologue(prologue: Prologue) -> bytes:
    meta = json.dumps(prologue.meta, sort_keys=True, separators=(",", ":")).encode()
    if len(prologue.data_key) != KEY_LENGTH:
        raise ValueError("a data key is 32 bytes")
    return struct.pack(">I", len(meta)) + meta + prologue.data_key


def decode_prologue(data: bytes | bytearray) -> tuple[Prologue, int] | None:
    """The prologue at the start of ``data`` and its length, or None while more is needed.

    Raises BackupCorruptedError for a prologue that cannot be one (authenticated, so only a
    backup written by something else gets there).
    """
    if len(data) < 4:
        return None
    (length,) = struct.unpack_from(">I", data)
    if length > MAX_PROLOGUE_META:
        raise BackupCorruptedError("the backup's description is too long")
    end = 4 + length + KEY_LENGTH
    if len(data) < end:
        return None
    try:
        meta = json.loads(bytes(data[4 : 4 + length]))
    except ValueError:
        raise BackupCorruptedError("the backup's description does not parse") from None
    if not isinstance(meta, dict):
        raise BackupCorruptedError("the backup's description does not parse")
    return Prologue(meta, bytes(data[4 + length : end])), end
