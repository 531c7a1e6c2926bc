"""Attachments over a relay: a file's blob uploaded in resumable chunks, and fetched and opened.

The I/O edge between :mod:`sotto.client.attachment_files` (the file cipher) and the relay's
attachment calls (relay-protocol §9, :class:`AttachmentRelay`). Memory stays bounded by a chunk
whatever the file's size: the blob is written to a temporary file (mode 0600) and read back one
chunk at a time.

Uploading: the relay reserves the blob's exact length; each chunk is sent at the offset the relay
has reached. A chunk that fails (the relay unreachable, a 5xx, an offset that does not match)
is followed by ``HEAD``, which says where the upload got to, and the upload resumes there: at
most the chunk in flight is sent again. :data:`UPLOAD_ATTEMPTS` failures in a row give up. An
upload begun by a process that has ended goes on the same way, from its id and token
(:mod:`sotto.client.attachment_uploads` keeps them in the store).

Downloading: the blob goes to a temporary file beside the destination, resumed with
``Range: bytes=N-`` after a dropped connection, never past the length the pointer implies; then
:func:`~sotto.client.attachment_files.decrypt_file` checks it whole (MAC and digest) before any
plaintext is written, and links the plaintext into place only once complete. A blob that fails
leaves no file under the destination's name, nor any temporary file.

Errors: :class:`AttachmentFileError` (the file to send is missing or unreadable),
:class:`AttachmentTooLargeError` (over the 100 MiB an attachment holds),
:class:`~sotto.protocol.attachment.AttachmentIntegrityError` and
:class:`~sotto.protocol.attachment.AttachmentSizeError` (a tampered or truncated blob),
:class:`~sotto.errors.RelayError` and its typed 507s for the relay's refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from sotto.client.attachment_files import EncryptedFile, decrypt_file, encrypt_file
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.client.transport import DeviceCredentials
from sotto.crypto.random import Rng
from sotto.errors import ClientError, RelayError, RelayUnavailableError
from sotto.protocol.attachment import (
    CHUNK_SIZE,
    MAX_ATTACHMENT_SIZE,
    AttachmentSizeError,
    encrypted_size,
)

UPLOAD_CHUNK: Final = 3 * CHUNK_SIZE
"""Bytes per PATCH: 192 KiB, under the relay's 256 KiB body limit."""
UPLOAD_ATTEMPTS: Final = 6
"""Failed calls in a row after which an upload (or a download) gives up."""
RETRY_DELAY_S: Final = 0.25
"""The first wait after a failed call; doubled after each further one."""

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as an upload or a download advances."""


class AttachmentFileError(ClientError):
    """The file to send is missing, not a regular file, or cannot be read."""


class UploadGoneError(ClientError):
    """The relay holds no upload by the id an upload begun before was to go on under (it was
    finished and fetched, or dropped unfinished after two days)."""


class AttachmentTooLargeError(ClientError):
    """The file is larger than an attachment holds (100 MiB: ``MAX_ATTACHMENT_SIZE``)."""


@runtime_checkable
class AttachmentRelay(Protocol):
    """The relay calls attachments use (:class:`~sotto.client.transport.HttpRelay` has them)."""

    async def create_attachment(
        self, device: DeviceCredentials, length: int, recipients: int
    ) -> tuple[bytes, bytes]: ...

    async def attachment_offset(self, attachment_id: bytes, token: bytes) -> int: ...

    async def upload_attachment_chunk(
        self, attachment_id: bytes, token: bytes, offset: int, data: bytes
    ) -> int: ...

    async def download_attachment(
        self, attachment_id: bytes, start: int, write: Callable[[bytes], Awaitable[None]]
    ) -> None: ...


def attachment_relay(relay: object) -> AttachmentRelay:
    """``relay`` as one that carries attachments; ClientError if its transport cannot."""
    if not isinstance(relay, AttachmentRelay):
        raise ClientError("this connection to the relay cannot carry attachments")
    return relay


def check_source(source: Path) -> int:
    """The size of the file to send; AttachmentFileError or AttachmentTooLargeError otherwise."""
    try:
        info = source.stat()
    except FileNotFoundError:
        raise AttachmentFileError(f"no file {source}") from None
    except OSError as error:
        raise AttachmentFileError(f"cannot read {source}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AttachmentFileError(f"{source} is not a regular file")
    if info.st_size > MAX_ATTACHMENT_SIZE:
        raise AttachmentTooLargeError(
            f"{source} is {info.st_size:,} bytes; an attachment holds at most {MAX_ATTACHMENT_SIZE:,}"
        )
    if not os.access(source, os.R_OK):
        raise AttachmentFileError(f"cannot read {source}: permission denied")
    return info.st_size


async def encrypt(source: Path, blob: Path, rng: Rng, again: EncryptedFile | None = None) -> EncryptedFile:
    """Encrypt ``source`` into ``blob`` under a fresh key (or ``again``'s), off the event loop."""
    check_source(source)
    try:
        return await asyncio.to_thread(encrypt_file, source, blob, rng, again=again)
    except FileNotFoundError:
        raise AttachmentFileError(f"no file {source}") from None
    except AttachmentSizeError:
        raise AttachmentFileError(f"{source} changed while it was read") from None


def _retryable(error: Exception) -> bool:
    if isinstance(error, RelayUnavailableError):
        return True
    return isinstance(error, RelayError) and (
        (error.status >= 500 and error.status != 507) or error.code == "offset_mismatch"
    )


async def upload(
    relay: AttachmentRelay,
    device: DeviceCredentials,
    blob: Path,
    *,
    recipients: int = 1,
    progress: Progress | None = None,
    chunk_size: int = UPLOAD_CHUNK,
    reserved: tuple[bytes, bytes] | None = None,
    on_reserved: Callable[[bytes, bytes], Awaitable[None]] | None = None,
) -> bytes:
    """Upload ``blob`` (a file) to the relay; the id it is held under.

    ``reserved``: the id and upload token of an upload begun before (by a process since ended),
    which goes on from the offset the relay names (UploadGoneError if it holds none by that
    id). Otherwise a new blob is reserved and ``on_reserved(id, token)`` awaited before its first
    chunk, so the caller can keep them for such a resumption."""
    length = blob.stat().st_size
    if reserved is None:
        attachment_id, token = await relay.create_attachment(device, length, recipients)
        if on_reserved is not None:
            await on_reserved(attachment_id, token)
        offset = 0
    else:
        attachment_id, token = reserved
        try:
            offset = await relay.attachment_offset(attachment_id, token)
        except RelayError as error:
            if error.status == 404:
                raise UploadGoneError("the relay holds no upload by that id") from None
            raise
    failures = 0
    if progress is not None:
        progress(offset, length)
    with open(blob, "rb") as file:
        while offset < length:
            file.seek(offset)
            data = file.read(min(chunk_size, length - offset))
            try:
                offset = await relay.upload_attachment_chunk(attachment_id, token, offset, data)
                failures = 0
            except (RelayError, RelayUnavailableError) as error:
                failures += 1
                if not _retryable(error) or failures >= UPLOAD_ATTEMPTS:
                    raise
                await asyncio.sleep(RETRY_DELAY_S * 2 ** (failures - 1))
                with contextlib.suppress(RelayUnavailableError):
                    offset = await relay.attachment_offset(attachment_id, token)
                continue
            if progress is not None:
                progress(offset, length)
    return attachment_id


async def download(
    relay: AttachmentRelay,
    pointer: AttachmentPointer,
    destination: Path,
    *,
    progress: Progress | None = None,
) -> None:
    """Fetch the pointer's blob, check it and write its plaintext to ``destination`` (which must
    not exist; mode 0600). Nothing is left under that name, nor beside it, if anything fails."""
    if destination.exists():
        raise FileExistsError(destination)
    length = encrypted_size(pointer.size)
    blob = destination.with_name(f".{destination.name}.{os.urandom(6).hex()}.blob")
    fd = os.open(blob, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            received, failures = 0, 0

            async def write(chunk: bytes) -> None:
                nonlocal received
                if received + len(chunk) > length:
                    raise AttachmentSizeError("the blob is longer than its pointer says")
                out.write(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, length)

            while received < length:
                before = received
                try:
                    await relay.download_attachment(pointer.attachment_id, received, write)
                    if received == before or received < length:
                        raise AttachmentSizeError("the blob is shorter than its pointer says")
                except (RelayUnavailableError, RelayError) as error:
                    failures = 0 if received > before else failures + 1
                    if not _retryable(error) or failures >= UPLOAD_ATTEMPTS:
                        raise
                    await asyncio.sleep(RETRY_DELAY_S * 2 ** max(failures - 1, 0))
        await asyncio.to_thread(decrypt_file, blob, pointer.key, pointer.digest, pointer.size, destination)
    finally:
        blob.unlink(missing_ok=True)
