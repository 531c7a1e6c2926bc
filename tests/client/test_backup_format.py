"""The backup format: round trips, wrong keys, and every kind of damage refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.client.backup_format import (
    HEADER_LENGTH,
    TAG_LENGTH,
    BackupCorruptedError,
    BackupError,
    BackupKey,
    BackupOpener,
    BackupPassphrase,
    BackupSealer,
    Prologue,
    RecoveryKey,
    WeakBackupPassphraseError,
    WrongBackupKeyError,
    decode_header,
    decode_prologue,
    encode_prologue,
)
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import seeded_rng

CHUNK = 64
PASSPHRASE = "correct horse battery staple orbit"


def seal(key: BackupKey, plaintext: bytes, *, pieces: int = 3, seed: int = 1) -> bytes:
    sealer = BackupSealer(key, seeded_rng(seed), chunk_size=CHUNK, kdf=Argon2Params.TESTING)
    out = [sealer.header]
    step = max(1, len(plaintext) // pieces)
    for i in range(0, len(plaintext), step):
        out.append(sealer.seal(plaintext[i : i + step]))
    out.append(sealer.finish())
    return b"".join(out)


def unseal(key: BackupKey, blob: bytes, *, piece: int = 37) -> bytes:
    opener = BackupOpener(decode_header(blob), key)
    body = blob[HEADER_LENGTH:]
    out = [opener.open(body[i : i + piece]) for i in range(0, len(body), piece)]
    out.append(opener.finish())
    return b"".join(out)


KEY = RecoveryKey.generate(seeded_rng(7))
DATA = bytes(range(256)) * 3 + b"tail"  # 772 bytes: twelve whole chunks and a part


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, len(DATA)])
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    blob = seal(KEY, DATA[:size])
    assert unseal(KEY, blob) == DATA[:size]
    chunks = max(1, -(-size // CHUNK))  # an empty backup is one chunk: its tag
    assert len(blob) == HEADER_LENGTH + size + chunks * TAG_LENGTH


def test_round_trip_with_a_passphrase() -> None:
    key = BackupPassphrase(PASSPHRASE)
    assert unseal(BackupPassphrase(PASSPHRASE), seal(key, DATA)) == DATA


def test_short_passphrase_refused() -> None:
    with pytest.raises(WeakBackupPassphraseError, match="at least 5 words"):
        BackupPassphrase("four words are here")
    with pytest.raises(WeakBackupPassphraseError):
        BackupPassphrase("averyveryverylongsinglewordpassphrase")
    BackupPassphrase("one-two-three-four-five")


def test_wrong_recovery_key_refused() -> None:
    blob = seal(KEY, DATA)
    with pytest.raises(WrongBackupKeyError, match="wrong recovery key"):
        unseal(RecoveryKey.generate(seeded_rng(8)), blob)


def test_wrong_passphrase_refused() -> None:
    blob = seal(BackupPassphrase(PASSPHRASE), DATA)
    with pytest.raises(WrongBackupKeyError, match="wrong passphrase"):
        unseal(BackupPassphrase(PASSPHRASE + " extra"), blob)


def test_kind_mismatch_refused() -> None:
    with pytest.raises(WrongBackupKeyError, match="passphrase"):
        unseal(KEY, seal(BackupPassphrase(PASSPHRASE), DATA))
    with pytest.raises(WrongBackupKeyError, match="recovery key"):
        unseal(BackupPassphrase(PASSPHRASE), seal(KEY, DATA))


def test_recovery_key_text_round_trip() -> None:
    text = KEY.to_text()
    groups = text.split("-")
    assert len(groups) == 13 and all(len(g) == 4 for g in groups)
    again = RecoveryKey.from_text(" " + text.lower().replace("-", " ") + "\n")
    assert unseal(again, seal(KEY, DATA)) == DATA
    with pytest.raises(WrongBackupKeyError):
        RecoveryKey.from_text(text[:-1])
    with pytest.raises(WrongBackupKeyError):
        RecoveryKey.from_text("not a key at all")


def test_reprs_hide_secrets() -> None:
    assert KEY.to_text() not in repr(KEY)
    assert PASSPHRASE not in repr(BackupPassphrase(PASSPHRASE))
    prologue = Prologue({"schema": 7}, b"\x42" * 32)
    assert "42" * 4 not in repr(prologue) and "B" * 8 not in repr(prologue)


def test_truncation_refused_at_every_cut() -> None:
    blob = seal(KEY, DATA)
    for cut in range(HEADER_LENGTH, len(blob)):
        with pytest.raises(BackupCorruptedError):
            unseal(KEY, blob[:cut])


def test_truncation_at_a_chunk_boundary_refused() -> None:
    blob = seal(KEY, DATA)
    body = blob[HEADER_LENGTH:]
    whole = CHUNK + TAG_LENGTH
    for chunks in range(1, len(body) // whole + 1):
        with pytest.raises(BackupCorruptedError):
            unseal(KEY, blob[: HEADER_LENGTH + chunks * whole])


def test_reordered_dropped_and_repeated_chunks_refused() -> None:
    blob = seal(KEY, DATA)
    body = blob[HEADER_LENGTH:]
    whole = CHUNK + TAG_LENGTH
    chunks = [body[i : i + whole] for i in range(0, len(body), whole)]
    header = blob[:HEADER_LENGTH]
    variants = [
        [chunks[1], chunks[0], *chunks[2:]],
        chunks[1:],
        [chunks[0], *chunks],
        [*chunks[:-2], chunks[-1]],
    ]
    for variant in variants:
        with pytest.raises(BackupCorruptedError):
            unseal(KEY, header + b"".join(variant))


def test_chunk_from_another_backup_refused() -> None:
    one, two = seal(KEY, DATA, seed=1), seal(KEY, DATA, seed=2)
    whole = CHUNK + TAG_LENGTH
    spliced = one[: HEADER_LENGTH + whole] + two[HEADER_LENGTH + whole :]
    with pytest.raises(BackupCorruptedError):
        unseal(KEY, spliced)


def test_not_a_backup() -> None:
    with pytest.raises(BackupCorruptedError, match="not a Sotto backup"):
        decode_header(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(BackupCorruptedError):
        decode_header(b"SottoBak")
    other_version = bytearray(seal(KEY, DATA))
    other_version[8] = 2
    with pytest.raises(BackupCorruptedError, match="version 2"):
        decode_header(bytes(other_version))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    blob = bytearray(SEALED)
    flips = data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=4, unique=True))
    for position in flips:
        blob[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(BackupError):
        unseal(KEY, bytes(blob))


SEALED = seal(KEY, DATA)


def test_prologue_round_trip_and_limits() -> None:
    prologue = Prologue({"schema": 7, "messages": 3}, bytes(range(32)))
    encoded = encode_prologue(prologue) + b"rest"
    for cut in range(len(encoded) - 4):
        assert decode_prologue(encoded[:cut]) is None
    found = decode_prologue(encoded)
    assert found is not None
    got, end = found
    assert got.meta == prologue.meta and got.data_key == prologue.data_key
    assert encoded[end:] == b"rest"
    with pytest.raises(BackupCorruptedError):
        decode_prologue(b"\xff\xff\xff\xff" + bytes(64))
    with pytest.raises(BackupCorruptedError):
        decode_prologue(b"\x00\x00\x00\x02[]" + bytes(32))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=HEADER_LENGTH + 40),
        st.binary(min_size=HEADER_LENGTH - 9, max_size=HEADER_LENGTH).map(lambda b: b"SottoBak\x01" + b),
    )
)
def test_decode_header_raises_backup_corrupted_error_and_nothing_else(data: bytes) -> None:
    try:
        header = decode_header(data)
    except BackupCorruptedError:
        return
    assert header.raw == data[:HEADER_LENGTH]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4 * (CHUNK + TAG_LENGTH)))
def test_any_body_under_a_real_header_is_refused(body: bytes) -> None:
    with pytest.raises(BackupCorruptedError):
        unseal(KEY, SEALED[:HEADER_LENGTH] + body)
