"""Oblivious HTTP (RFC 9458): key configurations and the HPKE encapsulation of requests and responses.

A client seals a binary HTTP request (:mod:`sotto.wire.bhttp`) to a gateway's public key, so the
forwarder that carries it learns nothing but its size, and the gateway learns nothing about the
client but what the request says. The four steps, each a pure function (randomness passed in)::

    client                                          gateway
    encapsulate_request(config, req, rng)
        -> enc_request, context   ── forwarder ──>  decapsulate_request(keys, enc_request)
                                                        -> req, context
                                                    encapsulate_response(context, res, rng)
    decapsulate_response(context, enc_response) <──     -> enc_response
        -> res

Formats (RFC 9458 §3.1, §4.1, §4.2)::

    Key Config              key_id(8) kem_id(16) public_key(Npk) length(16) (kdf_id(16) aead_id(16))...
    application/ohttp-keys  (length(16) Key Config)...
    Encapsulated Request    key_id(8) kem_id(16) kdf_id(16) aead_id(16) enc(Nenc) ct
    Encapsulated Response   response_nonce(max(Nn, Nk)) ct

The request is sealed with HPKE base mode (RFC 9180, through pyhpke) with ``info`` = "message/bhttp
request" ‖ 0x00 ‖ header; the response with the AEAD under a key and nonce expanded (HKDF) from
a secret that both sides export from the request's HPKE context, salted with ``enc`` and a fresh
response nonce. Supported: the KEM DHKEM(X25519, HKDF-SHA256); the KDFs HKDF-SHA256/384/512; the
AEADs AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305. Key configurations of the other DHKEMs still
parse (their key sizes are known); anything else is :class:`UnsupportedAlgorithmError`.

Errors, one tree; every function here raises only :class:`ObliviousHttpError` on bad input::

    ObliviousHttpError                      root of every refusal of this module
    ├── MalformedEncapsulationError         (also a DecodeError) bytes that do not parse: too short,
    │                                       a length that disagrees, trailing bytes
    ├── MessageTooLargeError                (also a DecodeError) over the size limit; refused before
    │                                       any HPKE work
    ├── UnknownKeyIdError                   the key id names no key of the gateway (or a key of
    │                                       another KEM)
    ├── UnsupportedAlgorithmError           a KEM, KDF or AEAD this code or this key does not accept
    └── EncapsulationDecryptionError        (also a DecryptionError) HPKE or the AEAD refused: tampered
                                            or truncated ciphertext, wrong key, bad ``enc``; one
                                            error on purpose

The gateway's private key and the exported response secret are never shown by ``repr`` and
refuse to be pickled; the AEAD tags are checked inside `cryptography` (in constant time).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKeyPair, PyHPKEError

from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError, SottoError
from sotto.wire.bhttp import DEFAULT_LIMITS

__all__ = [
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
    "AEAD_CHACHA20_POLY1305",
    "DEFAULT_ALGORITHMS",
    "KDF_HKDF_SHA256",
    "KDF_HKDF_SHA384",
    "KDF_HKDF_SHA512",
    "KEM_X25519_HKDF_SHA256",
    "KEYS_MEDIA_TYPE",
    "MAX_ENCAPSULATED_BYTES",
    "MAX_KEY_CONFIGS_BYTES",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "EncapsulationDecryptionError",
    "GatewayKey",
    "KeyConfig",
    "MalformedEncapsulationError",
    "MessageTooLargeError",
    "ObliviousHttpError",
    "ResponseContext",
    "SymmetricAlgorithm",
    "UnknownKeyIdError",
    "UnsupportedAlgorithmError",
    "decapsulate_request",
    "decapsulate_response",
    "decode_key_configs",
    "encapsulate_request",
    "encapsulate_response",
    "encode_key_configs",
]

KEYS_MEDIA_TYPE: Final = "application/ohttp-keys"
REQUEST_MEDIA_TYPE: Final = "message/ohttp-req"
RESPONSE_MEDIA_TYPE: Final = "message/ohttp-res"

_REQUEST_LABEL: Final = b"message/bhttp request"
_RESPONSE_LABEL: Final = b"message/bhttp response"

# HPKE identifiers (RFC 9180 §7).
KEM_X25519_HKDF_SHA256: Final = 0x0020
KDF_HKDF_SHA256: Final = 0x0001
KDF_HKDF_SHA384: Final = 0x0002
KDF_HKDF_SHA512: Final = 0x0003
AEAD_AES_128_GCM: Final = 0x0001
AEAD_AES_256_GCM: Final = 0x0002
AEAD_CHACHA20_POLY1305: Final = 0x0003

_PUBLIC_KEY_LENGTH: Final = {0x0010: 65, 0x0011: 97, 0x0012: 133, 0x0020: 32, 0x0021: 56}
"""Npk (= Nenc) of every DHKEM: enough to parse a key configuration of any of them."""
_SUPPORTED_KEMS: Final = frozenset({KEM_X25519_HKDF_SHA256})
_X25519_SECRET_LENGTH: Final = 32
_KDF_HASH: Final[dict[int, type[hashes.HashAlgorithm]]] = {
    KDF_HKDF_SHA256: hashes.SHA256,
    KDF_HKDF_SHA384: hashes.SHA384,
    KDF_HKDF_SHA512: hashes.SHA512,
}
_AEAD: Final[dict[int, tuple[type[AESGCM] | type[ChaCha20Poly1305], int, int]]] = {
    # aead_id: (cipher, Nk, Nn)
    AEAD_AES_128_GCM: (AESGCM, 16, 12),
    AEAD_AES_256_GCM: (AESGCM, 32, 12),
    AEAD_CHACHA20_POLY1305: (ChaCha20Poly1305, 32, 12),
}
_TAG_LENGTH: Final = 16
"""Nt of every supported AEAD."""
_HEADER: Final = struct.Struct(">BHHH")

MAX_ENCAPSULATED_BYTES: Final = DEFAULT_LIMITS.max_message + _HEADER.size + 32 + _TAG_LENGTH
"""The largest Encapsulated Request or Response accepted by default: the largest binary HTTP
message :mod:`sotto.wire.bhttp` decodes by default, plus the encapsulation's own bytes."""

