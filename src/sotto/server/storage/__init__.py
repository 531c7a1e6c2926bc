"""Where the relay keeps what it must: the interface, the in-memory reference, SQLite, PostgreSQL."""

from sotto.server.storage.base import Storage
from sotto.server.storage.memory import MemoryStorage
from sotto.server.storage.postgres import PostgresStorage
from sotto.server.storage.sqlite import SqliteStorage

__all__ = ["MemoryStorage", "PostgresStorage", "SqliteStorage", "Storage"]
