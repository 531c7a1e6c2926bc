"""Prekeys: the public bundle a peer fetches to start a session, and our private prekey records.

A bundle is only usable if the identity key signed (XEdDSA) both the 33-byte signed prekey and
the 1569-byte Kyber prekey (type byte included), exactly as libsignal checks them.
Private records serialize to a versioned form (``0x01`` ‖ protobuf); ``from_bytes`` raises
:class:`~sotto.errors.DecodeError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto.kem import KemKeyPair, KemPublicKey
from sotto.crypto.keys import KeyPair, PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.crypto.xeddsa import SIGNATURE_LENGTH, is_valid, sign
from sotto.errors import DecodeError, InvalidKeyError, InvalidPreKeyBundleError
from sotto.protocol.limits import MAX_DEVICE_ID, MAX_REGISTRATION_ID
from sotto.protocol.protobuf import Fields, bytes_field, decode_fields, get_bytes, get_uint, uint_field

RECORD_FORMAT_VERSION = 1
_MAX_ID = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """A peer device's published keys (libsignal-wire §3.4). Public values only."""

    registration_id: int
    device_id: int
    pre_key_id: int | None
    pre_key_public: PublicKey | None
    signed_pre_key_id: int
    signed_pre_key_public: PublicKey
    signed_pre_key_signature: bytes
    identity_key: PublicKey
    kyber_pre_key_id: int
    kyber_pre_key_public: KemPublicKey
    kyber_pre_key_signature: bytes

    def validate(self) -> None:
        """Raise InvalidPreKeyBundleError unless the fields are in range and both signatures verify."""
        if (self.pre_key_id is None) != (self.pre_key_public is None):
            raise InvalidPreKeyBundleError("one-time prekey id and key must come together")
        if not 0 <= self.registration_id <= MAX_REGISTRATION_ID:
            raise InvalidPreKeyBundleError("registration id out of range")
        if not 1 <= self.device_id <= MAX_DEVICE_ID:
            raise InvalidPreKeyBundleError("device id out of range")
        for prekey_id in (self.pre_key_id, self.signed_pre_key_id, self.kyber_pre_key_id):
            if prekey_id is not None and not 0 <= prekey_id <= _MAX_ID:
                raise InvalidPreKeyBundleError("prekey id out of range")
        if not is_valid(
            self.identity_key, self.signed_pre_key_public.to_bytes(), self.signed_pre_key_signature
        ):
            raise InvalidPreKeyBundleError("signed prekey signature does not verify")
        if not is_valid(
            self.identity_key, self.kyber_pre_key_public.to_bytes(), self.kyber_pre_key_signature
        ):
            raise InvalidPreKeyBundleError("Kyber prekey signature does not verify")


def _check_id(prekey_id: int) -> int:
    if not 0 <= prekey_id <= _MAX_ID:
        raise ValueError("prekey ids are 32-bit")
    return prekey_id


def _record_fields(data: bytes, what: str) -> Fields:
    data = bytes(data)
    if not data or data[0] != RECORD_FORMAT_VERSION:
        raise DecodeError(f"unknown {what} format")
    return decode_fields(data[1:])


def _field(fields: Fields, number: int) -> bytes:
    value = get_bytes(fields, number)
    assert value is not None
    return value


def _uint(fields: Fields, number: int, bits: int = 32) -> int:
    value = get_uint(fields, number, bits=bits)
    assert value is not None
    return value


def _key_pair(public: bytes, private: bytes) -> KeyPair:
    try:
        pair = KeyPair(PrivateKey.from_bytes(private))
    except InvalidKeyError:
        raise DecodeError("invalid private key") from None
    if pair.public.to_bytes() != public:
        raise DecodeError("public key does not match the private key")
    return pair


