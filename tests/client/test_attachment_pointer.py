"""The attachment pointer: round trip, limits on both sides, and a decoder that raises DecodeError only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.client.attachment_pointer import AttachmentPointer
from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.protocol.attachment import MAX_ATTACHMENT_SIZE

POINTER = AttachmentPointer(
    attachment_id=bytes(range(16)),
    key=bytes(range(64)),
    digest=bytes(range(32, 64)),
    size=123_456,
    content_type="image/jpeg",
    file_name="Holiday photo 🏖.jpg",
)


def test_round_trip() -> None:
    assert AttachmentPointer.decode(POINTER.encode()) == POINTER
    bare = AttachmentPointer(bytes(16), bytes(64), bytes(32), 0)
    assert AttachmentPointer.decode(bare.encode()) == bare
    assert bare.file_name is None and bare.content_type == ""


def test_signals_field_numbers() -> None:
    fields = pb.decode_fields(POINTER.encode())
    assert fields[3] == POINTER.key and fields[4] == POINTER.size and fields[6] == POINTER.digest
    assert fields[2] == b"image/jpeg" and fields[7] == POINTER.file_name.encode()  # type: ignore[union-attr]


def test_repr_hides_key_and_name() -> None:
    text = repr(POINTER)
    assert POINTER.key.hex() not in text and "Holiday" not in text and "123456" in text


@pytest.mark.parametrize(
    "change",
    [
        {"attachment_id": bytes(15)},
        {"key": bytes(32)},
        {"digest": bytes(33)},
        {"size": -1},
        {"size": MAX_ATTACHMENT_SIZE + 1},
        {"content_type": "x" * 129},
        {"content_type": "image/\njpeg"},
        {"content_type": "imäge/jpeg"},
        {"file_name": ""},
        {"file_name": "."},
        {"file_name": ".."},
        {"file_name": "../../.bashrc"},
        {"file_name": "dir/file"},
        {"file_name": "c:\\windows"},
        {"file_name": "bell\x07"},
        {"file_name": "a" * 256},
    ],
)
def test_bad_fields_are_refused_by_both_encoder_and_decoder(change: dict[str, object]) -> None:
    values: dict[str, object] = {
        "attachment_id": POINTER.attachment_id,
        "key": POINTER.key,
        "digest": POINTER.digest,
        "size": POINTER.size,
        "content_type": POINTER.content_type,
        "file_name": POINTER.file_name,
    }
    values.update(change)
    with pytest.raises(ValueError):
        AttachmentPointer(**values)  # type: ignore[arg-type]
    # The same values written by hand, as a peer that skips the checks would send them.
    name, ctype, size = values["file_name"], values["content_type"], values["size"]
    assert isinstance(name, str) and isinstance(ctype, str) and isinstance(size, int)
    wire = (
        pb.bytes_field(1, values["attachment_id"])  # type: ignore[arg-type]
        + pb.bytes_field(2, ctype.encode())
        + pb.bytes_field(3, values["key"])  # type: ignore[arg-type]
        + (pb.uint_field(4, size) if size >= 0 else b"")
        + pb.bytes_field(6, values["digest"])  # type: ignore[arg-type]
        + pb.bytes_field(7, name.encode())
    )
    with pytest.raises(DecodeError):
        AttachmentPointer.decode(wire)


@pytest.mark.parametrize("missing", [1, 3, 4, 6])
def test_missing_required_field_is_refused(missing: int) -> None:
    fields = [
        (1, pb.bytes_field(1, POINTER.attachment_id)),
        (3, pb.bytes_field(3, POINTER.key)),
        (4, pb.uint_field(4, 5)),
        (6, pb.bytes_field(6, POINTER.digest)),
    ]
    with pytest.raises(DecodeError):
        AttachmentPointer.decode(b"".join(v for n, v in fields if n != missing))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_decode_raises_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        AttachmentPointer.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255))
def test_mutated_pointers_decode_or_raise_decode_error(position: int, value: int) -> None:
    data = bytearray(POINTER.encode())
    data[position % len(data)] = value
    with contextlib.suppress(DecodeError):
        AttachmentPointer.decode(bytes(data))
