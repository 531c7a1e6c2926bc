"""Safety numbers: Sotto and the real libsignal show the same digits and accept each other's QR codes."""

from __future__ import annotations

import uuid

import pytest

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.protocol.fingerprint import FINGERPRINT_ITERATIONS, Fingerprint, compare, fingerprint
from tests.interop.oracle import Oracle, from_hex


def both(
    oracle: Oracle,
    version: int,
    *,
    local_id: bytes,
    local_key: PublicKey,
    remote_id: bytes,
    remote_key: PublicKey,
) -> tuple[Fingerprint, dict[str, str]]:
    """Our fingerprint and libsignal's, from the same inputs."""
    ours = fingerprint(
        version=version, local_id=local_id, local_key=local_key, remote_id=remote_id, remote_key=remote_key
    )
    theirs = oracle.call(
        "fingerprint",
        version=version,
        iterations=FINGERPRINT_ITERATIONS,
        local_id=local_id,
        local_key=local_key.to_bytes(),
        remote_id=remote_id,
        remote_key=remote_key.to_bytes(),
    )
    return ours, theirs


def libsignal_match(oracle: Oracle, ours: bytes, theirs: bytes) -> bool:
    return bool(oracle.call("fingerprint_compare", scannable_a=ours, scannable_b=theirs)["match"])


@pytest.mark.parametrize("version", [1, 2])
def test_safety_numbers_agree_with_libsignal(oracle: Oracle, version: int) -> None:
    rng = seeded_rng(100 + version)
    alice_key, bob_key = KeyPair.generate(rng).public, KeyPair.generate(rng).public
    alice_id, bob_id = uuid.UUID(bytes=rng(16)).bytes, uuid.UUID(bytes=rng(16)).bytes

    sotto_alice, ls_alice = both(
        oracle, version, local_id=alice_id, local_key=alice_key, remote_id=bob_id, remote_key=bob_key
    )
    sotto_bob, ls_bob = both(
        oracle, version, local_id=bob_id, local_key=bob_key, remote_id=alice_id, remote_key=alice_key
    )

    # The same 60 digits on both phones, in both libraries.
    assert (
        sotto_alice.displayable == ls_alice["displayable"] == sotto_bob.displayable == ls_bob["displayable"]
    )
    # The same QR payload for each side.
    assert sotto_alice.scannable.encode() == from_hex(ls_alice["scannable"])
    assert sotto_bob.scannable.encode() == from_hex(ls_bob["scannable"])
    # Each library accepts the other's QR code.
    assert compare(sotto_alice.scannable.encode(), from_hex(ls_bob["scannable"]))
    assert compare(sotto_bob.scannable.encode(), from_hex(ls_alice["scannable"]))
    assert libsignal_match(oracle, from_hex(ls_alice["scannable"]), sotto_bob.scannable.encode())
    assert libsignal_match(oracle, from_hex(ls_bob["scannable"]), sotto_alice.scannable.encode())


def test_a_substituted_key_shows_in_both_libraries(oracle: Oracle) -> None:
    rng = seeded_rng(300)
    alice_key, bob_key, mitm_key = (KeyPair.generate(rng).public for _ in range(3))
    alice_id, bob_id = b"alice-service-id", b"bob-service-id"

    # Alice was handed the attacker's key for Bob; Bob holds Alice's real key.
    sotto_alice, ls_alice = both(
        oracle, 2, local_id=alice_id, local_key=alice_key, remote_id=bob_id, remote_key=mitm_key
    )
    sotto_bob, ls_bob = both(
        oracle, 2, local_id=bob_id, local_key=bob_key, remote_id=alice_id, remote_key=alice_key
    )

    assert sotto_alice.displayable == ls_alice["displayable"]
    assert sotto_bob.displayable == ls_bob["displayable"]
    assert sotto_alice.displayable != sotto_bob.displayable
    assert not compare(sotto_alice.scannable.encode(), from_hex(ls_bob["scannable"]))
    assert not compare(sotto_bob.scannable.encode(), from_hex(ls_alice["scannable"]))
    assert not libsignal_match(oracle, from_hex(ls_alice["scannable"]), sotto_bob.scannable.encode())
    assert not libsignal_match(oracle, from_hex(ls_bob["scannable"]), sotto_alice.scannable.encode())
