"""Attachments to and from files: the I/O edge around :mod:`sotto.protocol.attachment`.

Memory stays bounded by the chunk size whatever the file's size: one reusable read buffer and
the piece of ciphertext or plaintext the cipher hands back.

:func:`decrypt_file` reads the blob twice. The first pass checks it whole and releases nothing;
the second writes the plaintext to a new temporary file (mode 0600) beside the destination,
which is linked into place only when the second pass has found the same bytes as the first. If
the blob changed between the passes, the temporary file is removed and
:class:`~sotto.protocol.attachment.AttachmentIntegrityError` raised; what the second pass had
written there was unlinked, not overwritten (the file system may keep those blocks until reused).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

from sotto.crypto.random import Rng, system_rng
from sotto.protocol.attachment import (
    CHUNK_SIZE,
    IV_LENGTH,
    MAX_ATTACHMENT_SIZE,
    AttachmentDecryptor,
    AttachmentEncryptor,
    AttachmentSizeError,
)


@dataclass(frozen=True, slots=True, repr=False)
class EncryptedFile:
    """What encrypting a file yields for its pointer: the key, the digest and the real size; and
    the IV, with which the key turns the same file into the same blob again (a resumed upload)."""

    key: bytes
    digest: bytes
    size: int
    iv: bytes = b""

    def __repr__(self) -> str:
        return f"EncryptedFile(size={self.size}, key=<hidden>)"


def _chunks(file: BufferedReader, buffer: bytearray) -> Iterator[memoryview]:
    view = memoryview(buffer)
    while n := file.readinto(buffer):
        yield view[:n]


def encrypt_file(
    source: Path, blob: Path, rng: Rng = system_rng, *, again: EncryptedFile | None = None
) -> EncryptedFile:
    """Encrypt ``source`` into a new file ``blob`` (which must not exist) under a fresh key and
    IV, or under ``again``'s: the same file then gives the same blob, which the caller checks by
    its digest before sending any of it (a changed file gives another digest, and is not sent).

    The size is read when the file is opened; a file that grows or shrinks meanwhile is
    :class:`~sotto.protocol.attachment.AttachmentSizeError` and leaves no blob.
    """
    buffer = bytearray(CHUNK_SIZE)
    with open(source, "rb") as plain:
        size = os.fstat(plain.fileno()).st_size
        if size > MAX_ATTACHMENT_SIZE:
            raise AttachmentSizeError(f"an attachment holds at most {MAX_ATTACHMENT_SIZE} bytes")
        if again is None:
            key, encryptor = AttachmentEncryptor.start(size, rng)
        else:
            key, encryptor = again.key, AttachmentEncryptor(again.key, again.iv, size)
        fd = os.open(blob, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(plain, buffer):
                    out.write(encryptor.update(chunk))
                for piece in encryptor.finalize():
                    out.write(piece)
        except BaseException:
            blob.unlink(missing_ok=True)
            raise
    with open(blob, "rb") as written:
        iv = written.read(IV_LENGTH)  # the blob begins with its IV
    return EncryptedFile(key, encryptor.digest, size, iv)


def decrypt_file(blob: Path, key: bytes, digest: bytes, size: int, destination: Path) -> None:
    """Check ``blob`` whole, then write its plaintext to ``destination`` (which must not exist).

    Raises :class:`~sotto.protocol.attachment.AttachmentIntegrityError` or
    :class:`~sotto.protocol.attachment.AttachmentSizeError` and writes nothing for a blob that
    fails, :class:`FileExistsError` if the destination exists.
    """
    decryptor = AttachmentDecryptor(key, digest, size)
    buffer = bytearray(CHUNK_SIZE)
    with open(blob, "rb") as source:
        for chunk in _chunks(source, buffer):
            decryptor.verify_update(chunk)
        decryptor.verify_finalize()
        if destination.exists():
            raise FileExistsError(destination)
        source.seek(0)
        temporary = destination.with_name(f".{destination.name}.{os.urandom(6).hex()}.part")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source, buffer):
                    out.write(decryptor.decrypt_update(chunk))
                out.write(decryptor.decrypt_finalize())
                os.fsync(out.fileno())
            os.link(temporary, destination)  # refuses to replace a file that appeared meanwhile
        finally:
            temporary.unlink(missing_ok=True)
