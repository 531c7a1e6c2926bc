"""The client's local store: typed records, one Unit-of-Work interface, and its backends.

* :mod:`sotto.store.model` — the records the client keeps (frozen dataclasses; secrets hidden in reprs);
* :mod:`sotto.store.interfaces` — the :class:`~sotto.store.interfaces.Store` and
  :class:`~sotto.store.interfaces.Transaction` protocols every backend satisfies;
* :mod:`sotto.store.memory` — the in-memory reference backend (tests, ephemeral clients);
* :mod:`sotto.store.sqlite` — the SQLite backend, every sensitive value encrypted at rest.
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sotto.store import cipher, codec, gate, interfaces, memory, migrations, model, rules, sqlite
    from sotto.store.interfaces import Store, Transaction
    from sotto.store.memory import MemoryStore
    from sotto.store.sqlite import SqliteStore

_MODULES = frozenset(
    {"cipher", "codec", "gate", "interfaces", "memory", "migrations", "model", "rules", "sqlite"}
)
_LAZY = {"MemoryStore": "memory", "SqliteStore": "sqlite", "Store": "interfaces", "Transaction": "interfaces"}

__all__ = [
    "MemoryStore",
    "SqliteStore",
    "Store",
    "Transaction",
    "cipher",
    "codec",
    "gate",
    "interfaces",
    "memory",
    "migrations",
    "model",
    "rules",
    "sqlite",
]


def __getattr__(name: str) -> ModuleType | Any:
    # Loaded on first use: ``model`` alone should not open the SQLite backend and its migrations.
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
