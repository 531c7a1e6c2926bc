"""Server and sender certificates: libsignal's fixtures, issuing, validating, strict decoding."""

from __future__ import annotations

import base64
import uuid

import pytest

from sotto.crypto import xeddsa
from sotto.crypto.keys import KeyPair, PrivateKey, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, InvalidCertificateError
from sotto.protocol.protobuf import bytes_field, fixed64_field, uint_field
from sotto.protocol.sealed_sender import REVOKED_SERVER_KEY_IDS, SenderCertificate, ServerCertificate
from tests.protocol.sealed_sender.helpers import DAY_MS, NOW_MS, World

# --- libsignal rust/protocol/src/sealed_sender.rs fixtures (trust root: private key of 32 zero bytes)
ZERO_ROOT = PrivateKey(bytes(32)).public_key()
FIXTURE_UUID = "aaaaaaaa-7000-11eb-b32a-33b8a8a487a6"
# test_lossless_round_trip: uuid string, embedded server certificate, an unknown field 999
LOSSLESS_DATA = bytes.fromhex(
    "100119697a0000000000002221056c9d1f8deb82b9a898f9c277a1b74989ec009afb5c0acb5e8e69e3d5ca29d632"
    "2a690a2508011221053b03ca070e6f6b2f271d32f27321689cdf4e59b106c10b58fbe15063ed868a5a124024bc92"
    "954e52ad1a105b5bda85c9db410dcfeb42a671b45a523b3a46e9594a8bde0efc671d8e8e046b32c67f59b80a46ff"
    "df24071850779bc21325107902af89322461616161616161612d373030302d313165622d623332612d3333623861"
    "38613438376136ba3e136372617368696e6720726967687420646f776e"
)
LOSSLESS_SIGNATURE = bytes.fromhex(
    "a22d8f86f5d00794f319add821e342c6ffffb6b34f741e569f8b321ab0255f2d"
    "1757ecf648e53a3602cae8f09b3fc80dcf27534d67efd272b6739afc31f75c8c"
)
# test_uuid_bytes_representation: field 7 (16 raw bytes) instead of field 6
UUID_BYTES_DATA = bytes.fromhex(
    "100119697a000000000000222105e083a8ce423d1c1955174107a85a6a7f3bcbf566723624077f75eafe8e0a0775"
    "2a690a25080112210507a24397ae27d06fa76d2f02cfb5546e0b23a7e0c3670c1eb1e73b135a8e1e4d12407d1275"
    "09ae1f5e9dcaa511793d3e94350dcb269e4ca54500da6e1f4dc13d95940c15badef019edfe8666315500c54e4489"
    "d4b83f6ce79c7f65c9772a1a83d88c3a10aaaaaaaa700011ebb32a33b8a8a487a6"
)
UUID_BYTES_SIGNATURE = bytes.fromhex(
    "755c428e9bf6ba367152f1e545834649b4e8f70df8383a352a953fdb774862af"
    "5d42fab573fc52b90ad47c331c36f93b1a4fa7a2504917d895452ffe7f44bd0e"
)
# test_known_server_cert: signer given by id 0x7357C357 (field 8) instead of embedded
KNOWN_ID_DATA = bytes.fromhex(
    "100119697a000000000000222105d75b13e15c7700079dd226f51e5a790ba395e819e88a74d0cf5cedfad8b43348"
    "40d786df9a07322461616161616161612d373030302d313165622d623332612d333362386138613438376136"
)
KNOWN_ID_SIGNATURE = bytes.fromhex(
    "e62667bce627caed56ca2ab309b6ae7bc890a30a7482c0e1fd77ec9c3b7528ab"
    "fd45c8c42b240509a71d973ef5e0f1dbd2685fe01410f0fdbaa8fb247a67e08f"
)
# KNOWN_SERVER_CERTIFICATES: (id, trust root, server certificate)
KNOWN_SERVER_CERTIFICATES = [
    (
        2,
        "BYhU6tPjqP46KGZEzRs1OL4U39V5dlPJ/X09ha4rErkm",
        "0a25080212210539450d63ebd0752c0fd4038b9d07a916f5e174b756d409b5ca79f4c97400631e124064c5a38b1e"
        "927497d3d4786b101a623ab34a7da3954fae126b04dba9d7a3604ed88cdc8550950f0d4a9134ceb7e19b94139151"
        "d2c3d6e1c81e9d1128aafca806",
    ),
    (
        3,
        "BUkY0I+9+oPgDCn4+Ac6Iu813yvqkDr/ga8DzLxFxuk6",
        "0a250803122105bc9d1d290be964810dfa7e94856480a3f7060d004c9762c24c575a1522353a5a1240c11ec3c401"
        "eb0107ab38f8600e8720a63169e0e2eb8a3fae24f63099f85ea319c3c1c46d3454706ae2a679d1fee690a488adda"
        "98a2290b66c906bb60295ed781",
    ),
    (
        0x7357C357,
        "BS/lfaNHzWJDFSjarF+7KQcw//aEr8TPwu2QmV9Yyzt0",
        "0a2908d786df9a07122105847c0d2c375234f365e660955187a3735a0f7613d1609d3a6a4d8c53aeaa5a22124"
        "0e0b9ebacdfc3aa2827f7924b697784d1c25e44ca05dd433e1a38dc6382eb2730d419ca9a250b1be9d5a9463e61"
        "efd6781777a91b83c97b844d014206e2829785",
    ),
]


