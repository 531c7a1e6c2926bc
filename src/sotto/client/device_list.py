"""An account's device list: signed with the account's identity key, each list chained to the
one before it by hash.

Pure: no I/O, no clock; times and randomness are arguments. The byte encoding, the hash and the
signature are written out, with a worked example, in ``docs/device-list.md``; in short::

    body    = 0x01 ‖ version (u64) ‖ previous (32) ‖ m (u8) ‖ merged (32 × m)
              ‖ n (u8) ‖ device × n
    device  = device_id (u8) ‖ key (33) ‖ added_ms (u64) ‖ k (u8) ‖ name (k bytes, UTF-8)
    hash    = SHA-256("sotto:device-list:v1:hash" ‖ body)
    signed  = body ‖ XEdDSA(account key, "sotto:device-list:v1:signature" ‖ body)

Integers are big-endian. The hash covers the body and not the signature (XEdDSA signatures are
randomized), so two devices that compute the same list compute the same hash.

* :func:`first_list`, :func:`add_device`, :func:`remove_device`, :func:`rename_device` make the
  next list; :func:`sign` signs one.
* :func:`verify_chain` checks lists in order: each one's signature, that its ``previous`` (or
  one of its ``merged``) is the hash of the list before it, and that its version goes up.
* :func:`resolve` merges lists made concurrently from one parent (by two devices at once) into
  one list that every device computes alike, with a report of what conflicted.
* :func:`accept` is what a contact does with an update, and :func:`compare` what it shows:
  "devices changed" (added, removed).

Contract: :meth:`SignedDeviceList.decode` raises :class:`~sotto.errors.DecodeError` and nothing
else, on any input; it reads a bounded, exact-length encoding and refuses every non-canonical
form (devices out of order, trailing bytes, a non-canonical key), so one list has one encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sotto.crypto import xeddsa
from sotto.crypto.dh import is_canonical
from sotto.crypto.kdf import sha256
from sotto.crypto.keys import PUBLIC_KEY_LENGTH, KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import (
    DecodeError,
    DeviceListForkError,
    DeviceListRollbackError,
    DeviceListSignatureError,
    InvalidKeyError,
    InvalidSignatureError,
)

FORMAT: Final = 0x01
"""The first byte of every body; a later format changes it (and both labels)."""

HASH_LABEL: Final = b"sotto:device-list:v1:hash"
SIGNATURE_LABEL: Final = b"sotto:device-list:v1:signature"

HASH_LENGTH: Final = 32
NO_PREVIOUS: Final = bytes(HASH_LENGTH)
"""The ``previous`` of the first list (version 1)."""

MAX_DEVICES: Final = 8
"""A message carries a fixed 8 key slots, one per device, so an account has at most 8 devices."""

MAX_MERGED: Final = MAX_DEVICES - 1
"""A merge resolves at most one concurrent list per device."""

MIN_DEVICE_ID: Final = 1
MAX_DEVICE_ID: Final = 127
"""libsignal's range of device ids."""

MAX_NAME_BYTES: Final = 64
"""Enough for "Alice's work laptop" in any script; a name is shown, not searched."""

MAX_VERSION: Final = 2**63 - 1
"""A version fits a signed 64-bit column."""

_U64: Final = 8
_DEVICE_FIXED: Final = 1 + PUBLIC_KEY_LENGTH + _U64 + 1
_HEADER: Final = 1 + _U64 + HASH_LENGTH + 1
MAX_ENCODED_LENGTH: Final = (
    _HEADER
    + MAX_MERGED * HASH_LENGTH
    + 1
    + MAX_DEVICES * (_DEVICE_FIXED + MAX_NAME_BYTES)
    + xeddsa.SIGNATURE_LENGTH
)
"""1,187 bytes: the longest signed list."""


def _name_problem(name: str) -> str | None:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "a device name is UTF-8 text"
    if not 1 <= size <= MAX_NAME_BYTES:
        return f"a device name is 1 to {MAX_NAME_BYTES} UTF-8 bytes"
    if not name.isprintable():
        return "a device name has no control characters or separators but the ASCII space"
    return None


