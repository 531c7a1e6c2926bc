"""Safety numbers: what two people compare to know they hold each other's identity keys.

Account ids are the stable identifiers (Signal uses ACIs the same way). Both sides see the same
60 digits; the scannable form is Signal's CombinedFingerprints protobuf, and the text a QR code
carries is ``sotto-safety:`` followed by those bytes in base64url.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError
from sotto.protocol.fingerprint import ScannableFingerprint, fingerprint, format_displayable
from sotto.store.model import Account, Contact
from sotto.wire import b64

QR_PREFIX = "sotto-safety:"
_MAX_SCANNABLE = 1024


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    """Our safety number with one contact."""

    displayable: str
    """Twelve groups of five digits, the same on both phones."""
    scannable: bytes
    """The CombinedFingerprints protobuf (version 2) our QR code shows."""
    qr_text: str
    """The text to put in a QR code."""


def safety_number(account: Account, contact: Contact, their_key: PublicKey) -> SafetyNumber:
    number = fingerprint(
        local_id=account.account_id,
        local_key=account.identity.public,
        remote_id=contact.account_id,
        remote_key=their_key,
    )
    scannable = number.scannable.encode()
    return SafetyNumber(format_displayable(number.displayable), scannable, QR_PREFIX + b64.encode(scannable))


def scanned_bytes(scanned: str | bytes) -> bytes:
    """The scannable bytes from what a scanner read (another phone's ``qr_text``) or raw bytes.

    Raises DecodeError for text that is not a Sotto safety code.
    """
    if isinstance(scanned, bytes):
        return scanned
    text = scanned.strip()
    if not text.startswith(QR_PREFIX):
        raise DecodeError("not a Sotto safety number code")
    return b64.decode(text[len(QR_PREFIX) :], max_length=_MAX_SCANNABLE)


def matches(ours: SafetyNumber, scanned: str | bytes) -> bool:
    """True if the scanned code shows the same two keys as ours (constant-time comparisons).

    Raises DecodeError for unreadable codes, FingerprintVersionMismatchError for another version.
    """
    return ScannableFingerprint.decode(ours.scannable).matches(scanned_bytes(scanned))
