"""Wycheproof HMAC-SHA256 and HKDF-SHA256 through ``sotto.crypto.kdf``.

HMAC: every key size runs. ``hmac_sha256`` always returns the full 32-byte tag; for the 128-bit
tag groups the first 16 bytes are compared (Signal truncates its message MAC the same way), and
the verdict is taken with :func:`kdf.bytes_equal`, the comparison the protocol code uses.
HKDF: every case runs; ``SizeTooLarge`` (more than 255 * 32 bytes) is a ``ValueError``.
"""

from __future__ import annotations

import pytest

from sotto.crypto import kdf
from tests.vectors.wycheproof import load, report


def test_hmac_sha256_vectors() -> None:
    selection = load("hmac_sha256_test.json").all()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        tag = case.hex("tag")
        assert len(tag) * 8 == case.group["tagSize"]
        computed = kdf.hmac_sha256(case.hex("key"), case.hex("msg"))
        assert len(computed) == 32
        assert kdf.hmac_sha256_pair(case.hex("key"), case.hex("msg"), b"\x02") == (
            computed,
            kdf.hmac_sha256(case.hex("key"), b"\x02"),
        )
        accepted = kdf.bytes_equal(computed[: len(tag)], tag)
        if accepted != (case.result == "valid"):
            failures.append(f"{case}: accepted={accepted}")
    report("hmac_sha256", selection, ran, failures)


def test_hkdf_sha256_vectors() -> None:
    selection = load("hkdf_sha256_test.json").all()
    ran = 0
    failures: list[str] = []
    for case in selection:
        ran += 1
        ikm, salt, info, size = case.hex("ikm"), case.hex("salt"), case.hex("info"), int(case.fields["size"])
        if case.result == "valid":
            okm = kdf.hkdf_sha256(ikm, size, info, salt)
            if okm != case.hex("okm"):
                failures.append(f"{case}: wrong output")
            if not salt and kdf.hkdf_sha256(ikm, size, info) != okm:
                failures.append(f"{case}: salt=None differs from the empty salt")
            continue
        assert case.flags == {"SizeTooLarge"}, str(case)
        try:
            kdf.hkdf_sha256(ikm, size, info, salt)
        except ValueError:
            continue
        failures.append(f"{case}: oversized output accepted")
    report("hkdf_sha256", selection, ran, failures)


def test_bytes_equal() -> None:
    assert kdf.bytes_equal(b"abc", b"abc")
    assert kdf.bytes_equal(b"", b"")
    assert not kdf.bytes_equal(b"abc", b"abd")
    assert not kdf.bytes_equal(b"abc", b"ab")
    with pytest.raises(TypeError):
        kdf.bytes_equal("abc", "abc")  # type: ignore[arg-type]


def test_hash_wrappers_known_answers() -> None:
    # FIPS 180-4 / FIPS 202 examples for "abc".
    assert kdf.sha512(b"abc").hex().startswith("ddaf35a193617aba")
    assert kdf.sha3_256(b"abc").hex() == "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
    assert kdf.shake256(b"", 32).hex() == "46b9dd2b0ba88d13233b3feb743eeb243fcd52ea62b81b82b50c27646ed5762f"
    assert len(kdf.shake256(b"abc", 64)) == 64