MAX_KEY_CONFIGS_BYTES: Final = 65_536
"""The largest ``application/ohttp-keys`` body a client reads: a few keys fit in a hundred bytes."""


# ---------------------------------------------------------------------------------------- errors
class ObliviousHttpError(SottoError):
    """An Oblivious HTTP message, key configuration or algorithm this code refuses."""


class MalformedEncapsulationError(ObliviousHttpError, DecodeError):
    """Bytes that do not parse as a key configuration or an Encapsulated Request or Response."""


class MessageTooLargeError(ObliviousHttpError, DecodeError):
    """A message over the size limit, refused before any HPKE work."""


class UnknownKeyIdError(ObliviousHttpError):
    """The key identifier names no key the gateway holds, or a key of another KEM."""

    def __init__(self, key_id: int, message: str | None = None) -> None:
        super().__init__(message or f"no gateway key with id {key_id}")
        self.key_id = key_id


class UnsupportedAlgorithmError(ObliviousHttpError):
    """A KEM, KDF or AEAD that this code does not implement or that the key does not accept."""


class EncapsulationDecryptionError(ObliviousHttpError, DecryptionError):
    """HPKE or the response AEAD refused the ciphertext; deliberately says nothing about why."""

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


# ---------------------------------------------------------------------------------------- key configuration
@dataclass(frozen=True, slots=True)
class SymmetricAlgorithm:
    """One HPKE KDF and AEAD pair that a gateway accepts with its key."""

    kdf_id: int
    aead_id: int

    @property
    def supported(self) -> bool:
        """Whether this code implements both the KDF and the AEAD."""
        return self.kdf_id in _KDF_HASH and self.aead_id in _AEAD