@dataclass(frozen=True, slots=True, repr=False)
class Device:
    """One device of the account: its id, its own identity key, its name, when it was added.

    The repr hides the name, as the store's reprs hide the names people choose.
    """

    device_id: int
    key: PublicKey
    """The device's own Curve25519 identity (and XEdDSA signing) key."""
    name: str
    added_ms: int
    """Unix milliseconds, as the adding device's clock said."""

    def __post_init__(self) -> None:
        if not MIN_DEVICE_ID <= self.device_id <= MAX_DEVICE_ID:
            raise ValueError(f"a device id is {MIN_DEVICE_ID} to {MAX_DEVICE_ID}")
        if not is_canonical(self.key):
            raise ValueError("a device key is a canonical prime-order point")
        if not 0 <= self.added_ms <= MAX_VERSION:
            raise ValueError("a device's added time is 0 to 2^63 - 1 milliseconds")
        if (problem := _name_problem(self.name)) is not None:
            raise ValueError(problem)

    def __repr__(self) -> str:
        return (
            f"Device(device_id={self.device_id}, key={self.key!r}, added_ms={self.added_ms}, name=<hidden>)"
        )

    def encode(self) -> bytes:
        name = self.name.encode("utf-8")
        return (
            bytes((self.device_id,))
            + self.key.to_bytes()
            + self.added_ms.to_bytes(_U64)
            + bytes((len(name),))
            + name
        )


@dataclass(frozen=True, slots=True)
class DeviceList:
    """What an account's list says (unsigned): version, the hash of the list before it, the
    hashes of concurrent lists it resolves, and the devices in ascending id."""

    version: int
    previous: bytes
    """:attr:`hash` of the list this one follows; :data:`NO_PREVIOUS` for version 1."""
    devices: tuple[Device, ...]
    merged: tuple[bytes, ...] = ()
    """Hashes of the other lists this one resolves (see :func:`resolve`), ascending."""

    def __post_init__(self) -> None:
        if (problem := self._problem()) is not None:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if not 1 <= self.version <= MAX_VERSION:
            return "a version is 1 to 2^63 - 1"
        if len(self.previous) != HASH_LENGTH or any(len(h) != HASH_LENGTH for h in self.merged):
            return f"a list hash is {HASH_LENGTH} bytes"
        if (self.version == 1) != (self.previous == NO_PREVIOUS):
            return "version 1, and only version 1, has no previous list"
        if len(self.merged) > MAX_MERGED or (self.merged and self.version == 1):
            return f"a list resolves at most {MAX_MERGED} other lists, and the first list none"
        if list(self.merged) != sorted(set(self.merged)) or self.previous in self.merged:
            return "merged hashes are distinct, ascending and not the previous hash"
        if len(self.devices) > MAX_DEVICES:
            return f"an account has at most {MAX_DEVICES} devices"
        ids = [device.device_id for device in self.devices]
        if ids != sorted(set(ids)):
            return "devices are in strictly ascending id"
        if len({device.key for device in self.devices}) != len(self.devices):
            return "each device has its own key"
        return None

    @property
    def device_ids(self) -> frozenset[int]:
        return frozenset(device.device_id for device in self.devices)

    def device(self, device_id: int) -> Device | None:
        return next((device for device in self.devices if device.device_id == device_id), None)

    def encode(self) -> bytes:
        """The canonical body: what the hash covers and the account key signs."""
        return b"".join(
            (
                bytes((FORMAT,)),
                self.version.to_bytes(_U64),
                self.previous,
                bytes((len(self.merged),)),
                *self.merged,
                bytes((len(self.devices),)),
                *(device.encode() for device in self.devices),
            )
        )

    @property
    def hash(self) -> bytes:
        """SHA-256 over the hash label and the body; key transparency will publish it."""
        return sha256(HASH_LABEL + self.encode())

    def follows(self, earlier: DeviceList) -> bool:
        """True if this list names ``earlier`` as its previous list or as one it resolves."""
        earlier_hash = earlier.hash
        return self.previous == earlier_hash or earlier_hash in self.merged


