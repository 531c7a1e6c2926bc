"""What a device's schedule at its forwarder costs, at the two-hour horizon and at the night's.

    python bench/schedule.py [--contacts 10] [--mailboxes 10] [--devices 200] [--runs 3]

One process, no network: the forwarder's :class:`~sotto.forwarder.schedule.ScheduleBook` and its
request parsing, fed with slots of the sizes a cadence client seals (a poll 445 B, a cover or
message send 1,681 B, measured on loopback: ``docs/metadata.md``), in the client's upload format
(JSON, base64url). Both horizons are measured in the same run, the two-hour one as the baseline:

* upload bytes a tick (steady state: the tick rebuilt and the tick added at the horizon) and a
  day (300 s ticks), and what resealing the held covers costs each time a contact's message moves
  the sending chain on (every held tick's cover to that contact);
* forwarder storage per device (sealed bytes held, and the Python memory holding them), and for
  ``--devices`` devices;
* forwarder CPU per slot: parsing its upload (JSON, base64), storing it, releasing it, keeping
  its answer and handing it out, the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import statistics
import time
import tracemalloc

from sotto.forwarder.schedule import Reply as ScheduleReply
from sotto.forwarder.schedule import ScheduleBook, ScheduleLimits, parse_upload
from sotto.wire.ohttp import MAX_ENCAPSULATED_BYTES

TICK_S = 300
POLL_BYTES = 445
SEND_BYTES = 1_681
POLL_ANSWER_BYTES = 300
"""An empty poll's sealed answer (no envelopes)."""
SEND_ANSWER_BYTES = 120
HORIZONS = {"2 h": 2 * 3600, "14 h": 14 * 3600}
NOW = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Device:
    def __init__(self, n: int, contacts: int, mailboxes: int) -> None:
        self.key = n.to_bytes(32, "big")
        self.sizes = [POLL_BYTES] * mailboxes + [SEND_BYTES] * contacts
        self.next_id = 0

    def tick_body(self, tick: int) -> dict[str, object]:
        """One tick's slots as the client uploads them."""
        slots = []
        for i, size in enumerate(self.sizes):
            self.next_id += 1
            at = int((NOW + tick * TICK_S + i) * 1000)
            slots.append({"id": b64(self.next_id.to_bytes(16, "big")), "at": at, "request": b64(bytes(size))})
        return {"slots": slots, "cancel": []}


def upload_bytes(body: dict[str, object]) -> int:
    return len(json.dumps(body).encode())


def fill(book: ScheduleBook, device: Device, ticks: int) -> float:
    """Upload ``ticks`` ticks for ``device`` through the forwarder's parser; CPU seconds."""
    limits = book.limits
    cpu = time.process_time()
    for tick in range(1, ticks + 1):
        raw = json.dumps(device.tick_body(tick)).encode()
        slots, cancel = parse_upload(json.loads(raw), limits, MAX_ENCAPSULATED_BYTES)
        book.store(device.key, slots, cancel, NOW)
    return time.process_time() - cpu


def cycle(book: ScheduleBook, devices: list[Device], ticks: int) -> tuple[float, int]:
    """Release every held slot (tick by tick), keep its answer, hand the answers out and forget
    them; CPU seconds and slots."""
    cpu = time.process_time()
    count = 0
    for tick in range(1, ticks + 1):
        now = NOW + tick * TICK_S + TICK_S
        for key, slot_id, request in book.due(now):
            size = POLL_ANSWER_BYTES if len(request) == POLL_BYTES else SEND_ANSWER_BYTES
            book.answer(key, ScheduleReply(slot_id, 200, "message/ohttp-res", bytes(size), now))
            count += 1
        for device in devices:
            kept = book.collect(device.key, [], now).replies
            book.collect(device.key, [r.slot_id for r in kept], now)
    return time.process_time() - cpu, count


def measure(horizon_s: int, contacts: int, mailboxes: int, devices: int) -> dict[str, float]:
    ticks = math.ceil(horizon_s / TICK_S)
    limits = ScheduleLimits(max_total_bytes=2**40, max_schedules=devices + 1)
    # Memory with one device traced (tracing slows everything down), CPU with every device untraced.
    traced = ScheduleBook(limits)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(traced, Device(0, contacts, mailboxes), ticks)
    held_memory = (tracemalloc.get_traced_memory()[0] - before) * devices
    tracemalloc.stop()
    del traced
    book = ScheduleBook(limits)
    crowd = [Device(n, contacts, mailboxes) for n in range(devices)]
    fill_cpu = sum(fill(book, device, ticks) for device in crowd)
    held_bytes = book.total_bytes
    slots = devices * ticks * (contacts + mailboxes)
    release_cpu, released = cycle(book, crowd, ticks)
    assert released == slots and book.total_bytes == 0, (released, slots, book.total_bytes)
    sample = Device(0, contacts, mailboxes)
    per_tick = upload_bytes(sample.tick_body(1))
    cover_json = upload_bytes(Device(0, 1, 0).tick_body(1)) - upload_bytes({"slots": [], "cancel": []})
    return {
        "ticks": ticks,
        "upload_tick": 2 * per_tick,
        "upload_day": 2 * per_tick * 86_400 / TICK_S,
        "reseal_per_chain_move": ticks * cover_json,
        "held_per_device": held_bytes / devices,
        "memory_per_device": held_memory / devices,
        "upload_cpu_us": fill_cpu / slots * 1e6,
        "release_cpu_us": release_cpu / slots * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=10)
    parser.add_argument("--mailboxes", type=int, default=10)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{args.contacts} contacts, {args.mailboxes} mailboxes, {TICK_S} s ticks, {args.devices} devices, "
        f"median of {args.runs} runs"
    )
    results: dict[str, dict[str, float]] = {}
    for name, horizon in HORIZONS.items():
        runs = [measure(horizon, args.contacts, args.mailboxes, args.devices) for _ in range(args.runs)]
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [
        ("ticks held", "ticks", "{:.0f}"),
        ("upload a tick (rebuilt + added), KB", "upload_tick", "{:.1f}"),
        ("upload a day, MB", "upload_day", "{:.1f}"),
        ("reseal a contact's held covers (chain moved), KB", "reseal_per_chain_move", "{:.0f}"),
        ("forwarder: sealed bytes held per device, MB", "held_per_device", "{:.2f}"),
        ("forwarder: memory per device, MB", "memory_per_device", "{:.2f}"),
        (f"forwarder: memory for {args.devices} devices, MB", "memory_per_device", "{:.0f}"),
        ("forwarder CPU per slot: upload parse + store, us", "upload_cpu_us", "{:.1f}"),
        ("forwarder CPU per slot: release + answer + collect, us", "release_cpu_us", "{:.1f}"),
    ]
    scale = {"upload_tick": 1e-3, "upload_day": 1e-6, "reseal_per_chain_move": 1e-3}
    print(f"{'':58}" + "".join(f"{name:>10}" for name in HORIZONS) + "     ratio")
    for label, key, fmt in rows:
        factor = scale.get(key, 1e-6 if "per_device" in key else 1.0)
        if label.startswith("forwarder: memory for"):
            factor = args.devices * 1e-6
        values = [results[name][key] * factor for name in HORIZONS]
        ratio = values[1] / values[0] if values[0] else float("nan")
        print(f"{label:58}" + "".join(f"{fmt.format(v):>10}" for v in values) + f"{ratio:>9.2f}x")


if __name__ == "__main__":
    main()
