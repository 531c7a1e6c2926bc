"""Schedules a forwarder holds for its clients: sealed requests to release at set times, and the
sealed answers kept until the client collects them (``docs/metadata.md``, "Outages").

A client in cadence mode polls each of its mailboxes and sends to each contact once a tick,
whether or not it has anything to say. Offline, it could not: the relay would see its requests
stop. So the client hands its forwarder, ahead of time, the Encapsulated Requests of its next
ticks, each with the instant it is due; the forwarder sends each to the relay at that instant
and keeps the Encapsulated Response for the client, which collects them when it is back. The
relay sees the same requests at the same kind of instants whether the device is on or off.

The forwarder still reads nothing: a schedule is a random 32-byte **capability** chosen by the
client (whoever holds it may change the schedule and collect its answers), and each **slot** is
an id chosen by the client, an instant (unix milliseconds) and opaque sealed bytes. What it
learns that it did not before: that the client had a schedule (it sees the device's presence
anyway, by its requests), how many slots per tick, and when the client comes and goes.

:class:`ScheduleBook` is the state and its rules, with no I/O and no clock of its own;
:class:`~sotto.forwarder.app.Forwarder` serves it over HTTP and releases the due slots. Every
bound is in :class:`ScheduleLimits`; a request that would break one is refused whole, with a
:class:`ScheduleRefusal` (its HTTP status and a stable ``code``), and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import itertools
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from sotto.errors import SottoError

__all__ = [
    "CAPABILITY_BYTES",
    "SLOT_ID_BYTES",
    "Collected",
    "Reply",
    "ScheduleBook",
    "ScheduleLimits",
    "ScheduleRefusal",
    "SlotUpload",
    "Stored",
    "parse_capability",
    "parse_collect",
    "parse_upload",
]

CAPABILITY_BYTES: Final = 32
SLOT_ID_BYTES: Final = 16
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class ScheduleLimits:
    """What a forwarder holds for schedules, at most."""

    max_schedules: int = 4_096
    """Schedules held at once, in all."""
    max_slots: int = 16_384
    """Slots one schedule holds (not yet released), and answers it keeps, each: a night of
    ticks (16 h at 300 s, 192 ticks) for 40 contacts and 40 mailboxes, with room to spare."""
    max_schedule_bytes: int = 32 * 1024 * 1024
    """Bytes of slots and kept answers one schedule holds; the oldest answers go first. A night
    for 10 contacts and 10 mailboxes is about 4 MB, for 40 and 40 about 16 MB."""
    max_total_bytes: int = 1024 * 1024 * 1024
    """Bytes of slots and answers held in all: beyond it, uploads are refused (507); a client
    then keeps the shorter schedule it has (``sotto.client.schedule``)."""
    max_horizon_seconds: float = 18 * 3600.0
    """How far ahead a slot may be due: the client's longest horizon (16 h) and a tick."""
    max_reply_age_seconds: float = 24 * 3600.0
    """How long an answer is kept uncollected; an empty schedule is dropped after as long."""
    max_upload_bytes: int = 4 * 1024 * 1024
    """One upload or collect request's body."""
    max_slots_per_upload: int = 1_024
    max_collect_bytes: int = 4 * 1024 * 1024
    """Answer bytes one collect hands out; the rest wait for the next (``more``)."""


