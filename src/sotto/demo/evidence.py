"""What the relay's files hold: every table as SQLite reads it, and a byte search for what must not be there.

The search is over raw bytes, so it also sees what SQL would not show: the write-ahead log, its
shared-memory index, free pages, logs. Three kinds of needles:

* **plaintexts**: every text sent, in UTF-8 and UTF-16;
* **sender ids**: every account id, as 16 raw bytes, hex, base64url and the UUID string sealed
  sender certificates carry. The relay *does* hold account ids, in the rows that belong to each
  account (its prekeys, its device, its invite access tokens): that is how it serves bundles. A
  hit counts as a sender id unless it lies in a page of one of those tables (mapped with SQLite's
  ``dbstat``), and, row by row, unless it is the ``account_id`` of that account's own row;
* **client IPs**: 127.0.0.1 as text, in decimal, IPv4-mapped and in UTF-16 anywhere in the
  files; and, cell by cell, as an integer or as its four packed bytes (either order) in a value
  of up to 64 bytes. Four given bytes turn up by chance about once per 4 GB of random data, so a
  raw search for them through megabytes of ciphertext and Kyber keys would cry wolf now and then.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from sotto.server import manifest
from sotto.wire import b64

DB_FILE = "relay.db"
SHORT_CELL = 64
"""Cells up to this size are searched for the short forms (a packed address)."""
ACCOUNT_TABLES = frozenset(t.name for t in manifest.TABLES if t.scope == "account")
"""Tables whose rows belong to one account (the owner export returns them)."""

Cell = bytes | str | int | float | None


# ---------------------------------------------------------------------------- the tables
@dataclass(frozen=True, slots=True)
class TableDump:
    name: str
    columns: tuple[str, ...]
    row_count: int
    rows: tuple[tuple[Cell, ...], ...]
    """Every row, as SQLite returns them (the caller shows a few)."""


def connect_read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``): nothing this module does can change the relay's data."""
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)


def dump_tables(db: Path) -> list[TableDump]:
    """Every table in the database (not just the ones we expect), in schema order."""
    with closing(connect_read_only(db)) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_schema"
                " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        dumps = []
        for name in names:
            cursor = conn.execute(f'SELECT * FROM "{name}"')  # noqa: S608 (names from sqlite_schema)
            columns = tuple(d[0] for d in cursor.description)
            rows = tuple(tuple(r) for r in cursor.fetchall())
            dumps.append(TableDump(name, columns, len(rows), rows))
        return dumps


def page_owners(db: Path) -> tuple[int, dict[int, str]]:
    """The page size and, for each page in use, the table it belongs to (an index counts as its table)."""
    with closing(connect_read_only(db)) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        tables = dict(conn.execute("SELECT name, tbl_name FROM sqlite_schema"))
        owners = {
            int(page): tables.get(name, name)
            for name, page in conn.execute("SELECT name, pageno FROM dbstat")
        }
    return page_size, owners


# ---------------------------------------------------------------------------- the needles
@dataclass(frozen=True, slots=True)
class Needle:
    kind: str
    """``plaintext``, ``sender`` or ``ip``."""
    label: str
    forms: tuple[bytes, ...]
    """Searched for everywhere: raw bytes and every cell."""
    value: bytes = b""
    """For a sender needle: the raw account id."""
    cell_forms: tuple[bytes, ...] = ()
    """Searched for in cells of up to :data:`SHORT_CELL` bytes only."""
    number: int | None = None
    """An integer cell with this value is a hit."""


def plaintext_needles(texts: Iterable[str]) -> list[Needle]:
    return [
        Needle("plaintext", text, (text.encode(), text.encode("utf-16-le"))) for text in dict.fromkeys(texts)
    ]


def sender_needles(account_ids: Iterable[bytes]) -> list[Needle]:
    needles = []
    for account_id in account_ids:
        forms = (
            account_id,
            account_id.hex().encode(),
            account_id.hex().upper().encode(),
            b64.encode(account_id).encode(),
            str(uuid.UUID(bytes=account_id)).encode(),
        )
        needles.append(Needle("sender", account_id.hex(), forms, account_id))
    return needles