@dataclass(frozen=True, slots=True)
class SignedDeviceList:
    """A :class:`DeviceList` with the account key's XEdDSA signature over its body."""

    content: DeviceList
    signature: bytes

    @property
    def hash(self) -> bytes:
        return self.content.hash

    @property
    def version(self) -> int:
        return self.content.version

    def encode(self) -> bytes:
        return self.content.encode() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> SignedDeviceList:
        """Parse a signed list (without checking the signature); raises DecodeError and nothing else."""
        data = bytes(data)
        if len(data) > MAX_ENCODED_LENGTH:
            raise DecodeError(f"a device list is at most {MAX_ENCODED_LENGTH} bytes")
        if len(data) < _HEADER + 1 + xeddsa.SIGNATURE_LENGTH:
            raise DecodeError("a device list is shorter than its header and signature")
        reader = _Reader(data[: -xeddsa.SIGNATURE_LENGTH])
        if reader.byte() != FORMAT:
            raise DecodeError("unknown device list format")
        version = int.from_bytes(reader.take(_U64))
        previous = reader.take(HASH_LENGTH)
        merged = tuple(reader.take(HASH_LENGTH) for _ in range(reader.count(MAX_MERGED, "merged hashes")))
        devices = tuple(_decode_device(reader) for _ in range(reader.count(MAX_DEVICES, "devices")))
        if reader.rest:
            raise DecodeError("bytes after the last device")
        try:
            content = DeviceList(version, previous, devices, merged)
        except ValueError as error:
            raise DecodeError(str(error)) from None
        return cls(content, data[-xeddsa.SIGNATURE_LENGTH :])

    def verify(self, account_key: PublicKey) -> DeviceList:
        """The content, if the account key signed it; else :class:`DeviceListSignatureError`."""
        try:
            xeddsa.verify(account_key, SIGNATURE_LABEL + self.content.encode(), self.signature)
        except InvalidSignatureError:
            raise DeviceListSignatureError(self.content.version) from None
        return self.content


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise DecodeError("a device list ends early")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def count(self, limit: int, what: str) -> int:
        count = self.byte()
        if count > limit:
            raise DecodeError(f"at most {limit} {what}")
        return count

    @property
    def rest(self) -> int:
        return len(self.data) - self.offset


def _decode_device(reader: _Reader) -> Device:
    device_id = reader.byte()
    key_bytes = reader.take(PUBLIC_KEY_LENGTH)
    added_ms = int.from_bytes(reader.take(_U64))
    name_bytes = reader.take(reader.count(MAX_NAME_BYTES, "bytes in a device name"))
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"device {device_id}: the name is not UTF-8") from None
    try:
        return Device(device_id, PublicKey.from_bytes(key_bytes), name, added_ms)
    except (InvalidKeyError, ValueError) as error:  # messages name the rule, never the bytes
        raise DecodeError(f"device {device_id}: {error}") from None


# ------------------------------------------------------------------------ making lists
def sign(content: DeviceList, account: KeyPair, rng: Rng) -> SignedDeviceList:
    """``content`` signed with the account's identity key."""
    return SignedDeviceList(content, xeddsa.sign(account.private, SIGNATURE_LABEL + content.encode(), rng))


def first_list(device: Device, account: KeyPair, rng: Rng) -> SignedDeviceList:
    """Version 1: the account's first device alone."""
    return sign(DeviceList(1, NO_PREVIOUS, (device,)), account, rng)


def next_list(current: DeviceList, devices: Iterable[Device], account: KeyPair, rng: Rng) -> SignedDeviceList:
    """The list after ``current``, holding ``devices`` (in any order)."""
    ordered = tuple(sorted(devices, key=lambda device: device.device_id))
    return sign(DeviceList(current.version + 1, current.hash, ordered), account, rng)


def add_device(current: DeviceList, device: Device, account: KeyPair, rng: Rng) -> SignedDeviceList:
    """The next list, with ``device`` added; ValueError if its id is taken or the list is full."""
    if device.device_id in current.device_ids:
        raise ValueError(f"device id {device.device_id} is taken")
    return next_list(current, (*current.devices, device), account, rng)


def remove_device(current: DeviceList, device_id: int, account: KeyPair, rng: Rng) -> SignedDeviceList:
    """The next list, without device ``device_id``; ValueError if the list does not hold it."""
    if device_id not in current.device_ids:
        raise ValueError(f"no device {device_id}")
    return next_list(current, (d for d in current.devices if d.device_id != device_id), account, rng)


def rename_device(
    current: DeviceList, device_id: int, name: str, account: KeyPair, rng: Rng
) -> SignedDeviceList:
    """The next list, with device ``device_id`` called ``name``."""
    old = current.device(device_id)
    if old is None:
        raise ValueError(f"no device {device_id}")
    renamed = Device(device_id, old.key, name, old.added_ms)
    return next_list(current, (renamed if d is old else d for d in current.devices), account, rng)


