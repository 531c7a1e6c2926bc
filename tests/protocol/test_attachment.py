"""The attachment cipher: Signal's blob layout, padding buckets, streaming, and every rejection."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.crypto.random import seeded_rng
from sotto.errors import DecryptionError
from sotto.protocol import attachment as att
from sotto.protocol.attachment import (
    AttachmentDecryptor,
    AttachmentEncryptor,
    AttachmentIntegrityError,
    AttachmentSizeError,
    AttachmentStateError,
)

KEY = bytes(range(64))
IV = bytes(range(100, 116))


def reference_blob(plaintext: bytes, key: bytes, iv: bytes) -> bytes:
    """The blob built in one shot from cryptography's own padder, CBC and HMAC."""
    padded_to = att.padded_size(len(plaintext))
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext + bytes(padded_to - len(plaintext))) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key[:32]), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.HMAC(key[32:], hashes.SHA256())
    mac.update(iv + ciphertext)
    return iv + ciphertext + mac.finalize()


def sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def pieces(data: bytes, rnd: random.Random, largest: int) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        step = rnd.randint(1, largest)
        out.append(data[pos : pos + step])
        pos += step
    return out


def stream_encrypt(plaintext: bytes, key: bytes, iv: bytes, chunks: list[bytes]) -> tuple[bytes, bytes]:
    encryptor = AttachmentEncryptor(key, iv, len(plaintext))
    blob = b"".join(encryptor.update(c) for c in chunks) + b"".join(encryptor.finalize())
    return blob, encryptor.digest


def stream_decrypt(blob: bytes, key: bytes, digest: bytes, size: int, chunks: list[bytes]) -> bytes:
    decryptor = AttachmentDecryptor(key, digest, size)
    for c in chunks:
        decryptor.verify_update(c)
    decryptor.verify_finalize()
    out = b"".join(decryptor.decrypt_update(c) for c in chunks)
    return out + decryptor.decrypt_finalize()


# --------------------------------------------------------------------------- padding
# Signal's getPaddedSize, max(541, floor(1.05 ** ceil(log(size) / log(1.05)))), evaluated by
# Node's Math (as Signal Desktop evaluates it) for these sizes, and for 20,000 random sizes
# up to 100 MiB, all equal to padded_size when it was written.
SIGNAL_BUCKETS = {
    0: 541,
    1: 541,
    541: 541,
    542: 568,
    568: 568,
    569: 596,
    1000: 1020,
    1020: 1020,
    1021: 1071,
    4096: 4201,
    65536: 67789,
    1048576: 1093831,
    10485760: 10835458,
    104857600: 107335738,
}


@pytest.mark.parametrize(("size", "bucket"), sorted(SIGNAL_BUCKETS.items()))
def test_padded_size_is_signals(size: int, bucket: int) -> None:
    assert att.padded_size(size) == bucket


def test_buckets_grow_by_at_most_five_percent_and_never_shrink() -> None:
    rnd = random.Random(7)
    sizes = sorted({rnd.randint(0, att.MAX_ATTACHMENT_SIZE) for _ in range(5_000)} | {542, 10**6})
    previous = 0
    for size in sizes:
        bucket = att.padded_size(size)
        assert bucket >= max(size, 541) and bucket >= previous
        assert size <= 541 or bucket <= size * 1.05 + 1
        previous = bucket


@pytest.mark.parametrize("size", [-1, att.MAX_ATTACHMENT_SIZE + 1])
def test_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(AttachmentSizeError):
        att.padded_size(size)
    with pytest.raises(AttachmentSizeError):
        AttachmentEncryptor(KEY, IV, size)
    with pytest.raises(AttachmentSizeError):
        AttachmentDecryptor(KEY, bytes(32), size)


# --------------------------------------------------------------------------- round trips
EDGE_SIZES = [0, 1, 15, 16, 17, 31, 32, 540, 541, 542, 543, 567, 568, 569, 1020, 1021, 4096, 70_000]


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_blob_is_signals_layout_and_round_trips(size: int) -> None:
    plaintext = random.Random(size).randbytes(size)
    blob, digest = att.encrypt(plaintext, KEY, IV)
    assert blob == reference_blob(plaintext, KEY, IV)
    assert len(blob) == att.encrypted_size(size)
    assert digest == sha256(blob)
    assert att.decrypt(blob, KEY, digest, size) == plaintext


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 40_000), seed=st.integers(0, 2**32), largest=st.sampled_from([1, 7, 100, 5000]))
def test_any_chunking_gives_the_same_blob_and_plaintext(size: int, seed: int, largest: int) -> None:
    rnd = random.Random(seed)
    plaintext = rnd.randbytes(size)
    blob, digest = stream_encrypt(plaintext, KEY, IV, pieces(plaintext, rnd, largest))
    assert blob == reference_blob(plaintext, KEY, IV)
    assert stream_decrypt(blob, KEY, digest, size, pieces(blob, rnd, largest)) == plaintext


