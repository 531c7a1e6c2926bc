"""Attachments in Signal's format: a streaming cipher, pure and synchronous.

Spec symbols (as Signal's ``AttachmentCipherOutputStream`` and ``PaddingInputStream``)::

    K      = K_aes (32) ‖ K_mac (32)           64 random bytes, one key per attachment
    P'     = P ‖ 0x00 … to padded_size(|P|)     size buckets: max(541, ⌊1.05^⌈log_1.05 |P|⌉⌋)
    C      = AES-256-CBC(K_aes, IV, P' ‖ PKCS#7)
    blob   = IV (16) ‖ C ‖ HMAC-SHA256(K_mac, IV ‖ C) (32)
    digest = SHA-256(blob)                      carried, with K and |P|, in the E2E pointer

The relay stores ``blob`` and learns its length, which names the bucket and not the size.

Encryption is one pass: :class:`AttachmentEncryptor` takes the plaintext in chunks of any size
and hands back the blob in chunks of about the same size, so memory stays bounded whatever the
attachment's size.

Decryption is two passes over the blob (the caller reads it twice, from a file it holds):
:class:`AttachmentDecryptor` first checks the blob's length, its MAC and its digest over all of
it (and, as Signal's format binds the blob to K_mac only, that K_aes turns the last block into
the padding expected there) and releases nothing; only then does it decrypt, in a second pass
that computes the digest again and fails at :meth:`~AttachmentDecryptor.decrypt_finalize` if the
bytes read the second time are not the ones verified. A caller that writes the plaintext
somewhere keeps it out of sight (a temporary file) until that call returns.

Errors: :class:`AttachmentIntegrityError` for a blob that fails its MAC, its digest or the key
check (a wrong key, tampering, bytes changed between the passes; one error on purpose),
:class:`AttachmentSizeError` for a blob or plaintext of the wrong length or a size out of range,
:class:`AttachmentStateError` for calls out of order. The first two are also
:class:`~sotto.errors.DecryptionError`. None of them carries key bytes or plaintext.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.hmac import HMAC

from sotto.crypto.kdf import bytes_equal
from sotto.crypto.random import Rng
from sotto.errors import DecryptionError, ProtocolError

KEY_LENGTH: Final = 64
"""K_aes ‖ K_mac."""
IV_LENGTH: Final = 16
MAC_LENGTH: Final = 32
DIGEST_LENGTH: Final = 32
_BLOCK: Final = 16

MIN_PADDED_SIZE: Final = 541
"""Signal's smallest bucket: every attachment of up to 541 bytes looks the same."""

MAX_ATTACHMENT_SIZE: Final = 100 * 1024 * 1024
"""The largest plaintext, as Signal's 100 MiB: it bounds what a pointer can make a client
download and what the relay is asked to hold."""

CHUNK_SIZE: Final = 64 * 1024
"""The padding is encrypted in pieces of at most this many bytes (and callers that read files
use it): large enough that per-call overhead is small, and below glibc's 128 KiB threshold
above which every output buffer would be a fresh mmap (measured: twice the cost of the
encryption itself, all in page faults)."""


class AttachmentError(ProtocolError):
    """An attachment could not be encrypted or decrypted."""


class AttachmentIntegrityError(AttachmentError, DecryptionError):
    """The blob fails its MAC or its digest: a wrong key, tampering, or bytes that changed
    between the two passes. Deliberately says nothing about which check failed."""

    def __init__(self) -> None:
        DecryptionError.__init__(self, "attachment failed its integrity check")


class AttachmentSizeError(AttachmentError, DecryptionError):
    """A blob (or a plaintext) longer or shorter than its size says, or a size out of range."""

    def __init__(self, message: str) -> None:
        DecryptionError.__init__(self, message)


class AttachmentStateError(AttachmentError):
    """A call out of order: plaintext asked for before verification, or use after the end."""


