"""Safety numbers: what two people compare to know they hold each other's identity keys.

Each side's fingerprint is an iterated SHA-512 over its identity key and stable identifier,
as libsignal computes it::

    H_0 = SHA-512(0x0000 ‖ key ‖ identifier ‖ key)        (key: the 33-byte serialized form)
    H_i = SHA-512(H_i-1 ‖ key)                             for i = 1 … iterations − 1

The iteration count (5,200 in Signal) makes grinding for a look-alike key expensive.

* Displayable: the first 30 bytes of ``H`` as six 5-byte big-endian numbers, each mod 100,000,
  written as 5 digits: 30 digits per side. Both sides' strings are joined in ascending order,
  so both people see the same 60 digits.
* Scannable (the QR code): protobuf ``CombinedFingerprints {1 version, 2 local {1 content},
  3 remote {1 content}}`` with the first 32 bytes of each ``H``. Scanning compares their local
  with our remote and their remote with our local, in constant time.

The version (1 or 2) is only written into the scannable form; the digits do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto.kdf import bytes_equal, sha512
from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError, FingerprintVersionMismatchError
from sotto.protocol.protobuf import Fields, bytes_field, decode_fields, get_bytes, get_uint, uint_field

FINGERPRINT_ITERATIONS = 5_200
"""Iterations Signal uses: safety numbers only match between apps that agree on this."""

SCANNABLE_VERSION = 2
"""The scannable version current Signal clients write (version 1 differs only in this field)."""

DISPLAYABLE_DIGITS = 60
_DIGITS_PER_SIDE = 30
_CHUNK = 5
_SCANNABLE_LENGTH = 32
_DIGEST_PREFIX = b"\x00\x00"  # libsignal's fixed "fingerprint version" input, not the scannable version
_MAX_ITERATIONS = 1_000_000


def iterated_digest(iterations: int, identifier: bytes, key: PublicKey) -> bytes:
    """``H`` for one side: the 64-byte digest both encodings are cut from."""
    if not 1 < iterations <= _MAX_ITERATIONS:
        raise ValueError(f"fingerprint iterations must be in 2..{_MAX_ITERATIONS}, got {iterations}")
    key_bytes = key.to_bytes()
    digest = sha512(_DIGEST_PREFIX + key_bytes + identifier + key_bytes)
    for _ in range(iterations - 1):
        digest = sha512(digest + key_bytes)
    return digest


def displayable_digits(digest: bytes) -> str:
    """One side's 30 digits: six 40-bit big-endian chunks, each mod 100,000."""
    return "".join(
        f"{int.from_bytes(digest[i : i + _CHUNK], 'big') % 100_000:05d}"
        for i in range(0, _DIGITS_PER_SIDE, _CHUNK)
    )


def format_displayable(digits: str) -> str:
    """Split the 60 digits into 12 groups of 5 (``"12345 67890 …"``), the way apps show them."""
    if len(digits) != DISPLAYABLE_DIGITS or not digits.isascii() or not digits.isdigit():
        raise ValueError("a safety number is exactly 60 ASCII digits")
    return " ".join(digits[i : i + _CHUNK] for i in range(0, DISPLAYABLE_DIGITS, _CHUNK))


def _content(fields: Fields, number: int) -> bytes:
    inner = get_bytes(fields, number)
    if inner is None:
        raise DecodeError(f"missing fingerprint {number}")
    content = get_bytes(decode_fields(inner), 1)
    if content is None:
        raise DecodeError(f"fingerprint {number} has no content")
    return bytes(content)


@dataclass(frozen=True, slots=True)
class ScannableFingerprint:
    """The QR-code form: our and their 32-byte fingerprint contents, with a version."""

    version: int
    local: bytes
    remote: bytes

    def encode(self) -> bytes:
        return (
            uint_field(1, self.version)
            + bytes_field(2, bytes_field(1, self.local))
            + bytes_field(3, bytes_field(1, self.remote))
        )

    @classmethod
    def decode(cls, data: bytes) -> ScannableFingerprint:
        """Parse a CombinedFingerprints protobuf; raises DecodeError and nothing else."""
        fields = decode_fields(data)
        version = get_uint(fields, 1)
        if version is None:
            raise DecodeError("missing fingerprint version")
        return cls(version, _content(fields, 2), _content(fields, 3))

    def matches(self, theirs: bytes) -> bool:
        """Whether ``theirs`` (scanned from the other phone) shows the same two keys as we do.

        Raises DecodeError for bytes that do not parse and FingerprintVersionMismatchError when
        the versions differ (then the result would mean nothing either way).
        """
        fields = decode_fields(theirs)
        their_version = get_uint(fields, 1, required=False)
        their_version = 0 if their_version is None else their_version
        if their_version != self.version:
            raise FingerprintVersionMismatchError(their_version, self.version)
        their_local, their_remote = _content(fields, 2), _content(fields, 3)
        # Both comparisons run whatever the first one says: no early exit to time.
        same_remote = bytes_equal(their_local, self.remote)
        same_local = bytes_equal(their_remote, self.local)
        return same_remote & same_local


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A safety number as one side sees it: the 60 digits and the scannable form."""

    displayable: str
    scannable: ScannableFingerprint


def fingerprint(
    *,
    local_id: bytes,
    local_key: PublicKey,
    remote_id: bytes,
    remote_key: PublicKey,
    version: int = SCANNABLE_VERSION,
    iterations: int = FINGERPRINT_ITERATIONS,
) -> Fingerprint:
    """Our safety number with the remote party, from our and their identifier and identity key."""
    local = iterated_digest(iterations, local_id, local_key)
    remote = iterated_digest(iterations, remote_id, remote_key)
    ours, theirs = displayable_digits(local), displayable_digits(remote)
    return Fingerprint(
        displayable=ours + theirs if ours < theirs else theirs + ours,
        scannable=ScannableFingerprint(version, local[:_SCANNABLE_LENGTH], remote[:_SCANNABLE_LENGTH]),
    )


def compare(scannable_ours: bytes, scannable_theirs: bytes) -> bool:
    """Compare our encoded scannable fingerprint with one scanned from the other phone.

    True when both show the same pair of keys. DecodeError for bytes that do not parse;
    FingerprintVersionMismatchError when the versions differ.
    """
    return ScannableFingerprint.decode(scannable_ours).matches(scannable_theirs)
