"""An attachment pointer: what a message carries, inside the end-to-end encryption, so the
recipient can fetch a blob from the relay and open it (the part of Signal's ``AttachmentPointer``
that Sotto uses, with its field numbers where Signal has the same field)::

    1  id            bytes, 16     the relay's random id for the blob
    2  content_type  string        a MIME type, at most 128 bytes (may be empty)
    3  key           bytes, 64     K_aes ‖ K_mac (``sotto.protocol.attachment``)
    4  size          varint        the plaintext's real size (the blob holds it padded)
    6  digest        bytes, 32     SHA-256 of the whole blob
    7  file_name     string        optional, at most 255 bytes, a bare name (no path)

Contract: :meth:`AttachmentPointer.decode` raises :class:`~sotto.errors.DecodeError` and nothing
else, on any input. A file name with a path separator, a control character, or that is ``.`` or
``..`` is refused, so a receiver that saves under it cannot be sent outside its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.protocol.attachment import DIGEST_LENGTH, KEY_LENGTH, MAX_ATTACHMENT_SIZE
from sotto.wire.limits import ID_LENGTH

MAX_CONTENT_TYPE_BYTES: Final = 128
"""Longer than any registered MIME type with parameters that a file needs."""

MAX_FILE_NAME_BYTES: Final = 255
"""What common file systems (ext4, APFS, NTFS) take as one name."""


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an attachment's file name, or None if it can."""
    if not name or name in (".", ".."):
        return "a file name is not empty, '.' or '..'"
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        return f"a file name is at most {MAX_FILE_NAME_BYTES} UTF-8 bytes"
    if any(c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "a file name has no path separator or control character"
    return None


def _content_type_problem(value: str) -> str | None:
    if len(value.encode("utf-8")) > MAX_CONTENT_TYPE_BYTES:
        return f"a content type is at most {MAX_CONTENT_TYPE_BYTES} bytes"
    if not value.isascii() or not value.isprintable():
        return "a content type is printable ASCII"
    return None


@dataclass(frozen=True, slots=True, repr=False)
class AttachmentPointer:
    """Where a blob is and how to open it. ``key`` is a secret: the repr hides it."""

    attachment_id: bytes
    key: bytes
    digest: bytes
    size: int
    content_type: str = ""
    file_name: str | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if len(self.attachment_id) != ID_LENGTH:
            return f"an attachment id is {ID_LENGTH} bytes"
        if len(self.key) != KEY_LENGTH or len(self.digest) != DIGEST_LENGTH:
            return f"an attachment key is {KEY_LENGTH} bytes and its digest {DIGEST_LENGTH}"
        if not 0 <= self.size <= MAX_ATTACHMENT_SIZE:
            return f"an attachment holds 0 to {MAX_ATTACHMENT_SIZE} bytes"
        if self.file_name is not None and (problem := file_name_problem(self.file_name)):
            return problem
        return _content_type_problem(self.content_type)

    def encode(self) -> bytes:
        return (
            pb.bytes_field(1, self.attachment_id)
            + pb.bytes_field(2, self.content_type.encode("ascii"))
            + pb.bytes_field(3, self.key)
            + pb.uint_field(4, self.size)
            + pb.bytes_field(6, self.digest)
            + (pb.bytes_field(7, self.file_name.encode("utf-8")) if self.file_name is not None else b"")
        )

    @classmethod
    def decode(cls, data: bytes) -> AttachmentPointer:
        """Parse a pointer; raises DecodeError and nothing else."""
        fields = pb.decode_fields(bytes(data))
        content_type = _string(fields, 2, MAX_CONTENT_TYPE_BYTES) or ""
        file_name = _string(fields, 7, MAX_FILE_NAME_BYTES * 4)
        size = pb.get_uint(fields, 4, bits=64)
        assert size is not None  # required: get_uint raised otherwise
        try:
            return cls(_bytes(fields, 1), _bytes(fields, 3), _bytes(fields, 6), size, content_type, file_name)
        except ValueError as error:
            raise DecodeError(str(error)) from None

    def __repr__(self) -> str:
        return (
            f"AttachmentPointer(attachment_id={self.attachment_id.hex()[:8]}…, size={self.size}, "
            f"content_type={self.content_type!r}, key=<hidden>, file_name=<hidden>)"
        )


def _bytes(fields: pb.Fields, number: int) -> bytes:
    value = pb.get_bytes(fields, number)
    assert value is not None  # required: get_bytes raised otherwise
    return bytes(value)


def _string(fields: pb.Fields, number: int, limit: int) -> str | None:
    value = pb.get_bytes(fields, number, required=False)
    if value is None:
        return None
    if len(value) > limit:
        raise DecodeError(f"field {number} is longer than {limit} bytes")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"field {number} is not UTF-8") from None
