from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sotto.client import content as c
from sotto.client.flows import receiving, sending
from sotto.client.flows.certificates import VerifiedCertificates
from sotto.client.flows.context import CERTIFICATE_LIFETIME_MS
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import EnvelopeRejectedError, InvalidCertificateError
from sotto.protocol.sealed_sender import SenderCertificate, ServerCertificate
from tests.client.peers import connect, people

NOW_MS = 1_800_000_000_000
LIFETIME_MS = 86_400_000


def certificate(seed: int, expiration_ms: int = NOW_MS + LIFETIME_MS) -> tuple[SenderCertificate, KeyPair]:
    """A self-issued certificate, as a Sotto client makes one: its identity key signs both."""
    rng = seeded_rng(seed)
    identity = KeyPair.generate(rng)
    signer = ServerCertificate.issue(1, identity.public, identity.private, rng)
    issued = SenderCertificate.issue(
        sender_uuid="8c78cd2a-16ff-427d-83dc-1a5e36ce713d",
        sender_device_id=1,
        identity_key=identity.public,
        expiration_ms=expiration_ms,
        signer=signer,
        signer_key=identity.private,
        rng=rng,
    )
    return SenderCertificate.decode(issued.serialized), identity


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the full checks (signatures included) that :class:`VerifiedCertificates` makes."""
    made: list[int] = []
    real = SenderCertificate.validate

    def counted(self: SenderCertificate, *args: object, **kwargs: object) -> None:
        made.append(1)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SenderCertificate, "validate", counted)
    return made


def test_the_same_bytes_are_verified_once(full_checks: list[int]) -> None:
    verified = VerifiedCertificates()
    cert, identity = certificate(1)
    for i in range(5):
        verified.validate(SenderCertificate.decode(cert.serialized), identity.public, NOW_MS + i)
    assert len(full_checks) == 1
    assert len(verified) == 1


def test_an_expired_certificate_is_refused_after_it_was_remembered(full_checks: list[int]) -> None:
    verified = VerifiedCertificates()
    cert, identity = certificate(2)
    verified.validate(cert, identity.public, NOW_MS)
    verified.validate(cert, identity.public, cert.expiration_ms)  # valid through its expiry
    with pytest.raises(InvalidCertificateError):
        verified.validate(cert, identity.public, cert.expiration_ms + 1)
    assert len(full_checks) == 1


def test_an_expired_certificate_never_seen_is_refused() -> None:
    cert, identity = certificate(3, expiration_ms=NOW_MS - 1)
    verified = VerifiedCertificates()
    for _ in range(2):
        with pytest.raises(InvalidCertificateError):
            verified.validate(cert, identity.public, NOW_MS)
    assert len(verified) == 0


@pytest.mark.parametrize("where", ["signature", "expiry"])
def test_a_tampered_certificate_is_refused_every_time(full_checks: list[int], where: str) -> None:
    verified = VerifiedCertificates()
    cert, identity = certificate(4)
    verified.validate(cert, identity.public, NOW_MS)
    raw = bytearray(cert.serialized)
    if where == "signature":
        raw[-1] ^= 0x01
    else:  # the last byte of the fixed64 expiry: a later expiry the signature does not cover
        at = cert.serialized.index(cert.expiration_ms.to_bytes(8, "little"))
        raw[at + 7] ^= 0x01
    tampered = SenderCertificate.decode(bytes(raw))
    for _ in range(3):
        with pytest.raises(InvalidCertificateError):
            verified.validate(tampered, identity.public, NOW_MS)
    assert len(full_checks) == 4
    assert len(verified) == 1


def test_the_same_bytes_under_another_trust_root_are_checked_in_full() -> None:
    verified = VerifiedCertificates()
    cert, identity = certificate(5)
    other = KeyPair.generate(seeded_rng(6))
    verified.validate(cert, identity.public, NOW_MS)
    with pytest.raises(InvalidCertificateError):
        verified.validate(cert, other.public, NOW_MS)


def test_the_table_is_bounded_least_recently_used_first(full_checks: list[int]) -> None:
    verified = VerifiedCertificates(capacity=2)
    (a, ka), (b, kb), (c, kc) = certificate(7), certificate(8), certificate(9)
    verified.validate(a, ka.public, NOW_MS)
    verified.validate(b, kb.public, NOW_MS)
    verified.validate(a, ka.public, NOW_MS)  # a is now the most recent
    verified.validate(c, kc.public, NOW_MS)  # b goes
    assert len(verified) == 2
    assert len(full_checks) == 3
    verified.validate(a, ka.public, NOW_MS)
    assert len(full_checks) == 3
    verified.validate(b, kb.public, NOW_MS)
    assert len(full_checks) == 4
    assert repr(verified) == "VerifiedCertificates(2 of 2)"


def test_unseal_refuses_an_envelope_whose_remembered_certificate_has_expired() -> None:
    _relay, (alice, bob) = people("Alice", "Bob")
    bob_at_alice, _ = connect(alice, bob)
    assert alice.me is not None and bob.me is not None
    payload = alice.act(lambda ctx: sending.seal_to_contact(ctx, bob_at_alice, c.Text(b"\x07" * 16, 1, "x")))
    assert receiving.unseal(bob.me, payload, bob.now_ms).sender_name == alice.me.address.name
    with pytest.raises(EnvelopeRejectedError) as refused:
        receiving.unseal(bob.me, payload, bob.now_ms + CERTIFICATE_LIFETIME_MS + 1)
    assert refused.value.reason == "unsealable"


def test_threads_share_one_table() -> None:
    verified = VerifiedCertificates(capacity=3)
    made = [certificate(20 + i) for i in range(6)]

    def check(offset: int) -> None:
        for i in range(300):
            cert, identity = made[(i + offset) % len(made)]
            verified.validate(cert, identity.public, NOW_MS)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, range(4)))
    assert len(verified) == 3