DEFAULT_ALGORITHMS: Final = (
    SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_256_GCM),
    SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),
    SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_128_GCM),
)
"""What a gateway key offers unless told otherwise, most preferred first."""


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """A gateway's public key configuration (RFC 9458 §3.1): what a client needs to encapsulate.

    Construction checks the fields' ranges and the key's length (``ValueError``); :meth:`decode`
    checks bytes from outside (:class:`MalformedEncapsulationError`, and
    :class:`UnsupportedAlgorithmError` for a KEM whose key size is unknown).
    """

    key_id: int
    kem_id: int
    public_key: bytes
    algorithms: tuple[SymmetricAlgorithm, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise ValueError(f"a key id is one byte, got {self.key_id}")
        ids = [self.kem_id] + [i for a in self.algorithms for i in (a.kdf_id, a.aead_id)]
        if not all(0 <= i <= 0xFFFF for i in ids):
            raise ValueError("HPKE identifiers are 16-bit")
        if _PUBLIC_KEY_LENGTH.get(self.kem_id, len(self.public_key)) != len(self.public_key):
            raise ValueError(f"a public key of KEM {self.kem_id:#06x} is not {len(self.public_key)} bytes")
        if not 1 <= len(self.algorithms) <= 0xFFFF // 4:
            raise ValueError(f"a key configuration lists 1 to 16383 algorithms, got {len(self.algorithms)}")

    def encode(self) -> bytes:
        algorithms = b"".join(struct.pack(">HH", a.kdf_id, a.aead_id) for a in self.algorithms)
        return (
            struct.pack(">BH", self.key_id, self.kem_id)
            + self.public_key
            + struct.pack(">H", len(algorithms))
            + algorithms
        )

    @classmethod
    def decode(cls, data: bytes) -> KeyConfig:
        """Exactly one key configuration: no bytes before or after it."""
        if len(data) < 3:
            raise MalformedEncapsulationError("a key configuration shorter than its key id and KEM")
        key_id, kem_id = struct.unpack_from(">BH", data)
        npk = _PUBLIC_KEY_LENGTH.get(kem_id)
        if npk is None:
            raise UnsupportedAlgorithmError(f"unknown KEM {kem_id:#06x} in key configuration {key_id}")
        start = 3 + npk + 2
        if len(data) < start:
            raise MalformedEncapsulationError("a key configuration shorter than its public key")
        (length,) = struct.unpack_from(">H", data, 3 + npk)
        if length < 4 or length % 4:
            raise MalformedEncapsulationError(
                f"an algorithms length of {length}, not a positive multiple of 4"
            )
        if len(data) != start + length:
            raise MalformedEncapsulationError(
                f"a key configuration of {len(data)} bytes whose fields say {start + length}"
            )
        algorithms = tuple(
            SymmetricAlgorithm(*struct.unpack_from(">HH", data, offset))
            for offset in range(start, start + length, 4)
        )
        return cls(key_id, kem_id, bytes(data[3 : 3 + npk]), algorithms)

    def choose(self) -> SymmetricAlgorithm:
        """The first algorithm this code implements (the gateway lists its preference first)."""
        if self.kem_id not in _SUPPORTED_KEMS:
            raise UnsupportedAlgorithmError(f"KEM {self.kem_id:#06x} is not supported")
        for algorithm in self.algorithms:
            if algorithm.supported:
                return algorithm
        raise UnsupportedAlgorithmError(f"key configuration {self.key_id} offers no supported KDF and AEAD")

    def __repr__(self) -> str:
        return f"KeyConfig(key_id={self.key_id}, kem_id={self.kem_id:#06x}, {self.public_key.hex()[:16]}…)"


def encode_key_configs(configs: Iterable[KeyConfig]) -> bytes:
    """The ``application/ohttp-keys`` form: each configuration behind its 2-byte length."""
    out = []
    for config in configs:
        encoded = config.encode()
        out.append(struct.pack(">H", len(encoded)) + encoded)
    if not out:
        raise ValueError("an application/ohttp-keys body holds at least one key configuration")
    return b"".join(out)


def decode_key_configs(data: bytes, *, max_size: int = MAX_KEY_CONFIGS_BYTES) -> tuple[KeyConfig, ...]:
    """The key configurations of an ``application/ohttp-keys`` body whose KEM this code knows.

    A configuration of an unknown KEM is skipped (its length prefix says where it ends); any
    encoding error discards the whole body (RFC 9458 §3.2: clients that recover differently from
    errors could be told apart). None usable left is :class:`UnsupportedAlgorithmError`.
    """
    if len(data) > max_size:
        raise MessageTooLargeError(f"a key configuration list of {len(data)} bytes is over {max_size}")
    if not data:
        raise MalformedEncapsulationError("an empty key configuration list")
    configs: list[KeyConfig] = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise MalformedEncapsulationError("a key configuration list ends inside a length")
        (length,) = struct.unpack_from(">H", data, offset)
        end = offset + 2 + length
        if end > len(data):
            raise MalformedEncapsulationError("a key configuration runs past the end of the list")
        with contextlib.suppress(UnsupportedAlgorithmError):  # an unknown KEM: skipped, as said
            configs.append(KeyConfig.decode(data[offset + 2 : end]))
        offset = end
    if not configs:
        raise UnsupportedAlgorithmError("no key configuration of a supported KEM")
    return tuple(configs)


class GatewayKey:
    """A gateway's HPKE key pair, its key id and the algorithms it accepts; the secret never shows.

    ``config`` is the public :class:`KeyConfig` to hand to clients (through a channel that
    authenticates it: RFC 9458 §3).
    """

    __slots__ = ("_private", "config")

    def __init__(
        self, key_id: int, private_key: bytes, algorithms: tuple[SymmetricAlgorithm, ...] = DEFAULT_ALGORITHMS
    ) -> None:
        if len(private_key) != _X25519_SECRET_LENGTH:
            raise ValueError(
                f"an X25519 private key is {_X25519_SECRET_LENGTH} bytes, got {len(private_key)}"
            )
        unsupported = [a for a in algorithms if not a.supported]
        if unsupported:
            raise ValueError(f"algorithms this code does not implement: {unsupported}")
        public = X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()
        self.config = KeyConfig(key_id, KEM_X25519_HKDF_SHA256, public, tuple(algorithms))
        self._private = bytes(private_key)

    @classmethod
    def generate(
        cls, key_id: int, rng: Rng, algorithms: tuple[SymmetricAlgorithm, ...] = DEFAULT_ALGORITHMS
    ) -> GatewayKey:
        return cls(key_id, rng(_X25519_SECRET_LENGTH), algorithms)

    @property
    def key_id(self) -> int:
        return self.config.key_id

    def to_private_bytes(self) -> bytes:
        """The raw X25519 private key, for a caller that stores it on purpose."""
        return self._private

    def __repr__(self) -> str:
        return f"GatewayKey(key_id={self.key_id}, public={self.config.public_key.hex()[:16]}…, <secret>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("gateway keys are not picklable; serialize them on purpose with to_private_bytes()")


# ---------------------------------------------------------------------------------------- HPKE
def _suite(kdf_id: int, aead_id: int) -> CipherSuite:
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId(kdf_id), AEADId(aead_id))