def padded_size(size: int) -> int:
    """The bucket a plaintext of ``size`` bytes is padded to (Signal's ``getPaddedSize``).

    Signal's clients pad to ``max(541, floor(1.05 ** ceil(log(size) / log(1.05))))``; where
    floating point would put that below ``size``, they do not pad, and neither does this.
    """
    if not 0 <= size <= MAX_ATTACHMENT_SIZE:
        raise AttachmentSizeError(f"an attachment holds 0 to {MAX_ATTACHMENT_SIZE} bytes")
    if size <= MIN_PADDED_SIZE:
        return MIN_PADDED_SIZE
    bucket = math.floor(1.05 ** math.ceil(math.log(size) / math.log(1.05)))
    return max(bucket, size)


def encrypted_size(size: int) -> int:
    """The length of the blob for a plaintext of ``size`` bytes: what the relay stores."""
    padded = padded_size(size)
    return IV_LENGTH + (padded // _BLOCK + 1) * _BLOCK + MAC_LENGTH


def generate_key(rng: Rng) -> bytes:
    """A fresh 64-byte attachment key."""
    key = rng(KEY_LENGTH)
    if len(key) != KEY_LENGTH:
        raise ValueError("the RNG returned the wrong number of bytes")
    return key


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_LENGTH:
        raise AttachmentSizeError(f"an attachment key is {KEY_LENGTH} bytes")


class AttachmentEncryptor:
    """Encrypt one attachment of a size known in advance, in chunks.

    ``update`` takes the plaintext in pieces (exactly ``size`` bytes in all) and returns the next
    piece of the blob, the IV first; ``finalize`` yields the rest (the padding, encrypted in
    pieces of at most :data:`CHUNK_SIZE`, then the MAC); :attr:`digest` is then the pointer's.
    """

    __slots__ = (
        "_cipher",
        "_digest",
        "_hash",
        "_iv",
        "_mac",
        "_padded",
        "_padding",
        "_remaining",
        "_state",
    )

    def __init__(self, key: bytes, iv: bytes, size: int) -> None:
        _check_key(key)
        if not isinstance(iv, bytes) or len(iv) != IV_LENGTH:
            raise AttachmentSizeError(f"the IV is {IV_LENGTH} bytes")
        padded = padded_size(size)
        self._remaining = size
        self._padded = padded
        self._padding = padded - size
        self._cipher = Cipher(algorithms.AES256(key[:32]), modes.CBC(iv)).encryptor()
        self._mac = HMAC(key[32:], hashes.SHA256())
        self._hash = hashes.Hash(hashes.SHA256())
        self._iv = iv
        self._digest: bytes | None = None
        self._state = "fresh"

    @classmethod
    def start(cls, size: int, rng: Rng) -> tuple[bytes, AttachmentEncryptor]:
        """A fresh key and an encryptor under it with a fresh IV: ``(key, encryptor)``."""
        key = generate_key(rng)
        return key, cls(key, rng(IV_LENGTH), size)

    def _emit(self, ciphertext: bytes) -> bytes:
        self._mac.update(ciphertext)
        self._hash.update(ciphertext)
        return ciphertext

    def _header(self) -> bytes:
        if self._state == "fresh":
            self._state = "running"
            self._mac.update(self._iv)
            self._hash.update(self._iv)
            return self._iv
        if self._state != "running":
            raise AttachmentStateError("the encryptor is finished")
        return b""

    def update(self, data: bytes | memoryview) -> bytes:
        """Encrypt the next piece of plaintext; returns the next piece of the blob."""
        header = self._header()
        if len(data) > self._remaining:
            self._state = "failed"
            raise AttachmentSizeError("more plaintext than the size given")
        self._remaining -= len(data)
        ciphertext = self._emit(self._cipher.update(data))
        return header + ciphertext if header else ciphertext

    def finalize(self) -> Iterator[bytes]:
        """Yield the rest of the blob: the encrypted padding, then the MAC."""
        header = self._header()
        if self._remaining:
            self._state = "failed"
            raise AttachmentSizeError(f"{self._remaining} bytes of plaintext missing")
        self._state = "finishing"
        if header:
            yield header
        zeros = bytes(min(self._padding, CHUNK_SIZE))
        left = self._padding
        while left > CHUNK_SIZE:
            yield self._emit(self._cipher.update(zeros))
            left -= CHUNK_SIZE
        # The rest of the zero padding, PKCS#7 and the cipher's last block in one piece.
        n = _BLOCK - self._padded % _BLOCK
        tail = self._cipher.update(zeros[:left] + bytes((n,)) * n) + self._cipher.finalize()
        yield self._emit(tail)
        mac = self._mac.finalize()
        self._hash.update(mac)
        self._digest = self._hash.finalize()
        self._state = "done"
        yield mac

    @property
    def digest(self) -> bytes:
        """SHA-256 of the whole blob, once :meth:`finalize` has been run to its end."""
        if self._digest is None:
            raise AttachmentStateError("the digest is known once the blob is finished")
        return self._digest


class AttachmentDecryptor:
    """Check, then decrypt, one blob, in two passes over it.

    Pass 1: :meth:`verify_update` with every piece of the blob, then :meth:`verify_finalize`,
    which raises unless the blob has the length ``size`` implies, its MAC and the ``digest``.
    Pass 2: :meth:`decrypt_update` with the same bytes again returns plaintext (the first
    ``size`` bytes; the padding after them is dropped unread, as the MAC vouches for it), and
    :meth:`decrypt_finalize` returns the last of it and raises :class:`AttachmentIntegrityError`
    if the bytes differed from pass 1's.
    """

    __slots__ = (
        "_cipher",
        "_digest",
        "_hash",
        "_head",
        "_key",
        "_last_blocks",
        "_length",
        "_mac",
        "_received_mac",
        "_released",
        "_seen",
        "_size",
        "_state",
    )

    def __init__(self, key: bytes, digest: bytes, size: int) -> None:
        _check_key(key)
        if not isinstance(digest, bytes) or len(digest) != DIGEST_LENGTH:
            raise AttachmentSizeError(f"an attachment digest is {DIGEST_LENGTH} bytes")
        self._length = encrypted_size(size)
        self._size = size
        self._key = key
        self._digest = digest
        self._mac = HMAC(key[32:], hashes.SHA256())
        self._hash = hashes.Hash(hashes.SHA256())
        self._received_mac = bytearray()
        self._last_blocks = bytearray()
        self._head = bytearray()
        self._cipher: CipherContext | None = None
        self._seen = 0
        self._released = 0
        self._state = "verifying"

    @property
    def blob_length(self) -> int:
        """How many bytes the blob must have (a reader can refuse a longer download early)."""
        return self._length

    def _take(self, data: bytes | memoryview) -> tuple[int, memoryview]:
        view = memoryview(data).cast("B")
        start = self._seen
        if start + len(view) > self._length:
            self._state = "failed"
            raise AttachmentSizeError("the blob is longer than its size says")
        self._seen += len(view)
        self._hash.update(view)
        return start, view

    def verify_update(self, data: bytes | memoryview) -> None:
        """Pass 1: the next piece of the blob. Releases nothing."""
        if self._state != "verifying":
            raise AttachmentStateError("verification is over")
        start, view = self._take(data)
        mac_start = self._length - MAC_LENGTH
        covered = max(0, min(len(view), mac_start - start))
        if covered:
            self._mac.update(view[:covered])
        if covered < len(view):
            self._received_mac += view[covered:]
        tail_start = mac_start - 2 * _BLOCK  # the last two ciphertext blocks, for the key check
        lo, hi = max(start, tail_start) - start, min(start + len(view), mac_start) - start
        if lo < hi:
            self._last_blocks += view[lo:hi]

    def verify_finalize(self) -> None:
        """End of pass 1: raises unless the whole blob is there and authentic."""
        if self._state != "verifying":
            raise AttachmentStateError("verification is over")
        self._state = "failed"
        if self._seen != self._length:
            raise AttachmentSizeError("the blob is shorter than its size says")
        mac_ok = bytes_equal(self._mac.finalize(), bytes(self._received_mac))
        digest_ok = bytes_equal(self._hash.finalize(), self._digest)
        if not (mac_ok and digest_ok and self._last_block_decrypts()):
            raise AttachmentIntegrityError
        self._state = "decrypting"
        self._seen = 0
        self._hash = hashes.Hash(hashes.SHA256())

    def _last_block_decrypts(self) -> bool:
        """Whether K_aes turns the last block into the padding expected there.

        The MAC and digest bind the blob to K_mac only: Signal's format has no check of K_aes.
        The last block's plaintext is known wherever it lies past ``size`` (zeros, then PKCS#7),
        so decrypting that one block (CBC, with the block before it as IV) catches a wrong K_aes
        before any plaintext is released: with certainty when the padding fills the block (any
        size that is not exactly a bucket's), with at least one known byte in every case.
        """
        previous, last = bytes(self._last_blocks[:_BLOCK]), bytes(self._last_blocks[_BLOCK:])
        block = Cipher(algorithms.AES256(self._key[:32]), modes.CBC(previous)).decryptor()
        plain = block.update(last) + block.finalize()
        padded_length = self._length - IV_LENGTH - MAC_LENGTH
        n = _BLOCK - padded_size(self._size) % _BLOCK
        expected = bytes(_BLOCK - n) + bytes((n,)) * n
        known = min(_BLOCK, padded_length - self._size)
        return bytes_equal(plain[_BLOCK - known :], expected[_BLOCK - known :])

    def decrypt_update(self, data: bytes | memoryview) -> bytes:
        """Pass 2: the next piece of the blob, the same bytes again; returns plaintext."""
        if self._state != "decrypting":
            raise AttachmentStateError("decryption comes after a successful verification")
        start, view = self._take(data)
        end = start + len(view)
        # Blob layout: IV [0, 16), ciphertext [16, length - 32), MAC after it.
        if start < IV_LENGTH:
            self._head += view[: IV_LENGTH - start]
            if len(self._head) == IV_LENGTH:
                self._cipher = Cipher(
                    algorithms.AES256(self._key[:32]), modes.CBC(bytes(self._head))
                ).decryptor()
        lo = max(start, IV_LENGTH) - start
        hi = min(end, self._length - MAC_LENGTH) - start
        if hi <= lo:
            return b""
        return self._release(self._decryptor().update(view[lo:hi]))

    def _decryptor(self) -> CipherContext:
        assert self._cipher is not None  # set once the IV is in, which precedes any ciphertext
        return self._cipher

    def _release(self, padded_plaintext: bytes) -> bytes:
        wanted = min(len(padded_plaintext), self._size - self._released)
        self._released += wanted
        if wanted == len(padded_plaintext):
            return padded_plaintext
        return padded_plaintext[:wanted]

    def decrypt_finalize(self) -> bytes:
        """End of pass 2: the last plaintext, or :class:`AttachmentIntegrityError` if the blob
        read this time is not the one verified (discard everything released then)."""
        if self._state != "decrypting":
            raise AttachmentStateError("decryption comes after a successful verification")
        self._state = "failed"
        if self._seen != self._length:
            raise AttachmentSizeError("the blob is shorter than its size says")
        if not bytes_equal(self._hash.finalize(), self._digest):
            raise AttachmentIntegrityError
        rest = self._release(self._decryptor().finalize())
        if self._released != self._size:  # cannot happen for a blob of the verified length
            raise AttachmentIntegrityError
        self._state = "done"
        return rest


def encrypt(plaintext: bytes, key: bytes, iv: bytes) -> tuple[bytes, bytes]:
    """The whole blob and its digest at once (for small attachments and tests)."""
    encryptor = AttachmentEncryptor(key, iv, len(plaintext))
    blob = encryptor.update(plaintext) + b"".join(encryptor.finalize())
    return blob, encryptor.digest


def decrypt(blob: bytes, key: bytes, digest: bytes, size: int) -> bytes:
    """The plaintext of a whole blob, checked first (for small attachments and tests)."""
    decryptor = AttachmentDecryptor(key, digest, size)
    decryptor.verify_update(blob)
    decryptor.verify_finalize()
    return decryptor.decrypt_update(blob) + decryptor.decrypt_finalize()