def test_padding_longer_than_a_chunk_is_streamed_in_chunks() -> None:
    size = 12_544_000  # bucket 13,170,567: 626,567 bytes of padding, over two chunks
    plaintext = bytes(size)
    encryptor = AttachmentEncryptor(KEY, IV, size)
    head = encryptor.update(plaintext)
    tail = list(encryptor.finalize())
    assert len(tail) >= 4 and max(len(t) for t in tail) <= att.CHUNK_SIZE + 2 * 16
    assert head + b"".join(tail) == reference_blob(plaintext, KEY, IV)


def test_start_draws_key_and_iv_from_the_rng() -> None:
    key, encryptor = AttachmentEncryptor.start(10, seeded_rng(1))
    key_again, again = AttachmentEncryptor.start(10, seeded_rng(1))
    other_key, _ = AttachmentEncryptor.start(10, seeded_rng(2))
    assert len(key) == 64 and key == key_again and key != other_key
    assert encryptor.update(b"0123456789") == again.update(b"0123456789")


# --------------------------------------------------------------------------- rejections
def verify_only(blob: bytes, key: bytes, digest: bytes, size: int) -> AttachmentDecryptor:
    decryptor = AttachmentDecryptor(key, digest, size)
    decryptor.verify_update(blob)
    decryptor.verify_finalize()
    return decryptor


def assert_refused_without_plaintext(blob: bytes, key: bytes, digest: bytes, size: int) -> None:
    decryptor = AttachmentDecryptor(key, digest, size)
    with pytest.raises(DecryptionError):
        decryptor.verify_update(blob)
        decryptor.verify_finalize()
    with pytest.raises(AttachmentStateError):  # no way to get plaintext after a refusal
        decryptor.decrypt_update(blob)


