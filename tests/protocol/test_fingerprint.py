"""Safety numbers against libsignal's known-answer vectors (rust/protocol/src/fingerprint.rs tests)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, FingerprintVersionMismatchError
from sotto.protocol.fingerprint import (
    FINGERPRINT_ITERATIONS,
    ScannableFingerprint,
    compare,
    displayable_digits,
    fingerprint,
    format_displayable,
    iterated_digest,
)

ALICE_IDENTITY = PublicKey.from_bytes(
    bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
)
BOB_IDENTITY = PublicKey.from_bytes(
    bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
)
ALICE_STABLE_ID = b"+14152222222"
BOB_STABLE_ID = b"+14153333333"

DISPLAYABLE_V1 = "300354477692869396892869876765458257569162576843440918079131"
ALICE_SCANNABLE_V1 = (
    "080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)
BOB_SCANNABLE_V1 = (
    "080112220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
    "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
)
ALICE_SCANNABLE_V2 = (
    "080212220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)
BOB_SCANNABLE_V2 = (
    "080212220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
    "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
)


def alice_and_bob(version: int, iterations: int = FINGERPRINT_ITERATIONS) -> tuple[bytes, bytes, str, str]:
    alice = fingerprint(
        version=version,
        iterations=iterations,
        local_id=ALICE_STABLE_ID,
        local_key=ALICE_IDENTITY,
        remote_id=BOB_STABLE_ID,
        remote_key=BOB_IDENTITY,
    )
    bob = fingerprint(
        version=version,
        iterations=iterations,
        local_id=BOB_STABLE_ID,
        local_key=BOB_IDENTITY,
        remote_id=ALICE_STABLE_ID,
        remote_key=ALICE_IDENTITY,
    )
    return alice.scannable.encode(), bob.scannable.encode(), alice.displayable, bob.displayable


@pytest.mark.parametrize(
    ("version", "alice_scannable", "bob_scannable"),
    [(1, ALICE_SCANNABLE_V1, BOB_SCANNABLE_V1), (2, ALICE_SCANNABLE_V2, BOB_SCANNABLE_V2)],
)
def test_libsignal_vectors(version: int, alice_scannable: str, bob_scannable: str) -> None:
    alice_qr, bob_qr, alice_digits, bob_digits = alice_and_bob(version)
    assert alice_qr.hex() == alice_scannable
    assert bob_qr.hex() == bob_scannable
    # The digits do not depend on the version.
    assert alice_digits == DISPLAYABLE_V1
    assert bob_digits == DISPLAYABLE_V1
    assert compare(alice_qr, bob_qr)
    assert compare(bob_qr, alice_qr)


def test_scannable_encoding_layout() -> None:
    encoded = ScannableFingerprint(2, b"\x12" * 32, b"\xba" * 32).encode()
    assert encoded.hex() == "080212220a20" + "12" * 32 + "1a220a20" + "ba" * 32
    assert ScannableFingerprint.decode(encoded) == ScannableFingerprint(2, b"\x12" * 32, b"\xba" * 32)


def test_digest_matches_an_independent_sha512_loop() -> None:
    key = ALICE_IDENTITY.to_bytes()
    expected = hashlib.sha512(b"\x00\x00" + key + ALICE_STABLE_ID + key).digest()
    for _ in range(99):
        expected = hashlib.sha512(expected + key).digest()
    assert iterated_digest(100, ALICE_STABLE_ID, ALICE_IDENTITY) == expected


def test_displayable_digits_reduce_each_40_bit_chunk() -> None:
    digest = (99_999).to_bytes(5, "big") + (100_000).to_bytes(5, "big") + b"\xff" * 20 + bytes(34)
    assert displayable_digits(digest) == "99999" + "00000" + f"{(2**40 - 1) % 100_000:05d}" * 4


def random_party(seed: int) -> PublicKey:
    return KeyPair.generate(seeded_rng(seed)).public


def test_both_sides_see_the_same_number_and_their_qr_codes_match() -> None:
    a_key, b_key = random_party(1), random_party(2)
    a = fingerprint(local_id=b"alice", local_key=a_key, remote_id=b"bob", remote_key=b_key, iterations=1024)
    b = fingerprint(local_id=b"bob", local_key=b_key, remote_id=b"alice", remote_key=a_key, iterations=1024)
    assert a.displayable == b.displayable
    assert len(a.displayable) == 60 and a.displayable.isdigit()
    assert compare(a.scannable.encode(), b.scannable.encode())
    assert compare(b.scannable.encode(), a.scannable.encode())
    # Scanning your own phone's code is not a match.
    assert not compare(a.scannable.encode(), a.scannable.encode())


def test_a_substituted_key_changes_the_number_and_fails_the_scan() -> None:
    a_key, b_key, mitm_key = random_party(1), random_party(2), random_party(3)
    a = fingerprint(
        local_id=b"alice", local_key=a_key, remote_id=b"bob", remote_key=mitm_key, iterations=1024
    )
    b = fingerprint(local_id=b"bob", local_key=b_key, remote_id=b"alice", remote_key=a_key, iterations=1024)
    assert a.displayable != b.displayable
    assert not compare(a.scannable.encode(), b.scannable.encode())
    assert not compare(b.scannable.encode(), a.scannable.encode())


def test_a_different_identifier_changes_the_number() -> None:
    a_key, b_key = random_party(1), random_party(2)
    a = fingerprint(local_id=b"alice2", local_key=a_key, remote_id=b"bob", remote_key=b_key, iterations=1024)
    b = fingerprint(local_id=b"bob", local_key=b_key, remote_id=b"alice", remote_key=a_key, iterations=1024)
    assert a.displayable != b.displayable
    assert not compare(a.scannable.encode(), b.scannable.encode())


def test_version_mismatch_is_a_typed_error() -> None:
    v1_alice, _, _, _ = alice_and_bob(1)
    _, v2_bob, _, _ = alice_and_bob(2)
    with pytest.raises(FingerprintVersionMismatchError) as info:
        compare(v1_alice, v2_bob)
    assert (info.value.theirs, info.value.ours) == (2, 1)
    no_version = ScannableFingerprint(2, b"\x01" * 32, b"\x02" * 32).encode()[2:]
    with pytest.raises(FingerprintVersionMismatchError):
        compare(v1_alice, no_version)


def test_every_byte_of_their_content_matters() -> None:
    alice_qr, bob_qr = bytes.fromhex(ALICE_SCANNABLE_V2), bytes.fromhex(BOB_SCANNABLE_V2)
    assert len(bob_qr) == 2 + 4 + 32 + 4 + 32
    for position in [*range(6, 38), *range(42, 74)]:  # the two 32-byte contents
        tampered = bytearray(bob_qr)
        tampered[position] ^= 0x01
        assert not compare(alice_qr, bytes(tampered))


def test_format_displayable_in_twelve_groups() -> None:
    formatted = format_displayable(DISPLAYABLE_V1)
    assert formatted.split() == [DISPLAYABLE_V1[i : i + 5] for i in range(0, 60, 5)]
    assert len(formatted.split()) == 12
    for bad in (DISPLAYABLE_V1[:-1], DISPLAYABLE_V1 + "0", "a" * 60, "٣" * 60):
        with pytest.raises(ValueError, match="60"):
            format_displayable(bad)


def test_iteration_bounds() -> None:
    for bad in (0, 1, 1_000_001):
        with pytest.raises(ValueError, match="iterations"):
            iterated_digest(bad, b"id", ALICE_IDENTITY)


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=200))
def test_decoders_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        ScannableFingerprint.decode(data)
    with contextlib.suppress(DecodeError, FingerprintVersionMismatchError):
        compare(bytes.fromhex(ALICE_SCANNABLE_V2), data)
