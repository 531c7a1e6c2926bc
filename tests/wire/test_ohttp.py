"""Oblivious HTTP (RFC 9458): Appendix A reproduced on both sides byte for byte, round trips for every
supported suite, and each refusal (unknown key, unsupported algorithm, malformed, tampered,
oversized) with its own typed error and nothing else."""

from __future__ import annotations

import contextlib
import pickle
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.crypto.random import Rng, seeded_rng, system_rng
from sotto.errors import DecodeError, DecryptionError
from sotto.wire import bhttp, ohttp
from sotto.wire.ohttp import (
    EncapsulationDecryptionError,
    GatewayKey,
    KeyConfig,
    MalformedEncapsulationError,
    MessageTooLargeError,
    ObliviousHttpError,
    ResponseContext,
    SymmetricAlgorithm,
    UnknownKeyIdError,
    UnsupportedAlgorithmError,
)
from tests.vectors.ohttp import load

A = {k: bytes.fromhex(v) for k, v in load("rfc9458_appendix_a").items() if k not in {"source", "suite"}}
SUITE = load("rfc9458_appendix_a")["suite"]


def fixed(value: bytes) -> Rng:
    """An rng that returns ``value`` once, and refuses to be asked for anything else."""

    def rng(n: int) -> bytes:
        assert n == len(value)
        return value

    return rng


@pytest.fixture
def gateway() -> GatewayKey:
    return GatewayKey(1, A["gateway_secret_key"], KeyConfig.decode(A["key_config"]).algorithms)


# ---------------------------------------------------------------------------------------- Appendix A
def test_appendix_a_key_configuration() -> None:
    config = KeyConfig.decode(A["key_config"])
    assert (config.key_id, config.kem_id) == (1, SUITE["kem_id"])
    assert config.algorithms == (
        SymmetricAlgorithm(ohttp.KDF_HKDF_SHA256, ohttp.AEAD_AES_128_GCM),
        SymmetricAlgorithm(ohttp.KDF_HKDF_SHA256, ohttp.AEAD_CHACHA20_POLY1305),
    )
    assert config.encode() == A["key_config"]
    assert config.choose() == SymmetricAlgorithm(SUITE["kdf_id"], SUITE["aead_id"])


def test_appendix_a_gateway_key_gives_the_same_configuration(gateway: GatewayKey) -> None:
    assert gateway.config.encode() == A["key_config"]
    assert gateway.to_private_bytes() == A["gateway_secret_key"]


def test_appendix_a_client_encapsulates_the_request_byte_for_byte() -> None:
    config = KeyConfig.decode(A["key_config"])
    enc_request, context = ohttp.encapsulate_request(config, A["request"], fixed(A["ephemeral_secret_key"]))
    assert enc_request == A["encapsulated_request"]
    assert enc_request[7:39] == A["ephemeral_public_key"] == context.enc
    # The header the HPKE info ends with (info itself is checked by the ciphertext matching).
    assert A["info"] == b"message/bhttp request\x00" + enc_request[:7]
    assert ohttp.decapsulate_response(context, A["encapsulated_response"]) == A["response"]


def test_appendix_a_gateway_decapsulates_and_encapsulates_byte_for_byte(gateway: GatewayKey) -> None:
    request, context = ohttp.decapsulate_request([gateway], A["encapsulated_request"])
    assert request == A["request"]
    assert bhttp.decode_request(request) == bhttp.Request(b"GET", b"https", b"example.com", b"/")
    assert context.response_key_and_nonce(A["response_nonce"]) == (A["aead_key"], A["aead_nonce"])
    assert A["salt"] == context.enc + A["response_nonce"]
    enc_response = ohttp.encapsulate_response(context, A["response"], fixed(A["response_nonce"]))
    assert enc_response == A["encapsulated_response"]


def test_appendix_a_exported_secret_and_pseudorandom_key(gateway: GatewayKey) -> None:
    # Not public API: the intermediate values, so a mismatch says which step went wrong.
    _, context = ohttp.decapsulate_request(gateway, A["encapsulated_request"])
    assert context._secret == A["exported_secret"]
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    assert HKDF.extract(hashes.SHA256(), A["salt"], context._secret) == A["prk"]