@dataclass(frozen=True, slots=True, repr=False)
class PreKeyRecord:
    """A one-time EC prekey we published; deleted once a PreKey message uses it."""

    id: int
    key_pair: KeyPair

    @classmethod
    def generate(cls, prekey_id: int, rng: Rng) -> PreKeyRecord:
        return cls(_check_id(prekey_id), KeyPair.generate(rng))

    def to_bytes(self) -> bytes:
        return (
            bytes((RECORD_FORMAT_VERSION,))
            + uint_field(1, self.id)
            + bytes_field(2, self.key_pair.public.to_bytes())
            + bytes_field(3, self.key_pair.private.to_bytes())
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeyRecord:
        fields = _record_fields(data, "prekey record")
        return cls(_uint(fields, 1), _key_pair(_field(fields, 2), _field(fields, 3)))

    def __repr__(self) -> str:
        return f"PreKeyRecord(id={self.id}, public={self.key_pair.public!r}, <secret>)"


@dataclass(frozen=True, slots=True, repr=False)
class SignedPreKeyRecord:
    """A medium-term EC prekey, signed by the identity key; also the responder's first ratchet key."""

    id: int
    key_pair: KeyPair
    signature: bytes
    timestamp_ms: int

    @classmethod
    def generate(cls, prekey_id: int, identity: KeyPair, now_ms: int, rng: Rng) -> SignedPreKeyRecord:
        key_pair = KeyPair.generate(rng)
        signature = sign(identity.private, key_pair.public.to_bytes(), rng)
        return cls(_check_id(prekey_id), key_pair, signature, now_ms)

    def to_bytes(self) -> bytes:
        return (
            bytes((RECORD_FORMAT_VERSION,))
            + uint_field(1, self.id)
            + bytes_field(2, self.key_pair.public.to_bytes())
            + bytes_field(3, self.key_pair.private.to_bytes())
            + bytes_field(4, self.signature)
            + uint_field(5, self.timestamp_ms)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPreKeyRecord:
        fields = _record_fields(data, "signed prekey record")
        signature = _field(fields, 4)
        if len(signature) != SIGNATURE_LENGTH:
            raise DecodeError("signature must be 64 bytes")
        return cls(
            _uint(fields, 1), _key_pair(_field(fields, 2), _field(fields, 3)), signature, _uint(fields, 5, 64)
        )

    def __repr__(self) -> str:
        return f"SignedPreKeyRecord(id={self.id}, public={self.key_pair.public!r}, <secret>)"


@dataclass(frozen=True, slots=True, repr=False)
class KyberPreKeyRecord:
    """A signed Kyber1024 prekey. A last-resort key is reused, so its uses must be remembered."""

    id: int
    key_pair: KemKeyPair
    signature: bytes
    timestamp_ms: int
    last_resort: bool = False

    @classmethod
    def generate(
        cls, prekey_id: int, identity: KeyPair, now_ms: int, rng: Rng, *, last_resort: bool = False
    ) -> KyberPreKeyRecord:
        key_pair = KemKeyPair.generate(rng)
        signature = sign(identity.private, key_pair.public.to_bytes(), rng)
        return cls(_check_id(prekey_id), key_pair, signature, now_ms, last_resort)

    def to_bytes(self) -> bytes:
        return (
            bytes((RECORD_FORMAT_VERSION,))
            + uint_field(1, self.id)
            + bytes_field(2, self.key_pair.seed())
            + bytes_field(3, self.signature)
            + uint_field(4, self.timestamp_ms)
            + uint_field(5, int(self.last_resort))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KyberPreKeyRecord:
        fields = _record_fields(data, "Kyber prekey record")
        signature = _field(fields, 3)
        if len(signature) != SIGNATURE_LENGTH:
            raise DecodeError("signature must be 64 bytes")
        last_resort = _uint(fields, 5)
        if last_resort > 1:
            raise DecodeError("last-resort flag must be 0 or 1")
        try:
            key_pair = KemKeyPair.from_seed(_field(fields, 2))
        except (InvalidKeyError, ValueError):
            raise DecodeError("invalid Kyber seed") from None
        return cls(_uint(fields, 1), key_pair, signature, _uint(fields, 4, 64), bool(last_resort))

    def __repr__(self) -> str:
        return f"KyberPreKeyRecord(id={self.id}, last_resort={self.last_resort}, <secret>)"


def build_bundle(
    *,
    registration_id: int,
    device_id: int,
    identity_key: PublicKey,
    signed_pre_key: SignedPreKeyRecord,
    kyber_pre_key: KyberPreKeyRecord,
    pre_key: PreKeyRecord | None = None,
) -> PreKeyBundle:
    """Our own bundle, as we would publish it, from our private records."""
    return PreKeyBundle(
        registration_id=registration_id,
        device_id=device_id,
        pre_key_id=None if pre_key is None else pre_key.id,
        pre_key_public=None if pre_key is None else pre_key.key_pair.public,
        signed_pre_key_id=signed_pre_key.id,
        signed_pre_key_public=signed_pre_key.key_pair.public,
        signed_pre_key_signature=signed_pre_key.signature,
        identity_key=identity_key,
        kyber_pre_key_id=kyber_pre_key.id,
        kyber_pre_key_public=kyber_pre_key.key_pair.public,
        kyber_pre_key_signature=kyber_pre_key.signature,
    )
