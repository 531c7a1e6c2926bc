"""The dump: what the relay's files say about who talks to whom, read as whoever seizes them would.

Input: snapshots of the data directory (:class:`~sotto.server.observer.DataSnapshot`, taken by
the relay's observer at moments of a run), nothing else. Each is read twice:

- **as SQLite reads it**: the main file with the write-ahead log's current frames laid over it
  (up to its last commit), every table, SQLite's own (``sqlite_schema``, any ``sqlite_stat*``)
  included, through :mod:`sqlite3`;
- **as bytes**: every b-tree of the file (tables and indexes) walked page by page, and each leaf
  page's cells listed with where they lie in the page. SQLite writes a page's cells from its end
  towards its start in the order rows arrive, and keeps them there until the page is rebalanced
  or the file rewritten, so the place of a cell says which rows came one after another.

Every row is tied to the pseudonym it belongs to: the mailbox id, or else the account id, it
holds (any 16-byte blob equal to a mailbox's or an account's id in the same dump). Then, for
mailboxes and for accounts apart, evidence that two pseudonyms were made together:

- **row order** (:data:`ROW_ORDER`): cells of two pseudonyms within :data:`NEIGHBOURS` places of
  each other in a page's arrival order, weight ``1 / distance``;
- **columns** (:data:`COLUMNS`): for every other column of every table, rows with the same value
  (weight ``1 / (group size − 1)``, groups of at most :data:`MAX_GROUP`), or, for a number with
  many values (a time, a counter), rows within :data:`NEIGHBOURS` places of each other in its
  order (weight ``g / (g + difference)``, ``g`` the median difference of neighbours): what a
  ``created_day``, a creation time or a serial counter would give away.

The contact answer ranks, for each pseudonym, the others by the evidence summed over the
features and the snapshots (:func:`attack`; :func:`attack` with ``features`` for one of them).
What the files hold besides (the log, free pages, old copies) is :mod:`.remnants`.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sotto.audit.leakage.attacks.view import Ranking, pseudonym_of_account, pseudonym_of_mailbox, ranked
from sotto.server.observer import DataSnapshot, wal_frames
from sotto.wire import b64

DB = "relay.db"
NEIGHBOURS = 3
"""Places apart (in a page's arrival order, or in a column's order) that still count."""
MAX_GROUP = 64
"""Rows sharing a value in larger groups than this say nothing worth counting."""
ROW_ORDER = "row order"
COLUMNS = "columns"
FEATURES = (ROW_ORDER, COLUMNS)

Value = int | float | str | bytes | None


# ----------------------------------------------------------------------------- raw pages
def effective_image(db: bytes, wal: bytes) -> bytes:
    """The database as SQLite would read it: ``db`` with the log's current frames, up to the
    last one that ends a transaction, written over its pages."""
    frames = [f for f in wal_frames(wal) if f.current]
    last_commit = max((i for i, f in enumerate(frames) if f.commit), default=-1)
    if last_commit < 0:
        return db
    page_size = len(frames[0].data)
    size = frames[last_commit].commit * page_size
    image = bytearray(db[:size].ljust(size, b"\x00"))
    for f in frames[: last_commit + 1]:
        if f.page * page_size <= size:
            image[(f.page - 1) * page_size : f.page * page_size] = f.data
    return bytes(image)


def page_size_of(db: bytes) -> int:
    size = int.from_bytes(db[16:18], "big") if len(db) >= 100 else 0
    return 65_536 if size == 1 else size


def varint(buf: bytes, at: int) -> tuple[int, int]:
    """SQLite's variable-length integer at ``at``: (value, the offset after it)."""
    value = 0
    for i in range(8):
        if at + i >= len(buf):
            return value, len(buf)
        byte = buf[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    if at + 8 >= len(buf):
        return value, len(buf)
    return (value << 8) | buf[at + 8], at + 9


def record(payload: bytes) -> list[Value]:
    """The values of a record (SQLite's record format); values cut off by the end of
    ``payload`` (a cell whose rest is on overflow pages) are None."""
    header, at = varint(payload, 0)
    types: list[int] = []
    while at < min(header, len(payload)):
        t, at = varint(payload, at)
        types.append(t)
    out: list[Value] = []
    body = header
    for t in types:
        if t in (0, 8, 9, 10, 11):
            out.append(None if t in (0, 10, 11) else t - 8)
            continue
        if t <= 7:
            n = (0, 1, 2, 3, 4, 6, 8, 8)[t]
            chunk = payload[body : body + n]
            body += n
            if len(chunk) < n:
                out.append(None)
            elif t == 7:
                out.append(float(struct.unpack(">d", chunk)[0]))
            else:
                out.append(int.from_bytes(chunk, "big", signed=True))
            continue
        n = (t - 12) // 2 if t % 2 == 0 else (t - 13) // 2
        chunk = payload[body : body + n]
        body += n
        if len(chunk) < n:
            out.append(None)
        else:
            out.append(chunk if t % 2 == 0 else chunk.decode("utf-8", "replace"))
    return out


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell of a leaf page: where it lies (page, offset) and its record's values."""

    page: int
    offset: int
    values: list[Value]


def page_type(image: bytes, page: int, page_size: int) -> int:
    start = (page - 1) * page_size + (100 if page == 1 else 0)
    return image[start] if start < len(image) else 0


def leaf_cells(page_bytes: bytes, page: int, page_size: int, usable: int) -> list[Cell]:
    """The cells of one page holding rows: a leaf (table 0x0d, index 0x0a) or an index's
    interior page (0x02, whose cells are rows of a ``WITHOUT ROWID`` table too), each with its
    record; an empty list for any other page."""
    h = 100 if page == 1 else 0
    kind = page_bytes[h] if h < len(page_bytes) else 0
    if kind not in (0x0A, 0x0D, 0x02):
        return []
    count = int.from_bytes(page_bytes[h + 3 : h + 5], "big")
    head = h + (12 if kind == 0x02 else 8)
    out = []
    for i in range(count):
        pointer = int.from_bytes(page_bytes[head + 2 * i : head + 2 + 2 * i], "big")
        if not 0 < pointer < page_size:
            continue
        size, at = varint(page_bytes, pointer + (4 if kind == 0x02 else 0))
        if kind == 0x0D:
            _, at = varint(page_bytes, at)  # the rowid
        local = _local_size(size, usable, table=kind == 0x0D)
        out.append(Cell(page, pointer, record(page_bytes[at : at + local])))
    return out


def _local_size(payload: int, usable: int, *, table: bool) -> int:
    most = usable - 35 if table else (usable - 12) * 64 // 255 - 23
    if payload <= most:
        return payload
    least = (usable - 12) * 32 // 255 - 23
    k = least + (payload - least) % (usable - 4)
    return k if k <= most else least


def btree_leaves(image: bytes, root: int, page_size: int) -> Iterator[int]:
    """The pages under ``root`` that hold rows (:func:`leaf_cells`)."""
    pages = len(image) // page_size
    stack, seen = [root], set()
    while stack:
        page = stack.pop()
        if not 1 <= page <= pages or page in seen:
            continue
        seen.add(page)
        h = (page - 1) * page_size + (100 if page == 1 else 0)
        kind = image[h]
        if kind in (0x0A, 0x0D, 0x02):
            yield page
        if kind in (0x02, 0x05):
            count = int.from_bytes(image[h + 3 : h + 5], "big")
            children = [int.from_bytes(image[h + 8 : h + 12], "big")]  # the right-most child
            base = (page - 1) * page_size
            for i in range(count):
                pointer = int.from_bytes(image[h + 12 + 2 * i : h + 14 + 2 * i], "big")
                children.append(int.from_bytes(image[base + pointer : base + pointer + 4], "big"))
            stack.extend(children)  # popped last first: the left-most leaves come first


# ----------------------------------------------------------------------------- the dump, read
@dataclass
class Table:
    """One table (or index) of a dump: its columns and rows as SQLite reads them, and its
    leaf cells as they lie in the file."""

    name: str
    kind: str
    """``table`` or ``index``."""
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Value, ...]] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Dump:
    """Every table of one snapshot (module docstring)."""

    t_us: int
    tables: dict[str, Table]
    mailboxes: set[bytes]
    accounts: set[bytes]

    def pseudonym(self, values: Iterable[Value]) -> str | None:
        """The mailbox (first) or account a row's values name, as attacks name them."""
        blobs = [v for v in values if isinstance(v, bytes) and len(v) == 16]
        for v in blobs:
            if v in self.mailboxes:
                return pseudonym_of_mailbox(b64.encode(v))
        for v in blobs:
            if v in self.accounts:
                return pseudonym_of_account(b64.encode(v))
        return None


