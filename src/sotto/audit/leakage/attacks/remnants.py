"""Remnants: what the relay's files hold besides the live rows, and whether it pairs contacts.

Input: snapshots of the data directory and the ids an operator already has (the live dump's
mailboxes, and the mailbox and message ids the view names). Remnants are the bytes SQLite would
not read back:

- **old page images in the write-ahead log**: frames not current (left from before the log was
  restarted), frames past its last commit, and frames a later frame of the same page replaced;
- **free pages** of the main file (on the freelist);
- **free space inside live pages**: between the cell pointers and the first cell, and the
  page's free blocks.

Each remnant is searched for what would give something away: the 16-byte ids of mailboxes no
longer in the live table (a deleted mailbox's row), and the ``id_tag`` of envelopes the view saw
sent and then read (named by a poll, or acknowledged on the delivery socket:
``sha256("sotto-envelope-id" ‖ mailbox ‖ message id)[:16]``, computable from the view; such an
envelope is deleted by the next acknowledgement at the latest); and, with the log, the order in which
rows were written. :func:`holdings` counts what was found; :func:`attack` pairs the mailboxes
found one after another in the remnants, in file order (log frames in commit order, then free
pages, then live pages), weight ``1 / distance`` within :data:`~.dump.NEIGHBOURS`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sotto.audit.leakage.attacks.dump import DB, NEIGHBOURS, Scores, effective_image, page_size_of
from sotto.audit.leakage.attacks.view import Ranking, pseudonym_of_mailbox, ranked
from sotto.errors import DecodeError
from sotto.server.observer import DataSnapshot, HttpExchange, ViewRecord, WsFrame, free_pages, wal_frames
from sotto.server.storage.sqlite import id_tag
from sotto.wire import b64


@dataclass(frozen=True, slots=True)
class Remnant:
    """Bytes SQLite would not read back: ``where`` (``wal``, ``free page``, ``page slack``)."""

    where: str
    data: bytes


def remnants(snapshot: DataSnapshot, name: str = DB) -> Iterator[Remnant]:
    """Every remnant of one snapshot, in file order (module docstring)."""
    db = snapshot.files.get(name, b"")
    frames = wal_frames(snapshot.files.get(name + "-wal", b""))
    current = [f for f in frames if f.current]
    last_commit = max((i for i, f in enumerate(current) if f.commit), default=-1)
    read_back = {f.page: f.index for f in current[: last_commit + 1]}  # the last image of each page
    for f in frames:
        if not f.current or read_back.get(f.page) != f.index:
            yield Remnant("wal", f.data)
    for _, page in sorted(free_pages(db).items()):
        yield Remnant("free page", page)
    image = effective_image(db, snapshot.files.get(name + "-wal", b""))
    page_size = page_size_of(image)
    if page_size < 512:
        return
    for number in range(1, len(image) // page_size + 1):
        slack = _slack(image[(number - 1) * page_size : number * page_size], number, page_size)
        if slack:
            yield Remnant("page slack", slack)


def _slack(page: bytes, number: int, page_size: int) -> bytes:
    """A b-tree page's unallocated bytes: the gap before its cells and its free blocks."""
    h = 100 if number == 1 else 0
    kind = page[h]
    if kind not in (0x02, 0x05, 0x0A, 0x0D):
        return b""
    head = h + (12 if kind in (0x02, 0x05) else 8)
    count = int.from_bytes(page[h + 3 : h + 5], "big")
    start = int.from_bytes(page[h + 5 : h + 7], "big") or 65_536
    parts = [page[head + 2 * count : min(start, page_size)]]
    block, seen = int.from_bytes(page[h + 1 : h + 3], "big"), set()
    while 0 < block < page_size - 4 and block not in seen:
        seen.add(block)
        size = int.from_bytes(page[block + 2 : block + 4], "big")
        parts.append(page[block + 4 : block + size])
        block = int.from_bytes(page[block : block + 2], "big")
    return b"".join(parts)


