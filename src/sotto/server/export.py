"""Exports in the manifest's schema: every listed column of every row held, bytes as base64url."""

from __future__ import annotations

from sotto.server import manifest
from sotto.server.storage.base import Export
from sotto.wire import b64

JsonValue = str | int | None


def export_json(export: Export, scope: manifest.Scope) -> dict[str, object]:
    """``{"manifest_version", "tables": {table: [row...]}}`` for the tables of ``scope``."""
    tables: dict[str, list[dict[str, JsonValue]]] = {}
    for table in manifest.TABLES:
        if table.scope != scope:
            continue
        rows = export.get(table.name, [])
        tables[table.name] = [
            {column.name: _value(row.get(column.name), column.export) for column in table.columns}
            for row in rows
        ]
    return {"manifest_version": manifest.MANIFEST_VERSION, "tables": tables}


def _value(value: bytes | int | None, form: manifest.ExportForm) -> JsonValue:
    if isinstance(value, bytes):
        return len(value) if form == "size" else b64.encode(value)
    return value