def signed(certificate: bytes, signature: bytes) -> bytes:
    return bytes_field(1, certificate) + bytes_field(2, signature)


def known(entry_id: int) -> ServerCertificate:
    for key_id, _, cert in KNOWN_SERVER_CERTIFICATES:
        if key_id == entry_id:
            return ServerCertificate.decode(bytes.fromhex(cert))
    raise KeyError(entry_id)


# ------------------------------------------------------------------------ libsignal fixtures
@pytest.mark.parametrize(("key_id", "root_b64", "cert_hex"), KNOWN_SERVER_CERTIFICATES)
def test_libsignal_known_server_certificates_validate_against_their_roots(
    key_id: int, root_b64: str, cert_hex: str
) -> None:
    root = PublicKey.from_bytes(base64.b64decode(root_b64))
    cert = ServerCertificate.decode(bytes.fromhex(cert_hex))
    assert cert.key_id == key_id
    assert cert.encode() == bytes.fromhex(cert_hex)
    cert.validate(root)
    with pytest.raises(InvalidCertificateError):
        cert.validate(ZERO_ROOT if key_id != 0x7357C357 else PrivateKey(b"\x01" * 32).public_key())


@pytest.mark.parametrize(
    ("data", "signature"),
    [(LOSSLESS_DATA, LOSSLESS_SIGNATURE), (UUID_BYTES_DATA, UUID_BYTES_SIGNATURE)],
    ids=["uuid-string-unknown-field", "uuid-bytes"],
)
def test_libsignal_sender_certificate_fixtures(data: bytes, signature: bytes) -> None:
    cert = SenderCertificate.decode(signed(data, signature))
    assert cert.sender_uuid == FIXTURE_UUID
    assert cert.sender_e164 is None
    assert cert.sender_device_id == 1
    assert cert.expiration_ms == 31337
    assert cert.certificate == data  # kept verbatim, unknown field 999 included
    assert isinstance(cert.signer, ServerCertificate)
    assert cert.signer.key_id == 1
    cert.validate(ZERO_ROOT, 31336)
    cert.validate(ZERO_ROOT, 31337)  # valid through the expiry millisecond
    with pytest.raises(InvalidCertificateError, match="expired"):
        cert.validate(ZERO_ROOT, 31338)


def test_libsignal_fixture_with_known_server_certificate_id() -> None:
    cert = SenderCertificate.decode(signed(KNOWN_ID_DATA, KNOWN_ID_SIGNATURE))
    assert cert.signer == 0x7357C357
    with pytest.raises(InvalidCertificateError, match="unknown server certificate"):
        cert.validate(ZERO_ROOT, 31336)
    table = {0x7357C357: known(0x7357C357)}
    cert.validate(ZERO_ROOT, 31336, table)
    with pytest.raises(InvalidCertificateError):
        cert.validate(PrivateKey(b"\x02" * 32).public_key(), 31336, table)


def test_issue_matches_libsignal_field_order() -> None:
    """Re-issuing the fixture's fields reproduces libsignal's certificate bytes exactly."""
    fixture = SenderCertificate.decode(signed(UUID_BYTES_DATA, UUID_BYTES_SIGNATURE))
    assert isinstance(fixture.signer, ServerCertificate)
    server_key = PrivateKey(b"\x03" * 32)
    # Only the server key (and so the embedded certificate bytes and signature) differs.
    server = ServerCertificate.issue(1, server_key.public_key(), PrivateKey(bytes(32)), seeded_rng(1))
    again = SenderCertificate.issue(
        sender_uuid=FIXTURE_UUID,
        sender_device_id=1,
        identity_key=fixture.identity_key,
        expiration_ms=31337,
        signer=server,
        signer_key=server_key,
        rng=seeded_rng(2),
        uuid_as_bytes=True,
    )
    expected = fixture.certificate.replace(fixture.signer.serialized, server.serialized)
    assert again.certificate == expected