def known_ids(records: Sequence[ViewRecord]) -> tuple[set[bytes], set[bytes]]:
    """From the view: every mailbox id it names, and the ``id_tag`` of every envelope it saw
    sent and then acknowledged (what the relay deleted)."""
    mailboxes: set[bytes] = set()
    sent: dict[bytes, bytes] = {}
    acked: set[bytes] = set()
    for r in records:
        if isinstance(r, HttpExchange):
            ids = [_decode(m) for m in r.mailboxes]
            mailboxes.update(i for i in ids if i)
            if r.method == "POST" and r.path.endswith("/messages") and ids and ids[0]:
                for m in r.messages[:1]:
                    message = _decode(m)
                    if message:
                        sent[message] = ids[0]
            elif r.path.endswith("/poll"):
                acked.update(i for i in map(_decode, r.messages) if i)
        elif isinstance(r, WsFrame):
            ids = [_decode(m) for m in r.mailboxes]
            mailboxes.update(i for i in ids if i)
            if r.direction == "in" and r.type == "send" and ids and ids[0]:
                for m in r.messages[:1]:
                    message = _decode(m)
                    if message:
                        sent[message] = ids[0]
            elif r.direction == "in" and r.type == "ack":
                acked.update(i for i in map(_decode, r.messages) if i)
    tags = {id_tag(sent[m], m) for m in acked if m in sent}
    return mailboxes, tags


def _decode(value: str) -> bytes | None:
    try:
        raw = b64.decode(value)
    except DecodeError:
        return None
    return raw if len(raw) == 16 else None


@dataclass(frozen=True, slots=True)
class Holdings:
    """What the remnants of some snapshots held (counted over all of them)."""

    snapshots: int
    wal_bytes: int
    """Bytes of the write-ahead logs."""
    remnant_bytes: dict[str, int]
    """Where → bytes of remnants there."""
    nonzero_bytes: dict[str, int]
    """Where → bytes of remnants there that are not zero."""
    deleted_mailboxes: int
    """Mailboxes the view named, gone from the live table, whose id a remnant still holds."""
    acked_envelopes: int
    """Acknowledged envelopes (of the view) whose ``id_tag`` a remnant still holds."""
    acked_seen: int
    """Acknowledged envelopes the view shows, to compare with."""


def holdings(
    snapshots: Sequence[DataSnapshot], records: Sequence[ViewRecord], live: Iterable[bytes]
) -> Holdings:
    """Count what the remnants hold (module docstring); ``live``: the mailbox ids of the live
    tables (a dump's :attr:`~.dump.Dump.mailboxes`), which are not counted as deleted."""
    mailboxes, tags = known_ids(records)
    gone = mailboxes - set(live)
    sizes: dict[str, int] = defaultdict(int)
    nonzero: dict[str, int] = defaultdict(int)
    found_mailboxes: set[bytes] = set()
    found_tags: set[bytes] = set()
    wal = 0
    for snapshot in snapshots:
        wal += len(snapshot.files.get(DB + "-wal", b""))
        for remnant in remnants(snapshot):
            sizes[remnant.where] += len(remnant.data)
            zeros = remnant.data.count(0)
            nonzero[remnant.where] += len(remnant.data) - zeros
            if zeros == len(remnant.data):
                continue
            found_mailboxes.update(_found(remnant.data, gone))
            found_tags.update(_found(remnant.data, tags))
    return Holdings(
        len(snapshots), wal, dict(sizes), dict(nonzero), len(found_mailboxes), len(found_tags), len(tags)
    )


def _found(data: bytes, wanted: set[bytes]) -> Iterator[bytes]:
    """The 16-byte ids of ``wanted`` that occur in ``data``, in the order they occur."""
    if not wanted:
        return
    seen: set[bytes] = set()
    for at in range(len(data) - 15):
        window = data[at : at + 16]
        if window in wanted and window not in seen:
            seen.add(window)
            yield window


def attack(snapshots: Sequence[DataSnapshot], records: Sequence[ViewRecord]) -> Ranking:
    """Mailboxes found next to each other in the remnants (module docstring)."""
    mailboxes, _ = known_ids(records)
    out: Scores = defaultdict(dict)
    for snapshot in snapshots:
        order: list[str] = []
        for remnant in remnants(snapshot):
            if remnant.data.count(0) != len(remnant.data):
                order.extend(pseudonym_of_mailbox(b64.encode(m)) for m in _found(remnant.data, mailboxes))
        for i, a in enumerate(order):
            for d in range(1, NEIGHBOURS + 1):
                if i + d < len(order) and order[i + d] != a:
                    b = order[i + d]
                    out[a][b] = out[a].get(b, 0.0) + 1.0 / d
                    out[b][a] = out[b].get(a, 0.0) + 1.0 / d
    return ranked(out)


__all__ = ["Holdings", "Remnant", "attack", "holdings", "known_ids", "remnants"]