def read(snapshot: DataSnapshot, name: str = DB) -> Dump | None:
    """A snapshot's database, read both ways (module docstring); None if it holds none."""
    db = snapshot.files.get(name, b"")
    image = effective_image(db, snapshot.files.get(name + "-wal", b""))
    page_size = page_size_of(image)
    if page_size < 512:
        return None
    usable = page_size - image[20]
    # An in-memory copy SQLite can open: the WAL flag (header bytes 18 and 19) set back to the
    # rollback journal, as nothing here may open a file.
    header = bytearray(image[:100])
    header[18] = header[19] = 1
    conn = sqlite3.connect(":memory:")
    tables: dict[str, Table] = {}
    try:
        conn.deserialize(bytes(header) + image[100:])
        schema = conn.execute("SELECT type, name, tbl_name, rootpage FROM sqlite_schema").fetchall()
        schema.append(("table", "sqlite_schema", "sqlite_schema", 1))
        for kind, table_name, _, root in schema:
            if kind not in ("table", "index"):
                continue
            table = Table(str(table_name), str(kind))
            if kind == "table":
                with contextlib.suppress(sqlite3.Error):
                    quoted = str(table_name).replace('"', '""')  # a name read from the dump itself
                    cursor = conn.execute(f'SELECT * FROM "{quoted}"')  # noqa: S608
                    table.columns = [d[0] for d in cursor.description]
                    table.rows = [tuple(r) for r in cursor.fetchall()]
            if isinstance(root, int) and root > 0:
                for page in btree_leaves(image, root, page_size):
                    chunk = image[(page - 1) * page_size : page * page_size]
                    table.cells.extend(leaf_cells(chunk, page, page_size, usable))
            tables[table.name] = table
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    mailboxes = _ids(tables.get("mailboxes"), "mailbox_id")
    accounts = _ids(tables.get("accounts"), "account_id")
    return Dump(snapshot.t_us, tables, mailboxes, accounts)