def test_ten_thousand_bit_flips_are_all_refused_before_any_plaintext() -> None:
    """8,000 flips anywhere in the blob, 1,000 in the key (both halves), 1,000 in the digest."""
    rnd = random.Random(20261207)
    size = 1000  # bucket 1020: the last block is all padding, so K_aes is checked with certainty
    plaintext = rnd.randbytes(size)
    key = rnd.randbytes(64)
    blob, digest = att.encrypt(plaintext, key, rnd.randbytes(16))
    flips = [("blob", 8_000, len(blob)), ("key", 1_000, 64), ("digest", 1_000, 32)]
    refused = 0
    for target, count, length in flips:
        for _ in range(count):
            bit = rnd.randrange(length * 8)
            values = {"blob": bytearray(blob), "key": bytearray(key), "digest": bytearray(digest)}
            values[target][bit // 8] ^= 1 << (bit % 8)
            try:
                verify_only(bytes(values["blob"]), bytes(values["key"]), bytes(values["digest"]), size)
            except AttachmentIntegrityError:
                refused += 1
    assert refused == 10_000
    assert att.decrypt(blob, key, digest, size) == plaintext  # the untouched blob still opens


def test_a_flipped_bit_leaves_no_way_to_plaintext() -> None:
    blob, digest = att.encrypt(b"secret words", KEY, IV)
    tampered = bytearray(blob)
    tampered[40] ^= 4
    assert_refused_without_plaintext(bytes(tampered), KEY, digest, 12)


@pytest.mark.parametrize("cut", [1, 16, 32, 33, 500])
def test_truncated_blob_is_refused(cut: int) -> None:
    blob, digest = att.encrypt(b"x" * 600, KEY, IV)
    with pytest.raises(AttachmentSizeError):
        verify_only(blob[:-cut], KEY, digest, 600)
    assert_refused_without_plaintext(blob[:-cut], KEY, digest, 600)


def test_blob_longer_than_its_size_is_refused_as_it_arrives() -> None:
    blob, digest = att.encrypt(b"x" * 600, KEY, IV)
    decryptor = AttachmentDecryptor(KEY, digest, 600)
    assert decryptor.blob_length == len(blob)
    decryptor.verify_update(blob)
    with pytest.raises(AttachmentSizeError):
        decryptor.verify_update(b"\x00")
    with pytest.raises(AttachmentStateError):
        decryptor.decrypt_update(blob)


def test_wrong_size_in_pointer_is_refused() -> None:
    blob, digest = att.encrypt(b"x" * 600, KEY, IV)
    with pytest.raises(AttachmentSizeError):
        verify_only(blob, KEY, digest, 10_000)


@pytest.mark.parametrize("which", ["whole", "aes", "mac"])
def test_wrong_key_is_refused(which: str) -> None:
    blob, digest = att.encrypt(b"y" * 700, KEY, IV)
    other = bytes(64 - i for i in range(64))
    wrong = {"whole": other, "aes": other[:32] + KEY[32:], "mac": KEY[:32] + other[32:]}[which]
    assert_refused_without_plaintext(blob, wrong, digest, 700)


def test_wrong_digest_is_refused() -> None:
    blob, _ = att.encrypt(b"z" * 10, KEY, IV)
    assert_refused_without_plaintext(blob, KEY, sha256(b"another blob"), 10)


def test_another_blob_with_a_valid_mac_is_refused_by_the_digest() -> None:
    """Even someone holding the key cannot swap the relay's copy: the pointer's digest names it."""
    _, digest = att.encrypt(b"w" * 50, KEY, IV)
    forged, _ = att.encrypt(b"v" * 50, KEY, IV)
    assert_refused_without_plaintext(forged, KEY, digest, 50)


def test_bytes_changed_between_the_passes_fail_the_second_pass() -> None:
    blob, digest = att.encrypt(b"q" * 2000, KEY, IV)
    decryptor = verify_only(blob, KEY, digest, 2000)
    changed = bytearray(blob)
    changed[100] ^= 1
    decryptor.decrypt_update(bytes(changed))
    with pytest.raises(AttachmentIntegrityError):
        decryptor.decrypt_finalize()


@pytest.mark.parametrize(("key", "digest"), [(bytes(63), bytes(32)), (bytes(64), bytes(31))])
def test_malformed_key_or_digest_is_refused(key: bytes, digest: bytes) -> None:
    with pytest.raises(AttachmentSizeError):
        AttachmentDecryptor(key, digest, 1)


def test_encryptor_refuses_more_or_less_plaintext_than_its_size() -> None:
    encryptor = AttachmentEncryptor(KEY, IV, 5)
    with pytest.raises(AttachmentSizeError):
        encryptor.update(b"123456")
    short = AttachmentEncryptor(KEY, IV, 5)
    short.update(b"1234")
    with pytest.raises(AttachmentSizeError):
        list(short.finalize())
    with pytest.raises(AttachmentSizeError):
        AttachmentEncryptor(KEY, bytes(15), 5)


def test_calls_out_of_order_are_refused() -> None:
    encryptor = AttachmentEncryptor(KEY, IV, 1)
    with pytest.raises(AttachmentStateError):
        _ = encryptor.digest
    encryptor.update(b"a")
    list(encryptor.finalize())
    with pytest.raises(AttachmentStateError):
        encryptor.update(b"")
    blob, digest = att.encrypt(b"a", KEY, IV)
    decryptor = AttachmentDecryptor(KEY, digest, 1)
    with pytest.raises(AttachmentStateError):
        decryptor.decrypt_update(blob)
    decryptor.verify_update(blob)
    decryptor.verify_finalize()
    with pytest.raises(AttachmentStateError):
        decryptor.verify_update(blob)
    assert decryptor.decrypt_update(blob) + decryptor.decrypt_finalize() == b"a"
    with pytest.raises(AttachmentStateError):
        decryptor.decrypt_finalize()


def test_errors_carry_no_key_or_plaintext() -> None:
    blob, digest = att.encrypt(b"private text", KEY, IV)
    for data, key in ((blob, bytes(64)), (blob[:-1], KEY)):
        with pytest.raises(DecryptionError) as info:
            verify_only(data, key, digest, 12)
        text = str(info.value) + repr(info.value)
        assert "private" not in text and KEY.hex() not in text and digest.hex() not in text
