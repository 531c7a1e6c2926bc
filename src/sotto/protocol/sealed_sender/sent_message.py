"""The sealed sender v2 sent form: what a client uploads and the server fans out.

::

    version ‖ varint n ‖ n × (ServiceId ‖ devices ‖ C ‖ AT  |  ServiceId ‖ 0x00) ‖ E.pub (32) ‖ ct

Version ``0x23`` names recipients by 17-byte fixed-width ServiceId (what libsignal 0.103 and
Sotto write); ``0x22`` by raw 16-byte ACI UUID. ``devices`` is a list of entries, device id
(1 B) ‖ u16 BE whose bit 15 says "more follow" and whose bits 0–13 hold the registration id;
``ServiceId ‖ 0x00`` marks an account deliberately excluded. ``C ‖ AT`` (48 B) is that account's
key share. The server splits the sent form into one received form per account::

    0x22 ‖ C ‖ AT ‖ E.pub (32) ‖ ct

This module needs no key and imports no cryptography: a relay can parse, route and split
without being able to read anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb
from sotto.protocol.address import (
    ACI_KIND,
    PNI_KIND,
    SERVICE_ID_FIXED_WIDTH_LENGTH,
    ProtocolAddress,
    service_id_fixed_width,
)
from sotto.protocol.limits import MAX_DEVICE_ID, MAX_REGISTRATION_ID

UUID_VERSION = 0x22
"""Sent form naming recipients by raw ACI UUID; also the only received-form version written."""
SERVICE_ID_VERSION = 0x23
"""Sent form naming recipients by 17-byte ServiceId; what Sotto writes."""
RECEIVED_VERSION = UUID_VERSION

MESSAGE_KEY_LENGTH = 32
AUTH_TAG_LENGTH = 16
KEY_SHARE_LENGTH = MESSAGE_KEY_LENGTH + AUTH_TAG_LENGTH
RAW_PUBLIC_KEY_LENGTH = 32
GCM_SIV_TAG_LENGTH = 16
_HAS_MORE = 0x8000
_UUID_LENGTH = 16
_U32 = 0xFFFF_FFFF


ServiceIdLike = bytes | str | ProtocolAddress
"""A recipient account: its 17-byte fixed-width ServiceId, its ServiceId string, or an address
whose name is one."""


def fixed_width_service_id(value: ServiceIdLike) -> bytes:
    """The 17-byte form of ``value``; ValueError if it names no ServiceId."""
    if isinstance(value, bytes):
        if len(value) != SERVICE_ID_FIXED_WIDTH_LENGTH or value[0] not in (ACI_KIND, PNI_KIND):
            raise ValueError("a fixed-width ServiceId is a kind byte (0 or 1) and 16 UUID bytes")
        return value
    name = value.name if isinstance(value, ProtocolAddress) else value
    fixed = service_id_fixed_width(name)
    if fixed is None:
        raise ValueError("multi-recipient sealed sender needs ServiceIds (a UUID, or PNI: and a UUID)")
    return fixed


def service_id_string(fixed_width: bytes) -> str:
    """The ServiceId string (``<uuid>`` or ``PNI:<uuid>``) of a 17-byte fixed-width ServiceId."""
    text = str(uuid.UUID(bytes=fixed_width[1:]))
    return "PNI:" + text if fixed_width[0] == PNI_KIND else text


def encode_device_list(devices: Sequence[tuple[int, int]]) -> bytes:
    """The device entries of one account; ValueError for an empty list or out-of-range ids."""
    if not devices:
        raise ValueError("a recipient needs at least one device")
    out = bytearray()
    for i, (device_id, registration_id) in enumerate(devices):
        if not 1 <= device_id <= MAX_DEVICE_ID:
            raise ValueError(f"device id {device_id} out of range")
        if not 0 <= registration_id <= MAX_REGISTRATION_ID:
            raise ValueError(f"registration id {registration_id} is not 14-bit")
        more = _HAS_MORE if i + 1 < len(devices) else 0
        out.append(device_id)
        out += (registration_id | more).to_bytes(2, "big")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class SentRecipient:
    """One account in a sent form: its devices and its 48-byte key share (empty if excluded)."""

    service_id: bytes
    """17-byte fixed width (a 0x22 sent form's raw UUIDs are read as ACIs)."""
    devices: tuple[tuple[int, int], ...]
    c_and_at: bytes

    @property
    def excluded(self) -> bool:
        return not self.devices


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A parsed sent form: what the relay needs to fan a message out, and nothing it can read."""

    version: int
    recipients: tuple[SentRecipient, ...]
    shared_bytes: bytes
    """``E.pub ‖ ciphertext``, identical in every recipient's received form."""
    _by_service_id: dict[bytes, SentRecipient] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A relay splitting for n recipients looks each one up: keep that O(1).
        object.__setattr__(self, "_by_service_id", {r.service_id: r for r in self.recipients})

    @classmethod
    def parse(cls, data: bytes) -> SentMessage:
        """Parse strictly; raises DecodeError only.

        Refused, beyond truncation: an unknown version or ServiceId kind, a device id outside
        1..127, a registration id with bit 14 set, a 0 device after real ones, a recipient both
        excluded and included, two entries for one account with different key shares, and
        fewer than 48 bytes (E.pub and the GCM-SIV tag) after the recipients. Two entries for
        one account with the same share are merged, as libsignal does.
        """
        if not data:
            raise DecodeError("empty sealed sender v2 message")
        version = data[0]
        if version not in (UUID_VERSION, SERVICE_ID_VERSION):
            raise DecodeError(f"unknown sealed sender v2 sent-form version {version:#04x}")
        count, pos = pb.read_varint(data, 1)
        if count > _U32:
            raise DecodeError("recipient count does not fit in 32 bits")
        n = len(data)
        id_length = _UUID_LENGTH if version == UUID_VERSION else SERVICE_ID_FIXED_WIDTH_LENGTH
        by_id: dict[bytes, SentRecipient] = {}
        for _ in range(count):
            if pos + id_length > n:
                raise DecodeError("truncated recipient ServiceId")
            service_id = bytes(data[pos : pos + id_length])
            pos += id_length
            if version == UUID_VERSION:
                service_id = bytes((ACI_KIND,)) + service_id
            elif service_id[0] not in (ACI_KIND, PNI_KIND):
                raise DecodeError(f"unknown ServiceId kind {service_id[0]}")
            devices: list[tuple[int, int]] = []
            while True:
                if pos >= n:
                    raise DecodeError("truncated device list")
                device_id = data[pos]
                pos += 1
                if device_id == 0:
                    if devices:
                        raise DecodeError("device id 0 inside a device list")
                    break
                if device_id > MAX_DEVICE_ID:
                    raise DecodeError(f"device id {device_id} out of range")
                if pos + 2 > n:
                    raise DecodeError("truncated registration id")
                word = int.from_bytes(data[pos : pos + 2], "big")
                pos += 2
                registration_id = word & ~_HAS_MORE
                if registration_id > MAX_REGISTRATION_ID:
                    raise DecodeError("registration id is not 14-bit")
                devices.append((device_id, registration_id))
                if not word & _HAS_MORE:
                    break
            c_and_at = b""
            if devices:
                share = KEY_SHARE_LENGTH
                if pos + share > n:
                    raise DecodeError("truncated key share")
                c_and_at = bytes(data[pos : pos + share])
                pos += share
            previous = by_id.get(service_id)
            if previous is None:
                by_id[service_id] = SentRecipient(service_id, tuple(devices), c_and_at)
                continue
            if previous.excluded or not devices:
                raise DecodeError("a recipient is both excluded and included")
            if previous.c_and_at != c_and_at:
                raise DecodeError("a recipient is listed twice with different key shares")
            by_id[service_id] = SentRecipient(service_id, previous.devices + tuple(devices), c_and_at)
        if n - pos < RAW_PUBLIC_KEY_LENGTH + GCM_SIV_TAG_LENGTH:
            raise DecodeError("missing ephemeral key or ciphertext")
        return cls(version, tuple(by_id.values()), bytes(data[pos:]))

    def recipient(self, which: int | ServiceIdLike) -> SentRecipient:
        """A recipient by position (in the order parsed) or by ServiceId; else KeyError/IndexError."""
        if isinstance(which, int):
            return self.recipients[which]
        wanted = fixed_width_service_id(which)
        found = self._by_service_id.get(wanted)
        if found is None:
            raise KeyError(service_id_string(wanted))
        return found

    def received_message_for(self, which: int | ServiceIdLike) -> bytes:
        """The received form for one recipient: ``0x22 ‖ C ‖ AT ‖ E.pub ‖ ciphertext``.

        An excluded recipient has no share to receive; asking for one is ValueError.
        """
        recipient = self.recipient(which)
        if recipient.excluded:
            raise ValueError(f"recipient {service_id_string(recipient.service_id)} was excluded")
        return bytes((RECEIVED_VERSION,)) + recipient.c_and_at + self.shared_bytes

    def __repr__(self) -> str:
        return (
            f"SentMessage(version={self.version:#04x}, recipients={len(self.recipients)}, "
            f"shared=<{len(self.shared_bytes)} bytes>)"
        )