def free_device_id(current: DeviceList) -> int:
    """The lowest device id the list does not use; ValueError if the list is full."""
    if len(current.devices) >= MAX_DEVICES:
        raise ValueError(f"an account has at most {MAX_DEVICES} devices")
    return min(set(range(MIN_DEVICE_ID, MAX_DEVICE_ID + 1)) - current.device_ids)


# ------------------------------------------------------------------------ checking lists
def verify_chain(
    lists: Sequence[SignedDeviceList], account_key: PublicKey, *, after: DeviceList | None = None
) -> DeviceList:
    """The content of the last of ``lists``, if every one is signed by the account key and each
    follows the one before it (``after``, if given, comes before the first).

    A list follows another if its ``previous`` or one of its ``merged`` is that list's hash and its
    version is higher. Raises :class:`DeviceListSignatureError`, :class:`DeviceListRollbackError`
    (a version not above the one before) or :class:`DeviceListForkError` (a list descending from
    another one, or a gap); ValueError if ``lists`` is empty. Without ``after``, the first list is
    taken on its signature alone (a contact who meets an account late never saw its version 1).
    """
    if not lists:
        raise ValueError("no device list to verify")
    before = after
    for signed in lists:
        content = signed.verify(account_key)
        if before is not None:
            if content.version <= before.version:
                raise DeviceListRollbackError(before.version, content.version)
            if not content.follows(before):
                raise DeviceListForkError(before.version, content.version)
        before = content
    assert before is not None
    return before


def concurrent(a: DeviceList, b: DeviceList) -> bool:
    """True if ``a`` and ``b`` are two different lists made from the same previous list."""
    return a.previous == b.previous and a.hash != b.hash


# ------------------------------------------------------------------------ concurrent changes
class ConflictRule(enum.StrEnum):
    """Which rule decided a conflicting device."""

    REMOVAL_WINS = "removal_wins"
    """One list removed the device while another changed it: it is removed."""
    LOWER_HASH_WINS = "lower_hash_wins"
    """Lists set the device (same id) differently: the entry of the list with the lowest hash stays."""
    SAME_KEY = "same_key"
    """Lists added one device key under two ids: the parent's id for it, else the lowest, stays."""
    OVER_CAPACITY = "over_capacity"
    """Added devices together pass :data:`MAX_DEVICES`: the highest new ids are left out."""


@dataclass(frozen=True, slots=True)
class Conflict:
    device_id: int
    rule: ConflictRule
    kept: Device | None
    """The entry the resolved list holds for ``device_id``; None if it holds none."""
    dropped: tuple[Device, ...]
    """Entries some list made for ``device_id`` that the resolved list does not hold."""


@dataclass(frozen=True, slots=True)
class Resolution:
    signed: SignedDeviceList
    conflicts: tuple[Conflict, ...]
    """In ascending device id; empty if the lists' changes did not touch the same device."""


def resolve(parent: DeviceList, heads: Iterable[SignedDeviceList], account: KeyPair, rng: Rng) -> Resolution:
    """One list that resolves ``heads``, lists made concurrently from ``parent``; every device
    that holds the same lists computes the same content (and hash), in whatever order it got them.

    For each device id: if any head removed it, it is removed (removals win); else if heads set it
    differently, the entry from the head with the lowest hash stays; else the one change (or none)
    applies. The new list follows the head with the lowest hash, names the others in ``merged``,
    and its version is one above the highest head's. If the additions together pass
    :data:`MAX_DEVICES`, the highest new ids are left out. Every head must be signed by the
    account key (:class:`DeviceListSignatureError`) and be made from ``parent``: its ``previous``
    is ``parent``'s hash (:class:`DeviceListForkError`) and its version is higher
    (:class:`DeviceListRollbackError`); ValueError unless there are 2 to :data:`MAX_DEVICES`
    distinct heads.
    """
    by_hash: dict[bytes, DeviceList] = {}
    for signed in heads:
        content = signed.verify(account.public)
        if content.previous != parent.hash:
            raise DeviceListForkError(parent.version, content.version)
        if content.version <= parent.version:
            raise DeviceListRollbackError(parent.version, content.version)
        by_hash[content.hash] = content
    if not 2 <= len(by_hash) <= MAX_MERGED + 1:
        raise ValueError(f"resolve 2 to {MAX_MERGED + 1} distinct concurrent lists")
    order = sorted(by_hash)  # every head in ascending hash: the tie-break
    ids = parent.device_ids.union(*(by_hash[h].device_ids for h in order))
    kept: list[Device] = []
    conflicts: list[Conflict] = []
    for device_id in sorted(ids):
        before = parent.device(device_id)
        entries = [by_hash[h].device(device_id) for h in order]
        removed = before is not None and any(entry is None for entry in entries)
        changes = list(dict.fromkeys(e for e in entries if e is not None and e != before))
        if removed:
            if changes:
                conflicts.append(Conflict(device_id, ConflictRule.REMOVAL_WINS, None, tuple(changes)))
            continue
        entry = changes[0] if changes else before
        assert entry is not None  # the id came from the parent or from a head
        if len(changes) > 1:
            conflicts.append(Conflict(device_id, ConflictRule.LOWER_HASH_WINS, entry, tuple(changes[1:])))
        kept.append(entry)
    kept = _drop_duplicate_keys(kept, parent, conflicts)
    while len(kept) > MAX_DEVICES:
        newest = max((d for d in kept if d.device_id not in parent.device_ids), key=lambda d: d.device_id)
        kept.remove(newest)
        conflicts.append(Conflict(newest.device_id, ConflictRule.OVER_CAPACITY, None, (newest,)))
    conflicts.sort(key=lambda conflict: conflict.device_id)
    version = max(by_hash[h].version for h in order) + 1
    content = DeviceList(version, order[0], tuple(kept), tuple(order[1:]))
    return Resolution(sign(content, account, rng), tuple(conflicts))