# ------------------------------------------------------------------------------ issue/validate
def test_issue_decode_round_trip_and_validate() -> None:
    w = World.create()
    alice = KeyPair.generate(w.rng)
    cert = SenderCertificate.issue(
        sender_uuid="11111111-2222-4333-8444-555555555555",
        sender_e164="+15550100",
        sender_device_id=3,
        identity_key=alice.public,
        expiration_ms=NOW_MS,
        signer=w.server_certificate,
        signer_key=w.server.private,
        rng=w.rng,
    )
    back = SenderCertificate.decode(cert.encode())
    assert back == cert
    assert back.sender_e164 == "+15550100"
    assert back.sender_device_id == 3
    assert back.identity_key == alice.public
    back.validate(w.root.public, NOW_MS)
    server = ServerCertificate.decode(w.server_certificate.encode())
    assert server == w.server_certificate
    server.validate(w.root.public)


def test_uuid_as_bytes_round_trip() -> None:
    w = World.create()
    alice = KeyPair.generate(w.rng)
    cert = SenderCertificate.issue(
        sender_uuid="AAAAAAAA-7000-11EB-B32A-33B8A8A487A6",
        sender_device_id=1,
        identity_key=alice.public,
        expiration_ms=NOW_MS,
        signer=w.server_certificate,
        signer_key=w.server.private,
        rng=w.rng,
        uuid_as_bytes=True,
    )
    assert cert.sender_uuid == FIXTURE_UUID
    assert uuid.UUID(FIXTURE_UUID).bytes in cert.certificate
    assert SenderCertificate.decode(cert.encode()).sender_uuid == FIXTURE_UUID
    cert.validate(w.root.public, NOW_MS)


def test_wrong_root_expired_and_several_roots() -> None:
    w = World.create()
    cert = w.party().certificate
    other = KeyPair.generate(w.rng).public
    with pytest.raises(InvalidCertificateError, match="trust root"):
        cert.validate(other, NOW_MS)
    cert.validate([other, w.root.public], NOW_MS)
    with pytest.raises(InvalidCertificateError, match="trust root"):
        cert.validate([other], NOW_MS)
    with pytest.raises(InvalidCertificateError, match="trust root"):
        cert.validate([], NOW_MS)
    cert.validate(w.root.public, NOW_MS + DAY_MS)
    with pytest.raises(InvalidCertificateError, match="expired"):
        cert.validate(w.root.public, NOW_MS + DAY_MS + 1)


def test_revoked_server_key_id_is_refused_even_when_well_signed() -> None:
    (revoked,) = REVOKED_SERVER_KEY_IDS
    w = World.create(key_id=revoked)
    cert = w.party().certificate
    assert xeddsa.is_valid(w.root.public, w.server_certificate.certificate, w.server_certificate.signature)
    with pytest.raises(InvalidCertificateError, match="revoked"):
        w.server_certificate.validate(w.root.public)
    assert not w.server_certificate.is_valid(w.root.public)
    with pytest.raises(InvalidCertificateError, match="revoked"):
        cert.validate(w.root.public, NOW_MS)


def test_sender_certificate_signed_by_another_key_is_refused() -> None:
    w = World.create()
    cert = w.party().certificate
    impostor = KeyPair.generate(w.rng)
    forged = SenderCertificate.decode(
        signed(cert.certificate, xeddsa.sign(impostor.private, cert.certificate, w.rng))
    )
    with pytest.raises(InvalidCertificateError, match="server key"):
        forged.validate(w.root.public, NOW_MS)
    # A server certificate for the impostor key, signed by someone other than the root.
    fake_server = ServerCertificate.issue(1, impostor.public, impostor.private, w.rng)
    with pytest.raises(InvalidCertificateError, match="trust root"):
        fake_server.validate(w.root.public)