def _ids(table: Table | None, column: str) -> set[bytes]:
    if table is None or column not in table.columns:
        return set()
    i = table.columns.index(column)
    return {v for r in table.rows if isinstance(v := r[i], bytes)}


# ----------------------------------------------------------------------------- evidence
Scores = dict[str, dict[str, float]]


def _pair(out: Scores, a: str, b: str, weight: float) -> None:
    if a != b and a.partition(":")[0] == b.partition(":")[0]:
        out[a][b] = out[a].get(b, 0.0) + weight
        out[b][a] = out[b].get(a, 0.0) + weight


def row_order(dump: Dump) -> Scores:
    """Cells of different pseudonyms near each other in a page's arrival order."""
    out: Scores = defaultdict(dict)
    for table in dump.tables.values():
        by_page: dict[int, list[Cell]] = defaultdict(list)
        for cell in table.cells:
            by_page[cell.page].append(cell)
        for cells in by_page.values():
            arrived = sorted(cells, key=lambda c: -c.offset)  # written from the page's end down
            names = [dump.pseudonym(c.values) for c in arrived]
            for i, a in enumerate(names):
                for d in range(1, NEIGHBOURS + 1):
                    if a is None or i + d >= len(names):
                        break
                    b = names[i + d]
                    if b is not None:
                        _pair(out, a, b, 1.0 / d)
    return out


def columns(dump: Dump) -> Scores:
    """Rows of different pseudonyms alike in any other column (module docstring)."""
    out: Scores = defaultdict(dict)
    for table in dump.tables.values():
        if table.kind != "table" or not table.rows:
            continue
        owners = [dump.pseudonym(r) for r in table.rows]
        for i in range(len(table.columns)):
            values = [(r[i], o) for r, o in zip(table.rows, owners, strict=True) if o is not None]
            values = [(v, o) for v, o in values if v is not None and not _is_own_id(v, o)]
            if len(values) < 2:
                continue
            numbers = [v for v, _ in values if isinstance(v, int | float)]
            distinct = len({v for v, _ in values})
            if len(numbers) == len(values) and distinct > max(4, len(values) // 4):
                ordered = sorted(values, key=lambda x: x[0])  # type: ignore[arg-type,return-value]
                keys = [float(v) for v, _ in ordered]  # type: ignore[arg-type]
                gaps = sorted(b - a for a, b in itertools.pairwise(keys))
                typical = gaps[len(gaps) // 2] or 1.0
                for j, (_, a) in enumerate(ordered):
                    for d in range(1, NEIGHBOURS + 1):
                        if j + d < len(ordered):
                            closeness = typical / (typical + keys[j + d] - keys[j])
                            _pair(out, a, ordered[j + d][1], closeness)
                continue
            groups: dict[Value, set[str]] = defaultdict(set)
            for v, o in values:
                groups[v].add(o)
            for members in groups.values():
                if 2 <= len(members) <= MAX_GROUP:
                    listed = sorted(members)
                    weight = 1.0 / (len(listed) - 1)
                    for x, a in enumerate(listed):
                        for b in listed[x + 1 :]:
                            _pair(out, a, b, weight)
    return out


def _is_own_id(value: Value, owner: str) -> bool:
    return isinstance(value, bytes) and len(value) == 16 and owner.endswith(":" + b64.encode(value))


_FEATURES = {ROW_ORDER: row_order, COLUMNS: columns}


def evidence(dumps: Sequence[Dump], *, features: Sequence[str] = FEATURES) -> Scores:
    """The evidence of ``features`` summed over the dumps."""
    total: Scores = defaultdict(dict)
    for dump in dumps:
        for feature in features:
            for a, row in _FEATURES[feature](dump).items():
                for b, w in row.items():
                    total[a][b] = total[a].get(b, 0.0) + w
    return total


def attack(snapshots: Sequence[DataSnapshot], *, features: Sequence[str] = FEATURES) -> Ranking:
    """Each pseudonym's likeliest contacts from the dumps (module docstring)."""
    dumps = [d for d in (read(s) for s in snapshots) if d is not None]
    return ranked(evidence(dumps, features=features))


__all__ = [
    "COLUMNS",
    "FEATURES",
    "ROW_ORDER",
    "Cell",
    "Dump",
    "Table",
    "attack",
    "btree_leaves",
    "columns",
    "effective_image",
    "evidence",
    "leaf_cells",
    "read",
    "record",
    "row_order",
]
