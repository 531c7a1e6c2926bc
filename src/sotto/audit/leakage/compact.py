"""The operator's view held in less memory: the same records, their repeated values shared.

A study's view is millions of records (:mod:`sotto.server.observer`), and most of what each one
holds repeats: the header pairs every request carries (``host``, ``accept``, ``connection``,
``content-type`` …), a delivery token sent with every envelope to one mailbox, the paths, ids,
addresses, ports and sizes. The observer makes a fresh string for each of them in every record
(about 2.3 KiB a record, two thirds of it headers). :func:`compact` returns a record equal to the
one it is given, field for field, with each such value replaced by the one object already held
for it; what is unique to a record (its times, a mailbox request's signed credential, the ids of
the envelopes it names) is kept as it is. Nothing is dropped or changed, so every attack reads
the same view and scores the same.

:class:`CompactSink` holds a study's view that way; :func:`read_compact` reads a view file
(JSON lines) a record at a time into the same form, without holding the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sotto.server.observer import (
    Headers,
    HttpExchange,
    MemorySink,
    ViewRecord,
    WsClose,
    WsFrame,
    WsOpen,
    from_json,
)

UNIQUE_HEADERS = frozenset({"sotto-mailbox-auth"})
"""Headers whose value differs in every request (a signed time): their names are shared, their
values are not, as holding each in a table would only add to its cost."""


@dataclass
class Interner:
    """One object per distinct value seen: strings, ints, header pairs and id tuples."""

    strings: dict[str, str] = field(default_factory=dict)
    ints: dict[int, int] = field(default_factory=dict)
    pairs: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    tuples: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)

    def text(self, value: str) -> str:
        return self.strings.setdefault(value, value)

    def maybe_text(self, value: str | None) -> str | None:
        return None if value is None else self.strings.setdefault(value, value)

    def number(self, value: int) -> int:
        return self.ints.setdefault(value, value)

    def maybe_number(self, value: int | None) -> int | None:
        return None if value is None else self.ints.setdefault(value, value)

    def ids(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """A tuple of ids: the ids shared, and a tuple of one id (a mailbox a request names)
        shared whole."""
        if not values:
            return ()
        shared = tuple(self.text(v) for v in values)
        return self.tuples.setdefault(shared, shared) if len(shared) == 1 else shared

    def headers(self, headers: Headers) -> Headers:
        out = []
        for name, value in headers:
            if name in UNIQUE_HEADERS:
                out.append((self.text(name), value))
            else:
                pair = (name, value)
                held = self.pairs.get(pair)
                if held is None:
                    held = self.pairs[pair] = (self.text(name), self.text(value))
                out.append(held)
        return tuple(out)


def compact(record: ViewRecord, interner: Interner) -> ViewRecord:
    """``record`` with its repeated values shared through ``interner`` (equal to ``record``)."""
    i = interner
    if isinstance(record, HttpExchange):
        return HttpExchange(
            record.t_us,
            record.conn,
            i.maybe_text(record.addr),
            i.maybe_number(record.port),
            i.text(record.method),
            i.text(record.path),
            i.text(record.query),
            i.headers(record.headers),
            i.number(record.request_bytes),
            record.status,
            i.number(record.response_bytes),
            record.duration_us,
            i.ids(record.mailboxes),
            record.messages,
            i.ids(record.accounts),
            record.handed,
            record.more,
        )
    if isinstance(record, WsFrame):
        return WsFrame(
            record.t_us,
            record.conn,
            i.maybe_text(record.addr),
            i.maybe_number(record.port),
            i.text(record.direction),
            i.text(record.opcode),
            i.maybe_text(record.type),
            i.number(record.size),
            i.ids(record.mailboxes),
            record.messages,
        )
    if isinstance(record, WsOpen):
        return WsOpen(
            record.t_us,
            record.conn,
            i.maybe_text(record.addr),
            i.maybe_number(record.port),
            i.text(record.path),
            i.text(record.query),
            i.headers(record.headers),
        )
    assert isinstance(record, WsClose)
    return WsClose(
        record.t_us,
        record.conn,
        i.maybe_text(record.addr),
        i.maybe_number(record.port),
        i.text(record.direction),
        record.code,
    )


@dataclass
class CompactSink(MemorySink):
    """A :class:`~sotto.server.observer.MemorySink` whose records are :func:`compact`."""

    interner: Interner = field(default_factory=Interner)

    def write(self, record: ViewRecord) -> None:
        self.records.append(compact(record, self.interner))


def read_compact(path: Path) -> Iterator[ViewRecord]:
    """The records of a view file, one line at a time, compact (as
    :func:`~sotto.server.observer.read_view`: a line that does not parse is left out)."""
    interner = Interner()
    with Path(path).open("rb") as lines:
        for line in lines:
            try:
                record = from_json(line)
            except (ValueError, KeyError, TypeError):
                continue
            yield compact(record, interner)


__all__ = ["UNIQUE_HEADERS", "CompactSink", "Interner", "compact", "read_compact"]