def test_tampered_certificate_bytes_fail_validation() -> None:
    w = World.create()
    cert = w.party().certificate
    for position in range(len(cert.serialized)):
        data = bytearray(cert.serialized)
        data[position] ^= 0x40
        try:
            tampered = SenderCertificate.decode(bytes(data))
        except DecodeError:
            continue
        with pytest.raises(InvalidCertificateError):
            tampered.validate(w.root.public, NOW_MS)


def test_issue_refuses_bad_arguments() -> None:
    w = World.create()
    alice = KeyPair.generate(w.rng)
    base = {
        "sender_uuid": FIXTURE_UUID,
        "sender_device_id": 1,
        "identity_key": alice.public,
        "expiration_ms": NOW_MS,
        "signer": w.server_certificate,
        "signer_key": w.server.private,
        "rng": w.rng,
    }
    for change in ({"sender_device_id": 0}, {"sender_device_id": 128}, {"expiration_ms": -1}):
        with pytest.raises(ValueError):
            SenderCertificate.issue(**{**base, **change})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="signer_key"):
        SenderCertificate.issue(**{**base, "signer_key": alice.private})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ServerCertificate.issue(1 << 32, alice.public, w.root.private, w.rng)


# -------------------------------------------------------------------------------- decoding
def _inner(**fields: bytes | None) -> bytes:
    """A sender Certificate body from the fixture's parts, with fields replaced or dropped."""
    server = bytes.fromhex(KNOWN_SERVER_CERTIFICATES[2][2])
    parts = {
        "device": uint_field(2, 1),
        "expires": fixed64_field(3, 31337),
        "key": bytes_field(4, ZERO_ROOT.to_bytes()),
        "signer": bytes_field(5, server),
        "uuid": bytes_field(6, FIXTURE_UUID.encode()),
    }
    for name, value in fields.items():
        if value is None:
            parts.pop(name, None)
        else:
            parts[name] = value
    return b"".join(parts.values())


def test_decode_accepts_the_reference_body() -> None:
    cert = SenderCertificate.decode(signed(_inner(), bytes(64)))
    assert cert.sender_uuid == FIXTURE_UUID


@pytest.mark.parametrize(
    "fields",
    [
        {"device": None},
        {"device": uint_field(2, 0)},
        {"device": uint_field(2, 128)},
        {"device": bytes_field(2, b"\x01")},
        {"expires": None},
        {"key": None},
        {"key": bytes_field(4, b"\x05" + bytes(31))},
        {"key": bytes_field(4, b"\x06" + bytes(32))},
        {"signer": None},
        {"signer": bytes_field(5, b"\x0a\x00")},
        {"signer": bytes_field(5, b"") + uint_field(8, 7)},
        {"uuid": None},
        {"uuid": bytes_field(6, b"\xff\xfe")},
        {"uuid": bytes_field(7, bytes(15))},
        {"uuid": bytes_field(6, FIXTURE_UUID.encode()) + bytes_field(7, bytes(16))},
        {"e164": bytes_field(1, b"\xc3")},
    ],
    ids=lambda f: ",".join(f"{k}={'none' if v is None else v.hex()[:12]}" for k, v in f.items()),
)
def test_decode_refuses_malformed_bodies(fields: dict[str, bytes | None]) -> None:
    with pytest.raises(DecodeError):
        SenderCertificate.decode(signed(_inner(**fields), bytes(64)))


def test_decode_refuses_missing_envelope_fields() -> None:
    for data in (b"", bytes_field(1, _inner()), bytes_field(2, bytes(64)), b"\x0a\x05ab"):
        with pytest.raises(DecodeError):
            SenderCertificate.decode(data)
        with pytest.raises(DecodeError):
            ServerCertificate.decode(data)
    with pytest.raises(DecodeError):  # server certificate without an id
        ServerCertificate.decode(signed(bytes_field(2, ZERO_ROOT.to_bytes()), bytes(64)))


def test_reprs_show_no_signature_or_phone_number() -> None:
    w = World.create()
    alice = KeyPair.generate(w.rng)
    cert = SenderCertificate.issue(
        sender_uuid=FIXTURE_UUID,
        sender_e164="+15550100",
        sender_device_id=2,
        identity_key=alice.public,
        expiration_ms=NOW_MS,
        signer=w.server_certificate,
        signer_key=w.server.private,
        rng=w.rng,
    )
    text = repr(cert) + repr(w.server_certificate)
    assert "+15550100" not in text
    assert cert.signature.hex()[:16] not in text
    assert w.server_certificate.signature.hex()[:16] not in text
    assert FIXTURE_UUID in text