class ScheduleRefusal(SottoError):
    """A schedule request refused whole; nothing was changed."""

    def __init__(self, status: int, code: str, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.code = code
        self.title = title


def _refuse(status: int, code: str, title: str) -> ScheduleRefusal:
    return ScheduleRefusal(status, code, title)


@dataclass(frozen=True, slots=True)
class SlotUpload:
    slot_id: bytes
    at_ms: int
    request: bytes
    replaces: bytes | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The relay's answer to one released slot, as the forwarder got it."""

    slot_id: bytes
    status: int
    media_type: str
    """The answer's content type when it is one the forwarder passes on, else empty."""
    body: bytes
    received: float
    """Unix seconds."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What an upload did: ``held`` slots (new or replacing), ``late`` ones not held (due already,
    or replacing a slot that was released; a late slot replaces nothing), ``released`` cancelled
    or replaced ids that had gone."""

    held: list[bytes]
    late: list[bytes]
    released: list[bytes]
    slots: int
    """Slots the schedule now holds."""


@dataclass(frozen=True, slots=True)
class Collected:
    replies: list[Reply]
    more: bool
    slots: int


@dataclass(slots=True)
class _Slot:
    at: float
    request: bytes
    seq: int


@dataclass(slots=True)
class _Schedule:
    slots: dict[bytes, _Slot] = field(default_factory=dict)
    out: set[bytes] = field(default_factory=set)
    """Ids released whose answer is awaited or kept; forgotten once acknowledged."""
    replies: OrderedDict[bytes, Reply] = field(default_factory=OrderedDict)
    size: int = 0
    touched: float = 0.0


def _b64(text: Any, length: int | None, what: str, max_length: int | None = None) -> bytes:
    if not isinstance(text, str) or not text.isascii() or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise _refuse(400, "malformed", f"{what} is not unpadded base64url")
    if max_length is not None and len(text) > (max_length * 4 + 2) // 3:
        raise _refuse(413, "too_large", f"{what} is over {max_length} bytes")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _refuse(400, "malformed", f"{what} is not unpadded base64url") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        raise _refuse(400, "malformed", f"{what} is not canonical base64url")
    if length is not None and len(data) != length:
        raise _refuse(400, "malformed", f"{what} must be {length} bytes")
    return data


def encode_id(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_capability(text: str) -> bytes:
    """The capability in a path segment; its SHA-256 is how the book keys the schedule."""
    return hashlib.sha256(_b64(text, CAPABILITY_BYTES, "the capability")).digest()


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise _refuse(400, "malformed", f"{what} must be a non-negative integer")
    return value


def parse_upload(
    body: Any, limits: ScheduleLimits, max_request_bytes: int
) -> tuple[list[SlotUpload], list[bytes] | int]:
    """``{"slots": [{"id", "at", "request", "replaces"?}], "cancel": [id]}`` or, instead of
    ``cancel``, ``"clear_from": at``: slots, and the ids to cancel or the instant (unix ms) from
    which every slot held is cancelled."""
    if not isinstance(body, dict) or set(body) - {"slots", "cancel", "clear_from"}:
        raise _refuse(400, "malformed", "expected an object with slots, and cancel or clear_from")
    clear_from = body.get("clear_from")
    if clear_from is not None and "cancel" in body:
        raise _refuse(400, "malformed", "clear_from comes without cancel")
    raw_slots = body.get("slots", [])
    raw_cancel = body.get("cancel", [])
    if not isinstance(raw_slots, list) or not isinstance(raw_cancel, list):
        raise _refuse(400, "malformed", "slots and cancel must be lists")
    if len(raw_slots) + len(raw_cancel) > limits.max_slots_per_upload:
        raise _refuse(413, "too_many_slots", f"at most {limits.max_slots_per_upload} slots an upload")
    slots: list[SlotUpload] = []
    for raw in raw_slots:
        if not isinstance(raw, dict) or not {"id", "at", "request"} <= set(raw) <= {
            "id",
            "at",
            "request",
            "replaces",
        }:
            raise _refuse(400, "malformed", "a slot is {id, at, request, replaces?}")
        replaces = raw.get("replaces")
        slots.append(
            SlotUpload(
                _b64(raw["id"], SLOT_ID_BYTES, "a slot id"),
                _int(raw["at"], "a slot's at"),
                _b64(raw["request"], None, "a slot's request", max_request_bytes),
                None if replaces is None else _b64(replaces, SLOT_ID_BYTES, "replaces"),
            )
        )
        if not slots[-1].request:
            raise _refuse(400, "malformed", "a slot's request is empty")
    cancel = [_b64(item, SLOT_ID_BYTES, "a cancelled id") for item in raw_cancel]
    ids = [slot.slot_id for slot in slots]
    if len(set(ids)) != len(ids):
        raise _refuse(409, "duplicate_slot", "a slot id appears twice in the upload")
    return slots, cancel if clear_from is None else _int(clear_from, "clear_from")


def parse_collect(body: Any, limits: ScheduleLimits) -> list[bytes]:
    """``{"ack": [id]}``: the answers collected before, to forget."""
    if not isinstance(body, dict) or set(body) - {"ack"} or not isinstance(body.get("ack", []), list):
        raise _refuse(400, "malformed", "expected an object with ack")
    acks = body.get("ack", [])
    if len(acks) > limits.max_slots:
        raise _refuse(413, "too_many_slots", f"at most {limits.max_slots} acknowledgements")
    return [_b64(item, SLOT_ID_BYTES, "an acknowledged id") for item in acks]


class ScheduleBook:
    """Every schedule a forwarder holds (see the module's note). Times are unix seconds, passed in."""

    def __init__(self, limits: ScheduleLimits | None = None) -> None:
        self.limits = limits or ScheduleLimits()
        self._schedules: dict[bytes, _Schedule] = {}
        self._due: list[tuple[float, int, bytes, bytes]] = []
        """(at, seq, schedule key, slot id); entries whose slot was replaced are skipped."""
        self._seq = itertools.count()
        self._total = 0

    def __len__(self) -> int:
        return len(self._schedules)

    @property
    def total_bytes(self) -> int:
        return self._total

    def next_at(self) -> float | None:
        """When the earliest held slot is due (stale entries may make it early: harmless)."""
        return self._due[0][0] if self._due else None

    def store(self, key: bytes, slots: list[SlotUpload], cancel: list[bytes] | int, now: float) -> Stored:
        """Cancel (ids, or every slot due at or after an instant in unix ms), then add or replace
        slots; all of it or, refused, none of it."""
        limits = self.limits
        schedule = self._schedules.get(key)
        if schedule is None and len(self._schedules) >= limits.max_schedules:
            raise _refuse(507, "forwarder_full", "the forwarder holds all the schedules it can")
        current = schedule or _Schedule(touched=now)
        held_before = current.slots
        if isinstance(cancel, int):
            cancel = [slot_id for slot_id, held in held_before.items() if held.at * 1000 >= cancel]
        for slot in slots:
            if slot.at_ms / 1000 > now + limits.max_horizon_seconds:
                raise _refuse(
                    422, "too_far_ahead", f"a slot is due more than {limits.max_horizon_seconds:.0f} s ahead"
                )
            taken = slot.slot_id in held_before or slot.slot_id in current.out
            if taken and slot.replaces != slot.slot_id:
                raise _refuse(409, "slot_exists", "a slot with that id is held already")
        # Work out the outcome on copies first, so a refusal changes nothing.
        removed: set[bytes] = set()
        released: list[bytes] = []
        for slot_id in cancel:
            if slot_id in held_before:
                removed.add(slot_id)
            elif slot_id in current.out:
                released.append(slot_id)
        held: list[SlotUpload] = []
        late: list[bytes] = []
        for slot in slots:
            old = slot.replaces
            if old is not None and old not in removed and old in current.out:
                released.append(old)
                late.append(slot.slot_id)
            elif slot.at_ms / 1000 < now:
                late.append(slot.slot_id)  # what it replaces (if anything) stays
            else:
                if old is not None and old in held_before:
                    removed.add(old)
                held.append(slot)
        freed = sum(len(held_before[slot_id].request) for slot_id in removed)
        added = sum(len(slot.request) for slot in held)
        count = len(held_before) - len(removed) + len(held)
        if count > limits.max_slots or current.size - freed + added > limits.max_schedule_bytes:
            raise _refuse(507, "schedule_full", "the schedule would hold more slots or bytes than allowed")
        if self._total - freed + added > limits.max_total_bytes:
            raise _refuse(507, "forwarder_full", "the forwarder holds all the bytes it can")
        if schedule is None:
            schedule = self._schedules[key] = current
        for slot_id in removed:
            del schedule.slots[slot_id]
        for slot in held:
            seq = next(self._seq)
            schedule.slots[slot.slot_id] = _Slot(slot.at_ms / 1000, slot.request, seq)
            heapq.heappush(self._due, (slot.at_ms / 1000, seq, key, slot.slot_id))
        schedule.size += added - freed
        self._total += added - freed
        schedule.touched = now
        return Stored([slot.slot_id for slot in held], late, released, len(schedule.slots))

    def due(self, now: float) -> list[tuple[bytes, bytes, bytes]]:
        """Take every slot due by ``now``: (schedule key, slot id, sealed request), in time order.
        Each is then awaited as released until :meth:`answer` brings its reply."""
        taken: list[tuple[bytes, bytes, bytes]] = []
        while self._due and self._due[0][0] <= now:
            _, seq, key, slot_id = heapq.heappop(self._due)
            schedule = self._schedules.get(key)
            slot = None if schedule is None else schedule.slots.get(slot_id)
            if schedule is None or slot is None or slot.seq != seq:
                continue  # replaced or cancelled since
            del schedule.slots[slot_id]
            schedule.size -= len(slot.request)
            self._total -= len(slot.request)
            schedule.out.add(slot_id)
            taken.append((key, slot_id, slot.request))
        return taken

    def answer(self, key: bytes, reply: Reply) -> None:
        """Keep the relay's answer to a released slot, dropping the schedule's oldest answers
        if it would hold too many or too many bytes (the client then asks again: a poll's
        envelopes stay at the relay until acknowledged, a send is deduplicated by its id)."""
        schedule = self._schedules.get(key)
        if schedule is None or reply.slot_id not in schedule.out:
            return  # the schedule was deleted meanwhile
        limits = self.limits
        size = len(reply.body)
        if size > limits.max_schedule_bytes or self._total + size > limits.max_total_bytes:
            schedule.out.discard(reply.slot_id)
            return
        while schedule.replies and (
            len(schedule.replies) + len(schedule.slots) >= 2 * limits.max_slots
            or schedule.size + size > limits.max_schedule_bytes
        ):
            old_id, old = schedule.replies.popitem(last=False)
            schedule.out.discard(old_id)
            schedule.size -= len(old.body)
            self._total -= len(old.body)
        schedule.replies[reply.slot_id] = reply
        schedule.size += size
        self._total += size

    def collect(self, key: bytes, acks: list[bytes], now: float) -> Collected:
        """Forget the acknowledged answers; hand out the kept ones, oldest first, within
        ``max_collect_bytes``. An unknown schedule is an empty one."""
        schedule = self._schedules.get(key)
        if schedule is None:
            return Collected([], False, 0)
        schedule.touched = now
        for slot_id in acks:
            reply = schedule.replies.pop(slot_id, None)
            if reply is not None:
                schedule.size -= len(reply.body)
                self._total -= len(reply.body)
                schedule.out.discard(slot_id)
        handed: list[Reply] = []
        budget = self.limits.max_collect_bytes
        more = False
        for reply in schedule.replies.values():
            if handed and len(reply.body) > budget:
                more = True
                break
            handed.append(reply)
            budget -= len(reply.body)
        return Collected(handed, more, len(schedule.slots))

    def drop(self, key: bytes) -> bool:
        """Delete a schedule: its slots are not released, its answers are gone."""
        schedule = self._schedules.pop(key, None)
        if schedule is None:
            return False
        self._total -= schedule.size
        return True

    def expire(self, now: float) -> None:
        """Drop answers kept longer than ``max_reply_age_seconds``, and schedules holding
        nothing that were not touched for as long."""
        age = self.limits.max_reply_age_seconds
        for key in list(self._schedules):
            schedule = self._schedules[key]
            while schedule.replies:
                slot_id, reply = next(iter(schedule.replies.items()))
                if now - reply.received <= age:
                    break
                del schedule.replies[slot_id]
                schedule.out.discard(slot_id)
                schedule.size -= len(reply.body)
                self._total -= len(reply.body)
            if not schedule.slots and not schedule.replies and now - schedule.touched > age:
                schedule.out.clear()
                del self._schedules[key]
        if len(self._due) > 4 * (sum(len(s.slots) for s in self._schedules.values()) + 1024):
            self._due = [
                entry
                for entry in self._due
                if (s := self._schedules.get(entry[2])) is not None
                and (slot := s.slots.get(entry[3])) is not None
                and slot.seq == entry[1]
            ]
            heapq.heapify(self._due)