# ---------------------------------------------------------------------------------------- round trips
SUPPORTED = [
    SymmetricAlgorithm(kdf, aead)
    for kdf in (ohttp.KDF_HKDF_SHA256, ohttp.KDF_HKDF_SHA384, ohttp.KDF_HKDF_SHA512)
    for aead in (ohttp.AEAD_AES_128_GCM, ohttp.AEAD_AES_256_GCM, ohttp.AEAD_CHACHA20_POLY1305)
]


@pytest.mark.parametrize("algorithm", SUPPORTED, ids=lambda a: f"kdf{a.kdf_id}-aead{a.aead_id}")
def test_every_supported_suite_round_trips(algorithm: SymmetricAlgorithm) -> None:
    rng = seeded_rng(7)
    key = GatewayKey.generate(9, rng, (algorithm,))
    enc_request, client = ohttp.encapsulate_request(key.config, b"request", rng)
    assert enc_request[1:7] == struct.pack(
        ">HHH", ohttp.KEM_X25519_HKDF_SHA256, algorithm.kdf_id, algorithm.aead_id
    )
    request, server = ohttp.decapsulate_request(key, enc_request)
    assert request == b"request"
    enc_response = ohttp.encapsulate_response(server, b"response", rng)
    assert len(enc_response) == max(12, 16 if algorithm.aead_id == 1 else 32) + len(b"response") + 16
    assert ohttp.decapsulate_response(client, enc_response) == b"response"


@given(st.binary(max_size=2000), st.binary(max_size=2000), st.integers(0, 255), st.integers(0, 2**32))
def test_requests_and_responses_round_trip(request: bytes, response: bytes, key_id: int, seed: int) -> None:
    rng = seeded_rng(seed)
    keys = [GatewayKey.generate((key_id + 1) % 256, rng), GatewayKey.generate(key_id, rng)]
    enc_request, client = ohttp.encapsulate_request(keys[1].config, request, rng)
    got, server = ohttp.decapsulate_request(keys, enc_request)
    assert got == request
    assert ohttp.decapsulate_response(client, ohttp.encapsulate_response(server, response, rng)) == response


def test_binary_http_through_the_encapsulation() -> None:
    rng = seeded_rng(3)
    key = GatewayKey.generate(4, rng)
    message = bhttp.Request(
        b"POST", b"https", b"relay.example", b"/v1/poll", ((b"content-type", b"x"),), b"{}"
    )
    enc_request, client = ohttp.encapsulate_request(key.config, bhttp.encode_request(message), rng)
    request, server = ohttp.decapsulate_request(key, enc_request)
    assert bhttp.decode_request(request) == message
    answer = bhttp.Response(200, content=b"ok")
    enc_response = ohttp.encapsulate_response(server, bhttp.encode_response(answer), rng)
    assert bhttp.decode_response(ohttp.decapsulate_response(client, enc_response)) == answer


def test_the_same_rng_replays_a_request_and_another_draws_a_fresh_ephemeral_key() -> None:
    key = GatewayKey.generate(1, seeded_rng(1))
    first, _ = ohttp.encapsulate_request(key.config, b"x", seeded_rng(2))
    again, _ = ohttp.encapsulate_request(key.config, b"x", seeded_rng(2))
    fresh, _ = ohttp.encapsulate_request(key.config, b"x", system_rng)
    assert first == again
    assert fresh[7:39] != first[7:39]


def test_the_client_takes_the_gateways_first_supported_algorithm_or_the_one_named() -> None:
    unknown = SymmetricAlgorithm(0x0099, ohttp.AEAD_AES_128_GCM)
    chacha = SymmetricAlgorithm(ohttp.KDF_HKDF_SHA256, ohttp.AEAD_CHACHA20_POLY1305)
    aes = SymmetricAlgorithm(ohttp.KDF_HKDF_SHA256, ohttp.AEAD_AES_128_GCM)
    public = GatewayKey.generate(1, seeded_rng(1)).config.public_key
    config = KeyConfig(1, ohttp.KEM_X25519_HKDF_SHA256, public, (unknown, chacha, aes))
    assert config.choose() == chacha
    enc_request, _ = ohttp.encapsulate_request(config, b"", seeded_rng(1), algorithm=aes)
    assert enc_request[3:7] == struct.pack(">HH", aes.kdf_id, aes.aead_id)