def _secret_length(aead_id: int) -> int:
    _, key_length, nonce_length = _AEAD[aead_id]
    return max(key_length, nonce_length)


class ResponseContext:
    """What either side keeps from a request's HPKE context to protect its one response.

    The secret exported with "message/bhttp response" (``max(Nn, Nk)`` bytes), the request's
    ``enc`` and the suite. Its repr shows no secret; it cannot be pickled.
    """

    __slots__ = ("_secret", "aead_id", "enc", "kdf_id")

    def __init__(self, enc: bytes, kdf_id: int, aead_id: int, secret: bytes) -> None:
        if kdf_id not in _KDF_HASH or aead_id not in _AEAD:
            raise ValueError(f"unsupported KDF {kdf_id:#06x} or AEAD {aead_id:#06x}")
        if len(secret) != _secret_length(aead_id):
            raise ValueError(f"the response secret is {_secret_length(aead_id)} bytes, got {len(secret)}")
        self.enc = bytes(enc)
        self.kdf_id = kdf_id
        self.aead_id = aead_id
        self._secret = bytes(secret)

    def response_key_and_nonce(self, response_nonce: bytes) -> tuple[bytes, bytes]:
        """RFC 9458 §4.4: ``prk = Extract(enc ‖ response_nonce, secret)``, then "key" and "nonce"."""
        _, key_length, nonce_length = _AEAD[self.aead_id]
        algorithm = _KDF_HASH[self.kdf_id]()
        prk = HKDF.extract(algorithm, self.enc + response_nonce, self._secret)
        key = HKDFExpand(algorithm, key_length, b"key").derive(prk)
        nonce = HKDFExpand(algorithm, nonce_length, b"nonce").derive(prk)
        return key, nonce

    def __repr__(self) -> str:
        return f"ResponseContext(kdf_id={self.kdf_id:#06x}, aead_id={self.aead_id:#06x}, <secret>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a response context holds a secret and is not picklable")


