"""Typed wrappers over `cryptography` and PyNaCl; no primitive is implemented here.

Modules: ``random`` (the RNG type passed into pure code), ``keys`` (X25519 keys and their
33-byte form), ``dh`` (agreement and the canonical-point check), ``xeddsa`` (signatures with
Curve25519 keys), ``kem`` (Kyber1024 over ML-KEM-1024), ``kdf`` (HKDF, HMAC, SHA-2/3, SHAKE),
``cipher`` (AES-256-CBC and AES-256-CTR), ``aead`` (AES-256-GCM and AES-256-GCM-SIV).
"""
