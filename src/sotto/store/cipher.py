"""Encryption at rest: sealed values bound to their place, and keyed indexes for lookups.

A store has one random 32-byte data key, wrapped under a key-encryption key derived from the
passphrase (Argon2id, :mod:`sotto.crypto.passphrase`). Changing the passphrase rewraps the data key
and touches nothing else. From the data key, HKDF derives

* the sealing key: AES-256-GCM with a random 96-bit nonce per value; the associated data names
  the table, the column and the row's key, so a ciphertext copied into another row or column
  fails to open (:class:`~sotto.errors.StoreCorruptedError`) instead of being read as that row;
* the index key: HMAC-SHA256 over a domain label and the value, for columns a query must match
  (a contact's name, a mailbox id, an address) without storing them in clear.
"""

from __future__ import annotations

import struct

from sotto.crypto.aead import NONCE_LENGTH, aes256_gcm_decrypt, aes256_gcm_encrypt
from sotto.crypto.kdf import hkdf_sha256, hmac_sha256
from sotto.crypto.passphrase import SALT_LENGTH, Argon2Params, derive_key
from sotto.crypto.random import Rng
from sotto.errors import DecryptionError, StoreCorruptedError, WrongPassphraseError

DATA_KEY_LENGTH = 32
_SEAL_INFO = b"Sotto store v1 sealing key"
_INDEX_INFO = b"Sotto store v1 index key"
_WRAP_AAD = b"Sotto store v1 data key"
_AAD_PREFIX = b"Sotto store v1 value"


def _wrap_aad(salt: bytes, params: Argon2Params) -> bytes:
    return _WRAP_AAD + struct.pack(">III", params.iterations, params.memory_kib, params.lanes) + salt


def wrap_data_key(data_key: bytes, passphrase: str, params: Argon2Params, rng: Rng) -> tuple[bytes, bytes]:
    """(salt, nonce ‖ wrapped key) for storing next to the parameters."""
    salt = rng(SALT_LENGTH)
    kek = derive_key(passphrase, salt, params)
    nonce = rng(NONCE_LENGTH)
    return salt, nonce + aes256_gcm_encrypt(kek, nonce, data_key, _wrap_aad(salt, params))


def unwrap_data_key(wrapped: bytes, passphrase: str, salt: bytes, params: Argon2Params) -> bytes:
    """The data key, or WrongPassphraseError (a tampered key row looks the same)."""
    try:
        params.check()
    except ValueError:
        raise StoreCorruptedError("the store's key parameters are out of range") from None
    if len(salt) < SALT_LENGTH or len(wrapped) != NONCE_LENGTH + DATA_KEY_LENGTH + 16:
        raise StoreCorruptedError("the store's key row is malformed")
    kek = derive_key(passphrase, salt, params)
    try:
        data_key = aes256_gcm_decrypt(
            kek, wrapped[:NONCE_LENGTH], wrapped[NONCE_LENGTH:], _wrap_aad(salt, params)
        )
    except DecryptionError:
        raise WrongPassphraseError("wrong passphrase") from None
    return data_key


def _part(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


class StoreCipher:
    """Seals and opens stored values, computes index values. Holds keys: its repr hides them."""

    __slots__ = ("_data_key", "_index_key", "_rng", "_seal_key")

    def __init__(self, data_key: bytes, rng: Rng) -> None:
        if len(data_key) != DATA_KEY_LENGTH:
            raise ValueError("data key must be 32 bytes")
        self._data_key = bytes(data_key)
        self._seal_key = hkdf_sha256(data_key, 32, _SEAL_INFO)
        self._index_key = hkdf_sha256(data_key, 32, _INDEX_INFO)
        self._rng = rng

    def wrap(self, passphrase: str, params: Argon2Params) -> tuple[bytes, bytes]:
        """(salt, wrapped data key) under a new passphrase: changing it re-encrypts nothing else."""
        return wrap_data_key(self._data_key, passphrase, params, self._rng)

    @staticmethod
    def aad(table: str, column: str, row_key: bytes) -> bytes:
        return _AAD_PREFIX + _part(table.encode()) + _part(column.encode()) + _part(row_key)

    def seal(self, table: str, column: str, row_key: bytes, plaintext: bytes) -> bytes:
        nonce = self._rng(NONCE_LENGTH)
        return nonce + aes256_gcm_encrypt(self._seal_key, nonce, plaintext, self.aad(table, column, row_key))

    def open(self, table: str, column: str, row_key: bytes, sealed: bytes) -> bytes:
        """The plaintext, or StoreCorruptedError if the value was altered or belongs elsewhere."""
        if not isinstance(sealed, bytes) or len(sealed) < NONCE_LENGTH + 16:
            raise StoreCorruptedError(f"{table}.{column}: sealed value too short")
        try:
            return aes256_gcm_decrypt(
                self._seal_key,
                sealed[:NONCE_LENGTH],
                sealed[NONCE_LENGTH:],
                self.aad(table, column, row_key),
            )
        except DecryptionError:
            raise StoreCorruptedError(f"{table}.{column}: value does not authenticate in this row") from None

    def index(self, domain: str, *parts: bytes) -> bytes:
        """HMAC-SHA256 over a domain label and length-prefixed parts (no two inputs collide)."""
        return hmac_sha256(self._index_key, _part(domain.encode()) + b"".join(_part(p) for p in parts))

    def __repr__(self) -> str:
        return "StoreCipher(<keys hidden>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a store cipher holds keys and is not picklable")