def _ephemeral(rng: Rng) -> KEMKeyPair:
    """The client's ephemeral X25519 key pair from ``rng``, so a seeded rng replays a request."""
    private = X25519PrivateKey.from_private_bytes(rng(_X25519_SECRET_LENGTH))
    kem = _suite(KDF_HKDF_SHA256, AEAD_AES_128_GCM).kem
    return KEMKeyPair(
        kem.deserialize_private_key(private.private_bytes_raw()),
        kem.deserialize_public_key(private.public_key().public_bytes_raw()),
    )


def encapsulate_request(
    config: KeyConfig,
    request: bytes,
    rng: Rng,
    *,
    algorithm: SymmetricAlgorithm | None = None,
    max_size: int = MAX_ENCAPSULATED_BYTES,
) -> tuple[bytes, ResponseContext]:
    """The Encapsulated Request of ``request`` (a binary HTTP message) to ``config``'s gateway.

    ``algorithm`` defaults to :meth:`KeyConfig.choose`; one the configuration does not list is
    :class:`UnsupportedAlgorithmError`. Keep the returned context to open the response.
    """
    chosen = config.choose() if algorithm is None else algorithm
    if config.kem_id not in _SUPPORTED_KEMS or not chosen.supported or chosen not in config.algorithms:
        raise UnsupportedAlgorithmError(f"{chosen} is not an algorithm of key configuration {config.key_id}")
    npk = _PUBLIC_KEY_LENGTH[config.kem_id]
    if _HEADER.size + npk + len(request) + _TAG_LENGTH > max_size:
        raise MessageTooLargeError(f"a request of {len(request)} bytes does not fit in {max_size}")
    header = _HEADER.pack(config.key_id, config.kem_id, chosen.kdf_id, chosen.aead_id)
    suite = _suite(chosen.kdf_id, chosen.aead_id)
    their_key = suite.kem.deserialize_public_key(config.public_key)
    try:
        enc, context = suite.create_sender_context(
            their_key, info=_REQUEST_LABEL + b"\x00" + header, eks=_ephemeral(rng)
        )
    except (PyHPKEError, ValueError):
        # A low-order public key: X25519 gives the all-zero shared secret, which HPKE refuses.
        raise MalformedEncapsulationError(
            f"the public key of key configuration {config.key_id} gives no shared secret"
        ) from None
    ct = context.seal(request)
    secret = context.export(_RESPONSE_LABEL, _secret_length(chosen.aead_id))
    return header + enc + ct, ResponseContext(enc, chosen.kdf_id, chosen.aead_id, secret)


