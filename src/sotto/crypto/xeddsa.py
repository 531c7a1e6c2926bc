"""XEdDSA signatures with Curve25519 keys, as libsignal makes and checks them.

Signing uses libsodium's Ed25519 scalar arithmetic (PyNaCl) on the clamped X25519 scalar ``a``:
``A = a·B``, ``r = SHA-512(0xFE ‖ 0xFF×31 ‖ k ‖ M ‖ Z) mod L``, ``R = r·B``,
``h = SHA-512(R ‖ A ‖ M) mod L``, ``s = h·a + r mod L``. libsignal does not force A's sign bit
to zero; it stores that bit in the top bit of ``s``'s last byte instead, and so do we.
Verifying converts the Montgomery ``u`` to the Edwards ``y = (u − 1)/(u + 1)`` with that sign
and hands the result to `cryptography`'s Ed25519 verify.
"""

from __future__ import annotations

import nacl.bindings as sodium
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sotto.crypto.kdf import sha512
from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import InvalidSignatureError

SIGNATURE_LENGTH = 64
_P = 2**255 - 19
_NONCE_PREFIX = b"\xfe" + b"\xff" * 31
_ZERO32 = bytes(32)


def _reduce(wide: bytes) -> bytes:
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(wide))


def sign(private: PrivateKey, message: bytes, rng: Rng) -> bytes:
    """A 64-byte XEdDSA signature over ``message``."""
    k = private.to_bytes()
    a = _reduce(k + _ZERO32)
    big_a = sodium.crypto_scalarmult_ed25519_base_noclamp(a)
    sign_bit = big_a[31] & 0x80
    r = _reduce(sha512(_NONCE_PREFIX + k + message + rng(64)))
    big_r = sodium.crypto_scalarmult_ed25519_base_noclamp(r)
    h = _reduce(sha512(big_r + big_a + message))
    s = bytearray(sodium.crypto_core_ed25519_scalar_add(sodium.crypto_core_ed25519_scalar_mul(h, a), r))
    s[31] = (s[31] & 0x7F) | sign_bit
    return bytes(big_r) + bytes(s)


def verify(public: PublicKey, message: bytes, signature: bytes) -> None:
    """Return if ``signature`` is valid for ``message`` under ``public``, else raise InvalidSignatureError."""
    if len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignatureError("XEdDSA signature must be 64 bytes")
    sign_bit = signature[63] & 0x80
    s = bytearray(signature[32:])
    s[31] &= 0x7F
    if s[31] & 0xE0:  # libsignal: s must be below 2^253
        raise InvalidSignatureError("XEdDSA signature scalar out of range")
    u = int.from_bytes(public.raw, "little") & ((1 << 255) - 1)
    u %= _P
    if u == _P - 1:
        raise InvalidSignatureError("public key has no Edwards form")
    y = bytearray(((u - 1) * pow(u + 1, -1, _P) % _P).to_bytes(32, "little"))
    y[31] |= sign_bit
    try:
        Ed25519PublicKey.from_public_bytes(bytes(y)).verify(signature[:32] + bytes(s), message)
    except (InvalidSignature, ValueError):
        raise InvalidSignatureError("XEdDSA signature did not verify") from None


def is_valid(public: PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        verify(public, message, signature)
    except InvalidSignatureError:
        return False
    return True