# ---------------------------------------------------------------------------------------- key configurations
def test_key_configuration_lists_round_trip_and_skip_unknown_kems() -> None:
    first = GatewayKey.generate(1, seeded_rng(1)).config
    second = KeyConfig.decode(A["key_config"])
    body = ohttp.encode_key_configs([first, second])
    assert ohttp.decode_key_configs(body) == (first, second)
    unknown = b"\x07\x7f\x7f" + bytes(10) + b"\x00\x04\x00\x01\x00\x01"
    with_unknown = struct.pack(">H", len(unknown)) + unknown + body
    assert ohttp.decode_key_configs(with_unknown) == (first, second)
    with pytest.raises(UnsupportedAlgorithmError):
        ohttp.decode_key_configs(struct.pack(">H", len(unknown)) + unknown)


def test_a_p256_configuration_parses_but_cannot_be_used() -> None:
    config = KeyConfig(2, 0x0010, b"\x04" + bytes(64), (SymmetricAlgorithm(1, 1),))
    assert KeyConfig.decode(config.encode()) == config
    with pytest.raises(UnsupportedAlgorithmError, match="KEM"):
        ohttp.encapsulate_request(config, b"", seeded_rng(1))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedEncapsulationError),
        (b"\x01\x00", MalformedEncapsulationError),
        (b"\x01\x00\x20" + bytes(31), MalformedEncapsulationError),  # public key cut
        (b"\x01\x00\x20" + bytes(32) + b"\x00", MalformedEncapsulationError),  # length cut
        (b"\x01\x00\x20" + bytes(32) + b"\x00\x00", MalformedEncapsulationError),  # no algorithm
        (b"\x01\x00\x20" + bytes(32) + b"\x00\x03\x00\x01\x00", MalformedEncapsulationError),
        (b"\x01\x00\x20" + bytes(32) + b"\x00\x04\x00\x01\x00", MalformedEncapsulationError),  # cut
        (A["key_config"] + b"\x00", MalformedEncapsulationError),  # trailing byte
        (b"\x01\x12\x34" + bytes(40), UnsupportedAlgorithmError),  # unknown KEM: its key size too
    ],
)
def test_malformed_key_configurations(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        KeyConfig.decode(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedEncapsulationError),
        (b"\x00", MalformedEncapsulationError),
        (b"\x00\x2e" + A["key_config"], MalformedEncapsulationError),  # past the end
        (b"\x00\x2c" + A["key_config"][:-1], MalformedEncapsulationError),  # inner length wrong
        (b"\x00\x2d" + A["key_config"] + b"\x00", MalformedEncapsulationError),  # a dangling byte
        (b"\x00\x2e" + A["key_config"] + b"\x00", MalformedEncapsulationError),  # inner trailing byte
        (b"\x00\x2d" + A["key_config"] + b"\x00\x02\x01\x00", MalformedEncapsulationError),  # bad 2nd
        (bytes(ohttp.MAX_KEY_CONFIGS_BYTES + 1), MessageTooLargeError),
    ],
)
def test_a_key_configuration_list_with_any_error_is_discarded_whole(
    data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ohttp.decode_key_configs(data)


@pytest.mark.parametrize(
    "build",
    [
        lambda: KeyConfig(256, 0x20, bytes(32), (SymmetricAlgorithm(1, 1),)),
        lambda: KeyConfig(1, 0x20, bytes(31), (SymmetricAlgorithm(1, 1),)),
        lambda: KeyConfig(1, 0x20, bytes(32), ()),
        lambda: KeyConfig(1, 0x20, bytes(32), (SymmetricAlgorithm(1, 0x10000),)),
        lambda: GatewayKey(1, bytes(31)),
        lambda: GatewayKey(1, bytes(32), (SymmetricAlgorithm(1, 0xFFFF),)),
        lambda: ohttp.encode_key_configs([]),
    ],
)
def test_building_an_invalid_configuration_is_a_programming_error(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


# ---------------------------------------------------------------------------------------- refusals
def _with_header(enc_request: bytes, key_id: int, kem_id: int, kdf_id: int, aead_id: int) -> bytes:
    return struct.pack(">BHHH", key_id, kem_id, kdf_id, aead_id) + enc_request[7:]


def test_an_unknown_key_id_is_refused(gateway: GatewayKey) -> None:
    other = _with_header(A["encapsulated_request"], 2, 0x20, 1, 1)
    with pytest.raises(UnknownKeyIdError) as caught:
        ohttp.decapsulate_request([gateway], other)
    assert caught.value.key_id == 2
    with pytest.raises(UnknownKeyIdError):
        ohttp.decapsulate_request([], A["encapsulated_request"])


def test_a_key_id_of_another_kem_is_refused(gateway: GatewayKey) -> None:
    with pytest.raises(UnknownKeyIdError, match="KEM"):
        ohttp.decapsulate_request(gateway, _with_header(A["encapsulated_request"], 1, 0x10, 1, 1))


@pytest.mark.parametrize(
    ("kdf_id", "aead_id"),
    [(1, 2), (2, 1), (1, 0xFFFF), (0, 0), (0x1234, 1)],
)
def test_an_algorithm_the_key_does_not_accept_is_refused(
    gateway: GatewayKey, kdf_id: int, aead_id: int
) -> None:
    with pytest.raises(UnsupportedAlgorithmError):
        ohttp.decapsulate_request(gateway, _with_header(A["encapsulated_request"], 1, 0x20, kdf_id, aead_id))


def test_the_client_refuses_a_configuration_without_a_usable_algorithm() -> None:
    config = KeyConfig(1, 0x20, bytes(32), (SymmetricAlgorithm(1, 0xFFFF), SymmetricAlgorithm(9, 1)))
    with pytest.raises(UnsupportedAlgorithmError):
        config.choose()
    with pytest.raises(UnsupportedAlgorithmError):
        ohttp.encapsulate_request(
            KeyConfig.decode(A["key_config"]), b"", seeded_rng(1), algorithm=SUPPORTED[1]
        )


@pytest.mark.parametrize("length", [0, 1, 6, 7, 7 + 32, 7 + 32 + 15])
def test_an_encapsulated_request_too_short_to_hold_its_parts_is_malformed(
    gateway: GatewayKey, length: int
) -> None:
    with pytest.raises(MalformedEncapsulationError):
        ohttp.decapsulate_request(gateway, A["encapsulated_request"][:length])


def test_every_tampered_byte_after_the_header_is_one_decryption_error(gateway: GatewayKey) -> None:
    original = A["encapsulated_request"]
    for index in range(7, len(original)):
        tampered = bytearray(original)
        tampered[index] ^= 0x01
        with pytest.raises(EncapsulationDecryptionError, match=r"^decryption failed$"):
            ohttp.decapsulate_request(gateway, bytes(tampered))
    with pytest.raises(EncapsulationDecryptionError):
        ohttp.decapsulate_request(gateway, original[:-1])
    with pytest.raises(EncapsulationDecryptionError):
        ohttp.decapsulate_request(gateway, original + b"\x00")


def test_a_low_order_gateway_key_is_refused_by_the_client() -> None:
    config = KeyConfig(1, ohttp.KEM_X25519_HKDF_SHA256, bytes(32), (SymmetricAlgorithm(1, 1),))
    with pytest.raises(MalformedEncapsulationError, match="public key"):
        ohttp.encapsulate_request(config, b"", seeded_rng(1))


def test_a_low_order_enc_is_a_decryption_error(gateway: GatewayKey) -> None:
    for point in (bytes(32), b"\x01" + bytes(31)):
        forged = A["encapsulated_request"][:7] + point + A["encapsulated_request"][39:]
        with pytest.raises(EncapsulationDecryptionError):
            ohttp.decapsulate_request(gateway, forged)


def test_a_request_for_another_gateway_key_does_not_open(gateway: GatewayKey) -> None:
    impostor = GatewayKey(1, bytes(range(32)), gateway.config.algorithms)
    with pytest.raises(EncapsulationDecryptionError):
        ohttp.decapsulate_request(impostor, A["encapsulated_request"])


def test_every_tampered_response_byte_is_one_decryption_error(gateway: GatewayKey) -> None:
    _, context = ohttp.decapsulate_request(gateway, A["encapsulated_request"])
    original = A["encapsulated_response"]
    for index in range(len(original)):
        tampered = bytearray(original)
        tampered[index] ^= 0x80
        with pytest.raises(EncapsulationDecryptionError):
            ohttp.decapsulate_response(context, bytes(tampered))
    with pytest.raises(EncapsulationDecryptionError):
        ohttp.decapsulate_response(context, original[:-1])
    with pytest.raises(MalformedEncapsulationError):
        ohttp.decapsulate_response(context, original[: 16 + 15])


def test_a_response_under_another_requests_context_does_not_open(gateway: GatewayKey) -> None:
    config = gateway.config
    _, client = ohttp.encapsulate_request(config, A["request"], seeded_rng(5))
    with pytest.raises(EncapsulationDecryptionError):
        ohttp.decapsulate_response(client, A["encapsulated_response"])


def test_oversized_input_is_refused_before_any_other_check(gateway: GatewayKey) -> None:
    big = b"\xff" * (ohttp.MAX_ENCAPSULATED_BYTES + 1)  # key id 255: unknown, if it were looked up
    with pytest.raises(MessageTooLargeError):
        ohttp.decapsulate_request([], big)
    with pytest.raises(MessageTooLargeError):
        ohttp.decapsulate_request(gateway, A["encapsulated_request"], max_size=79)
    assert ohttp.decapsulate_request(gateway, A["encapsulated_request"], max_size=80)
    _, context = ohttp.decapsulate_request(gateway, A["encapsulated_request"])
    with pytest.raises(MessageTooLargeError):
        ohttp.decapsulate_response(context, big)
    with pytest.raises(MessageTooLargeError):
        ohttp.encapsulate_response(context, bytes(100), seeded_rng(1), max_size=100)
    with pytest.raises(MessageTooLargeError):
        ohttp.encapsulate_request(gateway.config, bytes(100), seeded_rng(1), max_size=100)


def test_the_errors_fit_the_tree() -> None:
    for error in (MalformedEncapsulationError, MessageTooLargeError):
        assert issubclass(error, ObliviousHttpError)
        assert issubclass(error, DecodeError)
    assert issubclass(EncapsulationDecryptionError, DecryptionError)
    for other in (UnknownKeyIdError, UnsupportedAlgorithmError, EncapsulationDecryptionError):
        assert issubclass(other, ObliviousHttpError)


@given(st.binary(max_size=200))
def test_the_gateway_raises_only_oblivious_http_errors(data: bytes) -> None:
    key = GatewayKey(data[0] if data else 0, bytes(range(32)))
    for candidate in (data, data[:1] + b"\x00\x20\x00\x01\x00\x02" + data[7:]):
        with contextlib.suppress(ObliviousHttpError):
            ohttp.decapsulate_request(key, candidate)


@given(st.binary(max_size=200))
def test_key_configuration_and_response_decoders_raise_only_oblivious_http_errors(data: bytes) -> None:
    context = ResponseContext(bytes(32), ohttp.KDF_HKDF_SHA256, ohttp.AEAD_AES_128_GCM, bytes(16))
    for decode in (
        ohttp.decode_key_configs,
        KeyConfig.decode,
        lambda d: ohttp.decapsulate_response(context, d),
    ):
        with contextlib.suppress(ObliviousHttpError):
            decode(data)


# ---------------------------------------------------------------------------------------- secrets
def test_no_repr_or_error_shows_key_material(gateway: GatewayKey) -> None:
    _, context = ohttp.decapsulate_request(gateway, A["encapsulated_request"])
    shown = [repr(gateway), repr(context), repr(gateway.config)]
    for secret in (A["gateway_secret_key"], A["exported_secret"]):
        for text in shown:
            assert secret.hex()[:8] not in text
    assert "<secret>" in repr(gateway)
    assert "<secret>" in repr(context)
    with pytest.raises(EncapsulationDecryptionError) as caught:
        ohttp.decapsulate_response(context, bytes(40))
    assert str(caught.value) == "decryption failed"


def test_secrets_refuse_to_be_pickled(gateway: GatewayKey) -> None:
    _, context = ohttp.decapsulate_request(gateway, A["encapsulated_request"])
    for holder in (gateway, context):
        with pytest.raises(TypeError, match="pickl"):
            pickle.dumps(holder)
