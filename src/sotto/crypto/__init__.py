"""Typed wrappers over `cryptography` and PyNaCl; no primitive is implemented here.

Modules: ``random`` (the RNG type passed into pure code), ``keys`` (X25519 keys and their
33-byte form), ``dh`` (agreement and the canonical-point check), ``xeddsa`` (signatures with
Curve25519 keys), ``kem`` (Kyber1024 over ML-KEM-1024), ``kdf`` (HKDF, HMAC, SHA-2/3, SHAKE),
``cipher`` (AES-256-CBC and AES-256-CTR), ``aead`` (AES-256-GCM and AES-256-GCM-SIV).
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sotto.crypto.keys import KeyPair, PrivateKey, PublicKey
from sotto.crypto.random import Rng, seeded_rng, system_rng

if TYPE_CHECKING:
    from sotto.crypto import aead, cipher, dh, ed25519, kdf, kem, keys, passphrase, random, xeddsa
    from sotto.crypto.ed25519 import SigningKey, SigningPublicKey
    from sotto.crypto.kem import KemKeyPair, KemPublicKey

_MODULES = frozenset(
    {"aead", "cipher", "dh", "ed25519", "kdf", "kem", "keys", "passphrase", "random", "xeddsa"}
)
_LAZY = {
    "KemKeyPair": "kem",
    "KemPublicKey": "kem",
    "SigningKey": "ed25519",
    "SigningPublicKey": "ed25519",
}

__all__ = [
    "KemKeyPair",
    "KemPublicKey",
    "KeyPair",
    "PrivateKey",
    "PublicKey",
    "Rng",
    "SigningKey",
    "SigningPublicKey",
    "aead",
    "cipher",
    "dh",
    "ed25519",
    "kdf",
    "kem",
    "keys",
    "passphrase",
    "random",
    "seeded_rng",
    "system_rng",
    "xeddsa",
]


def __getattr__(name: str) -> ModuleType | Any:
    # Modules (and the names of the heavier ones) load on first use: ``kem`` builds on ML-KEM,
    # ``passphrase`` on Argon2, and a caller of ``keys`` should not pay for them.
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
