"""Who a session is with: a name and a device id, and the ServiceId form of the name.

libsignal binds the sender's and recipient's ServiceIds into the MAC of the first message
(the ``addresses`` field) only when both names parse as ServiceId strings: a hyphenated UUID
(an ACI) or ``PNI:`` followed by one. Any other name silently omits the binding.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from functools import lru_cache

ACI_KIND = 0
PNI_KIND = 1
_PNI_PREFIX = "PNI:"
_HYPHENATED_UUID_LENGTH = 36
SERVICE_ID_FIXED_WIDTH_LENGTH = 17
ADDRESSES_LENGTH = 2 * (SERVICE_ID_FIXED_WIDTH_LENGTH + 1)


@dataclass(frozen=True, slots=True)
class ProtocolAddress:
    """A peer device: the account name (a ServiceId string in practice) and its device id."""

    name: str
    device_id: int

    def __str__(self) -> str:
        return f"{self.name}.{self.device_id}"


_HYPHENATED_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _parse_hyphenated(text: str) -> uuid.UUID | None:
    # libsignal accepts only the 36-character hyphenated form, in either case.
    if len(text) != _HYPHENATED_UUID_LENGTH or _HYPHENATED_UUID.fullmatch(text) is None:
        return None
    return uuid.UUID(text)


@lru_cache(maxsize=4096)
def service_id_fixed_width(name: str) -> bytes | None:
    """The 17-byte fixed-width ServiceId (kind byte ‖ UUID) for ``name``, or None if it is not one."""
    if name.startswith(_PNI_PREFIX):
        parsed = _parse_hyphenated(name[len(_PNI_PREFIX) :])
        kind = PNI_KIND
    else:
        parsed = _parse_hyphenated(name)
        kind = ACI_KIND
    if parsed is None:
        return None
    return bytes((kind,)) + parsed.bytes


def encode_addresses(sender: ProtocolAddress, recipient: ProtocolAddress) -> bytes | None:
    """The 36-byte ``addresses`` blob (sender ServiceId ‖ device ‖ recipient ServiceId ‖ device).

    None when either name is not a ServiceId string, or a device id does not fit one byte,
    in which case the field is omitted, as libsignal does.
    """
    sender_id = service_id_fixed_width(sender.name)
    recipient_id = service_id_fixed_width(recipient.name)
    if sender_id is None or recipient_id is None:
        return None
    if not (0 <= sender.device_id <= 0xFF and 0 <= recipient.device_id <= 0xFF):
        return None
    return sender_id + bytes((sender.device_id,)) + recipient_id + bytes((recipient.device_id,))