def ip_needles(addresses: Iterable[str]) -> list[Needle]:
    needles = []
    for text in addresses:
        address = ipaddress.IPv4Address(text)
        forms = (
            text.encode(),
            str(int(address)).encode(),
            f"::ffff:{text}".encode(),
            text.encode("utf-16-le"),
        )
        packed = (address.packed, address.packed[::-1])
        needles.append(Needle("ip", text, forms, cell_forms=packed, number=int(address)))
    return needles


# ---------------------------------------------------------------------------- the search
@dataclass(frozen=True, slots=True)
class Hit:
    needle: Needle
    where: str
    """File name, with the owning table for hits inside the database file."""
    allowed: bool
    """A sender needle inside its own account's rows."""


@dataclass
class Findings:
    searched: dict[str, int] = field(default_factory=dict)
    """File label → bytes searched."""
    hits: list[Hit] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """Hits of this kind that are not allowed."""
        return sum(1 for h in self.hits if h.needle.kind == kind and not h.allowed)

    def allowed(self, kind: str) -> int:
        return sum(1 for h in self.hits if h.needle.kind == kind and h.allowed)

    def allowed_tables(self) -> list[str]:
        return sorted({h.where.rsplit(":", 1)[1] for h in self.hits if h.allowed and ":" in h.where})


def read_files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (recursively), by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _offsets(data: bytes, form: bytes) -> Iterable[int]:
    start = data.find(form)
    while start != -1:
        yield start
        start = data.find(form, start + 1)


def search(
    blobs: Mapping[str, bytes],
    needles: list[Needle],
    *,
    label: str = "",
    pages: tuple[int, dict[int, str]] | None = None,
) -> Findings:
    """Search every blob for every form of every needle.

    ``pages`` (from :func:`page_owners`) attributes hits inside ``relay.db`` to tables: a sender
    needle found in a page of an account table is allowed. Anywhere else (another file, a page of
    a mailbox table, a free page) it is not.
    """
    findings = Findings()
    for name, data in blobs.items():
        findings.searched[f"{label}{name}"] = len(data)
        for needle in needles:
            for form in needle.forms:
                for offset in _offsets(data, form):
                    where, allowed = f"{label}{name}", False
                    if pages is not None and Path(name).name == DB_FILE:
                        page_size, owners = pages
                        table = owners.get(offset // page_size + 1, "(free page)")
                        where = f"{where}:{table}"
                        allowed = needle.kind == "sender" and table in ACCOUNT_TABLES
                    findings.hits.append(Hit(needle, where, allowed))
    return findings


def search_rows(tables: list[TableDump], needles: list[Needle]) -> Findings:
    """Cell by cell: a sender needle is allowed only as the ``account_id`` of its own account's row;
    short forms and integers are matched here (see the module docstring)."""
    findings = Findings()
    for table in tables:
        for row in table.rows:
            for column, cell in zip(table.columns, row, strict=True):
                if isinstance(cell, int):
                    for needle in needles:
                        if needle.number is not None and cell == needle.number:
                            findings.hits.append(Hit(needle, f"row of {table.name}.{column}", False))
                    continue
                data = cell.encode() if isinstance(cell, str) else cell if isinstance(cell, bytes) else None
                if data is None:
                    continue
                for needle in needles:
                    short = needle.cell_forms if len(data) <= SHORT_CELL else ()
                    if any(form in data for form in (*needle.forms, *short)):
                        own = (
                            needle.kind == "sender"
                            and table.name in ACCOUNT_TABLES
                            and column == "account_id"
                            and data == needle.value
                        )
                        findings.hits.append(Hit(needle, f"row of {table.name}.{column}", own))
    return findings


def merge(*parts: Findings) -> Findings:
    merged = Findings()
    for part in parts:
        merged.searched.update(part.searched)
        merged.hits.extend(part.hits)
    return merged