def decapsulate_request(
    keys: GatewayKey | Iterable[GatewayKey], enc_request: bytes, *, max_size: int = MAX_ENCAPSULATED_BYTES
) -> tuple[bytes, ResponseContext]:
    """The binary HTTP request inside ``enc_request``, and the context for its response.

    Raises :class:`ObliviousHttpError` and nothing else: the size is checked first, then the
    header (key id, KEM, KDF and AEAD against the matching key), and only then HPKE runs.
    """
    if len(enc_request) > max_size:
        raise MessageTooLargeError(f"an encapsulated request of {len(enc_request)} bytes is over {max_size}")
    if len(enc_request) < _HEADER.size:
        raise MalformedEncapsulationError("an encapsulated request shorter than its header")
    key_id, kem_id, kdf_id, aead_id = _HEADER.unpack_from(enc_request)
    candidates = [keys] if isinstance(keys, GatewayKey) else list(keys)
    key = next((k for k in candidates if k.key_id == key_id), None)
    if key is None:
        raise UnknownKeyIdError(key_id)
    if kem_id != key.config.kem_id:
        raise UnknownKeyIdError(key_id, f"key {key_id} is not a key of KEM {kem_id:#06x}")
    algorithm = SymmetricAlgorithm(kdf_id, aead_id)
    if algorithm not in key.config.algorithms:
        raise UnsupportedAlgorithmError(
            f"key {key_id} does not accept KDF {kdf_id:#06x} with AEAD {aead_id:#06x}"
        )
    npk = _PUBLIC_KEY_LENGTH[kem_id]
    if len(enc_request) < _HEADER.size + npk + _TAG_LENGTH:
        raise MalformedEncapsulationError("an encapsulated request shorter than its enc and an AEAD tag")
    header = bytes(enc_request[: _HEADER.size])
    enc = bytes(enc_request[_HEADER.size : _HEADER.size + npk])
    suite = _suite(kdf_id, aead_id)
    try:
        context = suite.create_recipient_context(
            enc,
            suite.kem.deserialize_private_key(key.to_private_bytes()),
            info=_REQUEST_LABEL + b"\x00" + header,
        )
        request = context.open(bytes(enc_request[_HEADER.size + npk :]))
    except (PyHPKEError, ValueError):
        # ValueError: X25519 refuses a low-order enc (an all-zero shared secret).
        raise EncapsulationDecryptionError from None
    secret = context.export(_RESPONSE_LABEL, _secret_length(aead_id))
    return request, ResponseContext(enc, kdf_id, aead_id, secret)


def encapsulate_response(
    context: ResponseContext, response: bytes, rng: Rng, *, max_size: int = MAX_ENCAPSULATED_BYTES
) -> bytes:
    """The Encapsulated Response of ``response`` (a binary HTTP message) under ``context``."""
    nonce_length = _secret_length(context.aead_id)
    if nonce_length + len(response) + _TAG_LENGTH > max_size:
        raise MessageTooLargeError(f"a response of {len(response)} bytes does not fit in {max_size}")
    response_nonce = rng(nonce_length)
    key, nonce = context.response_key_and_nonce(response_nonce)
    cipher, _, _ = _AEAD[context.aead_id]
    return response_nonce + cipher(key).encrypt(nonce, response, None)


def decapsulate_response(
    context: ResponseContext, enc_response: bytes, *, max_size: int = MAX_ENCAPSULATED_BYTES
) -> bytes:
    """The binary HTTP response inside ``enc_response``; raises :class:`ObliviousHttpError` only."""
    if len(enc_response) > max_size:
        raise MessageTooLargeError(
            f"an encapsulated response of {len(enc_response)} bytes is over {max_size}"
        )
    nonce_length = _secret_length(context.aead_id)
    if len(enc_response) < nonce_length + _TAG_LENGTH:
        raise MalformedEncapsulationError("an encapsulated response shorter than its nonce and an AEAD tag")
    key, nonce = context.response_key_and_nonce(bytes(enc_response[:nonce_length]))
    cipher, _, _ = _AEAD[context.aead_id]
    try:
        return cipher(key).decrypt(nonce, bytes(enc_response[nonce_length:]), None)
    except InvalidTag:
        raise EncapsulationDecryptionError from None
