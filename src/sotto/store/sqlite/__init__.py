"""The encrypted SQLite backend (see :mod:`sotto.store.sqlite.store`)."""

from sotto.store.sqlite.store import KDF_NAME, SqliteStore, SqliteTransaction

__all__ = ["KDF_NAME", "SqliteStore", "SqliteTransaction"]