def _drop_duplicate_keys(kept: list[Device], parent: DeviceList, conflicts: list[Conflict]) -> list[Device]:
    """One key under two ids (two heads added one device): the id the parent gave that key, else
    the lowest, stays; a list holds each key once."""
    parent_ids = {d.key: d.device_id for d in parent.devices}
    owners: dict[PublicKey, Device] = {}
    for device in sorted(kept, key=lambda d: (parent_ids.get(d.key) != d.device_id, d.device_id)):
        owner = owners.setdefault(device.key, device)
        if owner is not device:
            conflicts.append(Conflict(device.device_id, ConflictRule.SAME_KEY, None, (device,)))
    return sorted(owners.values(), key=lambda d: d.device_id)


# ------------------------------------------------------------------------ what a contact shows
@dataclass(frozen=True, slots=True)
class DeviceChanges:
    """How a new list differs from the last one a contact accepted.

    A device is the same device if its id and key are; a new key under an old id is a removal
    and an addition. A new name alone is not a change of devices.
    """

    added: tuple[Device, ...]
    removed: tuple[Device, ...]
    renamed: tuple[tuple[Device, Device], ...]
    """(before, after) pairs."""

    @property
    def devices_changed(self) -> bool:
        """What ``sotto verify`` and the chat show as "devices changed"."""
        return bool(self.added or self.removed)


def compare(accepted: DeviceList, new: DeviceList) -> DeviceChanges:
    """The devices ``new`` adds, removes and renames relative to ``accepted``."""
    before = {(d.device_id, d.key): d for d in accepted.devices}
    after = {(d.device_id, d.key): d for d in new.devices}
    added = tuple(d for k, d in after.items() if k not in before)
    removed = tuple(d for k, d in before.items() if k not in after)
    renamed = tuple((before[k], d) for k, d in after.items() if k in before and before[k].name != d.name)
    return DeviceChanges(added, removed, renamed)


@dataclass(frozen=True, slots=True)
class Accepted:
    content: DeviceList
    """The list the contact holds now."""
    changes: DeviceChanges | None
    """Relative to the list held before; None when the contact held none (nothing to compare)."""


def accept(
    accepted: DeviceList | None, update: Sequence[SignedDeviceList], account_key: PublicKey
) -> Accepted:
    """What a contact holding ``accepted`` (None: no list yet) holds after ``update``, the lists
    that followed it, in order. Lists at the start of ``update`` that are ``accepted`` itself are
    skipped, so an update received twice changes nothing. Raises as :func:`verify_chain`."""
    lists = list(update)
    if accepted is not None:
        held = accepted.hash
        while lists and lists[0].hash == held:
            lists.pop(0)
        if not lists:
            return Accepted(accepted, compare(accepted, accepted))
    content = verify_chain(lists, account_key, after=accepted)
    return Accepted(content, None if accepted is None else compare(accepted, content))
