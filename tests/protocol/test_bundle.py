"""Prekey records and bundles: generation, validation, serialization, hidden secrets."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, InvalidPreKeyBundleError
from sotto.protocol.bundle import (
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    build_bundle,
)

RNG = seeded_rng(3)
IDENTITY = KeyPair.generate(RNG)
PRE_KEY = PreKeyRecord.generate(1, RNG)
SIGNED = SignedPreKeyRecord.generate(2, IDENTITY, 1000, RNG)
KYBER = KyberPreKeyRecord.generate(3, IDENTITY, 1000, RNG, last_resort=True)


def _bundle() -> PreKeyBundle:
    return build_bundle(
        registration_id=77,
        device_id=1,
        identity_key=IDENTITY.public,
        signed_pre_key=SIGNED,
        kyber_pre_key=KYBER,
        pre_key=PRE_KEY,
    )


def test_valid_bundle() -> None:
    _bundle().validate()


@pytest.mark.parametrize(
    "change",
    [
        {"signed_pre_key_signature": bytes(64)},
        {"kyber_pre_key_signature": SIGNED.signature},
        {"identity_key": KeyPair.generate(RNG).public},
        {"signed_pre_key_public": PRE_KEY.key_pair.public},
        {"kyber_pre_key_public": KyberPreKeyRecord.generate(4, IDENTITY, 0, RNG).key_pair.public},
        {"registration_id": 0x4000},
        {"device_id": 0},
        {"device_id": 128},
        {"pre_key_public": None},
    ],
)
def test_invalid_bundles(change: dict[str, object]) -> None:
    with pytest.raises(InvalidPreKeyBundleError):
        replace(_bundle(), **change).validate()  # type: ignore[arg-type]


def test_records_round_trip() -> None:
    assert PreKeyRecord.from_bytes(PRE_KEY.to_bytes()).to_bytes() == PRE_KEY.to_bytes()
    signed = SignedPreKeyRecord.from_bytes(SIGNED.to_bytes())
    assert signed.key_pair.public == SIGNED.key_pair.public and signed.signature == SIGNED.signature
    kyber = KyberPreKeyRecord.from_bytes(KYBER.to_bytes())
    assert kyber.key_pair.public == KYBER.key_pair.public and kyber.last_resort
    assert kyber.to_bytes() == KYBER.to_bytes()


def test_reprs_hide_secrets() -> None:
    for record, secret in (
        (PRE_KEY, PRE_KEY.key_pair.private.to_bytes()),
        (SIGNED, SIGNED.key_pair.private.to_bytes()),
        (KYBER, KYBER.key_pair.seed()),
    ):
        assert secret.hex()[:8] not in repr(record)
        assert "secret" in repr(record)


@given(st.binary(max_size=200))
def test_from_bytes_raises_only_decode_error(data: bytes) -> None:
    for cls in (PreKeyRecord, SignedPreKeyRecord, KyberPreKeyRecord):
        with contextlib.suppress(DecodeError):
            cls.from_bytes(data)
        with contextlib.suppress(DecodeError):
            cls.from_bytes(b"\x01" + data)


def test_truncated_records_raise_decode_error() -> None:
    for record in (PRE_KEY, SIGNED, KYBER):
        data = record.to_bytes()
        for cut in range(len(data)):
            with pytest.raises(DecodeError):
                type(record).from_bytes(data[:cut])
