"""Attachments to and from files: round trips, refusals that write nothing, bytes changed between
the two passes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sotto.client.attachment_files import decrypt_file, encrypt_file
from sotto.crypto.random import Rng, seeded_rng
from sotto.protocol import attachment as att
from sotto.protocol.attachment import AttachmentIntegrityError, AttachmentSizeError


@pytest.mark.parametrize("size", [0, 1, 541, att.CHUNK_SIZE - 1, att.CHUNK_SIZE, 3 * att.CHUNK_SIZE + 5])
def test_file_round_trip(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    (tmp_path / "in").write_bytes(data)
    sealed = encrypt_file(tmp_path / "in", tmp_path / "blob", seeded_rng(size))
    blob = (tmp_path / "blob").read_bytes()
    assert sealed.size == size and len(blob) == att.encrypted_size(size)
    assert att.decrypt(blob, sealed.key, sealed.digest, size) == data
    decrypt_file(tmp_path / "blob", sealed.key, sealed.digest, size, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "in", "out"]
    assert "key" not in repr(sealed).replace("key=<hidden>", "")


def test_tampered_blob_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"a letter" * 1000)
    sealed = encrypt_file(tmp_path / "in", tmp_path / "blob")
    with open(tmp_path / "blob", "r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes((byte[0] ^ 0x10,)))
    with pytest.raises(AttachmentIntegrityError):
        decrypt_file(tmp_path / "blob", sealed.key, sealed.digest, sealed.size, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "in"]


def test_truncated_blob_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"b" * 5000)
    sealed = encrypt_file(tmp_path / "in", tmp_path / "blob")
    os.truncate(tmp_path / "blob", 4000)
    with pytest.raises(AttachmentSizeError):
        decrypt_file(tmp_path / "blob", sealed.key, sealed.digest, sealed.size, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_blob_changed_between_passes_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who rewrites the blob after the check gets nothing released under the name."""
    (tmp_path / "in").write_bytes(b"c" * 50_000)
    sealed = encrypt_file(tmp_path / "in", tmp_path / "blob")
    real = att.AttachmentDecryptor.verify_finalize

    def then_rewrite(self: att.AttachmentDecryptor) -> None:
        real(self)
        with open(tmp_path / "blob", "r+b") as f:
            f.seek(1000)
            f.write(b"\x00" * 16)

    monkeypatch.setattr(att.AttachmentDecryptor, "verify_finalize", then_rewrite)
    with pytest.raises(AttachmentIntegrityError):
        decrypt_file(tmp_path / "blob", sealed.key, sealed.digest, sealed.size, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "in"]


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"d" * 10)
    (tmp_path / "blob").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        encrypt_file(tmp_path / "in", tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == b"keep"
    sealed = encrypt_file(tmp_path / "in", tmp_path / "blob2")
    (tmp_path / "out").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        decrypt_file(tmp_path / "blob2", sealed.key, sealed.digest, sealed.size, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"mine"


def test_file_that_grows_while_read_leaves_no_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").write_bytes(b"e" * 1000)
    real = att.AttachmentEncryptor.start

    def then_grow(size: int, rng: Rng) -> tuple[bytes, att.AttachmentEncryptor]:
        with open(tmp_path / "in", "ab") as f:
            f.write(b"more")
        return real(size, rng)

    monkeypatch.setattr(att.AttachmentEncryptor, "start", staticmethod(then_grow))
    with pytest.raises(AttachmentSizeError):
        encrypt_file(tmp_path / "in", tmp_path / "blob")
    assert not (tmp_path / "blob").exists()


def test_too_large_file_is_refused_before_reading(tmp_path: Path) -> None:
    with open(tmp_path / "in", "wb") as f:
        f.truncate(att.MAX_ATTACHMENT_SIZE + 1)  # sparse: no disk used
    with pytest.raises(AttachmentSizeError):
        encrypt_file(tmp_path / "in", tmp_path / "blob")
    assert not (tmp_path / "blob").exists()


def test_the_same_key_and_iv_make_the_same_blob_of_the_same_file_only(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(os.urandom(200_000))
    first = encrypt_file(tmp_path / "in", tmp_path / "blob1")
    assert first.iv == (tmp_path / "blob1").read_bytes()[:16] and len(first.iv) == 16
    again = encrypt_file(tmp_path / "in", tmp_path / "blob2", again=first)
    assert (again.key, again.iv, again.digest) == (first.key, first.iv, first.digest)
    assert (tmp_path / "blob2").read_bytes() == (tmp_path / "blob1").read_bytes()
    (tmp_path / "in").write_bytes(os.urandom(200_000))
    changed = encrypt_file(tmp_path / "in", tmp_path / "blob3", again=first)
    assert changed.digest != first.digest
    fresh = encrypt_file(tmp_path / "in", tmp_path / "blob4")
    assert (fresh.key, fresh.iv) != (first.key, first.iv)
